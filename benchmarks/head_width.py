"""The lightest MINT head that keeps detection quality.

Trains the same aMINT run (Fashion-MNIST, small_cnn, Entry setup; the test suite's reference
run: 1000 members, 4000 external, 25 epochs, Adam lr 1e-3, seed 0) once per head width, all
other settings identical, and prints membership AUC, TPR at 1% FPR, accuracy at 0.5, the
audited accuracy, and the CPU time of one aMINT training step (64 + 64 images, median of
25 single steps, CPU seconds of this process).

Usage::

    python benchmarks/head_width.py --widths 16,32,64,256 --out benchmarks/results/head-width-cpu.md
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from activemint.rundir import RunDir  # noqa: E402
from activemint.training import TrainConfig, Trainer  # noqa: E402

REFERENCE = dict(
    dataset="fashion-mnist", arch="small_cnn", setup="entry", mint=True, members=1000, external=4000,
    validation=500, calibration=1000, eval_nonmembers=2000, epochs=25, lr=1e-3, seed=0,
)


def step_seconds(cfg: TrainConfig, repeats: int = 5, steps: int = 5) -> float:
    """Median seconds of one aMINT training step (batch_size members + external_batch_size externals)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput import make_bench, timed  # the benchmark's own step

    from activemint.data import load_dataset

    ds = load_dataset(cfg.dataset, "train")
    args = argparse.Namespace(dataset=cfg.dataset, head_width=cfg.head_width, head_hidden=cfg.head_hidden, head_stride=cfg.head_stride,
                              precision="auto", channels_last=False, batch=64, external_batch=64, score_batch=256)
    bench = make_bench(cfg.arch, cfg.setup, ds.images[:256], ds.labels[:256], args, torch.device("cpu"))
    for _ in range(3):
        bench.train_step()
    # CPU seconds of this process, single steps: robust when other jobs share the CPU.
    return statistics.median(timed(bench.train_step, 1, torch.device("cpu"), "cpu") for _ in range(repeats * steps))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="16,32,64,256", help="head widths; WsN = width W with first-conv stride N (e.g. 32s2)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--runs", default="runs/head-width", help="folder of the training runs (reused when done)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="also write the table (Markdown) here")
    p.add_argument("--no-step-time", action="store_true", help="skip timing the aMINT step (see benchmarks/throughput.py for costs)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [(int(w.split("s")[0]), int(w.split("s")[1]) if "s" in w else 1) for w in args.widths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    header = ("| head width | first-conv stride | seed | head params | AUC | TPR@1%FPR | TPR@0.1%FPR | MINT acc@0.5 | audited acc "
              "| aMINT step CPU ms (64+64) | train s |")
    print(header + "\n|" + "---|" * 11, flush=True)
    for w, stride in widths:
        for seed in seeds:
            cfg = TrainConfig(**{**REFERENCE, "head_width": w, "head_stride": stride, "seed": seed})
            run_dir = Path(args.runs) / (f"w{w}-s{seed}" if stride == 1 else f"w{w}-stride{stride}-s{seed}")
            if not (run_dir / "metrics.json").is_file():
                resume = RunDir(run_dir).has_checkpoint()
                if not resume and run_dir.exists():
                    import shutil

                    shutil.rmtree(run_dir)
                Trainer(cfg, run_dir, progress=False, log=lambda m: None).run(resume=resume)
            m = json.loads((run_dir / "metrics.json").read_text())
            mm = m["membership"]
            from activemint.training import build_model

            n_head = sum(p.numel() for p in build_model(cfg, (1, 28, 28), 10).head.parameters())
            t = None if args.no_step_time else step_seconds(cfg)
            row = (f"| {w} | {stride} | {seed} | {n_head:,} | {mm['auc']:.4f} | {mm['tpr_at_1pct_fpr']:.4f} | {mm['tpr_at_0_1pct_fpr']:.4f} "
                   f"| {mm['accuracy_at_0_5']:.4f} | {m['test_accuracy']:.4f} | {'–' if t is None else f'{1000 * t:.1f}'} | {m['train_seconds']:.0f} |")
            rows.append(row)
            print(row, flush=True)
    if args.out:
        load = os.getloadavg()
        with open(args.out, "w") as f:
            f.write("# MINT head width: detection quality against cost\n\n")
            f.write(f"Command: `python {' '.join(sys.argv)}`\n\n")
            f.write("Run: " + ", ".join(f"{k} {v}" for k, v in REFERENCE.items()) + "; only the head width changes.\n\n")
            f.write(f"Load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (2 CPUs shared with other jobs). "
                    f"Step: CPU milliseconds of one aMINT step (64 members + 64 externals), median of 25 single steps, "
                    f"{torch.get_num_threads()} thread(s); train s: wall time of the run under that load.\n\n")
            f.write(header + "\n|" + "---|" * 11 + "\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
