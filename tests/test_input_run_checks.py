"""Hostile input against a real trained run (issue 9): drifted data, image policy, files named.

Uses the session's cached Fashion-MNIST run (conftest.audited_run_dir); every test works on a
private copy or a private data root, never on the cached run itself.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import drifted_fashion_copy
from PIL import Image
from test_input_errors import one_line_error

from activemint.cli import main
from activemint.data import clear_dataset_cache
from activemint.data import registry as registry_mod
from activemint.training.checkpoint import CheckpointError, load_train_state

RUN_FILES = ("config.yaml", "manifest.csv", "model.safetensors", "model.json", "scores.npz", "metrics.json", "metrics.jsonl")


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in RUN_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def member_pngs(audited_run_dir, tmp_path_factory):
    """20 member images as 8-bit and as 16-bit (v * 257) greyscale PNGs, and a 32x32 version."""
    from activemint.runs import load_run

    run = load_run(audited_run_dir, device="cpu")
    idx = run.data.splits.members[:20]
    root = tmp_path_factory.mktemp("pngs")
    for d in ("u8", "u16", "big"):
        (root / d).mkdir()
    for i in idx:
        a = run.data.train.images[i, 0].numpy()
        Image.fromarray(a).save(root / "u8" / f"{i:05d}.png")
        Image.fromarray(a.astype(np.uint16) * 257).save(root / "u16" / f"{i:05d}.png")
        Image.fromarray(a).resize((32, 32)).save(root / "big" / f"{i:05d}.png")
    return root


def _score_csv(capsys, argv: list[str], out: Path) -> list[list[str]]:
    assert main([*argv, "-o", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return [r.split(",") for r in out.read_text().splitlines()[1:]]


# ----------------------------------------------------------------------- 5. 16-bit images
def test_16bit_pngs_score_exactly_like_their_8bit_originals(audited_run_dir, member_pngs, tmp_path, capsys):
    u8 = _score_csv(capsys, ["score", str(audited_run_dir), str(member_pngs / "u8")], tmp_path / "a.csv")
    u16 = _score_csv(capsys, ["score", str(audited_run_dir), str(member_pngs / "u16")], tmp_path / "b.csv")
    assert len(u8) == len(u16) == 20
    assert [r[1:] for r in u8] == [r[1:] for r in u16]  # v * 257 -> v exactly: the same pixels, the same scores


# ------------------------------------------------------------- 11. one policy for score and audit
def test_score_refuses_other_sizes_like_audit_unless_resize(audited_run_dir, member_pngs, tmp_path, capsys):
    for cmd in (["score", str(audited_run_dir), str(member_pngs / "big")],
                ["audit", str(audited_run_dir), str(member_pngs / "big"), "--out", str(tmp_path / "audit")]):
        line = one_line_error(capsys, [*cmd, "--device", "cpu"], "is 32x32 pixels; the model takes 28x28")
        assert "--resize" in line
    assert not (tmp_path / "audit").exists()
    rows = _score_csv(capsys, ["score", str(audited_run_dir), str(member_pngs / "big"), "--resize"], tmp_path / "r.csv")
    assert len(rows) == 20


# ------------------------------------------------------------------ 4. manifest verification
@pytest.fixture()
def drifted_root(tmp_path, audited_run_dir, monkeypatch):
    """A copy of Fashion-MNIST with 7 of the run's 1000 members changed, made the default root."""
    from activemint.data import read_manifest

    root = drifted_fashion_copy(tmp_path / "fmnist", read_manifest(audited_run_dir / "manifest.csv").members)
    info = registry_mod.dataset_info("fashion-mnist")
    monkeypatch.setitem(registry_mod.DATASETS, "fashion-mnist", dataclasses.replace(info, default_root=str(root)))
    clear_dataset_cache()
    yield root
    clear_dataset_cache()


