"""``activemint evaluate``: recompute a saved run's figures and check them against metrics.json."""
from __future__ import annotations

import argparse
import json

from activemint.cli.options import add_runtime_args


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="recompute the metrics of a saved run from its checkpoint and manifest")
    e.add_argument("run_dir")
    add_runtime_args(e)
    e.add_argument("--json", action="store_true", help="also print all figures as JSON")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.report import run_summary
    from activemint.runs import verify_run

    v = verify_run(args.run_dir, device=args.device, data_root=args.data_root)
    print(run_summary(v.metrics, v.baseline))
    if v.matches is not None:
        from activemint.rundir import METRICS

        print(f"\nmatches the saved {METRICS}: {'yes' if v.matches else 'NO'}")
        if not v.matches:
            return 1
    if args.json:
        print(json.dumps(v.metrics, indent=2))
    return 0
