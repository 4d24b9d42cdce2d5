"""``activemint report``: HTML report of a training run or a compare output directory."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="HTML report of a training run or a compare output directory",
                       description="Render learning curves, score histograms and ROC curves (linear and log-log) of a "
                                   "training run, or the per-method figures of a compare directory, into one HTML file.")
    r.add_argument("run_dir")
    r.add_argument("--out", help="HTML file (default RUN_DIR/report.html)")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.report import write_report

    out = write_report(args.run_dir, args.out)
    print(f"report written to {out}")
    return 0
