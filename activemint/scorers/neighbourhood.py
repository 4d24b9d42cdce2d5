"""Neighbourhood scoring as a scorer option: any scorer that scores images, wrapped.

:class:`NeighbourhoodScorer` wraps a scorer instance: ``prepare`` is the wrapped scorer's,
``score_images(images)`` scores every view of every image (:mod:`activemint.neighbourhood`)
with the wrapped scorer and aggregates.  The wrapper is not registered: a caller (``activemint
robustness --neighbourhood VIEWSET``) wraps the scorers it runs, so every image scorer -- Active
MINT and the baselines alike -- gets it without a change of its own.  Scorers that need more
than the image (the loss / LiRA attacks of ``compare`` read labels and class logits per role)
cannot be wrapped: :func:`wraps` says why, in one line.

The row key is ``<scorer>@<view set>/<aggregation>``, e.g. ``active_mint@geometric/max``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from activemint.neighbourhood import (
    Aggregate,
    NeighbourhoodError,
    ViewSet,
    get_view_set,
    parse_aggregate,
    reference_subset,
    view_scores,
)
from activemint.scorers.base import Context, Scorer, ScorerError


def wraps(scorer: Scorer) -> str | None:
    """``None`` if ``scorer`` can be scored over a neighbourhood, else why not (one line)."""
    if type(scorer).score_images is Scorer.score_images:
        return f"{scorer.key} scores samples of the context (labels, logits), not bare images: no neighbourhood scoring"
    return None


#: How many image sets the wrappers of one scorer keep the view scores of (the roles of one view).
SHARED_RECENT = 4


class NeighbourhoodScorer(Scorer):
    """``inner`` scored over the views of ``views``, aggregated by ``aggregate``."""

    def __init__(self, inner: Scorer, views: ViewSet | str, aggregate: Aggregate | str = "max",
                 shared: dict | None = None) -> None:
        """``shared``: one dict given to the wrappers of one scorer (several aggregations), so that
        they compute the view scores of the same images once; its ``timing`` (if any) adds up the
        seconds and queries of neighbourhood scoring."""
        why = wraps(inner)
        if why:
            raise ScorerError(why)
        super().__init__(inner.model)
        self.inner = inner
        self._inner_score = inner.score_images
        self.shared = shared
        self.views = get_view_set(views)
        self.aggregate = parse_aggregate(aggregate) if isinstance(aggregate, str) else aggregate
        self.key = f"{inner.key}@{self.views.name}/{self.aggregate.name}"
        self.name = f"{inner.name or inner.key}, over the neighbourhood {self.views.name} ({len(self.views)} views, {self.aggregate.name})"
        self.method = f"{inner.row} @{self.views.name}/{self.aggregate.name}"
        self.family = inner.family
        self.needs = inner.needs
        self.suites = inner.suites

    def describe(self) -> dict[str, Any]:
        d = dict(self.inner.describe())
        d["description"] = self.name
        d["params"] = {**d.get("params", {}), "neighbourhood": self.views.describe(), "aggregate": self.aggregate.name,
                       "cost_per_query": self.views.cost()}
        return d

    def cache_key(self, ctx: Context) -> dict[str, Any] | None:
        key = self.inner.cache_key(ctx)
        if key is None:
            return None
        return {**key, "neighbourhood": [v.label() for v in self.views.views], "aggregate": self.aggregate.name}

    def what(self) -> str:
        return self.inner.what()

    def module(self) -> torch.nn.Module | None:
        return self.inner.module()

    def prepare(self, ctx: Context) -> None:
        self.inner.prepare(ctx)
        if self.aggregate.needs_fit:
            self.fit(self.reference_view_scores(ctx))

    def reference_view_scores(self, ctx: Context) -> np.ndarray:
        """(V, M): the wrapped scorer on the views of a seeded subset of the run's external data E."""
        ext = (ctx.known or ctx.images).get("external")
        if ext is None or len(ext) < 2:
            raise NeighbourhoodError(f"{self.aggregate.name} needs the run's external data E (reference non-members)")
        return view_scores(self._inner_score, ext[torch.as_tensor(reference_subset(len(ext)))], self.views)

    def fit(self, reference_view_scores: np.ndarray) -> None:
        """Fit the aggregation's per-view statistics (zmax) on reference non-member view scores."""
        if self.aggregate.needs_fit:
            self.aggregate = self.aggregate.fit(reference_view_scores)

    def view_scores(self, images: torch.Tensor) -> np.ndarray:
        """(V, N): the wrapped scorer on every view (one aggregation of them is :meth:`score_images`)."""
        if self.shared is None:
            return view_scores(self._inner_score, images, self.views)
        recent = self.shared.setdefault("recent", [])  # (images, view scores): the roles of the view in hand
        for imgs, vs in recent:
            if imgs is images:
                return vs
        import time

        t = time.time()
        vs = view_scores(self._inner_score, images, self.views)
        recent[:] = [*recent[-(SHARED_RECENT - 1):], (images, vs)]
        if "timing" in self.shared:
            self.shared["timing"]["seconds"] += time.time() - t
            self.shared["timing"]["queries"] += len(images)
        return vs

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        return self.aggregate(self.view_scores(images))
