"""``run_compare``: the active and plain runs, then every registered scorer, then the headline."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from activemint.attacks.config import ScorerConfig
from activemint.attacks.reference import ReferenceConfig
from activemint.compare.results import (
    CompareResult,
    MethodResult,
    headline_line,
    write_outputs,
)
from activemint.io import check_output_dir
from activemint.metrics import membership_metrics
from activemint.rundir import CACHE_RUNS, COMPARE_FILES
from activemint.runs import Run, RunError, ensure_run, load_run
from activemint.scorers import EVAL_ROLES, EXACT, MODELS, Context, EngineOptions, Scorer, ScorerCache, Suite, Work, score_views
from activemint.scorers.context import check_plain_twin, run_context, run_test_accuracy
from activemint.scorers.reference import reference_info
from activemint.training import TrainConfig

_REFERENCE = ReferenceConfig()  # the default (never mutated)

#: The registered scorers that ``compare`` runs (a live view, by key, in registration order).
COMPARE_SCORERS = Suite("compare")


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
    check_plain_twin(active, plain, "the plain run")
    return active, plain


def compare_context(active: Run, plain: Run, cache_root: Path, *, configs: Mapping[str, ScorerConfig] | None = None,
                    reference: ReferenceConfig | None = None, engine: EngineOptions | None = None,
                    log: Callable[[str], None] = lambda m: None, progress: bool = True) -> Context:
    """Images, labels and sample indices of every role of the active run's splits."""
    return run_context(active, plain, cache_root, configs=configs, reference=reference, engine=engine, log=log,
                       progress=progress)


def score_rows(ctx: Context, scorers: list[type[Scorer]], *, bootstrap: int,
               cache: ScorerCache | None) -> tuple[list[MethodResult], Work]:
    """Every scorer's rows (its instances, in order), through the one scoring loop and metrics engine."""
    acfg = ctx.run.config
    test_acc = {m: run_test_accuracy(ctx.model(m), evaluate=True) for m in MODELS}
    instances: list[Scorer] = []
    for cls in scorers:
        why = cls.applies(ctx)
        if why:
            ctx.log(f"skipping {cls.key}: {why}")
            continue
        instances += cls.instances(ctx)
    (scored,), work = score_views(ctx, instances, (EXACT,), cache=cache, desc="compare: scorers")
    rows = []
    for sc, s in zip(instances, scored):
        m = membership_metrics(s["members"], s["eval_nonmembers"], calibration_scores=s["calibration"],
                               target_fpr=acfg.target_fpr, half_threshold=sc.half_threshold, bootstrap=bootstrap,
                               seed=acfg.seed)
        d = sc.describe()
        rows.append(MethodResult(sc.row, sc.model, sc.family, d["description"], list(d["needs"]), d.get("params", {}),
                                 sc.half_threshold, m, test_acc[sc.model], s))
    return rows, work


def run_compare(
    cfg: TrainConfig | None,
    out_dir: str | Path,
    *,
    active_run: str | Path | None = None,
    plain_run: str | Path | None = None,
    reference: ReferenceConfig | None = _REFERENCE,
    configs: Mapping[str, ScorerConfig] | None = None,
    engine: EngineOptions | None = None,
    cache_dir: str | Path = ".cache",
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
        configs: scorer configs by config key (``{"rmia": RmiaConfig(a=0.5), "passive_mint":
            PassiveMintConfig(epochs=1)}``); a scorer not named uses its ``Config()`` defaults.
        engine: where the reference models train (workers, local or Ray:
            :func:`activemint.engine.run_tasks`).
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
    ctx = compare_context(active, plain, cache_root, configs=configs, reference=reference, engine=engine, log=log,
                          progress=progress)
    chosen = [COMPARE_SCORERS[k] for k in (scorers if scorers is not None else list(COMPARE_SCORERS))]
    rows, work = score_rows(ctx, chosen, bootstrap=bootstrap, cache=ScorerCache(cache_root))
    trained += work.trained
    reused += work.reused

    headline = headline_line(rows)
    acfg, s = active.config, active.data.splits
    info = {
        "dataset": acfg.dataset, "arch": acfg.arch, "setup": acfg.setup, "taps": ctx.taps(),
        "active_run": str(active.run_dir), "plain_run": str(plain.run_dir),
        "active_config": acfg.to_dict(), "plain_config": plain.config.to_dict(),
        "n_members": len(s.members), "n_eval_nonmembers": len(s.eval_nonmembers), "n_calibration": len(s.calibration),
        "n_external": len(s.external), "target_fpr": acfg.target_fpr,
        "reference_models": reference_info(ctx), "cache_dir": str(cache_root), "command": command,
    }
    seconds = time.time() - t0
    files = write_outputs(out_dir, rows, headline, info, trained, reused, seconds)
    return CompareResult(rows, headline, trained, reused, out_dir, files, seconds, info)


__all__ = ["COMPARE_SCORERS", "EVAL_ROLES", "compare_context", "run_compare", "score_rows"]
