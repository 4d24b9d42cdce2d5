"""Issue 9, acceptance 1-2: `train` killed with SIGKILL at many instants resumes to the same bits;
two `train` processes into one --out: exactly one runs.

Both drive the real command line in subprocesses (``python -m activemint.cli train``) on a
tiny real Fashion-MNIST run, with one torch thread.  Kill instants are chosen with the
ACTIVEMINT_KILL_AT=NAME:N hook of :mod:`activemint.io`.  Bit-identical weights are
compared within one machine and one process setup (valid: same code, same CPU, same threads).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FASHION_ROOT, require_fashion_mnist

from activemint.rundir import RunDir
from activemint.training.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 3
TINY = f"""dataset: fashion-mnist
data_root: {FASHION_ROOT}
arch: small_cnn
setup: entry
members: 200
external: 200
validation: 100
calibration: 100
eval_nonmembers: 100
test_samples: 200
epochs: {EPOCHS}
lr: 0.001
seed: 1
"""

# The instants, in the order a run passes them.  A resumed process restarts its counts, so
# each entry is counted within the process it kills: after the first kill every process is a
# --resume of the previous one's directory.  ``write@F`` = right after file F (or checkpoint
# directory F) is in place; ``partial@F`` = F's new content is on disk but not yet renamed.
CHAIN = [
    "write@config.yaml:1",          # before provenance / manifest exist
    "write@provenance.yaml:1",      # before the manifest
    "write@manifest.csv:1",         # before any epoch
    "step:2",                       # mid epoch 1
    "write@metrics.jsonl:2",        # epoch 1 logged (1 = the resume's log reset), not checkpointed
    "write@weights.safetensors:1",  # every pair of file writes of the epoch-1 checkpoint ...
    "write@weights.json:1",
    "partial@train_state.pt:1",
    "write@train_state.pt:1",
    "write@checkpoint.json:1",
    "write@epoch-0001:1",           # ... committed, older ones not yet pruned
    "epoch:1",                      # epoch 2 checkpointed and pruned
    "write@metrics.jsonl:2",        # epoch 3 logged, not checkpointed
    "write@train_state.pt:1",       # epoch 3: weights and state written, manifest not
    "write@epoch-0003:1",           # epoch 3 committed, epoch 2 not yet pruned
    "write@model.safetensors:1",    # the final save, file by file
    "write@model.json:1",
    "partial@scores.npz:1",
    "write@scores.npz:1",
    "partial@metrics.json:1",
    "write@metrics.json:1",         # complete; the resume below re-runs the final save only
]


def cli(args: list[str], *, kill_at: str | None = None, popen: bool = False, timeout: float = 900):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("ACTIVEMINT_KILL_AT", None)
    if kill_at:
        env["ACTIVEMINT_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "activemint.cli", *args, "--threads", "1", "--no-progress"]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def epochs_logged(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] \
        if (run / "metrics.jsonl").exists() else []


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    require_fashion_mnist()
    path = tmp_path_factory.mktemp("crash") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(tiny_config) -> Path:
    """The uninterrupted run."""
    out = tiny_config.parent / "reference"
    r = cli(["train", "--config", str(tiny_config), "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_the_same_bits(tiny_config, reference):
    out = tiny_config.parent / "killed"
    assert len(CHAIN) >= 20
    for i, spec in enumerate(CHAIN):
        args = ["train", "--config", str(tiny_config), "--out", str(out)] + (["--resume"] if i else [])
        r = cli(args, kill_at=spec)
        assert r.returncode == -signal.SIGKILL, f"kill {i} at {spec} was not reached: rc {r.returncode}\n{r.stderr[-3000:]}"
        # After every kill: never half a checkpoint, never a duplicated or skipped log line.
        rd = RunDir(out)
        assert rd.state().kind in ("incomplete", "complete"), (spec, rd.state())
        for c in list_checkpoints(rd.checkpoints):
            c.verify(max_epoch=EPOCHS)
        logged = epochs_logged(out)
        assert logged == list(range(1, len(logged) + 1)), (spec, logged)
    r = cli(["train", "--config", str(tiny_config), "--out", str(out), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]

    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    last = f"checkpoints/epoch-{EPOCHS:04d}/weights.safetensors"
    assert (out / last).read_bytes() == (reference / last).read_bytes()
    assert epochs_logged(out) == list(range(1, EPOCHS + 1))
    ref_log = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    got_log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ref_log, got_log):
        timing = ("seconds", "epoch_seconds")
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    ref_m, got_m = (json.loads((d / "metrics.json").read_text()) for d in (reference, out))
    assert got_m["test_accuracy"] == ref_m["test_accuracy"] and got_m["membership"] == ref_m["membership"]
    assert got_m["epochs_trained"] == EPOCHS
    assert RunDir(out).state().kind == "complete"
    leftovers = [p.name for p in list(out.iterdir()) + list((out / "checkpoints").iterdir())
                 if p.name.endswith(".part") or p.name.startswith((".staging-", ".trash-"))]
    assert leftovers == []


def _wait_stopped(pid: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        if state == "Z":
            raise AssertionError("the first train exited before reaching its stop point")
        time.sleep(0.2)
    raise AssertionError("the first train never reached its stop point")


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_trains_into_one_out_exactly_one_runs(tiny_config):
    out = tiny_config.parent / "contested"
    # The first one stops itself (SIGSTOP) after its first checkpoint, holding the lock.
    first = cli(["train", "--config", str(tiny_config), "--out", str(out)], kill_at="epoch:1:stop", popen=True)
    try:
        _wait_stopped(first.pid)
        before = _snapshot(out)
        second = cli(["train", "--config", str(tiny_config), "--out", str(out), "--seed", "7", "--epochs", "2"])
        assert second.returncode == 2, second.stderr[-3000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "locked by train" in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        assert _snapshot(out) == before  # nothing of the loser is written
        # --resume into a run being written is refused the same way
        third = cli(["train", "--config", str(tiny_config), "--out", str(out), "--resume"])
        assert third.returncode == 2 and f"pid {first.pid}" in third.stderr
        assert _snapshot(out) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    assert "seed: 1" in (out / "config.yaml").read_text()
    assert epochs_logged(out) == list(range(1, EPOCHS + 1))
    assert RunDir(out).state().kind == "complete"
