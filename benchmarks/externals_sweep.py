"""Issue 19 item 4: what each source of externals buys as |D| grows (exact copies, small_cnn, Fashion-MNIST).

For each |D| (default 40k, 25k, 8k: the hardest first) and each lever, train one aMINT run at a
fixed epoch budget, plus one plain twin per |D| (the same splits without aMINT: externals do
not enter plain training), and tabulate exact-copy AUC, TPR@1%FPR, test accuracy beside the
plain twin's, wall time and device.  The levers (activemint.training.externals), all on the same
base E = min(|D|, what the train split has left):

    base     E alone
    mixup    half of every external batch replaced by mixups of two externals (fresh each step)
    views    the 'robust' audit policy's views of the externals only (members exact)
    views-strong  the same, a view 80% of the time ('robust-strong')
    views-geo     the 'geometric' policy's views (shift, crop, resize) of the externals only: the
             best lever at E / |D| = 0.46 on the CPU (benchmarks/results/externals-ratio-cpu.md)
    pool     E = every train image not in D / validation / calibration, drawn fresh each epoch
             (at 40k that is E itself: the row says "= base")
    cutmix   as mixup, a pasted box
    source   + sklearn digits (1,437 train images, upsampled to 28x28) as externals
    combo    mixup + views

Resumable: a cell whose row is in --record (JSON, committed) is skipped; a run killed midway
resumes from its last checkpoint when its folder is still there.  --budget-s stops starting
cells once that many seconds have passed.  --tiny: toy sizes through the same code (a CPU
check that the script runs end to end; its numbers mean nothing).

    PYTHONPATH=. python benchmarks/externals_sweep.py --sizes 4000 --levers base,mixup,views --epochs 20 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from activemint.training import TrainConfig, Trainer
from activemint.training.build import resolve_device
from activemint.training.checkpoint import latest_checkpoint

N_TRAIN = 60_000
LEVERS: dict[str, dict] = {
    "base": {}, "mixup": {"external_generated": 0.5}, "views": {"external_views": "robust"},
    "views-strong": {"external_views": "robust-strong"}, "views-geo": {"external_views": "geometric"}, "pool": {},
    "cutmix": {"external_generated": 0.5, "external_generator": "cutmix"},
    "source": {"external_source": "digits"}, "combo": {"external_generated": 0.5, "external_views": "robust"},
}


def splits_for(members: int, a) -> dict:
    rest = N_TRAIN - members - a.validation - a.calibration
    return {"members": members, "external": min(members, rest) if a.external is None else a.external, "rest": rest}


def row_key(r: dict) -> tuple:
    return (r["members"], r["lever"], r["epochs"], r["batch"])


def ensure(cfg: TrainConfig, run_dir: Path) -> dict:
    if not (run_dir / "metrics.json").is_file():
        resume = latest_checkpoint(run_dir / "checkpoints") is not None
        print(f"{time.strftime('%H:%M:%S')} training {run_dir}" + (" (resume)" if resume else ""), flush=True)
        Trainer(cfg, run_dir, progress=False, log=lambda m: print(m, flush=True)).run(resume=resume)
    return json.loads((run_dir / "metrics.json").read_text())


def table(rows: list[dict]) -> str:
    lines = ["| |D| | lever | E (pool) | epochs | batch | AUC | TPR@1%FPR | test acc aMINT / plain | train s (aMINT) | device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (-r["members"], list(LEVERS).index(r["lever"]) if r["lever"] in LEVERS else 99)):
        if r.get("same_as"):
            lines.append(f"| {r['members']} | {r['lever']} | = {r['same_as']} (no images left for a larger pool) | | | | | | | |")
            continue
        plain = "–" if r.get("plain_accuracy") is None else f"{r['plain_accuracy']:.4f}"
        lines.append(f"| {r['members']} | {r['lever']} | {r['pool']} | {r['epochs']} | {r['batch']} | {r['auc']:.4f} | "
                     f"{r['tpr_at_1pct_fpr']:.4f} | {r['test_accuracy']:.4f} / {plain} | {r['train_seconds']} | {r['device']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="40000,25000,8000")
    ap.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of {', '.join(LEVERS)}")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64, help="member and external batch size (lr 1e-3 at 64, sqrt-scaled)")
    ap.add_argument("--external", type=int, help="base E (default min(|D|, what is left))")
    ap.add_argument("--validation", type=int, default=500)
    ap.add_argument("--calibration", type=int, default=1000)
    ap.add_argument("--eval-nonmembers", type=int, default=10000, help="the test split's images as evaluation non-members")
    ap.add_argument("--plain", choices=["on", "off"], default="on", help="the plain twin per |D| (test accuracy beside it)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--data-root", help="Fashion-MNIST's folder (default: the registry's)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--budget-s", type=float, help="start no cell after this many seconds")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (|D| 256 / 512, 2 epochs): the script end to end, numbers meaningless")
    ap.add_argument("--out", default="runs/externals-sweep")
    ap.add_argument("--record", default="benchmarks/results/externals-sweep.json", help="finished cells (JSON, resumable)")
    ap.add_argument("--md", default="benchmarks/results/externals-sweep.md")
    a = ap.parse_args(argv)
    if a.tiny:
        a.sizes, a.epochs, a.validation, a.calibration, a.eval_nonmembers = "512,256", 2, 100, 300, 200
        a.external = a.external or 256
    levers = a.levers.split(",")
    unknown = [x for x in levers if x not in LEVERS]
    if unknown:
        ap.error(f"--levers: unknown {unknown}; known: {', '.join(LEVERS)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    t0, out, record, md = time.time(), Path(a.out), Path(a.record), Path(a.md)
    rows = json.loads(record.read_text()) if record.is_file() else []
    dev = resolve_device(a.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    failed: list[str] = []
    for n in (int(s) for s in a.sizes.split(",")):
        sz = splits_for(n, a)
        common = {"dataset": "fashion-mnist", "data_root": a.data_root, "arch": "small_cnn", "setup": "entry", "members": n,
                  "validation": a.validation, "calibration": a.calibration, "eval_nonmembers": a.eval_nonmembers,
                  "epochs": a.epochs, "lr": 1e-3, "lr_scaling": "sqrt", "schedule": "cosine", "batch_size": a.batch,
                  "external_batch_size": a.batch, "seed": 0, "device": a.device, "precision": a.precision}
        plain_acc = None
        for lever in levers:
            cell = {"members": n, "lever": lever, "epochs": a.epochs, "batch": a.batch}
            if any(row_key(r) == row_key(cell) for r in rows):
                print(f"|D|={n} {lever}: in {record}", flush=True)
                continue
            if a.budget_s is not None and time.time() - t0 > a.budget_s:
                print(f"budget of {a.budget_s:.0f} s spent: |D|={n} {lever} not started", flush=True)
                continue
            e = sz["rest"] if lever == "pool" else sz["external"]
            if lever == "pool" and e == sz["external"]:
                rows.append({**cell, "same_as": "base"})
            else:
                cfg = TrainConfig(**common, external=e, **LEVERS[lever])
                try:
                    if a.plain == "on" and plain_acc is None:
                        plain_acc = ensure(TrainConfig(**common, external=sz["external"], mint=False), out / f"d{n}-plain")["test_accuracy"]
                    m = ensure(cfg, out / f"d{n}-{lever}-e{a.epochs}-b{a.batch}")
                except Exception as err:  # e.g. no scikit-learn for digits on that machine: the other cells go on
                    print(f"|D|={n} {lever} failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}", flush=True)
                    failed.append(f"|D|={n} {lever}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
                    continue
                rows.append({**cell, "external": e, "pool": m.get("externals", {}).get("pool", e), "auc": m["membership"]["auc"],
                             "tpr_at_1pct_fpr": m["membership"]["tpr_at_1pct_fpr"], "test_accuracy": m["test_accuracy"],
                             "plain_accuracy": plain_acc, "train_seconds": m["train_seconds"], "device": where,
                             "config": {k: v for k, v in cfg.fingerprint_fields().items() if k not in ("data_root", "device")}})
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(rows, indent=1) + "\n")
            md.parent.mkdir(parents=True, exist_ok=True)
            md.write_text(table(rows))
            print(f"{time.strftime('%H:%M:%S')} |D|={n} {lever} done", flush=True)
    md.parent.mkdir(parents=True, exist_ok=True)
    text = table(rows) + "".join(f"\nfailed (not recorded; rerun): {f}" for f in failed)
    md.write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
