"""One training run in one process vs two torchrun processes (gloo, CPU), same config and global batch.

Runs the command line as a user does, in this order, ``--repeats`` times (interleaved, so that
a change of the shared machine's load hits every layout alike):

* ``python -m activemint train ... --threads 1``                      (1 process, 1 thread)
* ``python -m activemint train ... --threads 2``                      (1 process, 2 threads)
* ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m activemint train ... --threads 1``
                                                                      (2 processes, 1 thread each)

and writes a markdown table: wall time of the command (start-up included), the trainer's own
``train_seconds`` (from metrics.json: training, validation, final evaluation), test accuracy
and membership AUC.  Timings are only comparable within one invocation (the CPU is shared).

    PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE nohup python benchmarks/torchrun_cpu.py \
        --out runs/torchrun-bench --repeats 2 > runs/torchrun-bench.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """dataset: fashion-mnist
data_root: /usr/share/datasets/fashion-mnist
arch: small_cnn
setup: entry
members: {members}
external: {external}
validation: 1000
calibration: 1000
eval_nonmembers: 2000
test_samples: 2000
epochs: {epochs}
batch_size: {batch}
external_batch_size: {batch}
lr: 0.001
select: last
seed: 0
"""

LAYOUTS = {
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes (torchrun, gloo), 1 thread each": (2, 1),
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), platform.processor())
    except OSError:
        return platform.processor()


def command(nproc: int, threads: int, config: Path, out: Path) -> list[str]:
    launch = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   "--nproc_per_node", str(nproc)]
    return [*launch, "-m", "activemint", "train", "--config", str(config), "--out", str(out),
            "--threads", str(threads), "--no-progress"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/torchrun-bench")
    ap.add_argument("--members", type=int, default=4096)
    ap.add_argument("--external", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--result", default="benchmarks/results/torchrun-cpu.md")
    args = ap.parse_args()

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(CONFIG.format(members=args.members, external=args.external, epochs=args.epochs, batch=args.batch))
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    rows = []
    for rep in range(args.repeats):
        for name, (nproc, threads) in LAYOUTS.items():
            out = root / f"r{rep}-p{nproc}-t{threads}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = command(nproc, threads, config, out)
            t0 = time.time()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            wall = time.time() - t0
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            m = json.loads((out / "metrics.json").read_text())
            row = {"layout": name, "repeat": rep, "wall_s": round(wall, 1), "train_s": m["train_seconds"],
                   "test_accuracy": m["test_accuracy"], "auc": m["membership"]["auc"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    lines = ["# One run: 1 process vs 2 torchrun processes (CPU, gloo)\n",
             f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs (shared with other work: compare within this table only).  "
             f"torch {__import__('torch').__version__}.\n",
             f"Config: small_cnn, Entry taps, fashion-mnist, {args.members} members, {args.external} externals, "
             f"{args.epochs} epochs, global batch {args.batch} + {args.batch} externals, test on 2000 images, "
             f"AUC of {args.members} members vs 2000 non-members.\n",
             "Command: `PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python benchmarks/torchrun_cpu.py "
             + " ".join(f"--{k} {getattr(args, k)}" for k in ("members", "external", "epochs", "batch", "repeats")) + "`\n",
             "| layout | repeat | wall s (command) | train s (trainer) | test accuracy | membership AUC |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['layout']} | {r['repeat']} | {r['wall_s']} | {r['train_s']} | {r['test_accuracy']:.4f} | {r['auc']:.4f} |"
              for r in rows]
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
