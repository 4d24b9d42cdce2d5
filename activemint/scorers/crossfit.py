"""Scorers that fit something on D, and the generic cross-fit wrapper around them.

A :class:`FittedScorer` fits a model (a head, a classifier) on a subset of the members D and
scores any samples with it.  Used as is, it fits on all of D (the paper's audit protocol: the
auditor knows D).  :class:`CrossFit` wraps any of them: D is split in halves, one model per
half, and every member is scored by the model that did not train on it, so a score never
comes from a model that saw that member.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from activemint.scorers.base import EVAL_ROLES, Context, Scorer, Scores

CROSS_FIT_NOTE = ("2-fold cross-fit: D is split in halves, one head / classifier per half, and every member is scored by "
                  "the one that did not train on it (every non-member by a random one of the two), so a score never "
                  "comes from a head that saw that member")


def cross_fit_folds(sizes: dict[str, int], seed: int, roles: tuple[str, ...] = EVAL_ROLES) -> dict[str, np.ndarray]:
    """Per role, a seeded 0/1 fold per sample (halves)."""
    rng = np.random.default_rng([seed, 2])
    out = {}
    for role in roles:
        f = np.zeros(sizes[role], dtype=np.int64)
        f[rng.permutation(sizes[role])[: sizes[role] // 2]] = 1
        out[role] = f
    return out


def cross_fit_scores(folds: dict[str, np.ndarray], score: Callable[[int, str, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Assemble cross-fitted scores: ``score(k, role, positions)`` of model k (trained on member fold k).

    Members of fold k are scored by model 1 - k; non-members of fold k by model k.
    """
    out = {}
    for role, fold in folds.items():
        res = np.full(len(fold), np.nan)
        for k in (0, 1):
            pos = np.flatnonzero(fold == (1 - k if role == "members" else k))
            if len(pos):
                res[pos] = score(k, role, pos)
        out[role] = res
    return out


class FittedScorer(Scorer):
    """A scorer that fits on members D: subclasses implement :meth:`fit` and :meth:`apply`."""

    fold_seed: int = 0  # the seed of the cross-fit halves

    def fit(self, ctx: Context, members: np.ndarray, k: int) -> Any:
        """Fit model ``k`` on the members at positions ``members`` (of ``ctx.images['members']``)."""
        raise NotImplementedError

    def apply(self, fitted: Any, ctx: Context, role: str, pos: np.ndarray) -> np.ndarray:
        """Scores of the samples of ``role`` at positions ``pos`` by one fitted model."""
        raise NotImplementedError

    def what(self, cross: bool = False) -> str:
        return f"{self.row}{' (cross-fit)' if cross else ''} ({self.model})"

    def modules(self, fitted: list[Any]) -> torch.nn.Module | None:
        """What to save of the fitted models (weights only)."""
        return None

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        """Each model: the scorer on all of D, then its cross-fit."""
        out: list[Scorer] = []
        for m in cls.models:
            out += [cls(m), CrossFit(cls(m))]
        return out

    def score(self, ctx: Context) -> Scores:
        self.fitted = [self.fit(ctx, np.arange(len(ctx.images["members"])), 0)]
        return ctx.wrap({r: self.apply(self.fitted[0], ctx, r, np.arange(len(ctx.images[r]))) for r in ctx.roles})

    def module(self) -> torch.nn.Module | None:
        return self.modules(getattr(self, "fitted", []))


class CrossFit(Scorer):
    """``inner`` cross-fitted over 2 folds of D (the row ``<inner row> (cross-fit)``)."""

    folds = 2

    def __init__(self, inner: FittedScorer) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.key = inner.key + "_cross_fit"
        self.method = f"{inner.row} (cross-fit)"
        self.family = inner.family
        self.half_threshold = inner.half_threshold

    def describe(self) -> dict[str, Any]:
        d = self.inner.describe()
        return {**d, "description": d["description"] + "; " + CROSS_FIT_NOTE,
                "params": {**d.get("params", {}), "cross_fit_folds": self.folds}}

    def cache_key(self, ctx: Context) -> dict[str, Any] | None:
        key = self.inner.cache_key(ctx)
        return None if key is None else {**key, "params": {**key.get("params", {}), "cross_fit_folds": self.folds}}

    def what(self) -> str:
        return self.inner.what(cross=True)

    def prepare(self, ctx: Context) -> None:
        self.inner.prepare(ctx)

    def score(self, ctx: Context) -> Scores:
        folds = cross_fit_folds({r: len(ctx.images[r]) for r in ctx.roles}, self.inner.fold_seed, ctx.roles)
        self.fitted = [self.inner.fit(ctx, np.flatnonzero(folds["members"] == k), k) for k in (0, 1)]
        return ctx.wrap(cross_fit_scores(folds, lambda k, r, pos: self.inner.apply(self.fitted[k], ctx, r, pos)))

    def module(self) -> torch.nn.Module | None:
        return self.inner.modules(getattr(self, "fitted", []))
