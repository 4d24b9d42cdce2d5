"""``run_compare``: the active and plain runs, then every registered scorer, then the headline."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activemint.attacks.gradient import GradientMintConfig
from activemint.attacks.passive import PassiveMintConfig
from activemint.attacks.reference import ReferenceConfig
from activemint.compare.results import (
    CompareResult,
    MethodResult,
    headline_line,
    write_outputs,
)
from activemint.data import read_manifest
from activemint.io import check_output_dir
from activemint.metrics import membership_metrics
from activemint.rundir import CACHE_RUNS, COMPARE_FILES, RunDir
from activemint.runs import Run, RunError, ensure_run, load_run
from activemint.scorers import EVAL_ROLES, MODELS, Context, Scorer, ScorerCache, Suite
from activemint.training import TrainConfig

_REFERENCE, _PASSIVE, _GRADIENT = ReferenceConfig(), PassiveMintConfig(), GradientMintConfig()  # the defaults (never mutated)

#: The registered scorers that ``compare`` runs (a live view, by key, in registration order).
COMPARE_SCORERS = Suite("compare")


def _test_accuracy(run: Run) -> float:
    m = RunDir(run.run_dir).read_metrics() or {}
    if "test_accuracy" in m:
        return float(m["test_accuracy"])
    return float(run.evaluate()[0]["test_accuracy"])


def _runs(cfg: TrainConfig | None, active_run, plain_run, cache_root: Path, progress: bool, log,
          trained: list[str], reused: list[str]) -> tuple[Run, Run]:
    """The two audited runs, active (aMINT) and plain, on the same splits: given, reused or trained."""
    if active_run is not None:
        active_dir = Path(active_run)
        reused.append(f"active run {active_dir} (given)")
    else:
        if cfg is None or not cfg.mint:
            raise ValueError("compare needs the active run's config with mint=True (or an existing --active-run)")
        active_dir, did = ensure_run(cfg, cache_root / CACHE_RUNS / cfg.fingerprint(), progress=progress, log=log)
        (trained if did else reused).append(f"active run {active_dir}")
    active = load_run(active_dir)
    if not active.is_audited:
        raise RunError(f"{active_dir} is a plain run; compare needs an aMINT run as the active model")
    if plain_run is not None:
        plain_dir = Path(plain_run)
        reused.append(f"plain run {plain_dir} (given)")
    else:
        pcfg = active.config.without_mint()
        plain_dir, did = ensure_run(pcfg, cache_root / CACHE_RUNS / pcfg.fingerprint(), progress=progress, log=log)
        (trained if did else reused).append(f"plain run {plain_dir}")
    plain = load_run(plain_dir)
    if plain.is_audited:
        raise RunError(f"{plain_dir} is an aMINT run; the plain model must be trained with mint off")
    if read_manifest(RunDir(plain_dir).manifest) != active.data.splits:
        raise RunError(f"the plain run {plain_dir} and the active run {active_dir} use different splits (manifests differ); "
                       "train them with the same data set, sizes and seed")
    return active, plain


def compare_context(active: Run, plain: Run, cache_root: Path, options: dict[str, Any],
                    log: Callable[[str], None]) -> Context:
    """Images, labels and sample indices of every role of the active run's splits."""
    data, s = active.data, active.data.splits
    src = {"members": data.train, "eval_nonmembers": data.test, "calibration": data.train, "external": data.train}
    idx = {r: np.asarray(getattr(s, r)) for r in src}
    return Context(run=active, plain=plain, cache_dir=cache_root, log=log, options=options,
                   images={r: src[r].images[torch.as_tensor(idx[r])] for r in src},
                   labels={r: src[r].labels[torch.as_tensor(idx[r])] for r in src}, indices=idx)


