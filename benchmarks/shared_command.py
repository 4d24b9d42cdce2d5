"""Any command, idle vs. one other CPU-bound process (issue 12, acceptance 4).

Runs a shell command ``--repeats`` times in each scenario, alternating (idle, shared, idle,
shared ...), and reports the wall times and their ratio from this one run:

1. ``idle``: the command alone;
2. ``shared``: the same command while one other CPU-bound process runs (``--hog python``, a
   pure-Python busy loop, or ``--hog torch``, a torch training loop on all cores), started
   just before and killed just after.

The command runs in ``--cwd`` (default: the repository root) with this process's environment
minus ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` (the library sets its own thread policy).
Examples (the fast test subset; ``.ci/run`` on a fresh clone, set-up included)::

    python benchmarks/shared_command.py --name "fast subset" \\
        --command '.venv/bin/python -m pytest -q -m "not slow" -p no:cacheprovider' --out benchmarks/results/shared-fast-subset.md
    git clone -q . /tmp/ci-clone && python benchmarks/shared_command.py --name ".ci/run" --cwd /tmp/ci-clone \\
        --command 'git clean -xdfq && bash .ci/run' --out benchmarks/results/shared-ci.md

``git clean -xdfq`` matters for the test suite: its trained fixtures are cached under
``.cache/test-runs`` in the clone, so without it the second scenario reuses the first's.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from main_job import HOGS, cpu_model, timed_subprocess  # noqa: E402  (benchmarks/ is not a package)


def run(command: str, cwd: Path, env: dict[str, str], hog: list[str] | None) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds of the command and its children, exit status, last output line)."""
    wall, cpu, rc, out = timed_subprocess(["bash", "-c", command], cwd, env, hog)
    lines = [x for x in out.splitlines() if x.strip()]
    return wall, cpu, rc, lines[-1] if lines else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--command", required=True, help="shell command to time")
    ap.add_argument("--name", help="what the command is, for the report (default: the command)")
    ap.add_argument("--cwd", default=str(ROOT), help="directory to run it in (default: the repository root)")
    ap.add_argument("--hog", choices=sorted(HOGS), default="python", help="the other CPU-bound process")
    ap.add_argument("--repeats", type=int, default=1, help="idle/shared pairs")
    ap.add_argument("--out", help="write the Markdown result here")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    load0 = os.getloadavg()
    rows = []
    for i in range(a.repeats):
        for scenario in ("idle", "shared"):
            wall, cpu, rc, last = run(a.command, Path(a.cwd), env, HOGS[a.hog] if scenario == "shared" else None)
            rows.append((i + 1, scenario, wall, cpu, rc, last))
            print(f"pair {i + 1} {scenario}: {wall:.1f} s wall, {cpu:.1f} CPU s, exit {rc}: {last}", flush=True)
    ratios = [s[2] / i[2] for i, s in zip(rows[0::2], rows[1::2])]
    name = a.name or a.command
    lines = [
        f"# {name}: idle vs. one other CPU-bound process",
        "",
        f"Command: `python benchmarks/shared_command.py {shlex.join(sys.argv[1:])}`",
        "",
        f"Timed: `{a.command}` in `{a.cwd}` (environment without OMP_WAIT_POLICY / GOMP_SPINCOUNT: the library's "
        f"own thread policy). Other process (`shared`): {a.hog} busy loop. CPU: {cpu_model()}, {os.cpu_count()} "
        f"logical CPUs; load average before {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}, after "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + ".",
        "",
        "| pair | scenario | wall s | CPU s | exit | last line of output |",
        "|---|---|---|---|---|---|",
        *[f"| {p} | {s} | {w:.1f} | {c:.1f} | {rc} | {last.replace('|', '/')[:120]} |" for p, s, w, c, rc, last in rows],
        "",
        "Shared / idle wall time: " + ", ".join(f"{r:.2f}x" for r in ratios) + " (issue 12 acceptance 4: <= 2x).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0 if all(r[4] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
