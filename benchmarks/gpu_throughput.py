"""Training throughput on a GPU: today's (host) data path against the device data path.

For each architecture and setup, in one run on one device, times the trainer's own epoch code
(``Trainer.host_epoch`` / ``Trainer.device_epoch``, the very loops ``train`` runs, on a
paper-scale split: 25,000 members, 35,000 externals by default) and reports

* member images/s (one member image = one member + one external through an aMINT step);
* achieved TFLOP/s: the step's FLOPs (``torch.utils.flop_counter``: convolutions and matrix
  products, forward and backward, as ``benchmarks/throughput.py --flops`` counts them) over
  its time;
* % of the device's bf16 peak (``--peak-tflops``, default 790: an 8192^3 bf16 matrix product
  on an H200, /work/.library/device/KINDS.md; the data sheet's dense figure is higher).

Rows: ``old`` = the host path (permutation and augmentation draws on the CPU, losses read
every step), at each ``--old-batches``; ``new`` = the device path (bf16, channels-last, fused
optimiser, no per-step read-back) at each ``--new-batches``, with and without ``torch.compile``
when ``--compile both``.  Every row is timed after ``--warmup`` steps, over ``--steps`` steps,
with the device synchronised before and after.  On CUDA, 4 more steps run under
``torch.cuda.set_sync_debug_mode('warn')``: the last column counts the host synchronisations
(the device path's one is its end-of-epoch read of the summed losses).

GPU (one device call, see benchmarks/gpu/paper_scale.sh)::

    python benchmarks/gpu_throughput.py --out benchmarks/results/gpu-throughput.md

CPU dry run (tiny: checks the code path, the numbers mean nothing)::

    python benchmarks/gpu_throughput.py --device cpu --archs small_cnn --setups output --members 512 \\
        --external 512 --old-batches 64 --new-batches 128 --steps 2 --warmup 1 --out /tmp/gpu-throughput.md
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from activemint.mint import MultitaskLoss  # noqa: E402
from activemint.training import TrainConfig, Trainer, build_model, load_run_data  # noqa: E402
from activemint.training.batches import DeviceBatches  # noqa: E402
from activemint.training.forward import train_forward  # noqa: E402
from activemint.training.optim import build_optimizer, param_groups  # noqa: E402
from activemint.training.timing import sync  # noqa: E402


def count_step_flops(tr: Trainer, model, loss_fn, opt, xm, ym, xe) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        tr.step(model, loss_fn, opt, xm, ym, xe)
    return int(counter.get_total_flops())


def count_syncs(run, device) -> int | None:
    """Host synchronisations in 4 steps (one call of the epoch code), from CUDA's sync debug mode
    (the device path's end-of-epoch read-back is 1 of them); None off CUDA."""
    import warnings

    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run(4)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def bench(arch: str, setup: str, path: str, batch: int, compile_: bool, args, data, device) -> dict:
    cfg = TrainConfig(
        dataset=args.dataset, data_root=args.data_root, arch=arch, setup=setup, mint=setup != "plain",
        members=args.members, external=args.external, validation=args.validation, calibration=args.calibration,
        eval_nonmembers=args.eval_nonmembers, batch_size=batch, external_batch_size=batch, lr=1e-4,
        device=str(device), precision=args.precision, data_path=path, compile=compile_,
    )
    tr = Trainer(cfg, tempfile.gettempdir(), progress=False, log=lambda m: None, data=data)
    model = build_model(cfg, data.train.input_shape, data.train.num_classes).to(device)
    if tr.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    loss_fn = MultitaskLoss().to(device)
    opt = build_optimizer(cfg, param_groups(cfg, model), fused=tr.fused())
    s = data.splits
    members = data.train.rows(s.members).to(device)
    labels = data.train.labels[torch.as_tensor(s.members)].to(device)
    external = data.train.rows(s.external).to(device) if cfg.mint else None
    seen_host = torch.ones(len(members), dtype=torch.bool).numpy()
    seen = torch.ones(len(members), dtype=torch.bool, device=device)
    steps_per_epoch = -(-len(members) // batch)
    gen = torch.Generator().manual_seed(0)
    if path == "device":
        dgen = torch.Generator(device=device).manual_seed(0) if device.type != "cpu" else gen
        if compile_:
            tr.forward = torch.compile(train_forward)
        loss_fn.sync = False
        batches = DeviceBatches(cfg, members, labels, external, seen, None, dgen, tr.channels_last)

        def run(n):
            tr.device_epoch(model, loss_fn, opt, None, batches, steps_per_epoch, 0, steps=n, probe=True)
    else:
        def run(n):
            tr.host_epoch(model, loss_fn, opt, None, gen, 0, steps_per_epoch, members, labels, external, seen, seen_host,
                           None, steps=n, probe=True)
    t = time.perf_counter()
    run(args.warmup)
    sync(device)
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    run(args.steps)
    sync(device)
    step_s = (time.perf_counter() - t) / args.steps
    syncs = count_syncs(run, device)
    # FLOPs of one step at this batch (the eager step: compile does not change the arithmetic)
    xm = torch.zeros((batch, *data.train.input_shape), device=device)
    xe = torch.zeros_like(xm) if cfg.mint else None
    if tr.channels_last:
        xm = xm.contiguous(memory_format=torch.channels_last)
        xe = xe.contiguous(memory_format=torch.channels_last) if xe is not None else None
    tr.forward = train_forward
    flops = count_step_flops(tr, model, loss_fn, opt, xm, labels[:batch], xe)
    tflops = flops / step_s / 1e12
    row = {"arch": arch, "setup": setup, "path": "new" if path == "device" else "old", "batch": batch,
           "compile": compile_, "precision": "bf16" if tr.autocast_dtype is not None else "fp32",
           "ips": batch / step_s, "step_ms": 1000 * step_s, "warmup_s": warm_s, "gflop_step": flops / 1e9,
           "tflops": tflops, "peak_pct": 100 * tflops / args.peak_tflops, "syncs": syncs}
    return row


HEADER = ("| arch | setup | path | batch | compile | precision | member img/s | x old best | step ms | GFLOP/step | TFLOP/s "
          "| % bf16 peak | warm-up s | host syncs in 4 steps |")
SEP = "|" + "---|" * 14


def row_md(r: dict, best_old: float | None) -> str:
    ratio = f"{r['ips'] / best_old:.2f}x" if best_old else "-"
    return (f"| {r['arch']} | {r['setup']} | {r['path']} | {r['batch']} | {'on' if r['compile'] else 'off'} | {r['precision']} "
            f"| {r['ips']:,.0f} | {ratio} | {r['step_ms']:.1f} | {r['gflop_step']:.1f} | {r['tflops']:.1f} | {r['peak_pct']:.1f}% "
            f"| {r['warmup_s']:.1f} | {'-' if r['syncs'] is None else r['syncs']} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="resnet50,densenet121,mobilenet_v2")
    p.add_argument("--setups", default="output", help="comma-separated: entry, middle, output, plain")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root")
    p.add_argument("--members", type=int, default=25000)
    p.add_argument("--external", type=int, default=35000)
    p.add_argument("--validation", type=int, default=100)
    p.add_argument("--calibration", type=int, default=100)
    p.add_argument("--eval-nonmembers", type=int, default=100)
    p.add_argument("--old-batches", default="64,512", help="batch sizes of the host path (today's best: 512)")
    p.add_argument("--new-batches", default="512,1024,2048", help="batch sizes of the device path")
    p.add_argument("--compile", choices=["off", "on", "both"], default="both", help="torch.compile on the device path")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--peak-tflops", type=float, default=790.0, help="the device's bf16 peak (H200: 790 measured)")
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="write the table (Markdown) here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = TrainConfig(dataset=args.dataset, data_root=args.data_root, members=args.members, external=args.external,
                      validation=args.validation, calibration=args.calibration, eval_nonmembers=args.eval_nonmembers)
    data = load_run_data(cfg)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    head = (f"# Training throughput: host path (today) vs device path\n\n"
            f"Command: `python {' '.join(['benchmarks/gpu_throughput.py', *sys.argv[1:]])}`\n\n"
            f"Device: {device} ({gpu}); torch {torch.__version__}; {args.members:,} members, {args.external:,} externals "
            f"(Fashion-MNIST, 28x28 grey); one member image = a member and an external through the aMINT step; "
            f"{args.warmup} warm-up + {args.steps} timed steps per row; peak {args.peak_tflops:g} TFLOP/s bf16.\n\n")
    print(head + HEADER + "\n" + SEP, flush=True)
    lines = []
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    for arch in [a for a in args.archs.split(",") if a]:
        for setup in [s for s in args.setups.split(",") if s]:
            rows = []
            for b in [int(x) for x in args.old_batches.split(",") if x]:
                rows.append(_safe((arch, setup, "host", b, False, args, data, device)))
            best_old = max((r["ips"] for r in rows if r.get("ips") and r["path"] == "old"), default=None)
            for b in [int(x) for x in args.new_batches.split(",") if x]:
                for c in compiles:
                    rows.append(_safe((arch, setup, "device", b, c, args, data, device)))
            for r in rows:
                line = row_md(r, best_old) if "ips" in r else f"| {arch} | {setup} | {r['path']} | {r['batch']} | failed: {r['error']} |"
                print(line, flush=True)
                lines.append(line)
    if args.out:
        Path(args.out).write_text(head + HEADER + "\n" + SEP + "\n" + "\n".join(lines) + "\n")
    return 0


def _safe(bench_args: tuple) -> dict:
    """One row of :func:`bench`; a failure (out of memory, a compile error) becomes a row saying so."""
    import gc

    arch, setup, path, batch = bench_args[:4]
    try:
        return bench(*bench_args)
    except Exception as e:  # noqa: BLE001 - a benchmark row, reported as such
        return {"arch": arch, "setup": setup, "path": "new" if path == "device" else "old", "batch": batch,
                "error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
