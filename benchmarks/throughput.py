"""What aMINT costs: training and scoring throughput against the same model trained plainly.

From one run on one machine, for each architecture and setup, prints

* ``plain train``: member images per second of a plain training step (batch of 64 members:
  forward, cross-entropy, backward, optimiser step);
* ``aMINT train``: member images per second of an aMINT training step (64 members + 64
  externals; the step the Trainer runs: one concatenated forward up to the last tap, members
  only after it, multitask loss, backward, optimiser step), and ``ratio`` = time of an aMINT
  step / time of a plain step (per member image; <= 1.3 in Entry, <= 2.0 anywhere is the target of issue 12);
* ``head share``: the MINT head's forward + backward on the 64 + 64 tapped activations, as a
  share of the aMINT step;
* ``score``: images per second of membership scoring (truncated forward, stops after the last
  tap), of full scoring (class logits + membership from one pass), and of plain inference
  (class logits of the plain model), with ``score ratio`` = membership-only / plain inference
  (>= 1 is the target).

Every figure is the median of single steps (``--repeats`` x ``--steps``), the variants
interleaved step by step so that a burst of load from other processes hits all of them alike.
``--clock cpu`` times CPU seconds of this process instead of elapsed time: on a CPU shared
with other jobs that measures our work, not how long others kept the cores.
Images are real Fashion-MNIST images (uint8 in memory, normalised per batch as in training).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py --archs small_cnn,mobilenet_v2,resnet50 \\
        --threads 1 --clock cpu --repeats 4 --out benchmarks/results/throughput-cpu.md

``--flops`` times nothing: it counts the floating-point operations of the same steps with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and
backward; elementwise ops, pooling and normalisation are not counted), and from them the
floor of ``aMINT / plain`` that no head can go below: the step with a free head (members'
task forward + backward, externals' forward + backward up to the last tap) over the plain
step, and the head budget that a ratio target leaves::

    python benchmarks/throughput.py --flops --archs small_cnn,mobilenet_v2,resnet50 --out benchmarks/results/step-floor-flops.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from activemint.data import load_dataset  # noqa: E402
from activemint.mint import EnhancedAuditedModel, MultitaskLoss  # noqa: E402
from activemint.training import TrainConfig, Trainer, build_model  # noqa: E402
from activemint.training.batches import to_input  # noqa: E402
from activemint.training.optim import build_optimizer, param_groups  # noqa: E402

SETUPS = ("entry", "middle", "output")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn: Callable[[], object], steps: int, device: torch.device, clock: str = "wall") -> float:
    """Seconds per call of ``fn``, averaged over ``steps`` calls.

    ``clock="cpu"``: CPU seconds of this process (all its threads) instead of wall time;
    on a CPU shared with other jobs it counts our work, not the time others took.
    """
    if clock == "cpu" and device.type == "cuda":
        raise ValueError("--clock cpu measures CPU work; use wall time on a GPU")
    now = CLOCKS[clock]
    _sync(device)
    t = now()
    for _ in range(steps):
        fn()
    _sync(device)
    return (now() - t) / steps


@dataclass
class Bench:
    """One model (plain or audited) set up for timing, with its step and scoring closures."""

    name: str
    train_step: Callable[[], object]
    score: Callable[[], object]
    full_score: Callable[[], object] | None = None
    head_step: Callable[[], object] | None = None


def make_bench(arch: str, setup: str | None, images: torch.Tensor, labels: torch.Tensor, args, device) -> Bench:
    """``setup=None``: the plain model."""
    cfg = TrainConfig(
        dataset=args.dataset, arch=arch, setup=setup or "entry", mint=setup is not None, epochs=1,
        lr=1e-4, head_width=args.head_width, head_hidden=args.head_hidden, head_stride=args.head_stride,
        head_norm=args.head_norm, head_conv=args.head_conv, external_grad=args.external_grad == "on", device=str(device),
        precision=args.precision, channels_last=args.channels_last,
    )
    shape = tuple(images.shape[1:])
    model = build_model(cfg, shape, int(labels.max()) + 1).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    trainer = Trainer(cfg, tempfile.gettempdir(), progress=False, log=lambda m: None)
    loss_fn = MultitaskLoss().to(device)
    opt = build_optimizer(cfg, param_groups(cfg, model))
    b, eb = args.batch, args.external_batch
    members, ym = images[:b].to(device), labels[:b].to(device)
    external = images[b : b + eb].to(device)
    score_batch = images[: args.score_batch].to(device)

    def train_step():
        xm = to_input(members)
        xe = to_input(external) if setup is not None else None
        return trainer.step(model, loss_fn, opt, xm, ym, xe)

    autocast = dict(device_type=device.type, dtype=trainer.autocast_dtype, enabled=trainer.autocast_dtype is not None)

    @torch.no_grad()
    def score():
        model.eval()
        with torch.autocast(**autocast):
            out = model.membership_logit(to_input(score_batch)) if setup is not None else model.classify(to_input(score_batch))
        model.train()
        return out

    @torch.no_grad()
    def full_score():
        model.eval()
        with torch.autocast(**autocast):
            out = model(to_input(score_batch))
        model.train()
        return out

    head_step = None
    if setup is not None:
        assert isinstance(model, EnhancedAuditedModel)
        # The tapped activations of one training batch (members + externals), detached, so
        # that timing covers the head's forward + backward alone (as in the training step,
        # where gradients also flow back into the tapped maps).
        with torch.no_grad():
            feats = [f.detach().float() for f in model.tap_features(to_input(torch.cat([members, external])))]

        def head_step():
            fs = [f.clone().requires_grad_(True) for f in feats]
            with torch.autocast(**autocast):
                out = model.head(fs)
            target = torch.zeros_like(out, dtype=torch.float32)
            target[:b] = 1
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), target)
            loss.backward()
            model.head.zero_grad(set_to_none=True)

    return Bench(f"{arch}/{setup or 'plain'}", train_step, score, full_score if setup is not None else None, head_step)


def run(args) -> list[dict]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    ds = load_dataset(args.dataset, "train")
    n = max(args.batch + args.external_batch, args.score_batch)
    images, labels = ds.images[:n], ds.labels[:n]
    rows = []
    for arch in args.archs:
        benches = {s: make_bench(arch, None if s == "plain" else s, images, labels, args, device) for s in ["plain", *args.setups]}
        for bench in benches.values():  # warm-up (allocator, oneDNN primitive caches, first-batch loss normalisers)
            for _ in range(args.warmup):
                bench.train_step()
            bench.score()
            if bench.full_score:
                bench.full_score()
            if bench.head_step:
                bench.head_step()
        times: dict[str, dict[str, list[float]]] = {s: {"train": [], "score": [], "full": [], "head": []} for s in benches}
        # Interleaved at the finest grain: one step of every variant, then the next step, so a
        # burst of load from other processes hits all variants alike; medians of single steps.
        for _ in range(args.repeats):
            for _ in range(args.steps):
                for s, bench in benches.items():
                    times[s]["train"].append(timed(bench.train_step, 1, device, args.clock))
                    if bench.head_step:
                        times[s]["head"].append(timed(bench.head_step, 1, device, args.clock))
            for _ in range(args.score_steps):
                for s, bench in benches.items():
                    times[s]["score"].append(timed(bench.score, 1, device, args.clock))
                    if bench.full_score:
                        times[s]["full"].append(timed(bench.full_score, 1, device, args.clock))
        med = {s: {k: statistics.median(v) if v else None for k, v in t.items()} for s, t in times.items()}
        plain_train, plain_infer = med["plain"]["train"], med["plain"]["score"]
        for s in args.setups:
            m = med[s]
            rows.append({
                "arch": arch, "setup": s,
                "plain_train_ips": args.batch / plain_train,
                "amint_train_ips": args.batch / m["train"],
                "train_ratio": m["train"] / plain_train,
                "head_share": m["head"] / m["train"],
                # what is left of the aMINT step once the plain step and the head are paid:
                # the externals' forward + backward up to the last tap, the concatenation, hooks
                "extern_share": (m["train"] - plain_train - m["head"]) / m["train"],
                "plain_infer_ips": args.score_batch / plain_infer,
                "member_score_ips": args.score_batch / m["score"],
                "full_score_ips": args.score_batch / m["full"],
                "score_ratio": plain_infer / m["score"],
            })
            print(_row_md(rows[-1]), flush=True)
    return rows


HEADER = (
    "| arch | setup | plain train img/s | aMINT train img/s (per member) | aMINT / plain step | target | head share of aMINT step | externals + rest share "
    "| plain inference img/s | membership score img/s (truncated) | class + membership img/s | plain infer / membership score time | target |"
)
SEP = "|" + "---|" * 13


def target_ratio(setup: str) -> float:
    """Issue 12's bound on aMINT / plain step time: 1.3 in Entry, 2.0 elsewhere."""
    return 1.3 if setup == "entry" else 2.0


