"""The one scoring loop of ``compare`` and ``robustness``: every scorer on every view of the samples.

A *view* is the evaluated roles' images as they are (:data:`EXACT`) or transformed the same
way for every role (``robustness``: a JPEG copy, a shift ...).  :func:`score_views` walks the
views (outer, with a progress bar) and the scorers (inner):

* on the exact view a scorer runs through :meth:`Scorer.run_scores`: ``prepare`` + ``score``,
  or its cached scores when it names a :meth:`~Scorer.cache_key` (a :class:`ScorerCache`);
* on a transformed view it scores the transformed copies with ``score_images`` (the copies
  are made once per view and shared by every scorer); it is prepared once, before.

It returns the scores per view and scorer, and what was trained or reused (:class:`Work`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from activemint.scorers.base import Context, Scorer, ScorerCache, Scores, Work


@dataclass(frozen=True)
class View:
    """One view of the samples: ``transform(images) -> images`` (``None``: the images as they are)."""

    name: str
    level: str
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def exact(self) -> bool:
        return self.transform is None


#: The samples as they are.
EXACT = View("none", "exact")


def score_views(ctx: Context, scorers: Sequence[Scorer], views: Sequence[View] = (EXACT,), *,
                cache: ScorerCache | None = None, prepared: bool = False, desc: str = "scoring",
                on_view: Callable[[View, list[Scores]], None] | None = None,
                ) -> tuple[list[list[Scores]], Work]:
    """Scores of every scorer (inner) on every view (outer): ``out[v][s][role]``, and the work done.

    ``prepared``: the scorers were prepared by the caller (``robustness`` prepares on all of D
    and evaluates a subset); they are not prepared again and the cache is not used.
    ``on_view(view, scores)`` is called after each view (a log line).
    """
    from activemint.progress import progress

    work = Work()
    ready = [prepared] * len(scorers)
    out: list[list[Scores]] = []
    steps = progress(views, desc=desc, unit="view", leave=False, disable=not ctx.progress) if len(views) > 1 else views
    for view in steps:
        got: list[Scores] = []
        copies: dict[str, torch.Tensor] | None = None
        bar = progress(scorers, desc=f"{desc} {view.name}:{view.level}" if len(views) > 1 else desc, unit="scorer",
                       leave=False, disable=not ctx.progress)
        for i, sc in enumerate(bar):
            if view.exact and not ready[i]:
                scores, w = sc.run_scores(ctx, cache)
                work.add(w)
                ready[i] = getattr(sc, "prepared", False)
            elif view.exact:
                scores = sc.score(ctx)
            else:
                if not ready[i]:
                    work.add(sc.prepare(ctx))
                    ready[i] = True
                if copies is None:
                    copies = {r: view.transform(ctx.images[r]) for r in ctx.roles}
                scores = ctx.wrap({r: sc.score_images(copies[r]) for r in ctx.roles})
            got.append(scores)
        out.append(got)
        if on_view is not None:
            on_view(view, got)
    return out, work


__all__ = ["EXACT", "View", "score_views"]
