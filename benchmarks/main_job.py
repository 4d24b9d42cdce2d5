"""Acceptance 1 of issue 12: README's main job, idle vs. one other CPU-bound process.

Runs README's main-job command twice in one invocation, each into a fresh temporary run
directory, and reports both wall times and their ratio:

1. ``idle``: the command alone;
2. ``shared``: the same command while one other CPU-bound process runs (a pure-Python busy
   loop, ``--hog python``, or a torch training loop on all cores, ``--hog torch``), started
   just before and killed just after.

The two scenarios alternate (``--repeats`` > 1 gives idle, shared, idle, shared ...), so a
slow drift of the machine's background load hits both.  The command is the user's: its
environment is this process's environment minus ``OMP_WAIT_POLICY`` unless ``--keep-env``
(the library sets its own policy; the benchmark checks that it needs no help from the shell).

    python benchmarks/main_job.py --out benchmarks/results/main-job-cpu.md

takes about (idle time) x (1 + ratio): ~10 min on an idle 2-core machine.  A quick check
that it works: ``--job "train --members 200 --external 400 --validation 100 --calibration 100
--eval-nonmembers 100 --epochs 1 --baseline" --out /tmp/main-job-check.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# README's main job (minus `bash scripts/setup.sh &&` and with `python -m activemint.cli`
# for `.venv/bin/activemint`); keep in step with README.md.
MAIN_JOB = ("train --dataset fashion-mnist --arch small_cnn --setup entry --members 2000 --external 8000 "
            "--validation 2000 --calibration 2000 --eval-nonmembers 2000 --epochs {epochs} --lr 1e-3 --schedule cosine --baseline")
DEFAULT_EPOCHS = 17

HOGS = {
    "python": [sys.executable, "-c", "while True: pass"],
    "torch": [sys.executable, "-c",
              "import torch\nm=torch.nn.Sequential(torch.nn.Conv2d(1,32,3),torch.nn.ReLU(),torch.nn.Flatten(),"
              "torch.nn.Linear(32*26*26,10))\no=torch.optim.Adam(m.parameters())\nx=torch.randn(64,1,28,28)\n"
              "y=torch.randint(0,10,(64,))\nwhile True:\n o.zero_grad(); torch.nn.functional.cross_entropy(m(x),y)."
              "backward(); o.step()"],
}


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed_subprocess(cmd: list[str], cwd: Path, env: dict[str, str], hog: list[str] | None) -> tuple[float, float, int, str]:
    """Run ``cmd`` (with ``hog``, another CPU-bound process, running from 1 s before until it
    ends): (wall seconds, CPU seconds of ``cmd`` and its children, exit status, its output)."""
    p_hog = subprocess.Popen(hog, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if hog else None
    try:
        if p_hog:
            time.sleep(1.0)  # the hog is running before the command starts
        before, t0 = os.times(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        wall, after = time.perf_counter() - t0, os.times()
    finally:
        if p_hog:
            p_hog.kill()
            p_hog.wait()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, proc.returncode, proc.stdout


def run_job(argv: list[str], env: dict[str, str], hog: list[str] | None) -> tuple[float, float, int, dict]:
    """(wall seconds, CPU seconds of the job, exit status, the run's figures) of one main job."""
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        cmd = [sys.executable, "-m", "activemint.cli", *argv, "--no-progress", "--out", str(Path(tmp) / "run")]
        wall, cpu, rc, _ = timed_subprocess(cmd, ROOT, env, hog)
        figures = {}
        mpath = Path(tmp) / "run" / "metrics.json"
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            mem = m.get("membership") or {}
            figures = {"auc": mem.get("auc"), "tpr1": mem.get("tpr_at_1pct_fpr"), "tpr01": mem.get("tpr_at_0_1pct_fpr"),
                       "acc": m.get("test_accuracy"), "baseline_acc": m.get("baseline_test_accuracy"),
                       "epoch": m.get("selected_epoch")}
        return wall, cpu, rc, figures


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs of the main job (README: {DEFAULT_EPOCHS})")
    ap.add_argument("--hog", choices=sorted(HOGS), default="python", help="the other CPU-bound process")
    ap.add_argument("--repeats", type=int, default=1, help="idle/shared pairs")
    ap.add_argument("--job", help="another `activemint` command line to time instead of the main job "
                    "(a quick check of this script: a tiny train command)")
    ap.add_argument("--keep-env", action="store_true", help="pass OMP_WAIT_POLICY from this shell to the job")
    ap.add_argument("--out", help="write the Markdown result here")
    a = ap.parse_args()
    job = a.job or MAIN_JOB.format(epochs=a.epochs)
    argv = shlex.split(job)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    if not a.keep_env:
        env.pop("OMP_WAIT_POLICY", None)
    load0 = os.getloadavg()
    rows = []
    for i in range(a.repeats):
        for scenario in ("idle", "shared"):
            wall, cpu, rc, fig = run_job(argv, env, HOGS[a.hog] if scenario == "shared" else None)
            rows.append((i + 1, scenario, wall, cpu, rc, fig))
            print(f"pair {i + 1} {scenario}: {wall:.1f} s wall, {cpu:.1f} CPU s, exit {rc}, {fig}", flush=True)
    idle = [r[2] for r in rows if r[1] == "idle"]
    shared = [r[2] for r in rows if r[1] == "shared"]
    ratios = [s / i for i, s in zip(idle, shared)]
    lines = [
        "# README's main job: idle vs. one other CPU-bound process",
        "",
        f"Command: `python benchmarks/main_job.py {' '.join(sys.argv[1:])}`",
        "",
        f"Job: `activemint {job}` (environment without OMP_WAIT_POLICY"
        f"{' (kept from the shell)' if a.keep_env else ''}: the library's own thread policy).",
        f"Other process (`shared`): {a.hog} busy loop. CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; "
        f"load average before {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}, after "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + ".",
        "",
        "| pair | scenario | wall s | job CPU s | exit | membership AUC | TPR@1%FPR | TPR@0.1%FPR | test acc | baseline test acc | selected epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {p} | {s} | {w:.1f} | {c:.1f} | {rc} | " + " | ".join(_fmt(f.get(k)) for k in ("auc", "tpr1", "tpr01", "acc", "baseline_acc", "epoch")) + " |"
          for p, s, w, c, rc, f in rows],
        "",
        "Shared / idle wall time: " + ", ".join(f"{r:.2f}x" for r in ratios)
        + " (acceptance: <= 2x; idle wall <= 180 s).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0 if all(r[4] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