def _row_md(r: dict) -> str:
    target = target_ratio(r["setup"])
    ok = "ok" if r["train_ratio"] <= target else "MISS"
    sok = "ok" if r["score_ratio"] >= 1.0 else "MISS"
    return (
        f"| {r['arch']} | {r['setup']} | {r['plain_train_ips']:.0f} | {r['amint_train_ips']:.0f} | {r['train_ratio']:.2f}x "
        f"| <= {target} {ok} | {100 * r['head_share']:.0f}% | {100 * r['extern_share']:.0f}% | {r['plain_infer_ips']:.0f} | {r['member_score_ips']:.0f} "
        f"| {r['full_score_ips']:.0f} | {r['score_ratio']:.2f}x | >= 1 {sok} |"
    )


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (convs and matmuls, forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flop_rows(args) -> list[dict]:
    """Per architecture and setup: FLOPs of the plain and aMINT steps, the head's share, the
    floor of aMINT / plain with a free head, and the head budget of issue 12's targets."""
    device = torch.device("cpu")
    ds = load_dataset(args.dataset, "train")
    n = max(args.batch + args.external_batch, args.score_batch)
    images, labels = ds.images[:n], ds.labels[:n]
    rows = []
    for arch in args.archs:
        plain = make_bench(arch, None, images, labels, args, device)
        p_train, p_infer = count_flops(plain.train_step), count_flops(plain.score)
        for s in args.setups:
            bench = make_bench(arch, s, images, labels, args, device)
            train, head, score = count_flops(bench.train_step), count_flops(bench.head_step), count_flops(bench.score)
            target = target_ratio(s)
            rows.append({
                "arch": arch, "setup": s, "plain": p_train, "amint": train, "head": head,
                "ratio": train / p_train, "floor": (train - head) / p_train, "target": target,
                # head FLOPs that the target leaves once the free-head step is paid
                "budget": target * p_train - (train - head),
                "score_ratio": p_infer / score,
            })
            print(_flop_row_md(rows[-1]), flush=True)
    return rows


FLOP_HEADER = (
    "| arch | setup | plain step GFLOP | aMINT step GFLOP | head GFLOP (fwd + bwd, members + externals) | aMINT / plain | "
    "floor: free head / plain | target | head budget GFLOP | head must shrink | plain infer / membership score |"
)
FLOP_SEP = "|" + "---|" * 11


def _flop_row_md(r: dict) -> str:
    g = 1e9
    if r["budget"] <= 0.01 * r["head"]:  # the free-head step already uses the target up
        shrink = "impossible (floor = target)" if r["budget"] > 0 else "impossible (floor > target)"
    else:
        shrink = f"{r['head'] / r['budget']:.1f}x" if r["head"] > r["budget"] else "no"
    return (
        f"| {r['arch']} | {r['setup']} | {r['plain'] / g:.2f} | {r['amint'] / g:.2f} | {r['head'] / g:.2f} | {r['ratio']:.2f}x "
        f"| {r['floor']:.2f}x | <= {r['target']} | {r['budget'] / g:.2f} | {shrink} | {r['score_ratio']:.2f}x |"
    )


def torch_profile(spec: str, args) -> str:
    """Top operators (self CPU time) of a few aMINT steps of ``arch:setup`` and of plain steps."""
    from torch.profiler import ProfilerActivity, profile

    arch, setup = spec.split(":")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else (args.device if args.device != "auto" else "cpu"))
    ds = load_dataset(args.dataset, "train")
    images, labels = ds.images[:256], ds.labels[:256]
    out = []
    for s in (None, setup):
        bench = make_bench(arch, s, images, labels, args, device)
        for _ in range(args.warmup):
            bench.train_step()
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(args.steps):
                bench.train_step()
        out.append(f"### {bench.name}: {args.steps} training steps\n\n```\n"
                   + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40)
                   + "```\n")
    return "\n".join(out)


