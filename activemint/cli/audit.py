"""``activemint audit``: test whether a set of images was used to train a run's model."""
from __future__ import annotations

import argparse
import sys

from activemint.cli.checks import PROBABILITY, SEED, add_image_args
from activemint.cli.options import SET_TESTS, add_runtime_args, command_line


def add_parser(sub) -> None:
    a = sub.add_parser("audit", help="test whether a set of images was used to train a run's model (p-value, report)",
                       description="Audit a suspect set against an aMINT run: per-sample decisions at a threshold calibrated "
                                   "on held-out non-members, a set-level test of H0 'none of these were members' with a "
                                   "p-value, the estimated fraction of members with a 95% CI, and an HTML + Markdown report. "
                                   "SUSPECT: a folder of images, image files, a .txt file list (one path per line, relative "
                                   "to the list's folder) or split:ROLE of the run. Images must have the model's input size "
                                   "and channels unless --resize / --convert-channels. Exit code 2 on bad input, with "
                                   "nothing written.")
    a.add_argument("run_dir")
    a.add_argument("suspect", nargs="+")
    a.add_argument("--alpha", type=PROBABILITY, default=0.01, help="significance level of the set-level test (default 0.01)")
    a.add_argument("--target-fpr", type=PROBABILITY, default=0.01, help="false-positive rate of the per-sample decisions (default 0.01)")
    a.add_argument("--test", choices=SET_TESTS, default=SET_TESTS[0],
                   help="the set-level test that decides (default mixture; all three are reported)")
    a.add_argument("--out", help="output folder (default RUN_DIR/audits/<time>-<data hash>); must not exist or be empty")
    a.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    a.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear)")
    a.add_argument("--convert-channels", action="store_true", help="convert greyscale/colour images to the model's channels")
    a.add_argument("--neighbourhood", metavar="VIEWSET",
                   help="score every suspect image over a neighbourhood of views (shifts, zoom-outs, rotations, filters) and "
                        "aggregate; the threshold and p-values are calibrated on the calibration non-members scored the same "
                        "way. View sets: exact, shift1, shift2, axis, compact, geometric, photometric, all, random:N; cost: one scoring "
                        "per view")
    a.add_argument("--aggregate", default="max", help="with --neighbourhood: max, mean, topk:K, trimmed:F or zmax (default max)")
    a.add_argument("--neighbourhood-seed", type=SEED, default=0, help="seed of a random:N view set (default 0)")
    add_image_args(a)
    add_runtime_args(a)
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.audit import audit, default_out_dir
    from activemint.report.audit import audit_markdown, write_audit

    result = audit(args.run_dir, args.suspect, alpha=args.alpha, target_fpr=args.target_fpr, test=args.test,
                   resize=args.resize, convert_channels=args.convert_channels, device=args.device,
                   follow_symlinks=args.follow_symlinks, max_pixels=args.max_pixels,
                   data_root=args.data_root, command=command_line(args),
                   neighbourhood=args.neighbourhood, aggregate=args.aggregate, neighbourhood_seed=args.neighbourhood_seed)
    out = write_audit(result, args.out or default_out_dir(result), force=args.force)
    print(audit_markdown(result))
    from activemint.rundir import AUDIT_FILES

    print(f"written to {out}: {', '.join(AUDIT_FILES[k] for k in ('html', 'markdown', 'samples', 'json'))}", file=sys.stderr)
    return 0
