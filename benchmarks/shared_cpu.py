"""Training speed on a shared CPU: idle vs. one other CPU-bound process, per thread policy.

For each configuration (OpenMP wait policy x torch threads) a fresh Python process times
``--steps`` aMINT training steps (64 members + 64 externals, small_cnn by default, the
Trainer's own step) in wall-clock time, once with the machine as it is (``idle``) and once
while one other CPU-bound process runs (``shared``: a pure-Python busy loop, or
``--hog torch``: a torch training loop on all cores).  Configurations and scenarios are
interleaved round-robin, ``--repeats`` rounds, and every figure is a ratio within this run:

* ``shared / idle`` of each configuration (how much one other process slows it);
* each configuration's time over the library default's (``default``: activemint imported
  first, its thread policy, torch's thread count) in the same scenario.

Configurations:

* ``default``: what a user gets: ``import activemint`` before torch, no OMP_* variables;
* ``active``: ``OMP_WAIT_POLICY=ACTIVE`` in the environment (spinning threads);
* ``torch-first``: ``import torch`` before activemint with no OMP_* variables (the caveat
  documented in ``activemint.threads``: the runtime's default policy);
* ``default-1t``: the default with 1 thread;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
* ``spinN``: no wait policy, ``GOMP_SPINCOUNT=N`` (threads spin N rounds, ~N/100 µs, then sleep).

``--plain`` times plain training steps (64 members, no MINT head) instead.

    python benchmarks/shared_cpu.py --out benchmarks/results/shared-cpu.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from main_job import HOGS, cpu_model  # noqa: E402  (benchmarks/ is not a package)

WORKER = r'''
import sys, time
if {torch_first}:
    import torch
import activemint
import torch
from activemint.training import TrainConfig, build_model
from activemint.mint import MultitaskLoss
from activemint.training.optim import build_optimizer, param_groups
from activemint.training.batches import to_input
if {threads}:
    torch.set_num_threads({threads})
cfg = TrainConfig(arch="{arch}", setup="{setup}", lr=1e-3)
model = build_model(cfg, (1, 28, 28), 10)
model.train()
loss_fn = MultitaskLoss()
opt = build_optimizer(cfg, param_groups(cfg, model))
g = torch.Generator().manual_seed(0)
xm = to_input(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g))
xe = to_input(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g))
y = torch.randint(0, 10, (64,), generator=g)
def step():
    if {plain}:
        loss = torch.nn.functional.cross_entropy(model.classify(xm), y)
    else:
        logits, mm, me = model.forward_train(xm, xe)
        loss, _ = loss_fn(logits, y, mm, me)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
t = time.perf_counter()
for _ in range({steps}):
    step()
print((time.perf_counter() - t) / {steps}, torch.get_num_threads())
'''

CONFIGS = {
    "default": {"env": {}, "torch_first": False, "threads": 0},
    "active": {"env": {"OMP_WAIT_POLICY": "ACTIVE"}, "torch_first": False, "threads": 0},
    "torch-first": {"env": {}, "torch_first": True, "threads": 0},
    "default-1t": {"env": {}, "torch_first": False, "threads": 1},
    "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}, "torch_first": False, "threads": 0},
}


def config(name: str) -> dict:
    """A named configuration, or ``spinN``: no wait policy, ``GOMP_SPINCOUNT=N`` (spin N rounds, then sleep)."""
    if name.startswith("spin") and name[4:].isdigit():
        return {"env": {"GOMP_SPINCOUNT": name[4:]}, "torch_first": False, "threads": 0}
    return CONFIGS[name]


def run_once(name: str, arch: str, setup: str, steps: int, hog: list[str] | None, plain: bool = False) -> tuple[float, int]:
    c = config(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_NUM"))}
    env.update(c["env"])
    env["PYTHONPATH"] = str(ROOT)
    code = WORKER.format(torch_first=c["torch_first"], threads=c["threads"], arch=arch, setup=setup, steps=steps, plain=plain)
    p_hog = subprocess.Popen(hog, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if hog else None
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    finally:
        if p_hog:
            p_hog.kill()
            p_hog.wait()
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    sec, threads = out.stdout.split()
    return float(sec), int(threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="small_cnn")
    ap.add_argument("--setup", default="entry")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--hog", choices=sorted(HOGS), default="python")
    ap.add_argument("--plain", action="store_true", help="time plain training steps (64 members) instead of aMINT steps")
    ap.add_argument("--out")
    a = ap.parse_args()
    names = a.configs.split(",")
    times: dict[tuple[str, str], list[float]] = {}
    nthreads: dict[str, int] = {}
    load0 = os.getloadavg()
    for r in range(a.repeats):
        for scenario in ("idle", "shared"):
            for name in names:
                sec, nt = run_once(name, a.arch, a.setup, a.steps, HOGS[a.hog] if scenario == "shared" else None, a.plain)
                times.setdefault((name, scenario), []).append(sec)
                nthreads[name] = nt
                print(f"round {r + 1} {scenario} {name}: {sec * 1000:.1f} ms/step ({nt} threads)", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = "default" if "default" in names else names[0]
    lines = [
        "# aMINT training steps on a shared CPU, per thread policy",
        "",
        f"Command: `python benchmarks/shared_cpu.py {' '.join(sys.argv[1:])}`",
        "",
        f"{a.arch} {a.setup}: wall time of one {'plain training step (64 members)' if a.plain else 'aMINT step (64 members + 64 externals)'}, median of {a.repeats} "
        f"rounds x {a.steps} steps, each configuration in a fresh process; `shared` = while one {a.hog} "
        f"busy loop runs. CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads by default "
        f"{nthreads.get('default', '?')}. Load average before {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}, after "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + f" ({platform.platform()}).",
        "",
        f"| configuration | threads | idle ms/step | shared ms/step | shared / idle | idle / {ref} idle | shared / {ref} shared |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        i, s = med[(n, "idle")], med[(n, "shared")]
        lines.append(f"| {n} | {nthreads[n]} | {i * 1000:.1f} | {s * 1000:.1f} | {s / i:.2f}x | "
                     f"{i / med[(ref, 'idle')]:.2f}x | {s / med[(ref, 'shared')]:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