def machine() -> str:
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}, {platform.platform()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="small_cnn,mobilenet_v2,resnet50", help="comma-separated architectures")
    p.add_argument("--setups", default="entry,middle,output")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch", type=int, default=64, help="members per step (paper: 64)")
    p.add_argument("--external-batch", type=int, default=64, help="externals per step (paper: 64)")
    p.add_argument("--score-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    p.add_argument("--score-steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--head-width", type=int, default=TrainConfig.head_width)
    p.add_argument("--head-hidden", type=int, default=TrainConfig.head_hidden)
    p.add_argument("--head-stride", type=int, default=TrainConfig.head_stride)
    p.add_argument("--head-norm", default=TrainConfig.head_norm, choices=["none", "mlp", "branch"])
    p.add_argument("--head-conv", default=TrainConfig.head_conv, choices=["full", "separable"])
    p.add_argument("--external-grad", default="on", choices=["on", "off"], help="off: the externals' forward without a graph")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: CPU time of this process (robust when other jobs share the CPU)")
    p.add_argument("--flops", action="store_true",
                   help="count FLOPs (convs + matmuls) instead of timing: the floor of aMINT / plain and the head budget")
    p.add_argument("--out", help="also write the table (Markdown) to this file")
    p.add_argument("--torch-profile", action="append", default=[], metavar="ARCH:SETUP",
                   help="also profile aMINT and plain steps of ARCH:SETUP with torch.profiler (top operators)")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.flops:
        return flops_main(args)
    print(f"machine: {machine()}")
    print(f"batch {args.batch} members + {args.external_batch} externals, head width {args.head_width} hidden {args.head_hidden} stride {args.head_stride} norm {args.head_norm} conv {args.head_conv}, external grad {args.external_grad}, "
          f"median of {args.repeats} x {args.steps} single steps, clock {args.clock}, {torch.get_num_threads()} thread(s)\n")
    print(HEADER)
    print(SEP)
    t0 = time.time()
    rows = run(args)
    wall = time.time() - t0
    if args.out:
        load = os.getloadavg()
        with open(args.out, "w") as f:
            f.write("# aMINT training and scoring throughput\n\n")
            f.write(f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`\n\n")
            f.write(f"Machine: {machine()}\n\n")
            f.write(f"Batch {args.batch} members + {args.external_batch} externals per step; scoring batch {args.score_batch}; "
                    f"MINT head width {args.head_width}, hidden {args.head_hidden}, first-conv stride {args.head_stride}, norm {args.head_norm}, convs {args.head_conv}, externals' backbone gradient {args.external_grad}; precision {args.precision}; "
                    f"median of {args.repeats} x {args.steps} single steps, variants interleaved step by step; clock: {args.clock} "
                    f"({'CPU seconds of this process' if args.clock == 'cpu' else 'elapsed'}); {torch.get_num_threads()} thread(s); run took {wall:.0f} s; "
                    f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.\n\n")
            f.write(HEADER + "\n" + SEP + "\n")
            for r in rows:
                f.write(_row_md(r) + "\n")
    for spec in args.torch_profile:
        text = torch_profile(spec, args)
        print(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write("\n## torch.profiler: " + spec + "\n\n" + text)
    return 0


def flops_main(args) -> int:
    settings = (f"batch {args.batch} members + {args.external_batch} externals, scoring batch {args.score_batch}; head width {args.head_width}, "
                f"hidden {args.head_hidden}, stride {args.head_stride}, convs {args.head_conv}; external grad {args.external_grad}")
    print(settings + "\n")
    print(FLOP_HEADER)
    print(FLOP_SEP)
    rows = flop_rows(args)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# aMINT step cost in FLOPs: the floor no head can beat\n\n")
            f.write(f"Command: `{' '.join(['python', 'benchmarks/throughput.py', *sys.argv[1:]])}`\n\n")
            f.write(f"Counted with `torch.utils.flop_counter.FlopCounterMode` (torch {torch.__version__}): convolutions and "
                    f"matrix products, forward and backward; {settings}.\n\n")
            f.write(FLOP_HEADER + "\n" + FLOP_SEP + "\n")
            for r in rows:
                f.write(_flop_row_md(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
