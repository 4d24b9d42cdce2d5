"""``activemint power``: false alarms, power and coverage of the set-level tests on a run's own scores."""
from __future__ import annotations

import argparse
import json

from activemint.cli.options import add_runtime_args


def add_parser(sub) -> None:
    p = sub.add_parser("power", help="false alarms, power and coverage of the audit's set-level tests on a run's scores",
                       description="How the set-level tests behave on a real run's scores: suspect sets drawn from the "
                                   "run's own members and fresh non-members, per member fraction the share of draws with "
                                   "p < alpha per test and the coverage of the member fraction's interval.")
    p.add_argument("run_dir")
    p.add_argument("--size", type=int, default=100, help="suspect set size (default 100)")
    p.add_argument("--draws", type=int, default=1000, help="suspect sets drawn per member fraction (default 1000)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level (default 0.01)")
    p.add_argument("--target-fpr", type=float, default=0.01, help="FPR of the calibrated threshold (default 0.01)")
    p.add_argument("--fractions", default="0,0.05,0.1,0.2,1", help="comma-separated member fractions (default 0,0.05,0.1,0.2,1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample-calibration", action="store_true", help="re-split calibration / fresh non-members every draw")
    p.add_argument("--json", help="also write the study as JSON here")
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.audit.calibration import calibrate_run
    from activemint.audit.power import format_study, power_study
    from activemint.runs import load_run

    cal = calibrate_run(load_run(args.run_dir, device=args.device, data_root=args.data_root), args.target_fpr, save=False)
    study = power_study(cal, size=args.size, draws=args.draws, alpha=args.alpha, seed=args.seed,
                        fractions=tuple(float(f) for f in args.fractions.split(",")),
                        resample_calibration=args.resample_calibration)
    print(format_study(study))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(study, f, indent=2)
    return 0
