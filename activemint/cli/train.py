"""``activemint train``: train a model with aMINT (or plainly with --mint off)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activemint.cli.options import add_train_args, config_from_args


def default_out(cfg) -> Path:
    tag = cfg.setup if cfg.mint else "plain"
    return Path("runs") / f"{cfg.dataset}-{cfg.arch}-{tag}-s{cfg.seed}"


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model with aMINT (or plainly with --mint off)", description="Train an Enhanced Audited Model (classifier + MINT head) and evaluate it.")
    add_train_args(t)
    t.add_argument("--out", help="run directory (default runs/<dataset>-<arch>-<setup>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last checkpoint")
    t.add_argument("--baseline", action="store_true", help="also train the same architecture without aMINT (into OUT/baseline) and compare "
                   "accuracy; on a CPU with >= 2 threads it trains beside the aMINT run, in a second process (its log: OUT/baseline/train.log)")
    t.add_argument("--baseline-after", action="store_true", help="with --baseline: train the baseline after the aMINT run, in this process")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.report import run_summary
    from activemint.training.baseline import train_with_baseline
    from activemint.training.distributed import is_main

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_out(cfg)
    result, baseline = train_with_baseline(cfg, out, resume=args.resume, baseline=args.baseline,
                                           progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
                                           parallel=not args.baseline_after)
    if is_main():  # under torchrun every rank trains; rank 0 alone reports
        print(run_summary(result.metrics, baseline))
    return 0
