"""The one context builder of ``compare`` and ``robustness``, and what both check of their runs.

:func:`run_context` gives the scorers the audited run's roles (all of them, or the positions
a caller evaluates: ``robustness --max-samples``), with labels and sample indices, and what the
auditor fits on (all of D and E, whatever subset is evaluated).  :func:`check_plain_twin`
refuses a plain run that is not the same splits trained without aMINT; :func:`test_accuracy`
reads a run's test accuracy from its metrics.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from activemint.data import read_manifest
from activemint.rundir import RunError
from activemint.runs import Run
from activemint.scorers.base import EVAL_ROLES, REGISTRY, Context, EngineOptions, ScorerError

#: The roles a context holds (each from its source split: :func:`activemint.data.source_split`).
CONTEXT_ROLES = ("members", "eval_nonmembers", "calibration", "external")


def run_context(run: Run, plain: Run | None, cache_dir: str | Path, *, indices: Mapping[str, np.ndarray] | None = None,
                roles: tuple[str, ...] = EVAL_ROLES, configs: Mapping[str, Any] | None = None, reference: Any = None,
                engine: EngineOptions | None = None, log: Callable[[str], None] = lambda m: None,
                progress: bool = True) -> Context:
    """Images, labels and sample indices of every role of ``run``'s splits (``indices``: of these
    samples instead), and all of D and E to fit on."""
    known_keys = {cls.config_key() for cls in REGISTRY.values()}
    unknown = sorted(set(configs or {}) - known_keys)
    if unknown:
        raise ScorerError(f"scorer configs for unknown scorer(s) {', '.join(unknown)}; known: {', '.join(sorted(known_keys))}")
    data = run.data
    full = {r: data.indices(r) for r in CONTEXT_ROLES}
    idx = {**full, **(indices or {})}
    got = {r: data.split(r, idx[r]) for r in CONTEXT_ROLES}
    images = {r: got[r].images for r in CONTEXT_ROLES}
    labels = {r: got[r].labels for r in CONTEXT_ROLES}
    known = {r: images[r] if np.array_equal(idx[r], full[r]) else data.split(r).images for r in ("members", "external")}
    return Context(run=run, plain=plain, cache_dir=Path(cache_dir), log=log, images=images, labels=labels, indices=idx,
                   roles=roles, known=known, configs=dict(configs or {}), reference=reference,
                   engine=engine or EngineOptions(), progress=progress)


def check_plain_twin(run: Run, plain: Run, what: str) -> None:
    """``plain`` must be trained with mint off on ``run``'s splits; else one line naming ``what``."""
    if plain.is_audited:
        raise ScorerError(f"{what} {plain.run_dir} is an aMINT run; it must be the same splits trained with mint off")
    pm = plain.dir.manifest
    if not pm.is_file() or read_manifest(pm) != run.data.splits:
        raise ScorerError(f"{what} {plain.run_dir} does not share the splits of {run.run_dir} (manifests differ); "
                          "train them with the same data set, sizes and seed")


def run_test_accuracy(run: Run, *, evaluate: bool = False) -> float | None:
    """The run's test accuracy from its metrics (``evaluate``: else evaluate the model; else ``None``)."""
    try:
        m = run.dir.read_metrics() or {}
    except (OSError, ValueError, TypeError, RunError):
        m = {}
    if "test_accuracy" in m:
        return float(m["test_accuracy"])
    return float(run.evaluate()[0]["test_accuracy"]) if evaluate else None


__all__ = ["CONTEXT_ROLES", "check_plain_twin", "run_context", "run_test_accuracy"]
