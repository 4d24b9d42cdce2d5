"""``activemint score``: per-sample membership scores and calibrated decisions as CSV."""
from __future__ import annotations

import argparse
import io
import sys

from activemint.cli.checks import PROBABILITY, add_image_args
from activemint.cli.options import RUN_DATA_ROOT_HELP, add_runtime_args


def add_parser(sub) -> None:
    s = sub.add_parser("score", help="per-sample membership score, calibrated decision and conformal p-value as CSV",
                       description="Score samples with a run's MINT head. One CSV row per sample: its score (the membership "
                                   "logit: higher is more member-like; it is not a probability of membership, and "
                                   "neither is its sigmoid in the last column), whether it is flagged as a member at the threshold calibrated for the "
                                   "run's target FPR on its calibration non-members, and its conformal p-value against "
                                   "those non-members (small = member-like; uniform for a non-member). "
                                   "INPUTS: image files, folders of images, "
                                   "'split:ROLE' (members, external, validation, calibration, eval_nonmembers of the run's manifest) "
                                   "or 'dataset:NAME:SPLIT' (a whole split of a registered data set). Images must have the "
                                   "model's input size and channels unless --resize / --convert-channels (as for audit); "
                                   "split:ROLE is checked against the run's manifest (pixel SHA-256). To test a whole set, "
                                   "use `activemint audit` (a p-value for the set).")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+")
    s.add_argument("-o", "--output", help="CSV file (default: standard output)")
    s.add_argument("--target-fpr", type=PROBABILITY, help="FPR of the calibrated decisions (default: the run's target_fpr)")
    s.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear); without it they are refused")
    s.add_argument("--convert-channels", action="store_true", help="convert greyscale/colour images to the model's channels; without it they are refused")
    add_image_args(s)
    add_runtime_args(s, data_root_help=RUN_DATA_ROOT_HELP + "; also used for dataset:NAME:SPLIT of the run's data set")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.audit.calibration import calibrate_run
    from activemint.inputs import score_inputs
    from activemint.metrics import CalibrationError
    from activemint.runs import load_run

    r = load_run(args.run_dir, device=args.device, data_root=args.data_root)
    scores = score_inputs(r, args.inputs, resize=args.resize, convert_channels=args.convert_channels,
                          follow_symlinks=args.follow_symlinks, max_pixels=args.max_pixels)
    target = args.target_fpr if args.target_fpr is not None else r.config.target_fpr
    try:  # save=False: score only reads the run directory
        scores.decide(calibrate_run(r, target, save=False))
    except CalibrationError as e:
        print(f"activemint score: warning: no calibrated decisions ({e}); the CSV has scores only", file=sys.stderr)
    to_file = args.output not in (None, "-")
    if to_file:  # atomic: a kill or a full disk leaves the old file (or none), never a cut CSV
        from activemint.io import write_output

        buf = io.StringIO(newline="")
        scores.write_csv(buf)
        write_output(args.output, buf.getvalue())
    else:
        scores.write_csv(sys.stdout)
    print(f"scored {len(scores.ids)} samples" + (f"; written to {args.output}" if to_file else ""), file=sys.stderr)
    if scores.threshold is not None:
        print(f"flagged = score > {scores.threshold:.4f}, the threshold calibrated for FPR {scores.target_fpr:g} on the run's "
              "calibration non-members; the score is a logit, not a probability of membership", file=sys.stderr)
    for line in scores.group_lines():  # one line per input: members and non-members are never pooled
        print(line, file=sys.stderr)
    return 0
