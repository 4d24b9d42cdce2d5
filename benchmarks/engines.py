"""What the Ray engine costs: its start-up, and the wall time of a 4-cell grid, local vs Ray.

The grid is tests/test_engine.py's tiniest real one (scikit-learn digits, small_cnn, 2
epochs, 200 members; 3 aMINT setups + the plain baseline).  Each measurement is a fresh
``activemint grid`` process (as a user runs it) into a fresh folder:

* ``local``: ``--workers 2 --cpus-per-task 1`` (two spawned worker processes);
* ``ray``: ``--engine ray --cpus-per-task 1`` (starts a local Ray instance with all cores,
  runs one task per cell, shuts Ray down);
* ``ray, second call`` / ``local, second call``: the same commands again (every cell done:
  no task, no Ray start; what is left is the command's own start-up);
* ``ray start-up``: ``ray.init`` + ``ray.shutdown`` alone, as the engine calls them.

It also checks that both engines wrote bit-identical weights.  Wall times only as ratios
within one run on a shared machine.

    PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python benchmarks/engines.py --out runs/engines \\
        --md benchmarks/results/engines-cpu.md
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MATRIX = """\
archs: [small_cnn]
setups: [entry, middle, output]
datasets:
  digits: {}
defaults: {recipe: paper, lr: 1.0e-3, batch_size: 32, external_batch_size: 32, seed: 0}
profiles:
  tiny:
    datasets: [digits]
    sizes: {members: 200, external: 300, validation: 100, calibration: 100, eval_nonmembers: 200}
    epochs: {default: 1, small_cnn: 2}
"""
STARTUP = ("import time; t = time.time(); from activemint.engine import start_ray; import ray; start_ray(); "
           "t1 = time.time(); ray.shutdown(); print(f'{t1 - t:.2f} {time.time() - t1:.2f}')")


def timed(cmd: list[str], log: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    t = time.time()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return time.time() - t


def weights(out: Path) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*/model.safetensors"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/engines")
    ap.add_argument("--md", help="write the Markdown table here")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "grid.yaml").write_text(MATRIX)
    py = sys.executable
    grid = [py, "-m", "activemint.cli", "grid", "--matrix", str(out / "grid.yaml"), "--profile", "tiny"]
    rows = []
    rows.append(("local: `--workers 2 --cpus-per-task 1`",
                 timed([*grid, "--out", str(out / "local"), "--workers", "2", "--cpus-per-task", "1"], out / "local.log")))
    rows.append(("ray: `--engine ray --cpus-per-task 1` (local Ray instance, 2 CPUs)",
                 timed([*grid, "--out", str(out / "ray"), "--engine", "ray", "--cpus-per-task", "1"], out / "ray.log")))
    rows.append(("ray, second call (4 cells done: no task, Ray not started)",
                 timed([*grid, "--out", str(out / "ray"), "--engine", "ray", "--cpus-per-task", "1"], out / "ray2.log")))
    rows.append(("local, second call (4 cells done)",
                 timed([*grid, "--out", str(out / "local"), "--workers", "2", "--cpus-per-task", "1"], out / "local2.log")))
    t = time.time()
    res = subprocess.run([py, "-c", STARTUP], check=True, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    init_s, shutdown_s = (float(x) for x in res.stdout.split()[-2:])
    total_startup = time.time() - t
    same = weights(out / "local") == weights(out / "ray") and len(weights(out / "local")) == 4
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
                .splitlines() if ln.startswith("Model name")), platform.processor())
    local_s = rows[0][1]
    lines = [
        f"# Engines: local processes vs Ray tasks ({cpu}, {os.cpu_count()} vCPUs, shared with other jobs)",
        "",
        (f"Command: `PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python benchmarks/engines.py {' '.join(sys.argv[1:])}`.  "
         "4 cells (digits, small_cnn, 2 epochs, 200 members; entry, middle, output + plain), each command a fresh "
         "process into a fresh folder; one run, wall times as ratios to the local engine."),
        "",
        "| what | wall s | / local |",
        "|---|---:|---:|",
        *[f"| {name} | {s:.1f} | {s / local_s:.2f} |" for name, s in rows],
        f"| Ray start-up alone: `ray.init` (2 CPUs) | {init_s:.1f} | {init_s / local_s:.2f} |",
        f"| Ray shut-down alone | {shutdown_s:.1f} | {shutdown_s / local_s:.2f} |",
        f"| python + import ray + init + shutdown | {total_startup:.1f} | {total_startup / local_s:.2f} |",
        "",
        f"Weights of the 4 cells bit-identical between the engines: {'yes' if same else 'NO'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
