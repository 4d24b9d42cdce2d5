"""Issue 9: run directories survive corruption, concurrency and hostile edits with one clear line.

A tiny real run (Fashion-MNIST, small_cnn, 2 epochs) is trained once for the module; each
test works on a copy of it.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RUN
from conftest import refused_in_one_line as one_line_error

from activemint import rundir
from activemint.cli import main
from activemint.io import file_sha256, kill_passes, kill_point, reset_kill_points
from activemint.rundir import RunDir, RunError
from activemint.training import TrainConfig, Trainer
from activemint.training.checkpoint import CheckpointError, list_checkpoints

REPO = Path(__file__).resolve().parent.parent
TINY = TINY_RUN


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    return d


def resume_args(d: Path) -> list[str]:
    return ["train", "--config", str(d / "config.yaml"), "--out", str(d), "--resume", "--no-progress"]


# ----------------------------------------------------------------------------- modes
def test_every_written_file_has_ordinary_permissions(run, capsys):
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    assert main(["report", str(run)]) == 0
    assert main(["audit", str(run), "split:eval_nonmembers", "--out", str(run.parent / "audit"), "--device", "cpu"]) == 0
    capsys.readouterr()
    files = [p for p in list(run.rglob("*")) + list((run.parent / "audit").rglob("*")) if p.is_file()]
    names = {p.name for p in files}
    assert {"model.safetensors", "report.html", "scores.npz", "metrics.json", "train_state.pt", "calibration.json",
            "samples.csv", "config.yaml", "manifest.csv"} <= names
    wrong = {str(p.relative_to(run.parent)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != want}
    assert wrong == {}
    assert (run.parent / "audit").stat().st_mode & 0o777 == 0o777 & ~umask


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_is_one_verified_directory(run):
    (ck,) = list_checkpoints(RunDir(run).checkpoints)  # select=last keeps only the last epoch
    assert ck.epoch == 2
    assert sorted(p.name for p in ck.dir.iterdir()) == ["checkpoint.json", "train_state.pt", "weights.json",
                                                         "weights.safetensors"]
    doc = ck.verify(max_epoch=2)
    assert [r["epoch"] for r in doc["log"]] == [1, 2]


def test_flipped_bit_in_a_checkpoint_is_refused(run, capsys):
    w = run / "checkpoints/epoch-0002/weights.safetensors"
    b = bytearray(w.read_bytes())
    b[-3] ^= 0x01  # one mantissa bit of the last tensor
    w.write_bytes(bytes(b))
    rc = main(resume_args(run))
    one_line_error(capsys, rc, "weights.safetensors is corrupt", "SHA-256")
    assert not (run / "metrics.json").exists()  # refused before training: the run stays incomplete


def test_flipped_bit_in_train_state_is_refused(run, capsys):
    s = run / "checkpoints/epoch-0002/train_state.pt"
    b = bytearray(s.read_bytes())
    b[len(b) // 2] ^= 0x10
    s.write_bytes(bytes(b))
    one_line_error(capsys, main(resume_args(run)), "train_state.pt is corrupt")


def _rewrite_state(run: Path, **changes) -> None:
    """Edit train_state.pt and re-sign it in checkpoint.json (a consistent, hostile edit)."""
    ck = run / "checkpoints/epoch-0002"
    state = torch.load(ck / "train_state.pt", weights_only=True)
    state.update(changes)
    buf = io.BytesIO()
    torch.save(state, buf)
    (ck / "train_state.pt").write_bytes(buf.getvalue())
    doc = json.loads((ck / "checkpoint.json").read_text())
    doc["files"]["train_state.pt"] = file_sha256(ck / "train_state.pt")
    (ck / "checkpoint.json").write_text(json.dumps(doc))


def test_epoch_999_in_train_state_is_refused(run, capsys):
    _rewrite_state(run, epoch=999)
    one_line_error(capsys, main(resume_args(run)), "epoch 999", "refusing")
    assert not (run / "metrics.json").exists()


def test_checkpoint_epoch_outside_config_is_refused(run, capsys):
    ck = run / "checkpoints/epoch-0002"
    for name in ("checkpoint.json", "weights.json"):
        doc = json.loads((ck / name).read_text())
        doc["epoch"] = 999
        (ck / name).write_text(json.dumps(doc))
    doc = json.loads((ck / "checkpoint.json").read_text())
    doc["files"]["weights.json"] = file_sha256(ck / "weights.json")
    (ck / "checkpoint.json").write_text(json.dumps(doc))
    ck.rename(run / "checkpoints/epoch-0999")
    one_line_error(capsys, main(resume_args(run)), "epoch 999, outside 1..2")


def test_structurally_wrong_train_state_is_refused(run, capsys):
    ck = run / "checkpoints/epoch-0002"
    buf = io.BytesIO()
    torch.save({"epoch": 2}, buf)
    (ck / "train_state.pt").write_bytes(buf.getvalue())
    doc = json.loads((ck / "checkpoint.json").read_text())
    doc["files"]["train_state.pt"] = file_sha256(ck / "train_state.pt")
    (ck / "checkpoint.json").write_text(json.dumps(doc))
    one_line_error(capsys, main(resume_args(run)), "not a valid training state", "missing optimizer")


def test_resume_of_a_complete_run_reproduces_it(run):
    before = (run / "model.safetensors").read_bytes()
    result = Trainer(TrainConfig(**TINY), run, progress=False, log=lambda m: None).run(resume=True)
    assert (run / "model.safetensors").read_bytes() == before
    assert result.metrics["epochs_trained"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert RunDir(run).state().kind == "complete"


# ----------------------------------------------------------------------------- states
def test_metrics_json_binds_the_final_files(run):
    m = json.loads((run / "metrics.json").read_text())
    assert m["run_format"] == rundir.RUN_FORMAT
    assert set(m["files"]) == {"model.safetensors", "model.json", "scores.npz"}
    for name, digest in m["files"].items():
        assert file_sha256(run / name) == digest
    with np.load(run / "scores.npz") as z:
        assert str(z["model_sha256"]) == m["files"]["model.safetensors"]


@pytest.mark.parametrize("command", ["audit", "report", "evaluate", "score"])
def test_truncated_scores_give_one_line(run, capsys, command):
    s = run / "scores.npz"
    s.write_bytes(s.read_bytes()[: s.stat().st_size // 2])
    args = {"audit": ["audit", str(run), "split:eval_nonmembers", "--out", str(run.parent / "a"), "--device", "cpu"],
            "report": ["report", str(run)], "evaluate": ["evaluate", str(run), "--device", "cpu"],
            "score": ["score", str(run), "split:members", "--device", "cpu"]}[command]
    one_line_error(capsys, main(args), "scores.npz does not match metrics.json")
    assert not (run.parent / "a").exists() and not (run / "report.html").exists()


def test_truncated_scores_of_an_older_run_give_one_line(run, capsys):
    """metrics.json without file digests (written before run format 2, or with them removed): the
    run reads as inconsistent, never as complete without checks (issue 25, S2); the npz reader
    itself still refuses the cut file."""
    m = json.loads((run / "metrics.json").read_text())
    del m["files"]
    (run / "metrics.json").write_text(json.dumps(m))
    s = run / "scores.npz"
    s.write_bytes(s.read_bytes()[:100])
    one_line_error(capsys, main(["report", str(run)]), "run inconsistent", "'files'")
    one_line_error(capsys, main(["audit", str(run), "split:members", "--out", str(run.parent / "a"), "--device", "cpu"]),
                   "run inconsistent", "'files'")
    with pytest.raises(RunError, match="scores.npz is not a readable .npz file"):
        RunDir(run).read_scores()


def test_scores_of_another_model_are_refused(run, capsys):
    with np.load(run / "scores.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model_sha256"] = np.asarray("0" * 64)
    np.savez(run / "scores.npz", **arrays)
    m = json.loads((run / "metrics.json").read_text())
    m["files"]["scores.npz"] = file_sha256(run / "scores.npz")  # re-signed: only the binding is wrong
    (run / "metrics.json").write_text(json.dumps(m))
    one_line_error(capsys, main(["audit", str(run), "split:members", "--out", str(run.parent / "a"), "--device", "cpu"]),
                   "was made by another model")
    assert not (run.parent / "a").exists() and not (run / "calibration.json").exists()


def test_another_model_beside_the_metrics_is_refused(run, tiny_run, capsys):
    w = run / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[-5] ^= 0x02
    w.write_bytes(bytes(b))
    one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), "run inconsistent",
                   "model.safetensors does not match metrics.json")


def test_interrupted_final_save_reads_as_incomplete(run, capsys):
    (run / "metrics.json").unlink()
    s = run / "scores.npz"
    s.write_bytes(s.read_bytes()[:100])
    assert RunDir(run).state().kind == "incomplete"
    for args in (["evaluate", str(run)], ["audit", str(run), "split:members", "--out", str(run.parent / "a")]):
        one_line_error(capsys, main([*args, "--device", "cpu"]), "run incomplete", "--resume")
    assert main(["report", str(run)]) == 0  # learning curves only, never the truncated scores
    html = (run / "report.html").read_text()
    assert "has not finished" in html and "--resume" in html and "Score distributions" not in html
    # and --resume finishes it
    capsys.readouterr()
    assert main(resume_args(run)) == 0
    assert RunDir(run).state().kind == "complete"


def test_run_in_progress_is_recognised(run, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom activemint.rundir import RunDir\n"
         "with RunDir(sys.argv[1]).lock('train'):\n    print('held', flush=True)\n    time.sleep(120)\n", str(run)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert RunDir(run).state().kind == "in progress"
        for args in (["evaluate", str(run), "--device", "cpu"], ["score", str(run), "split:members", "--device", "cpu"],
                     ["audit", str(run), "split:members", "--out", str(run.parent / "a"), "--device", "cpu"]):
            one_line_error(capsys, main(args), "run in progress", f"pid {holder.pid}")
        one_line_error(capsys, main(resume_args(run)), "is locked by train", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert RunDir(run).state().kind == "complete"  # a dead holder's lock is free


# ---------------------------------------------------------------------- audit --force
def _audit(run: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(run), "split:eval_nonmembers", "--out", str(out), "--device", "cpu", *extra])


def test_audit_force_replaces_only_a_previous_audit(run, capsys):
    out = run.parent / "audit"
    assert _audit(run, out) == 0
    assert (out / ".activemint-audit").is_file()
    first = (out / "audit.json").read_text()
    assert _audit(run, out) == 2  # not without --force
    assert _audit(run, out, "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == [".activemint-audit", "audit.json", "report.html", "samples.csv",
                                                     "summary.md"]
    assert json.loads((out / "audit.json").read_text())["created"] >= json.loads(first)["created"]
    capsys.readouterr()
    # a previous audit folder with a file of the user's is not replaced
    (out / "notes.txt").write_text("mine")
    one_line_error(capsys, _audit(run, out, "--force"), "will not replace", "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_audit_force_never_replaces_the_run_or_other_folders(run, capsys):
    snapshot = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    one_line_error(capsys, _audit(run, run, "--force"), "will not replace", "run directory being audited")
    after = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k in snapshot} == snapshot  # only the saved calibration was added
    one_line_error(capsys, _audit(run, run.parent, "--force"), "will not replace")
    assert (run / "model.safetensors").is_file()
    other = run.parent / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    one_line_error(capsys, _audit(run, other, "--force"), "was not written by `activemint audit`")
    assert (other / "thesis.tex").read_text() == "years of work"


# ---------------------------------------------------------------- unwritable outputs
def _deny_writes(monkeypatch, under: Path, err: int = errno.EACCES) -> None:
    """Make every open-for-writing / mkdir under ``under`` fail as on a read-only folder."""
    real_open, real_mkdir = os.open, os.mkdir
    root = str(under)

    def fake_open(path, flags, *a, **k):
        if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if str(path).startswith(root):
            raise OSError(err, os.strerror(err), str(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def _read_only(monkeypatch, d: Path) -> None:
    d.mkdir(exist_ok=True)
    if os.geteuid() == 0:  # root ignores permission bits: simulate the kernel's answer
        _deny_writes(monkeypatch, d)
    else:
        d.chmod(0o555)


def test_read_only_output_folders(run, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    _read_only(monkeypatch, ro)
    try:
        one_line_error(capsys, main(["report", str(run), "--out", str(ro / "r.html")]), "cannot write", "r.html")
        one_line_error(capsys, main(["audit", str(run), "split:members", "--out", str(ro / "a"), "--device", "cpu"]),
                       "cannot write")
        one_line_error(capsys, main(["train", "--config", str(run / "config.yaml"), "--out", str(ro / "t"),
                                     "--no-progress"]), "cannot write")
        assert sorted(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_disk_full_gives_one_line_and_no_temporary_file(run, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    one_line_error(capsys, main(["report", str(run)]), "cannot write", "report.html", "disk full")
    one_line_error(capsys, main(["audit", str(run), "split:members", "--out", str(run.parent / "a"), "--device", "cpu"]),
                   "disk full")
    monkeypatch.undo()
    assert not (run / "report.html").exists() and not (run.parent / "a").exists()
    assert [p.name for p in run.parent.rglob("*") if p.name.endswith(".part") or ".tmp-" in p.name] == []


def test_report_out_existing_folder(run, tmp_path, capsys):
    d = tmp_path / "somewhere"
    d.mkdir()
    one_line_error(capsys, main(["report", str(run), "--out", str(d)]), "is a folder")
    assert list(d.iterdir()) == []


def test_lock_names_its_holder_in_process_reentrant(tmp_path):
    rd = RunDir(tmp_path / "r")
    with rd.lock("train"):
        with rd.lock("train"):  # re-entrant within the process (e.g. train --baseline)
            info = json.loads(rd.lock_file.read_text())
            assert info["pid"] == os.getpid() and info["what"] == "train"
    with rd.lock("train --resume"):
        pass
    with pytest.raises(RunError, match="does not exist"):
        RunDir(tmp_path / "nope").require()


def test_kill_point_hook_is_inert_when_unset(monkeypatch):
    monkeypatch.delenv("ACTIVEMINT_KILL_AT", raising=False)
    reset_kill_points()
    for _ in range(3):
        kill_point("write", "x")
    assert kill_passes("write") == kill_passes("write@x") == 0
    monkeypatch.setenv("ACTIVEMINT_KILL_AT", "write@y:2")
    reset_kill_points()
    kill_point("write", "x")  # another label: not counted
    kill_point("write", "y")  # first passing: not yet
    assert kill_passes("write@y") == 1 and kill_passes("write@x") == 0
    monkeypatch.delenv("ACTIVEMINT_KILL_AT")
    reset_kill_points()


def test_checkpoint_error_is_a_user_error():
    from activemint.errors import UserError

    assert issubclass(CheckpointError, UserError) and issubclass(RunError, UserError)
