"""``activemint model-edits``: the audit after fine-tuning, pruning, quantisation and distillation of the model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from activemint.cli.checks import NON_NEGATIVE, POSITIVE, PROBABILITY, SEED, real
from activemint.cli.options import SET_TESTS, add_runtime_args

#: a learning rate: positive and finite (10 is far above any that trains)
LEARNING_RATE = real(0.0, 10.0, lo_open=True)


def add_parser(sub) -> None:
    from activemint.edits import EDITS

    p = sub.add_parser(
        "model-edits", help="edit an aMINT run's model (fine-tune, prune, quantise, distil) and measure the audit on each",
        description="Apply named, seeded model edits to an aMINT run (each written as a run directory under OUT/runs/, "
                    "readable by evaluate, audit, report and robustness) and write a table (MD/CSV/JSON) and a plot of "
                    "the MINT head's and the loss attack's (with --reference-models, LiRA's and RMIA's) AUC, TPR@1%%FPR and set-level p-value against the accuracy "
                    "each edit cost.  Edits: " + ", ".join(f"{e.name} (levels {'/'.join(e.levels)})" for e in EDITS.values()))
    p.add_argument("run_dir", help="a finished aMINT run (train --out)")
    p.add_argument("--model-edits", dest="edits", default="all",
                   help="comma-separated NAME[:LEVEL] (a NAME alone: its default levels), or all (default)")
    p.add_argument("--out", help="output folder (default RUN_DIR/model-edits)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the edits' data orders and initialisations (default 0)")
    p.add_argument("--lr", type=LEARNING_RATE, default=1e-4, help="fine-tuning and recovery learning rate, Adam (default 1e-4)")
    p.add_argument("--distill-lr", type=LEARNING_RATE, default=1e-3, help="distillation learning rate, Adam (default 1e-3)")
    p.add_argument("--reattach", default="0",
                   help="comma-separated head-only re-attachment epochs after each edit, 0 = none (default 0; e.g. 0,3)")
    p.add_argument("--reattach-members", type=real(0.0, 1.0, lo_open=True), default=0.5,
                   help="fraction of D a re-attached or post-hoc head trains on (a seeded random part); the audit of that "
                        "edited run scores the other members only (default 0.5; 1 = all of D, an upper bound)")
    p.add_argument("--reattach-lr", type=LEARNING_RATE, default=1e-3,
                   help="Adam learning rate of the re-attached and post-hoc heads (default 1e-3)")
    p.add_argument("--posthoc-epochs", type=POSITIVE, default=5, help="head epochs on the smaller distilled student (default 5)")
    p.add_argument("--calibration-images", type=POSITIVE, default=512, help="static int8 calibration images from E (default 512)")
    p.add_argument("--suspect", type=POSITIVE, default=100, help="members in the set-level audit's suspect set (default 100)")
    p.add_argument("--null-draws", type=NON_NEGATIVE, default=0,
                   help="also draw this many suspect sets of non-members and of members and report the share flagged")
    p.add_argument("--reference-models", type=NON_NEGATIVE, default=0,
                   help="also score LiRA and RMIA against this many reference models of the source run (>= 4; trained once "
                        "on random halves of its pool and cached under --cache-dir; default 0 = none)")
    p.add_argument("--reference-epochs", type=POSITIVE, default=None,
                   help="epochs of each reference model (default: the source run's)")
    p.add_argument("--cache-dir", default=".cache", help="cache of the reference models (default .cache)")
    p.add_argument("--alpha", type=PROBABILITY, default=0.01, help="level of the set-level decisions (default 0.01)")
    p.add_argument("--test", choices=SET_TESTS, default=SET_TESTS[0],
                   help="the set-level test that decides, as in `activemint audit` (default mixture; mann_whitney "
                        "suits a weak shift of every member's score, e.g. a distilled student)")
    add_runtime_args(p, device="cpu")  # the int8 edits run on the CPU only
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activemint.edits import FILES, EditError, EditOptions, run_model_edits
    from activemint.rundir import RunDir

    try:
        reattach = tuple(dict.fromkeys(int(k) for k in args.reattach.split(",") if k.strip()))
    except ValueError:
        raise EditError(f"--reattach must be comma-separated integers, got {args.reattach!r}") from None
    if not reattach or min(reattach) < 0:
        raise EditError(f"--reattach must list epochs >= 0, got {args.reattach!r}")
    if 0 < args.reference_models < 4:
        raise EditError(f"--reference-models must be 0 or at least 4 (LiRA and RMIA need IN and OUT models), got {args.reference_models}")
    opts = EditOptions(seed=args.seed, lr=args.lr, distill_lr=args.distill_lr, posthoc_epochs=args.posthoc_epochs,
                       calibration_images=args.calibration_images, reattach_members=args.reattach_members,
                       reattach_lr=args.reattach_lr)
    out = Path(args.out) if args.out else RunDir(args.run_dir).model_edits
    rows = run_model_edits(args.run_dir, out, edits=args.edits, options=opts, reattach=reattach, alpha=args.alpha,
                           suspect=args.suspect, null_draws=args.null_draws, device=args.device, data_root=args.data_root,
                           reference_models=args.reference_models, reference_epochs=args.reference_epochs,
                           cache_dir=args.cache_dir, test=args.test,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{len(rows)} rows written to {out}/ ({', '.join(FILES.values())})")
    return 0
