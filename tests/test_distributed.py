"""Issue 11, acceptance 3: one training run under torchrun, two CPU processes (gloo).

* ``torchrun --nproc_per_node 2 -m activemint train ...`` runs to the end and writes one
  complete run directory (rank 0 writes, rank 0 alone reports);
* a rank killed mid-run (SIGKILL of rank 1 while rank 0 holds the epoch-1 checkpoint) is
  resumed by ``torchrun ... --resume`` to the same bits as the uninterrupted two-process run;
* the figures of a two-process run match those of one process with the same global batch.

The processes are started the way a user starts them, with the venv's torchrun
(``python -m torch.distributed.run --standalone``, a free rendezvous port), one torch thread
each.  The comparison with one process uses ``tests/ddp_entry.py`` (the same command line
plus ``tiny_nobn``, a CNN without BatchNorm): BatchNorm is the one intended difference of a
torchrun run (batch statistics per rank, see docs/scaling.md, torchrun section), so without it the
two-process run computes the single-process run's steps up to floating-point order.
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
ENTRY = REPO / "tests" / "ddp_entry.py"
EPOCHS = 2
TINY = f"""dataset: fashion-mnist
data_root: {FASHION_ROOT}
arch: small_cnn
setup: entry
members: 256
external: 256
validation: 100
calibration: 100
eval_nonmembers: 100
test_samples: 200
epochs: {EPOCHS}
batch_size: 64
lr: 0.001
seed: 1
"""
# Without BatchNorm (also not in the MINT head).  485 members: the last batch of each epoch (37)
# splits 18 / 19, and mint_members 0.8 gives the ranks unequal numbers of members the MINT loss
# sees, so the loss weights of unequal shards are exercised; augmentation on: its random shifts
# are drawn for the global batch and sliced per rank.
NOBN = f"""dataset: fashion-mnist
data_root: {FASHION_ROOT}
arch: tiny_nobn
setup: entry
head_norm: none
members: 485
mint_members: 0.8
external: 512
validation: 200
calibration: 100
eval_nonmembers: 500
test_samples: 1000
epochs: 3
batch_size: 64
lr: 0.002
augment: true
select: last
seed: 1
"""


def _env(kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    for k in ("ACTIVEMINT_KILL_AT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if kill_at:
        env["ACTIVEMINT_KILL_AT"] = kill_at
    return env


def run(target: list[str], args: list[str], *, nproc: int = 1, kill_at: str | None = None, popen: bool = False):
    """``target`` (``-m activemint`` or a script) with ``args``: one process, or ``nproc`` under torchrun."""
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     "--nproc_per_node", str(nproc)]
    cmd = [*launcher, *target, *args, "--threads", "1", "--no-progress"]
    if popen:
        return subprocess.Popen(cmd, env=_env(kill_at), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, check=False, env=_env(kill_at), cwd=REPO, capture_output=True, text=True, timeout=900)


def workers(agent: int) -> dict[int, int]:
    """rank -> pid of the worker processes torchrun's agent ``agent`` started."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) != agent:
                continue
            env = dict(kv.split("=", 1) for kv in (d / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            out[int(env["RANK"])] = int(d.name)
    return out


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def epochs_logged(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in RunDir(run_dir).read_log()]


def figures(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def no_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "epoch_seconds")} for r in records]


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    require_fashion_mnist()
    d = tmp_path_factory.mktemp("ddp")
    (d / "tiny.yaml").write_text(TINY)
    (d / "nobn.yaml").write_text(NOBN)
    return d


@pytest.fixture(scope="module")
def two_process_run(configs) -> tuple[Path, subprocess.CompletedProcess]:
    out = configs / "ddp"
    r = run(["-m", "activemint"], ["train", "--config", str(configs / "tiny.yaml"), "--out", str(out)], nproc=2)
    assert r.returncode == 0, r.stderr[-4000:]
    return out, r


@pytest.mark.slow
def test_torchrun_two_processes_write_one_complete_run(two_process_run):
    out, r = two_process_run
    rd = RunDir(out)
    assert rd.state().kind == "complete", rd.state()
    assert epochs_logged(out) == list(range(1, EPOCHS + 1))
    assert [c.epoch for c in list_checkpoints(rd.checkpoints)][-1] == EPOCHS
    for c in list_checkpoints(rd.checkpoints):
        c.verify(max_epoch=EPOCHS)
    m = figures(out)
    assert m["epochs_trained"] == EPOCHS and 0.0 <= m["test_accuracy"] <= 1.0 and "membership" in m
    assert r.stdout.count("=== activemint run summary ===") == 1, r.stdout  # rank 0 alone reports
    leftovers = [p.name for p in list(out.iterdir()) + list(rd.checkpoints.iterdir())
                 if p.name.endswith(".part") or p.name.startswith((".staging-", ".trash-"))]
    assert leftovers == []


