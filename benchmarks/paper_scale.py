"""The paper's MNIST protocol at full size on Fashion-MNIST: a resumable grid of cells, each beside its plain twin.

Splits: the paper's (TrainConfig defaults for fashion-mnist): 25,000 members, 35,000 externals
of which validation and calibration (2,000 each) are carved as the project does, and the
10,000 test images as evaluation non-members.  For each architecture one plain twin (the same
model trained without aMINT: ``mint off``, selected by validation accuracy) and one aMINT cell
per setup.

Resumable: a cell whose folder holds a finished run (``metrics.json``) is skipped, one that
holds a started run is resumed from its last checkpoint (``--resume``), so a session with
device time left runs this again and adds the cells its time allows.  ``--budget-s`` stops
starting new cells once that many seconds have passed (a cell started before is trained to
the end or killed by the caller's ``timeout``; its epochs are kept).

Writes ``--md`` (default benchmarks/results/paper-scale.md): one row per aMINT cell with
acc@0.5 beside the paper's MNIST figure, AUC, TPR@1%FPR, TPR@0.1%FPR, Aud beside the plain
twin's, epochs, wall time and the device; unfinished cells are listed as such.

GPU (see benchmarks/gpu/paper_scale.sh)::

    python benchmarks/paper_scale.py --out /tmp/paper-scale --epochs 30 --batch 512 --lr 1e-3 --lr-scaling sqrt \\
        --warmup-epochs 1 --budget-s 420

CPU (no GPU: the issue's one cell, small_cnn at this size)::

    python benchmarks/paper_scale.py --archs small_cnn --setups entry --epochs 17 --lr 1e-3 --out runs/paper-scale-cpu
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
PAPER_NAMES = {"mobilenet_v2": "mobilenet"}


def paper_figures() -> dict[tuple[str, str], tuple[float, float]]:
    """(arch, setup) -> (MINT accuracy at 0.5, audited accuracy) of the paper's MNIST row."""
    out = {}
    with open(REPO / "configs" / "paper_table1.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["dataset"] == "mnist":
                out[(row["architecture"], row["setup"])] = (float(row["mint_accuracy_at_0.5"]), float(row["audited_accuracy"]))
    return out


def cell_config(args, arch: str, setup: str | None):
    from activemint.training import TrainConfig

    sizes = {k: getattr(args, k) for k in ("members", "external", "validation", "calibration", "eval_nonmembers") if getattr(args, k)}
    cfg = TrainConfig(
        dataset="fashion-mnist", data_root=args.data_root, arch=arch, setup=setup or "entry", mint=setup is not None,
        epochs=args.epochs, batch_size=args.batch, external_batch_size=args.batch, recipe=args.recipe, lr=args.lr,
        schedule=args.schedule, lr_scaling=args.lr_scaling, warmup_epochs=args.warmup_epochs, device=args.device,
        precision=args.precision, data_path=args.data_path, compile=args.compile, seed=args.seed, **sizes,
    )
    return cfg if setup is not None else cfg.without_mint()


def run_cell(cfg, out: Path, record: Path | None, log) -> str:
    """Train (or resume, or skip) one cell; returns what happened.

    Done = ``metrics.json`` in the run folder or in the record folder (an earlier session's
    cell, committed as its config.yaml + metrics.json), with this config; a finished cell of
    another config stops the grid with one line (choose another --out / --record).
    """
    import shutil

    from activemint.errors import UserError
    from activemint.rundir import RunDir
    from activemint.training import TrainConfig, Trainer

    for where in (out, record):
        if where is not None and (where / "metrics.json").is_file():
            saved = TrainConfig.from_yaml(where / "config.yaml").to_dict()
            mine = cfg.to_dict()
            diff = {k: (saved.get(k), v) for k, v in mine.items() if k not in ("device", "data_root") and saved.get(k) != v}
            if diff:
                raise UserError(f"{where} holds a finished cell of another config (saved, now): {diff}")
            return "done before"
    resume = RunDir(out).config.is_file()
    t = time.time()
    Trainer(cfg, out, progress=False, log=log).run(resume=resume)
    if record is not None:
        record.mkdir(parents=True, exist_ok=True)
        for f in ("config.yaml", "metrics.json", "metrics.jsonl"):
            shutil.copyfile(out / f, record / f)
    return f"{'resumed' if resume else 'trained'} in {time.time() - t:.0f} s"


def table(args, cells: list[tuple[str, str | None]], device_name: str) -> str:
    paper = paper_figures()
    roots = [Path(args.out)] + ([Path(args.record)] if args.record else [])
    lines = [
        "# The paper's MNIST protocol at full size (Fashion-MNIST)",
        "",
        f"Command: `python benchmarks/paper_scale.py {' '.join(sys.argv[1:])}`",
        "",
        f"Device: {device_name}.  Splits: {args.members or 25000:,} members, {args.external or 31000:,} externals, "
        f"{args.validation or 2000:,} validation and {args.calibration or 2000:,} calibration samples (the paper's 35,000 externals "
        f"hold the last three), {args.eval_nonmembers or 10000:,} evaluation non-members (the test split).  "
        f"{args.epochs} epochs at batch {args.batch} + {args.batch}, lr {args.lr:g} at batch 64 ({args.lr_scaling} scaling), "
        f"{args.warmup_epochs:g} warm-up epochs, {args.schedule}.  Targets (issue 19, acceptance 2): "
        "acc@0.5 >= the paper's MNIST figure, AUC >= 0.95, Aud within 1 point of the plain twin.",
        "",
        "| arch | setup | acc@0.5 | paper acc@0.5 | AUC | TPR@1%FPR | TPR@0.1%FPR | Aud | plain twin Aud | Aud - plain | epochs (kept) "
        "| wall s (aMINT + twin) | misses |",
        "|" + "---|" * 13,
    ]
    for arch, setup in cells:
        if setup is None:
            continue
        m = _metrics(roots, f"{arch}-{setup}")
        twin = _metrics(roots, f"{arch}-plain")
        if m is None:
            lines.append(f"| {arch} | {setup} | not finished |" + " |" * 10)
            continue
        mem = m["membership"]
        pa = paper.get((PAPER_NAMES.get(arch, arch), setup))
        aud, taud = m["test_accuracy"], (twin or {}).get("test_accuracy")
        misses = []
        if pa and mem["accuracy_at_0_5"] < pa[0]:
            misses.append(f"acc@0.5 {mem['accuracy_at_0_5'] - pa[0]:+.3f}")
        if mem["auc"] < 0.95:
            misses.append(f"AUC {mem['auc'] - 0.95:+.3f}")
        if taud is not None and abs(aud - taud) > 0.01:
            misses.append(f"Aud {100 * (aud - taud):+.1f} pt")
        wall = f"{m['train_seconds']:.0f}" + (f" + {twin['train_seconds']:.0f}" if twin else "")
        lines.append(
            f"| {arch} | {setup} | {mem['accuracy_at_0_5']:.3f} | {pa[0] if pa else '-'} | {mem['auc']:.3f} | {mem['tpr_at_1pct_fpr']:.3f} "
            f"| {mem['tpr_at_0_1pct_fpr']:.3f} | {aud:.4f} | {'-' if taud is None else f'{taud:.4f}'} "
            f"| {'-' if taud is None else f'{100 * (aud - taud):+.1f} pt'} | {m['epochs_trained']} ({m['selected_epoch']}) | {wall} "
            f"| {', '.join(misses) if misses else 'none' if taud is not None else 'twin not finished'} |")
    return "\n".join(lines) + "\n"


def _metrics(roots: list[Path], name: str) -> dict | None:
    for root in roots:
        p = root / name / "metrics.json"
        if p.is_file():
            return json.loads(p.read_text())
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="resnet50,densenet121,mobilenet_v2")
    p.add_argument("--setups", default="entry,middle,output")
    p.add_argument("--out", default="runs/paper-scale", help="folder of the cells (one run folder each)")
    p.add_argument("--md", default="benchmarks/results/paper-scale.md")
    p.add_argument("--record", help="keep each finished cell's config.yaml + metrics.json(l) here (small files to commit: "
                   "a later session skips those cells)")
    p.add_argument("--data-root")
    for k in ("members", "external", "validation", "calibration", "eval_nonmembers"):
        p.add_argument("--" + k.replace("_", "-"), type=int, help="override the paper's size (dry runs)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=512, help="members (and externals) per step")
    p.add_argument("--recipe", default="paper")
    p.add_argument("--lr", type=float, default=1e-3, help="at the reference batch of 64 (scaled by --lr-scaling)")
    p.add_argument("--lr-scaling", default="sqrt", choices=["none", "linear", "sqrt"])
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--data-path", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, help="start no new cell after this many seconds")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    archs = [a for a in args.archs.split(",") if a]
    setups = [s for s in args.setups.split(",") if s]
    cells: list[tuple[str, str | None]] = [(a, s) for a in archs for s in [None, *setups]]  # the twin first
    from activemint.training.build import resolve_device

    dev = resolve_device(args.device)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    for arch, setup in cells:
        name = f"{arch}-{setup or 'plain'}"
        if args.budget_s is not None and time.time() - t0 > args.budget_s and _metrics([Path(args.out)], name) is None:
            print(f"{name}: not started (budget of {args.budget_s:.0f} s used)", flush=True)
            continue
        record = Path(args.record) / name if args.record else None
        what = run_cell(cell_config(args, arch, setup), Path(args.out) / name, record,
                        log=lambda m, n=name: print(f"[{n}] {m}", flush=True))
        print(f"{name}: {what}", flush=True)
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table(args, cells, device_name))  # after every cell: a killed session keeps its rows
    print(Path(args.md).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
