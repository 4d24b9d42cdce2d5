"""Member-set size sweep: does joint training (Active MINT) beat the post-hoc head as |D| grows?

For each |D| (default 1k, 4k, 16k, 40k) on Fashion-MNIST (small_cnn, Entry taps, same epochs;
by default the main job's recipe: 17 epochs, Adam lr 1e-3, cosine schedule):
train the aMINT run and the same splits without aMINT (resumable: finished runs are reused),
then ``activemint robustness --plain-run`` on exact copies and a few near-copies, and collect
Active MINT's and the post-hoc head's AUC / TPR@1%FPR into one table.

    PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE nohup python benchmarks/dsweep.py --sizes 1000,4000 \
        --out runs/dsweep > runs/dsweep.log 2>&1 &

Sizes that do not fit the data set (members + external + validation + calibration must fit
in the 60,000 training images) get a smaller external set: E = min(2 |D|, what is left).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from activemint.robustness import run_robustness
from activemint.training import TrainConfig, Trainer
from activemint.training.build import resolve_device
from activemint.training.checkpoint import latest_checkpoint

TRANSFORMS = "translate:2px,crop:0.9,resize:0.75,jpeg:q50,noise:8/255"
N_TRAIN = 60_000


def sizes_for(members: int, validation: int, calibration: int) -> int:
    return max(1000, min(2 * members, N_TRAIN - members - validation - calibration))


def read_table(path: Path) -> list[dict]:
    """The rows of an earlier invocation's dsweep.json (none if there is none yet)."""
    return json.loads(path.read_text()) if path.is_file() else []


def ensure(cfg: TrainConfig, run_dir: Path) -> Path:
    if (run_dir / "metrics.json").is_file():
        return run_dir
    resume = latest_checkpoint(run_dir / "checkpoints") is not None  # killed: go on from its last epoch
    print(f"{time.strftime('%H:%M:%S')} training {run_dir}" + (" (resume)" if resume else ""), flush=True)
    Trainer(cfg, run_dir, progress=False, log=lambda m: print(m, flush=True)).run(resume=resume)
    return run_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,4000,16000,40000")
    ap.add_argument("--epochs", type=int, default=17, help="epochs of both runs (README's main job: 17)")
    ap.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    ap.add_argument("--threads", type=int, help="torch threads (default: the library's choice)")
    ap.add_argument("--arch", default="small_cnn")
    ap.add_argument("--transforms", default=TRANSFORMS)
    ap.add_argument("--max-samples", type=int, default=2000, help="evaluated samples per role")
    ap.add_argument("--scorers", default="active_mint,posthoc_head,exact_sha256,phash,feature_nn",
                    help="robustness scorers (phash needs the imagehash package)")
    ap.add_argument("--device", default="auto", help="training device (auto, cpu, cuda)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="auto: fp32 on a CPU, bf16 autocast on a GPU; fp32: the CPU's arithmetic on a GPU too")
    ap.add_argument("--out", default="runs/dsweep")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.threads:
        torch.set_num_threads(a.threads)
    # Resumable: sizes whose rows are already in dsweep.json (an earlier invocation with the same
    # --out) are not evaluated again; a new --out starts afresh.
    table_path = out / "dsweep.json"
    table = read_table(table_path)
    dev = resolve_device(a.device)  # the trainer's own resolution of --device
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    for n in (int(s) for s in a.sizes.split(",")):
        if any(t["members"] == n for t in table):
            print(f"|D|={n}: reusing its rows in {table_path}", flush=True)
            continue
        val, cal, ev = 500, 1000, 2000
        base = {"dataset": "fashion-mnist", "arch": a.arch, "setup": "entry", "members": n, "external": sizes_for(n, val, cal),
                    "validation": val, "calibration": cal, "eval_nonmembers": ev, "epochs": a.epochs, "lr": 1e-3, "schedule": a.schedule, "seed": 0,
                "device": a.device, "precision": a.precision}
        t0 = time.time()
        active = ensure(TrainConfig(**base, mint=True), out / f"d{n}-amint")
        plain = ensure(TrainConfig(**base, mint=False), out / f"d{n}-plain")
        rows = run_robustness(active, out / f"d{n}-robustness", transforms=a.transforms, plain_run=plain,
                              scorers=a.scorers.split(","),
                              max_samples=a.max_samples, bootstrap=0, log=lambda m: print(m, flush=True))
        accs = {k: json.loads((d / "metrics.json").read_text())["test_accuracy"] for k, d in (("amint", active), ("plain", plain))}
        # Re-read before adding this size's rows: another invocation on other sizes may have
        # written its rows meanwhile (two sizes can run at once, one per core).
        table = [t for t in read_table(table_path) if t["members"] != n]
        for r in rows:
            table.append({"members": n, "external": base["external"], "scorer": r.scorer, "transform": f"{r.transform}:{r.level}",
                          "auc": r.auc, "tpr_at_1pct_fpr": r.tpr_at_1pct_fpr, "test_accuracy_amint": accs["amint"],
                          "test_accuracy_plain": accs["plain"], "seconds": round(time.time() - t0),
                          "device": where})
        table.sort(key=lambda t: t["members"])
        table_path.write_text(json.dumps(table, indent=2))
        print(f"{time.strftime('%H:%M:%S')} |D|={n} done", flush=True)
    lines = ["| |D| | transformation | Active MINT AUC / TPR@1% | post-hoc head AUC / TPR@1% | test acc aMINT / plain |",
             "|---|---|---|---|---|"]
    by = {(t["members"], t["transform"], t["scorer"]): t for t in table}
    for (n, tr, sc), t in by.items():
        if sc != "active_mint":
            continue
        p = by.get((n, tr, "posthoc_head"))
        lines.append(f"| {n} | {tr} | {t['auc']:.3f} / {t['tpr_at_1pct_fpr']:.3f} | "
                     + (f"{p['auc']:.3f} / {p['tpr_at_1pct_fpr']:.3f}" if p else "–")
                     + f" | {t['test_accuracy_amint']:.4f} / {t['test_accuracy_plain']:.4f} |")
    (out / "dsweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
