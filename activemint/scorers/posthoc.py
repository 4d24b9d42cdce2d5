"""The post-hoc heads of ``robustness``: the passive MINT head (:mod:`activemint.scorers.mint`)
trained on all of D after the fact, on the frozen plain model (``posthoc_head``) or on the
audited run's transformed views (``posthoc_head_robust``): the same access to D as Active
MINT, without joint training.  They score bare images, so transformed copies too.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from activemint.attacks.passive import wrap_frozen
from activemint.scorers.base import Context, Scorer, Scores, Work, clean_backbone, register
from activemint.scorers.mint import PassiveMintScorer
from activemint.training.evaluation import membership_scores


@register
class PostHocHeadScorer(PassiveMintScorer):
    """``robustness``'s post-hoc head: the passive MINT head on all of D, which also scores bare
    (transformed) images; its weights are cached in the output's cache folder, never in a run."""

    key = "posthoc_head"
    name = "Post-hoc head (passive MINT on the plain model, head trained on all of D)"
    method = ""
    needs = "the plain model's activations + D and E to train a head"
    suites = ("robustness",)

    def __init__(self, model: str = "plain") -> None:
        super().__init__(model)

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        return None if ctx.plain is not None else "needs --plain-run (the same splits trained without aMINT)"

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        return [cls(m) for m in cls.models]

    def describe(self) -> dict[str, Any]:
        return Scorer.describe(self)

    def what(self, cross: bool = False) -> str:
        return f"{self.key} ({self.model})"

    def prepare(self, ctx: Context) -> Work:
        from activemint.io import file_sha256, sha256_json
        from activemint.rundir import POSTHOC_HEADS, WEIGHTS_SUFFIX
        from activemint.training.checkpoint import load_weights, save_weights

        self._setup(ctx)
        plain, acfg = ctx.model(self.model), ctx.run.config
        policy = self.policy(ctx)
        params = {"taps": self.params["taps"], "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size,
                  "external_batch_size": self.external_batch_size, "head_width": acfg.head_width,
                  "head_hidden": acfg.head_hidden, "seed": self.config.seed,
                  "plain_model": file_sha256(plain.dir.model),
                  "policy": acfg.audit_policy if policy is not None else None}
        # Cached in the output's cache folder (never in the plain run, an input that is only read);
        # the key names the plain model's weights and the recipe.
        path = ctx.cache_dir / POSTHOC_HEADS / f"{self.key}-{sha256_json(params)[:16]}{WEIGHTS_SUFFIX}"
        if path.is_file():
            model = wrap_frozen(clean_backbone(plain).cpu(), params["taps"], plain.input_shape, head_width=acfg.head_width,
                                head_hidden=acfg.head_hidden, seed=self.config.seed)
            load_weights(model, path)
            work = Work(reused=[f"{self.what()} {path}"])
        else:
            ctx.log(f"training the {self.key} on the plain model -> {path}")
            model = self.fit(ctx, np.arange(len(ctx.known["members"])), 0)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(model, path, params)
            work = Work(trained=[f"{self.what()} {path}"])
        self.fitted, self.device = [model.to(plain.device).eval()], plain.device
        return work

    def score(self, ctx: Context) -> Scores:
        return Scorer.score(self, ctx)

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        return membership_scores(self.fitted[0], images, self.device)


@register
class RobustPostHocHeadScorer(PostHocHeadScorer):
    key = "posthoc_head_robust"
    name = "Robust post-hoc head (as posthoc_head, trained on the audited run's transformed views)"

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        if not ctx.run.config.audit_policy:
            return "the audited run has no --audit-policy to copy"
        return super().applies(ctx)

    def policy(self, ctx: Context):
        from activemint.transforms import get_policy

        return get_policy(ctx.run.config.audit_policy)
