"""``activemint compare``: Active MINT against the other membership methods on the same splits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activemint.cli.checks import NON_NEGATIVE, POSITIVE, SEED
from activemint.cli.options import (
    add_engine_args,
    add_train_args,
    command_line,
    config_from_args,
    engine_kwargs,
    make_config,
)
from activemint.cli.scorers import add_scorer_args
from activemint.errors import UserError


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="Active MINT vs passive MINT, gMINT, output attacks, LiRA and RMIA on the same splits",
                       description="Train (or reuse) the active run, the same model trained plainly and N reference models; "
                                   "score members vs evaluation non-members with every method; write a table (Markdown, "
                                   "CSV, JSON) and ROC plots.  Everything trained is cached under --cache-dir.")
    add_train_args(c)
    g = c.add_argument_group("compare")
    g.add_argument("--out", help="output folder (default runs/compare-<dataset>-<arch>-<setup>-s<seed>)")
    g.add_argument("--reference-models", type=NON_NEGATIVE, default=4, help="reference models for LiRA / RMIA (default 4; 0 skips both)")
    g.add_argument("--reference-epochs", type=POSITIVE, help="epochs of each reference model (default: the audited run's)")
    g.add_argument("--reference-seed", type=SEED, default=0, help="seed of the reference pool split and models (default 0)")
    g.add_argument("--population", type=POSITIVE, help="RMIA population size z from the external set (default: all not in the pool)")
    g.add_argument("--workers", type=POSITIVE, default=1, help="parallel processes training reference models with the local engine (default 1)")
    add_engine_args(g)
    add_scorer_args(c, "compare")
    g.add_argument("--only-reference-model", type=NON_NEGATIVE, metavar="K",
                   help="with --active-run: train (or reuse) reference model K (0-based) alone, in this process, into "
                        "the cache, and stop: one task of a SLURM array (sbatch --array=0-N-1); a later compare reuses it")
    g.add_argument("--cache-dir", default=".cache", help="cache of runs, reference models and trained scorers (default .cache)")
    g.add_argument("--active-run", help="use this finished aMINT run directory instead of training one")
    g.add_argument("--plain-run", help="use this finished plain run directory (same splits) instead of training one")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.attacks import ReferenceConfig
    from activemint.cli.scorers import scorer_configs
    from activemint.compare import run_compare
    from activemint.scorers import EngineOptions

    if args.mint == "off":
        raise ValueError("compare trains the active run with aMINT and the plain run itself; drop --mint off")
    cfg = None if args.active_run else config_from_args(args)
    if cfg is not None and not cfg.mint:
        raise ValueError("the active run must have mint on")
    engine_kw = engine_kwargs(args) if args.reference_models else {}
    reference = None if args.reference_models == 0 else make_config(
        ReferenceConfig, {"n_models": "--reference-models", "epochs": "--reference-epochs", "population": "--population",
                          "seed": "--reference-seed"},
        n_models=args.reference_models, epochs=args.reference_epochs, population=args.population, seed=args.reference_seed)
    if args.only_reference_model is not None:  # one reference model, in this process: a SLURM array task
        return _one_reference_model(args, reference)
    out = Path(args.out) if args.out else Path("runs") / (f"compare-{cfg.dataset}-{cfg.arch}-{cfg.setup}-s{cfg.seed}" if cfg else "compare")
    result = run_compare(
        cfg, out, active_run=args.active_run, plain_run=args.plain_run, reference=reference,
        configs=scorer_configs(args, "compare"), engine=EngineOptions(workers=args.workers, **engine_kw),
        cache_dir=args.cache_dir, progress=not args.no_progress,
        command=command_line(args),
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(result.table())
    print()
    print(result.headline)
    print(("trained: " + "; ".join(result.trained)) if result.trained else "trained nothing: every run, reference model and "
          "scorer was reused from the cache", file=sys.stderr)
    from activemint.rundir import COMPARE_FILES

    written = ", ".join(v for k, v in COMPARE_FILES.items() if k != "scores")
    print(f"written to {out}/ ({written}) in {result.seconds:.0f} s",
          file=sys.stderr)
    return 0


def _one_reference_model(args: argparse.Namespace, reference) -> int:
    """``compare --active-run RUN --only-reference-model K``: train reference model K alone."""
    from activemint.attacks.reference import train_reference_model
    from activemint.runs import load_run

    if reference is None or not args.active_run:
        raise UserError("--only-reference-model needs --active-run RUN_DIR (train it first) and --reference-models N > 0")
    run = load_run(args.active_run)
    res = train_reference_model(run.config, run.data.splits, reference, args.cache_dir, args.only_reference_model,
                                train=run.data.train, test=run.data.test,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"reference model {res['model']} of {reference.n_models}: {'trained' if res['trained'] else 'reused'}, "
          f"test accuracy {res['test_accuracy']:.4f}")
    return 0
