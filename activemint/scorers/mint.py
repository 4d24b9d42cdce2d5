"""The MINT family: Active MINT (the audited model's own head) and passive MINT (a head trained
after the fact on the frozen plain model, on the same D / E)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from activemint.attacks.passive import (
    PassiveMintConfig,
    passive_mint_scores,
    train_passive_head,
    wrap_frozen,
)
from activemint.scorers.base import Context, Scorer, clean_backbone, register
from activemint.scorers.crossfit import FittedScorer


@register
class ActiveMintScorer(Scorer):
    key = "active_mint"
    name = "Active MINT (audited model's membership output)"
    method = "Active MINT"
    family = "MINT"
    needs = "the audited model only"
    half_threshold = 0.0
    suites = ("compare", "robustness")
    models = ("active",)

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        return None if ctx.run.is_audited else "the run is plain (mint off)"

    def describe(self) -> dict[str, Any]:
        return {"description": "Membership logit of the Enhanced Audited Model's MINT head, trained jointly with the "
                               "classifier on members (1) / external data (0) (DeAlcala et al., 2025)",
                "needs": ["the Enhanced Audited Model (its membership output)"], "params": {"taps": self.taps}}

    def prepare(self, ctx: Context) -> None:
        self.run = ctx.run
        self.taps = ctx.taps()

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        return self.run.membership_logits(images)


@register
class PassiveMintScorer(FittedScorer):
    """A MINT head on the frozen plain model, trained on D (1) / E (0) with the active run's recipe.

    The one passive head: ``compare``'s Passive MINT rows (+ cross-fit) and ``robustness``'s
    post-hoc heads (:class:`PostHocHeadScorer`, :class:`RobustPostHocHeadScorer`) are this class,
    one config (``--passive-mint-*``) and one training loop
    (:func:`activemint.training.head.train_head`).
    """

    key = "passive_mint"
    name = "Passive MINT"
    method = "Passive MINT"
    family = "MINT"
    half_threshold = 0.0
    models = ("plain",)
    Config = PassiveMintConfig
    config_name = "passive_mint"

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        return None if ctx.plain is not None else "needs the plain run (the same splits trained without aMINT)"

    @property
    def config(self) -> PassiveMintConfig:
        return self._config

    def policy(self, ctx: Context):
        """The transformed views the head trains on (``None``: the exact images)."""
        return None

    def _setup(self, ctx: Context) -> None:
        if hasattr(self, "params"):
            return
        c: PassiveMintConfig = ctx.config(type(self))
        acfg = ctx.run.config
        self._config, self.fold_seed = c, c.seed
        self.epochs = c.epochs or acfg.epochs
        self.lr = c.lr or acfg.resolved("lr")
        self.batch_size = c.batch_size or acfg.batch_size
        self.external_batch_size = c.external_batch_size or acfg.external_batch_size
        self.params = {"taps": ctx.taps(), "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size,
                       "external_batch_size": self.external_batch_size, "seed": c.seed, "head_width": acfg.head_width,
                       "head_hidden": acfg.head_hidden}

    def describe(self) -> dict[str, Any]:
        return {**self.config.describe(), "params": self.params}

    def cache_key(self, ctx: Context) -> dict[str, Any]:
        self._setup(ctx)
        return {"format": "activemint-scorer/1", "method": "passive_mint", "params": self.params, **ctx.identity(self.model)}

    def what(self, cross: bool = False) -> str:
        return "passive MINT head" + ("s (cross-fit)" if cross else "")

    def prepare(self, ctx: Context) -> None:
        self._setup(ctx)
        ctx.log(f"{self.what()}: training on the frozen plain model ({self.epochs} epochs)")

    def fit(self, ctx: Context, members: np.ndarray, k: int) -> torch.nn.Module:
        """A fresh head (seed + k) on the frozen plain model, trained on the known members at ``members``."""
        plain, acfg = ctx.model(self.model), ctx.run.config
        seed = self.config.seed + k
        model = wrap_frozen(clean_backbone(plain).cpu(), self.params["taps"], plain.input_shape, head_width=acfg.head_width,
                            head_hidden=acfg.head_hidden, seed=seed)
        policy = self.policy(ctx)
        if policy is None:
            return train_passive_head(model, ctx.known["members"][torch.as_tensor(members)], ctx.known["external"],
                                      epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                                      external_batch_size=self.external_batch_size, seed=seed, device=plain.device,
                                      log=ctx.log, log_every=10, progress=ctx.progress)
        from activemint.training.head import train_head

        # The robust head: the audited run's transformed views, its head epochs too, one batch size.
        return train_head(model, ctx.known["members"][torch.as_tensor(members)], ctx.known["external"],
                          epochs=self.epochs + acfg.head_epochs, lr=self.lr, batch_size=self.batch_size, policy=policy,
                          seed=seed, device=plain.device, log=ctx.log, log_every=10, what=f"{self.key} head",
                          progress=ctx.progress)

    def apply(self, fitted: torch.nn.Module, ctx: Context, role: str, pos: np.ndarray) -> np.ndarray:
        return passive_mint_scores(fitted, ctx.images[role][torch.as_tensor(pos)], ctx.model(self.model).device)

    def modules(self, fitted: list[Any]) -> torch.nn.Module | None:
        return torch.nn.ModuleList([h.head for h in fitted]) if fitted else None