def score_rows(ctx: Context, scorers: list[type[Scorer]], *, bootstrap: int, cache: ScorerCache | None) -> list[MethodResult]:
    """Every scorer's rows (its instances, in order), through the one metrics engine."""
    acfg = ctx.run.config
    test_acc = {m: _test_accuracy(ctx.model(m)) for m in MODELS}
    rows = []
    for cls in scorers:
        why = cls.applies(ctx)
        if why:
            ctx.log(f"skipping {cls.key}: {why}")
            continue
        for sc in cls.instances(ctx):
            s = sc.run_scores(ctx, cache)
            m = membership_metrics(s["members"], s["eval_nonmembers"], calibration_scores=s["calibration"],
                                   target_fpr=acfg.target_fpr, half_threshold=sc.half_threshold, bootstrap=bootstrap,
                                   seed=acfg.seed)
            d = sc.describe()
            rows.append(MethodResult(sc.row, sc.model, sc.family, d["description"], list(d["needs"]), d.get("params", {}),
                                     sc.half_threshold, m, test_acc[sc.model], s))
    return rows


def run_compare(
    cfg: TrainConfig | None,
    out_dir: str | Path,
    *,
    active_run: str | Path | None = None,
    plain_run: str | Path | None = None,
    reference: ReferenceConfig | None = _REFERENCE,
    passive: PassiveMintConfig = _PASSIVE,
    gradient: GradientMintConfig = _GRADIENT,
    rmia_a: float = 0.3,
    lira_min_std: float = 1e-3,
    cache_dir: str | Path = ".cache",
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float = 0,
    bootstrap: int = 200,
    progress: bool = True,
    command: str | None = None,
    scorers: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Run every registered scorer (suite ``compare``) on the same splits and write the comparison.

    Args:
        cfg: the active run's config (``mint=True``); ``None`` when ``active_run`` is given.
        active_run, plain_run: existing run directories to use instead of training (the plain
            run must share the active run's splits); otherwise both are trained (or reused)
            under ``cache_dir/runs/<config fingerprint>``.
        reference: the reference models of LiRA / RMIA; ``None`` skips both.
        rmia_a: RMIA's offline ``a``.
        workers: parallel processes for the reference models (local engine).
        engine, ray_address, cpus_per_task, gpus_per_task: where the reference models train
            (:func:`activemint.engine.run_tasks`; ``ray``: one Ray task per model).
        command: the command line, recorded in the Markdown report.
        scorers: keys of the scorers to run (default: every one registered for ``compare``).
    """
    t0 = time.time()
    log = log or (lambda m: print(m, flush=True))
    cache_root, out_dir = Path(cache_dir), Path(out_dir)
    check_output_dir(out_dir, COMPARE_FILES.values())  # before any training
    trained: list[str] = []
    reused: list[str] = []
    active, plain = _runs(cfg, active_run, plain_run, cache_root, progress, log, trained, reused)
    for r in reused:
        log(f"reusing {r}")
    options = {"reference": reference, "passive": passive, "gradient": gradient, "rmia_a": rmia_a,
               "lira_min_std": lira_min_std, "workers": workers,
               "engine": {"engine": engine, "ray_address": ray_address, "cpus_per_task": cpus_per_task,
                          "gpus_per_task": gpus_per_task}}
    ctx = compare_context(active, plain, cache_root, options, log)
    ctx.trained, ctx.reused = trained, reused
    chosen = [COMPARE_SCORERS[k] for k in (scorers if scorers is not None else list(COMPARE_SCORERS))]
    rows = score_rows(ctx, chosen, bootstrap=bootstrap, cache=ScorerCache(cache_root))

    headline = headline_line(rows)
    acfg, s = active.config, active.data.splits
    info = {
        "dataset": acfg.dataset, "arch": acfg.arch, "setup": acfg.setup, "taps": ctx.taps(),
        "active_run": str(active.run_dir), "plain_run": str(plain.run_dir),
        "active_config": acfg.to_dict(), "plain_config": plain.config.to_dict(),
        "n_members": len(s.members), "n_eval_nonmembers": len(s.eval_nonmembers), "n_calibration": len(s.calibration),
        "n_external": len(s.external), "target_fpr": acfg.target_fpr,
        "reference_models": ctx.info.get("reference_models", {}), "cache_dir": str(cache_root), "command": command,
    }
    seconds = time.time() - t0
    files = write_outputs(out_dir, rows, headline, info, trained, reused, seconds)
    return CompareResult(rows, headline, trained, reused, out_dir, files, seconds, info)


__all__ = ["COMPARE_SCORERS", "EVAL_ROLES", "compare_context", "run_compare", "score_rows"]
