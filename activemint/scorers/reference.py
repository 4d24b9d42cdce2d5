"""LiRA and RMIA: per-sample statistics of the target model against N reference models.

The reference models are trained (or reused) once per context by :func:`reference_models`
(:mod:`activemint.attacks.reference`); LiRA's and RMIA's variants on both models share them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from activemint.attacks.lira import LiraConfig, lira_scores
from activemint.attacks.output import logit_confidence, true_label_prob
from activemint.attacks.reference import (
    ReferenceConfig,
    ReferenceLogits,
    reference_logits,
)
from activemint.attacks.rmia import RmiaConfig, rmia_from_config
from activemint.scorers.base import EVAL_ROLES, Context, Scorer, Scores, Work, register


def reference_models(ctx: Context) -> ReferenceLogits:
    """The reference models' logits for the context's run (trained or reused once per context)."""
    return ctx.memo("reference", lambda: _load_reference(ctx))


def reference_work(ctx: Context) -> Work:
    """What loading the reference models trained or reused (the same lines for every scorer using them)."""
    refs = reference_models(ctx)
    work = Work(trained=[f"reference model {i} {refs.cache_dir / f'model-{i:02d}'}" for i in refs.trained])
    if not refs.trained:
        work.reused.append(f"{ctx.reference.n_models} reference models {refs.cache_dir}")
    return work


def reference_info(ctx: Context) -> dict[str, Any]:
    """The reference models of this context, for the report (``{}``: none were used)."""
    refs = ctx.memoised("reference")
    if refs is None:
        return {}
    reference: ReferenceConfig = ctx.reference
    return {"cache_dir": str(refs.cache_dir), "key": refs.key, "config": reference.to_dict(),
            "description": reference.description, "epochs": reference.epochs or ctx.run.config.epochs,
            "training_sizes": refs.training_sizes, "test_accuracy": refs.test_accuracy,
            "population": int(refs.logits["population"].shape[0]), "trained_now": refs.trained,
            "logits_computed_now": refs.ran}


def _load_reference(ctx: Context) -> ReferenceLogits:
    reference: ReferenceConfig = ctx.reference
    acfg, data = ctx.run.config, ctx.run.data
    s = data.splits
    refs = reference_logits(acfg, s, reference, ctx.cache_dir, train=data.train, test=data.test,
                            workers=ctx.engine.workers, **ctx.engine.kwargs(), log=ctx.log)
    for r in EVAL_ROLES:
        if not np.array_equal(refs.indices[r][1], getattr(s, r)):
            raise RuntimeError(f"reference logits of {r} do not belong to the run's {r} split")
    for r in EVAL_ROLES:
        if not np.array_equal(refs.labels[r], ctx.labels_np(r)):
            raise RuntimeError(f"reference logits of {r} are not aligned with the run's samples")
    # Population images (RMIA's z): the audited models' logits on them, through the context.
    split, idx = refs.indices["population"]
    ctx.memo(("images", "population"), lambda: (data.test if split == "test" else data.train).images[torch.as_tensor(idx)])
    return refs


def _ref_stat(ctx: Context, name: str, fn) -> dict[str, np.ndarray]:
    """Per role, (n, N) statistic ``fn(logits, labels)`` of every reference model."""
    def make() -> dict[str, np.ndarray]:
        refs = reference_models(ctx)
        return {r: np.stack([fn(refs.logits[r][:, j], refs.labels[r]) for j in range(refs.logits[r].shape[1])], axis=1)
                for r in refs.logits}
    return ctx.memo(("reference", name), make)


class _ReferenceScorer(Scorer):
    family = "reference"

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        return None if ctx.reference is not None else "no reference models (--reference-models 0)"

    def describe(self) -> dict[str, Any]:
        return self.config.describe()

    def prepare(self, ctx: Context) -> Work:
        return reference_work(ctx)


@register
class LiraScorer(_ReferenceScorer):
    key = "lira"
    name = "LiRA"
    Config = LiraConfig

    def __init__(self, model: str = "active", config: LiraConfig | None = None) -> None:
        super().__init__(model)
        self.config = config or LiraConfig()
        self.method = self.config.display_name
        # Online: a log likelihood ratio, 0 = equal likelihood (P(member) = 0.5 at equal priors).
        self.half_threshold = 0.0 if self.config.variant == "online" else None

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        base = ctx.config(cls)
        return [cls(m, dataclasses.replace(base, variant=v, fixed_variance=f))
                for v in ("online", "offline") for f in (False, True) for m in cls.models]

    def score(self, ctx: Context) -> Scores:
        refs, phi = reference_models(ctx), _ref_stat(ctx, "phi", logit_confidence)
        return ctx.wrap({r: lira_scores(logit_confidence(ctx.logits(self.model, r), ctx.labels_np(r)), phi[r], refs.keep[r],
                                        self.config) for r in ctx.roles})


@register
class RmiaScorer(_ReferenceScorer):
    key = "rmia"
    name = "RMIA"
    Config = RmiaConfig

    def __init__(self, model: str = "active", config: RmiaConfig | None = None) -> None:
        super().__init__(model)
        self.config = config or RmiaConfig()
        self.method = self.config.display_name

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        base = ctx.config(cls)
        return [cls(m, dataclasses.replace(base, variant=v)) for v in ("offline", "online") for m in cls.models]

    def score(self, ctx: Context) -> Scores:
        refs, ref_p = reference_models(ctx), _ref_stat(ctx, "p", true_label_prob)
        tz = true_label_prob(ctx.logits(self.model, "population"), refs.labels["population"])
        return ctx.wrap({r: rmia_from_config(true_label_prob(ctx.logits(self.model, r), ctx.labels_np(r)), ref_p[r],
                                             refs.keep[r], tz, ref_p["population"], refs.keep["population"], self.config)
                         for r in ctx.roles})
