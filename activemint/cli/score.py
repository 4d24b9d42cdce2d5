"""``activemint score``: per-sample membership probability as CSV."""
from __future__ import annotations

import argparse
import io
import sys

from activemint.cli.checks import add_image_args


def add_parser(sub) -> None:
    s = sub.add_parser("score", help="per-sample membership probability as CSV",
                       description="Score samples with a run's MINT head. INPUTS: image files, folders of images, "
                                   "'split:ROLE' (members, external, validation, calibration, eval_nonmembers of the run's manifest) "
                                   "or 'dataset:NAME:SPLIT' (a whole split of a registered data set). Images must have the "
                                   "model's input size and channels unless --resize / --convert-channels (as for audit); "
                                   "split:ROLE is checked against the run's manifest (pixel SHA-256).")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+")
    s.add_argument("-o", "--output", help="CSV file (default: standard output)")
    s.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear); without it they are refused")
    s.add_argument("--convert-channels", action="store_true", help="convert greyscale/colour images to the model's channels; without it they are refused")
    add_image_args(s)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.runs import load_run
    from activemint.scoring import score_inputs

    scores = score_inputs(load_run(args.run_dir, device=args.device), args.inputs, resize=args.resize,
                          convert_channels=args.convert_channels, follow_symlinks=args.follow_symlinks,
                          max_pixels=args.max_pixels)
    to_file = args.output not in (None, "-")
    if to_file:  # atomic: a kill or a full disk leaves the old file (or none), never a cut CSV
        from activemint.rundir import write_output

        buf = io.StringIO(newline="")
        scores.write_csv(buf)
        write_output(args.output, buf.getvalue())
    else:
        scores.write_csv(sys.stdout)
    print(f"scored {len(scores.ids)} samples" + (f"; written to {args.output}" if to_file else ""), file=sys.stderr)
    for line in scores.group_lines():  # one line per input: members and non-members are never pooled
        print(line, file=sys.stderr)
    return 0
