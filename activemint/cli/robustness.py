"""``activemint robustness``: membership figures on transformed copies of members and non-members."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activemint.cli.checks import NON_NEGATIVE, POSITIVE, SEED
from activemint.cli.options import add_runtime_args, command_line
from activemint.cli.scorers import add_scorer_args, scorer_configs


def add_parser(sub) -> None:
    rb = sub.add_parser("robustness", help="membership figures of aMINT and the baselines on transformed copies (JPEG, shifts, crops ...)",
                        description="Transform members and non-members the same way (every transformation and severity), score "
                                    "them with Active MINT and the baselines (exact SHA-256 lookup, perceptual hash, nearest "
                                    "member in the model's features, the post-hoc head with --plain-run) and write a table "
                                    "(MD/CSV/JSON), a plot and HTML.")
    rb.add_argument("run_dir")
    rb.add_argument("--out", help="output folder (default RUN_DIR/robustness)")
    from activemint.scorers import Suite
    from activemint.transforms import TRANSFORMS

    names = ", ".join(t.name + (" (RGB)" if t.rgb_only else "") for t in TRANSFORMS.values())  # the registered ones
    rb.add_argument("--transforms", default="all", help=f"comma-separated NAME[:LEVEL] (default all); names: {names}; "
                                                        "a composition: crop:0.9+jpeg:q50 (see `activemint transforms`)")
    rb.add_argument("--scorers", help="comma-separated scorer keys (default: every one that applies): "
                                      + ", ".join(Suite("robustness")))
    rb.add_argument("--plain-run", help="the same splits trained without aMINT (enables the post-hoc head rows; it is read, never "
                                        "written: the head trained on it is cached in OUT/cache; --passive-mint-* set its recipe)")
    rb.add_argument("--members", default="all", choices=["all", "seen", "unseen"],
                    help="which members to evaluate on a run trained with --mint-members < 1 (default all)")
    rb.add_argument("--seed", type=SEED, default=0, help="seed of the transformations' random choices (default 0)")
    rb.add_argument("--max-samples", type=POSITIVE, help="evaluate at most this many samples per role (a seeded subset; calibration keeps at least what its threshold needs)")
    rb.add_argument("--bootstrap", type=NON_NEGATIVE, default=100, help="bootstrap resamples for the AUC interval (default 100)")
    add_runtime_args(rb)
    rb.add_argument("--neighbourhood", metavar="VIEWSET",
                    help="also score every image scorer over a neighbourhood of each image (members, non-members and "
                         "calibration alike) and aggregate: rows SCORER@VIEWSET/AGG. View sets: exact, shift1 (9 views), "
                         "shift2 (25), axis (10), compact (17), geometric (47), photometric (5), all (51), random:N (seeded); "
                         "cost per query: one scoring per view")
    rb.add_argument("--aggregate", default="max",
                    help="with --neighbourhood: comma-separated aggregations of the view scores, one row each: max, mean, "
                         "topk:K, trimmed:F, zmax (default max)")
    rb.add_argument("--neighbourhood-seed", type=SEED, default=0, help="seed of a random:N view set (default 0)")
    rb.add_argument("--save-scores", action="store_true",
                    help="also write every row's scores to OUT/scores.npz (SCORER|TRANSFORM:LEVEL|ROLE arrays)")
    add_scorer_args(rb, "robustness")
    rb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.robustness import run_robustness
    from activemint.rundir import RunDir

    scorers = [k.strip() for k in args.scorers.split(",") if k.strip()] if args.scorers else None
    out = Path(args.out) if args.out else RunDir(args.run_dir).robustness
    rows = run_robustness(args.run_dir, out, transforms=args.transforms, scorers=scorers, plain_run=args.plain_run,
                          members=args.members, seed=args.seed, max_samples=args.max_samples, bootstrap=args.bootstrap,
                          neighbourhood=args.neighbourhood, aggregate=args.aggregate, neighbourhood_seed=args.neighbourhood_seed,
                          save_scores=args.save_scores, configs=scorer_configs(args, "robustness"),
                          log=lambda m: print(m, file=sys.stderr, flush=True), device=args.device,
                          data_root=args.data_root, command=command_line(args))
    from activemint.rundir import ROBUSTNESS_FILES

    print(f"{len(rows)} rows written to {out}/ ({', '.join(ROBUSTNESS_FILES.values())})")
    return 0
