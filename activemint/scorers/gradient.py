"""gMINT: an MLP on per-sample gradient features (white-box, labels), on both models."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from activemint.attacks.gradient import (
    GradientMintConfig,
    gradient_features,
    gradient_mint_scores,
    tapped_parameter_names,
    train_gradient_mlp,
)
from activemint.scorers.base import Context, clean_backbone, register
from activemint.scorers.crossfit import FittedScorer

FEATURE_ROLES = ("members", "external", "eval_nonmembers", "calibration")


@register
class GradientMintScorer(FittedScorer):
    key = "gmint"
    name = "gMINT"
    method = "gMINT"
    family = "MINT"
    half_threshold = 0.0
    Config = GradientMintConfig

    def _setup(self, ctx: Context) -> None:
        if hasattr(self, "params"):
            return
        self.config: GradientMintConfig = ctx.config(type(self))
        self.fold_seed = self.config.seed
        run = ctx.model(self.model)
        self.backbone = clean_backbone(run)
        self.names = tapped_parameter_names(self.backbone, ctx.taps(), params=self.config.params,
                                            max_tensors=self.config.max_tensors)
        self.params = {**self.config.to_dict(), "parameters": self.names}

    def describe(self) -> dict[str, Any]:
        return {**self.config.describe(), "params": self.params}

    def cache_key(self, ctx: Context) -> dict[str, Any]:
        self._setup(ctx)
        return {"format": "activemint-scorer/1", "method": "gmint", "params": self.params, **ctx.identity(self.model)}

    def what(self, cross: bool = False) -> str:
        return f"gMINT classifier{'s (cross-fit)' if cross else ''} ({self.model})"

    def prepare(self, ctx: Context) -> None:
        self._setup(ctx)

    def features(self, ctx: Context) -> dict[str, np.ndarray]:
        """Per-sample gradient features of every role (computed once per model and context)."""
        return ctx.memo(("gmint_features", self.model), lambda: self._features(ctx))

    def _features(self, ctx: Context) -> dict[str, np.ndarray]:
        c, run = self.config, ctx.model(self.model)
        ext_pos = np.arange(len(ctx.images["external"]))
        if c.external_limit is not None and c.external_limit < len(ext_pos):
            ext_pos = np.sort(np.random.default_rng(c.seed).choice(ext_pos, c.external_limit, replace=False))
        ctx.log(f"gMINT ({self.model} model): per-sample gradients of {', '.join(self.names)} on "
                f"{len(ctx.images['members']) + len(ext_pos) + len(ctx.images['eval_nonmembers']) + len(ctx.images['calibration'])} samples")
        feats = {}
        for r in FEATURE_ROLES:
            x, y = ctx.images[r], ctx.labels[r]
            if r == "external":
                x, y = x[torch.as_tensor(ext_pos)], y[torch.as_tensor(ext_pos)]
            feats[r] = gradient_features(self.backbone, self.names, x, y, run.device, reductions=c.reductions,
                                         batch=c.grad_batch)
        return feats

    def fit(self, ctx: Context, members: np.ndarray, k: int) -> torch.nn.Module:
        f = self.features(ctx)
        return train_gradient_mlp(f["members"][members], f["external"], self.config, log=ctx.log)

    def apply(self, fitted: torch.nn.Module, ctx: Context, role: str, pos: np.ndarray) -> np.ndarray:
        return gradient_mint_scores(fitted, self.features(ctx)[role][pos])

    def modules(self, fitted: list[Any]) -> torch.nn.Module | None:
        if not fitted:
            return None
        return fitted[0] if len(fitted) == 1 else torch.nn.ModuleList(fitted)