def test_split_inputs_are_refused_when_the_data_changed(audited_run_dir, drifted_root, tmp_path, capsys):
    run = copy_run(audited_run_dir, tmp_path / "run")
    for cmd in (["score", str(run), "split:members"],
                ["audit", str(run), "split:members", "--out", str(tmp_path / "audit")]):
        line = one_line_error(capsys, [*cmd, "--device", "cpu"], "split:members: 7 of 1000 samples differ")
        assert str(run / "manifest.csv") in line and str(drifted_root) in line and "pixel sha256" in line
    assert not (tmp_path / "audit").exists()
    # roles whose samples did not change are still usable
    rows = _score_csv(capsys, ["score", str(run), "split:eval_nonmembers"], tmp_path / "e.csv")
    assert len(rows) == 2000


# ------------------------------------------------------------------------ 6. smaller ones
def test_evaluate_prints_the_directory_it_evaluated(audited_run_dir, tmp_path, capsys):
    moved = copy_run(audited_run_dir, tmp_path / "moved-run")
    rc = main(["evaluate", str(moved), "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"run directory: {moved}" in out
    assert str(audited_run_dir) not in out


def test_nan_scores_name_their_file(audited_run_dir, tmp_path, capsys):
    run = copy_run(audited_run_dir, tmp_path / "run")
    with np.load(run / "scores.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["calibration"][3] = np.nan
    np.savez(run / "scores.npz", **arrays)
    line = one_line_error(capsys, ["audit", str(run), "split:eval_nonmembers", "--out", str(tmp_path / "a"),
                                   "--device", "cpu"], str(run / "scores.npz"))
    assert not (tmp_path / "a").exists()
    # the saved calibration's score file too
    from activemint.audit.calibration import CALIBRATION_NPZ, CalibrationError, calibrate_run, load_calibration
    from activemint.runs import load_run

    good = copy_run(audited_run_dir, tmp_path / "good")
    calibrate_run(load_run(good, device="cpu"), 0.01)
    with np.load(good / CALIBRATION_NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["calibration"][0] = np.inf
    np.savez(good / CALIBRATION_NPZ, **arrays)
    with pytest.raises(CalibrationError, match="NaN or inf") as e:
        load_calibration(good)
    assert str(good / CALIBRATION_NPZ) in str(e.value)
    (good / CALIBRATION_NPZ).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CalibrationError, match="not a readable .npz"):
        load_calibration(good)
    del line


def _valid_state() -> dict:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p])
    return {"optimizer": opt.state_dict(), "scheduler": {}, "task0": 1.0, "mint0": 1.0,
            "generator": torch.Generator().get_state(), "torch_rng": torch.get_rng_state(), "epoch": 1, "best": 0.5}


@pytest.mark.parametrize("mutation", ["list", "missing", "wrong_type", "bad_rng", "negative_epoch", "garbage", "pickle"])
def test_structurally_wrong_train_state_is_one_clear_line(tmp_path, mutation):
    import os
    import pickle

    path = tmp_path / "train_state.pt"
    state = _valid_state()
    if mutation == "list":
        torch.save([1, 2, 3], path)
    elif mutation == "missing":
        del state["optimizer"]
        torch.save(state, path)
    elif mutation == "wrong_type":
        state["epoch"] = "two"
        torch.save(state, path)
    elif mutation == "bad_rng":
        state["torch_rng"] = torch.zeros(3, 3)
        torch.save(state, path)
    elif mutation == "negative_epoch":
        state["epoch"] = -1
        torch.save(state, path)
    elif mutation == "garbage":
        path.write_bytes(b"\x80\x02garbage" * 10)
    else:
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        path.write_bytes(pickle.dumps({"optimizer": Evil()}, protocol=2))
    with pytest.raises(CheckpointError) as e:
        load_train_state(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    assert "weights_only" not in msg  # torch's advice to load it unsafely never reaches the user
    torch.save(_valid_state(), path)
    assert load_train_state(path)["epoch"] == 1


def test_cli_never_passes_on_weights_only_advice():
    from activemint.cli import one_line

    torch_msg = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument in "
                 "`torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will likely "
                 "succeed, but it can result in arbitrary code execution. Do it only if you got the file from a trusted source.")
    cleaned = one_line(ValueError(f"x.pt is not valid: {torch_msg}"))
    assert "set to `False`" not in cleaned and "x.pt" in cleaned
    assert json.dumps(cleaned)  # one printable line
