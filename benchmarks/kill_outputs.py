"""SIGKILL each output-writing command at random instants; check what is left (issue 25, acceptance 2).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/kill_outputs.py --work /tmp/kills --kills 10 \
        --report benchmarks/results/kill-outputs-cpu.md

Trains a tiny aMINT run and its plain twin (Fashion-MNIST, small_cnn, 2 epochs), then for each of
``score -o``, ``robustness``, ``power --json``, ``report``, ``audit`` and ``compare``: writes a
previous output, times one full run of the command (T), and ``--kills`` times starts it with other
options (so the new output differs from the old), sleeps a uniform random time in [0, T] and
SIGKILLs it.  After each kill the output must be absent, the previous output byte for byte, or
complete; then the command runs once more undisturbed and nothing it or the killed one left
(``.NAME.tmp-*``, ``.NAME.old-*``, ``.NAME.*.part``) may remain.  The seed fixes the instants.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

FASHION = "/usr/share/datasets/fashion-mnist"
TINY = ["--dataset", "fashion-mnist", "--data-root", FASHION, "--arch", "small_cnn", "--setup", "entry",
        "--members", "200", "--external", "200", "--validation", "100", "--calibration", "300",
        "--eval-nonmembers", "100", "--epochs", "2", "--lr", "1e-3", "--seed", "5", "--threads", "1", "--no-progress"]


def commands(run: Path, plain: Path, work: Path) -> dict[str, tuple[Path, callable]]:
    """name -> (output path, variant -> argv)."""
    return {
        "score -o": (work / "s.csv", lambda v: ["score", str(run), "split:members", *(["split:calibration"] if v else []),
                                                "-o", str(work / "s.csv"), "--device", "cpu"]),
        "robustness": (work / "rob", lambda v: ["robustness", str(run), "--out", str(work / "rob"), "--transforms",
                                                "hflip,jpeg", "--bootstrap", str(5 + v), "--max-samples", "100"]),
        "power --json": (work / "p.json", lambda v: ["power", str(run), "--draws", "50", "--size", "20", "--seed", str(v),
                                                     "--json", str(work / "p.json")]),
        "report": (work / "r.html", lambda v: ["report", str(run if v else plain), "--out", str(work / "r.html")]),
        "audit": (work / "aud", lambda v: ["audit", str(run), "split:members" if v else "split:calibration", "--out",
                                           str(work / "aud"), "--force", "--device", "cpu"]),
        "compare": (work / "cmp", lambda v: ["compare", "--active-run", str(run), "--plain-run", str(plain),
                                             "--reference-models", "0", "--passive-epochs", "1", "--gmint-epochs", str(1 + v),
                                             "--cache-dir", str(work / "cache"), "--out", str(work / "cmp"), "--no-progress"]),
    }


def snapshot(p: Path):
    if p.is_dir():
        return {q.name: q.read_bytes() for q in sorted(p.iterdir()) if q.is_file()}
    return p.read_bytes() if p.exists() else None


def looks_complete(out: Path, got, full) -> bool:
    """``got`` is a whole output like ``full`` (the same command's undisturbed output; timings inside may differ)."""
    if isinstance(full, dict) or isinstance(got, dict):
        return isinstance(got, dict) and isinstance(full, dict) and set(got) == set(full) and all(got.values())
    if out.suffix == ".json":
        try:
            return isinstance(json.loads(got), dict)
        except ValueError:
            return False
    if out.suffix == ".html":
        return got.rstrip().endswith(b"</html>")
    return got.endswith(b"\n") and got.count(b"\n") == full.count(b"\n")


def leftovers(p: Path) -> list[str]:
    return sorted(q.name for q in p.parent.iterdir() if q.name.startswith(f".{p.name}.") and not q.name.endswith(".lock"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="scratch folder (emptied)")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="comma-separated command names (default all six)")
    ap.add_argument("--report", help="also write the table (Markdown) here")
    a = ap.parse_args(argv)
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "activemint"]

    def call(args, **kw):
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, **kw)

    run, plain = work / "run", work / "plain"
    for d, extra in ((run, []), (plain, ["--mint", "off"])):
        r = call(["train", *TINY, *extra, "--out", str(d)])
        assert r.returncode == 0, r.stderr
    rng = random.Random(a.seed)
    rows = []
    for name, (out, argv_of) in commands(run, plain, work).items():
        if a.only and name not in a.only.split(","):
            continue
        r = call(argv_of(0))
        assert r.returncode == 0, (name, r.stderr)
        full_out = {0: snapshot(out)}
        t0 = time.perf_counter()
        r = call(argv_of(1))
        full = time.perf_counter() - t0
        assert r.returncode == 0, (name, r.stderr)
        full_out[1] = snapshot(out)
        outcome = {"absent": 0, "previous": 0, "complete": 0, "finished": 0, "BAD": 0}
        bad = []
        for k in range(a.kills):
            old_v, new_v = k % 2, 1 - k % 2
            r = call(argv_of(old_v))  # the previous output; the killed run writes the other variant
            assert r.returncode == 0, (name, r.stderr)
            previous = snapshot(out)
            at = rng.uniform(0, full)
            p = subprocess.Popen([*cli, *argv_of(new_v)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(at)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            rc = p.wait()
            got = snapshot(out)
            if rc == 0:
                kind = "finished"
            elif got is None:
                kind = "absent"
            elif got == previous:
                kind = "previous"
            elif looks_complete(out, got, full_out[new_v]):
                kind = "complete"
            else:
                kind = "BAD"
                bad.append(f"kill at {at:.2f} s: {sorted(got) if isinstance(got, dict) else len(got)} bytes")
            outcome[kind] += 1
            left = leftovers(out)
            r = call(argv_of(1 - k % 2))
            if r.returncode != 0 or leftovers(out):
                outcome["BAD"] += 1
                bad.append(f"rerun after kill at {at:.2f} s: rc {r.returncode}, left {leftovers(out)} (had {left})")
        rows.append((name, full, outcome, bad))
        print(f"{name:13s} T={full:5.1f} s  " + "  ".join(f"{k} {v}" for k, v in outcome.items()) + ("  " + "; ".join(bad) if bad else ""),
              flush=True)
    lines = ["| command | one full run T (s) | killed: absent | previous | complete | finished before the kill | BAD |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {t:.1f} | {o['absent']} | {o['previous']} | {o['complete']} | {o['finished']} | {o['BAD']} |"
              for n, t, o, _ in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        Path(a.report).write_text(f"`python benchmarks/kill_outputs.py --kills {a.kills} --seed {a.seed}`\n\n" + text)
    return 1 if any(o["BAD"] for _, _, o, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