@pytest.mark.slow
def test_torchrun_killed_rank_resumes_to_the_same_bits(configs, two_process_run):
    reference, _ = two_process_run
    out = configs / "killed"
    args = ["train", "--config", str(configs / "tiny.yaml"), "--out", str(out)]
    # Both ranks stop themselves (SIGSTOP) right after the epoch-1 checkpoint; rank 1 is then killed.
    p = run(["-m", "activemint"], args, nproc=2, kill_at="epoch:1:stop", popen=True)
    try:
        deadline = time.time() + 600
        while True:
            w = workers(p.pid)
            if len(w) == 2 and all(_state(pid) == "T" for pid in w.values()):
                break
            assert p.poll() is None, p.communicate()[1][-4000:]
            assert time.time() < deadline, "the workers never reached their stop point"
            time.sleep(0.2)
        assert [c.epoch for c in list_checkpoints(RunDir(out).checkpoints)] == [1]
        os.kill(w[1], signal.SIGKILL)
        os.kill(w[0], signal.SIGCONT)
        _, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0, err[-4000:]
    assert RunDir(out).state().kind == "incomplete", RunDir(out).state()
    assert epochs_logged(out) == [1]

    r = run(["-m", "activemint"], args + ["--resume"], nproc=2)
    assert r.returncode == 0, r.stderr[-4000:]
    assert RunDir(out).state().kind == "complete"
    # Same machine, same process layout: the resumed run is the uninterrupted one, bit for bit.
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert no_timing(RunDir(out).read_log()) == no_timing(RunDir(reference).read_log())
    got, ref = figures(out), figures(reference)
    assert got["test_accuracy"] == ref["test_accuracy"] and got["membership"] == ref["membership"]


@pytest.mark.slow
def test_torchrun_matches_one_process_with_the_same_global_batch(configs):
    args = ["train", "--config", str(configs / "nobn.yaml")]
    one = run([str(ENTRY)], args + ["--out", str(configs / "nobn-1")])
    assert one.returncode == 0, one.stderr[-4000:]
    two = run([str(ENTRY)], args + ["--out", str(configs / "nobn-2")], nproc=2)
    assert two.returncode == 0, two.stderr[-4000:]
    a, b = configs / "nobn-1", configs / "nobn-2"
    assert RunDir(b).state().kind == "complete"
    # Splits: the same samples in every role.
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()

    # Training losses.  Each step computes the single-process step up to floating-point order
    # (float32, ~1e-7 relative), and Adam lets such differences grow over the steps (a near-zero
    # gradient's rounding can flip the sign of its first update).  Observed on this config (AMD
    # EPYC, closing note of issue 11): epoch 1 (8 steps) 2e-7 / 2.4e-6 relative (task / MINT
    # loss), epoch 3 <= 5e-5.  Bounds: 3e-5 for epoch 1 (>= 12x the observed), 1e-3 after (20x).
    # What a bug does: normalisers not all-reduced gives 8.8e-5 / 2.9e-4 in epoch 1, caught.
    la, lb = RunDir(a).read_log(), RunDir(b).read_log()
    for ra, rb in zip(la, lb, strict=True):
        tol = 3e-5 if ra["epoch"] == 1 else 1e-3
        for k in ("task_loss", "mint_loss"):
            assert abs(ra[k] - rb[k]) <= tol * abs(ra[k]), (k, ra, rb)

    # Figures.  Observed: test accuracy 0.295 vs 0.296 (one of 1000 images), AUC 0.5304 vs
    # 0.5314.  Tolerance 0.02 for both (20x the observed): below the figures' own sampling SE
    # on these sets (accuracy sqrt(.3 * .7 / 1000) = 0.0145; AUC <= sqrt(1 / (4 * 485)) = 0.0227),
    # so no conclusion drawn from a figure can differ between the two runs.  Not a statistical
    # test: on one machine the difference is a deterministic function of the code.
    fa, fb = figures(a), figures(b)
    assert abs(fa["test_accuracy"] - fb["test_accuracy"]) <= 0.02, (fa["test_accuracy"], fb["test_accuracy"])
    assert abs(fa["membership"]["auc"] - fb["membership"]["auc"]) <= 0.02, (fa["membership"], fb["membership"])


# ------------------------------------------------------------------ fast checks of the pieces
def _as_rank(monkeypatch, r: int, w: int) -> None:
    from activemint.training import distributed

    monkeypatch.setattr(distributed, "is_distributed", lambda: w > 1)
    monkeypatch.setattr(distributed, "rank", lambda: r)
    monkeypatch.setattr(distributed, "world", lambda: w)


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_shards_cover_the_global_batch_and_shares_give_its_mean(monkeypatch, w):
    import numpy as np

    from activemint.training import distributed

    rng = np.random.default_rng(w)
    for n in (w, w + 1, 37, 64, 129):
        losses = rng.random(n)
        parts, weighted = [], 0.0
        for r in range(w):
            _as_rank(monkeypatch, r, w)
            s = distributed.shard(n)
            assert s.stop - s.start in (n // w, -(-n // w))  # sizes differ by at most one
            parts.extend(range(n)[s])
            weighted += distributed.share(s.stop - s.start, n) * losses[s].mean()
        assert parts == list(range(n))  # contiguous, in rank order, each sample once
        # DDP averages over ranks: the mean of the weighted shard means is the global mean.
        # float64 weighted means of the same numbers in another order: error ~ n x 1.1e-16 x |loss| (~1e-14); 1e-12 holds.
        assert abs(weighted / w - losses.mean()) < 1e-12


def test_augmentation_of_the_shards_is_the_augmentation_of_the_global_batch(monkeypatch):
    import torch

    from activemint.training import distributed
    from activemint.training.batches import random_shift_flip

    x = torch.randn(37, 1, 8, 8)
    whole = random_shift_flip(x, flip=True, generator=torch.Generator().manual_seed(5))
    pieces = []
    for r in range(3):
        _as_rank(monkeypatch, r, 3)
        s = distributed.shard(len(x))
        pieces.append(random_shift_flip(x[s], flip=True, generator=torch.Generator().manual_seed(5), part=(s, len(x))))
    assert torch.equal(torch.cat(pieces), whole)
