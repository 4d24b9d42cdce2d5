"""``activemint power``: false alarms, power and coverage of the set-level tests on a run's own scores."""
from __future__ import annotations

import argparse
import json

from activemint.cli.checks import POSITIVE, PROBABILITY, SEED, real_list
from activemint.cli.options import add_runtime_args


def add_parser(sub) -> None:
    p = sub.add_parser("power", help="false alarms, power and coverage of the audit's set-level tests on a run's scores",
                       description="How the set-level tests behave on a real run's scores: suspect sets drawn from the "
                                   "run's own members and fresh non-members, per member fraction the share of draws with "
                                   "p < alpha per test and the coverage of the member fraction's interval.")
    p.add_argument("run_dir")
    p.add_argument("--size", type=POSITIVE, default=100, help="suspect set size (default 100)")
    p.add_argument("--draws", type=POSITIVE, default=1000, help="suspect sets drawn per member fraction (default 1000)")
    p.add_argument("--alpha", type=PROBABILITY, default=0.01, help="significance level (default 0.01)")
    p.add_argument("--target-fpr", type=PROBABILITY, default=0.01, help="FPR of the calibrated threshold (default 0.01)")
    p.add_argument("--fractions", type=real_list(0, 1), default="0,0.05,0.1,0.2,1", help="comma-separated member fractions (default 0,0.05,0.1,0.2,1)")
    p.add_argument("--seed", type=SEED, default=0)
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
                        fractions=tuple(args.fractions),
                        resample_calibration=args.resample_calibration)
    print(format_study(study))
    if args.json:
        from activemint.io import write_output

        write_output(args.json, json.dumps(study, indent=2) + "\n")
    return 0
