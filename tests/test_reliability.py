"""Issue 25: every writer atomic, every stored figure checked, every option validated.

Most tests here attack a tiny real run (Fashion-MNIST, small_cnn, 2 epochs, trained once for
the module) the way a hostile user or a crash would, and check the outcome: the old output or
a complete new one, never a cut file; a run whose bindings do not hold reads as
"inconsistent"; a bad option or stored field gives one line naming it, before any work.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FASHION_ROOT, TINY_RUN, drifted_fashion_copy, require_fashion_mnist
from conftest import refused_in_one_line as one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from activemint import rundir
from activemint.cli import build_parser, main
from activemint.errors import UserError
from activemint.io import clean_stale, csv_cell, file_sha256
from activemint.rundir import RunDir
from activemint.training import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent
TINY = TINY_RUN


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    return d


def rebind(run: Path) -> None:
    """Re-sign metrics.json's file digests after a file was changed (an attacker's or a bad copy's
    'fix'): only the content checks can catch what was changed then."""
    m = json.loads((run / "metrics.json").read_text())
    m["files"] = {n: file_sha256(run / n) for n in m["files"]}
    (run / "metrics.json").write_text(json.dumps(m))


def redigest(run: Path, m: dict) -> None:
    """Write metrics.json ``m`` with a matching figures digest."""
    m[rundir.FIGURES_KEY] = rundir.figures_digest(m)
    (run / "metrics.json").write_text(json.dumps(m))


# ------------------------------------------------------------------ 3. option validation
def _numeric_options():
    """(command, option string, bad value) for every numeric option of every command (from the parsers)."""
    from activemint.cli.checks import integer

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.type is None or action.type is str:
                continue
            bad = getattr(action.type, "bad", None)
            if bad is None:
                # TrainConfig fields (int / float: checked by TrainConfig.validate by name) and --threads
                assert action.type in (int, float), f"{name} {action.option_strings[-1]}: unchecked type {action.type}"
                bad = "-1"
            out.append((name, action.option_strings[-1], bad))
    assert integer(1).bad == "0"
    return out


NUMERIC_OPTIONS = _numeric_options()
POSITIONALS = {"evaluate": ["no-such-run"], "score": ["no-such-run", "x.png"], "audit": ["no-such-run", "x.png"],
               "report": ["no-such-run"], "robustness": ["no-such-run"], "power": ["no-such-run"]}


def test_every_command_with_numeric_options_is_covered():
    commands = {c for c, _, _ in NUMERIC_OPTIONS}
    assert {"train", "compare", "grid", "audit", "power", "robustness"} <= commands
    assert len(NUMERIC_OPTIONS) >= 50  # every TrainConfig number twice (train, compare) and the commands' own


@pytest.mark.parametrize("command,option,bad", NUMERIC_OPTIONS, ids=[f"{c} {o}" for c, o, _ in NUMERIC_OPTIONS])
def test_every_numeric_option_is_checked_before_any_work(command, option, bad, tmp_path, monkeypatch, capsys):
    """An out-of-range value: exit 2, one line naming the option, nothing trained or read."""
    def no_work(*a, **k):
        raise AssertionError(f"{command} {option} {bad}: work started before the option was checked")

    monkeypatch.setattr(Trainer, "__init__", no_work)
    monkeypatch.chdir(tmp_path)
    argv = [command, *POSITIONALS.get(command, []), option, bad]
    if command in ("train", "compare"):
        argv += ["--out", str(tmp_path / "out")]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refused it
        rc = e.code
    field = option.lstrip("-").replace("-", "_")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert option in err or f"{field} " in err, err
    assert "no-such-run" not in err, err  # refused for the option, before the run was looked at
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    (["robustness", "r", "--bootstrap", "-1"], "argument --bootstrap: must be an integer >= 0, got '-1'"),
    (["robustness", "r", "--max-samples", "0"], "argument --max-samples: must be an integer >= 1, got '0'"),
    (["power", "r", "--draws", "-3"], "argument --draws: must be an integer >= 1, got '-3'"),
    (["power", "r", "--fractions", "0,2,x"], "argument --fractions: must be comma-separated numbers in [0, 1], got '2'"),
    (["power", "r", "--fractions", "0,0.5,x"], "argument --fractions: must be comma-separated numbers in [0, 1], got 'x'"),
    (["audit", "r", "s", "--alpha", "nan"], "argument --alpha: must be a number in (0, 1), got 'nan'"),
])
def test_the_reported_option_values_name_their_option(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    one_line_error(capsys, 2, needle)


# ------------------------------------------------------------------------ 4. CSV cells
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    assert [csv_cell(v) for v in ["=1+2", "+A1", "-cmd", "@SUM(A1)", "\tx", "\rx", "ok", "-1.5", "+3", 7, None]] == \
        ["'=1+2", "'+A1", "'-cmd", "'@SUM(A1)", "'\tx", "'\rx", "ok", "-1.5", "+3", 7, None]


def test_formula_ids_are_neutralised_in_score_and_audit_csvs(run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).png", "+1.png", "@x.png", "-x.png", "plain.png"]
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / n)
    assert main(["score", str(run), "-o", "s.csv", "--device", "cpu", "--", *names]) == 0, capsys.readouterr().err
    assert main(["audit", str(run), "--out", "a", "--device", "cpu", "--", *names]) == 0, capsys.readouterr().err
    import csv

    for path in (tmp_path / "s.csv", tmp_path / "a" / "samples.csv"):
        ids = [r[0] for r in csv.reader(path.open())][1:]
        assert sorted(ids) == sorted(("'" + n if n[0] in "=+-@" else n) for n in names), path
        logits = [float(r[-1 if path.name == "s.csv" else 2]) for r in csv.reader(path.open()) if r[0] != "id"]
        assert all(np.isfinite(logits))  # negative numbers stay numbers


def test_a_symlink_leaving_an_image_folder_is_refused_unless_asked(tmp_path):
    from activemint.inputs import InputError, image_paths

    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(outside)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "a.png")
    os.symlink(folder / "a.png", folder / "sub" / "inside.png")  # stays inside: fine
    assert len(image_paths([str(folder)])) == 2
    os.symlink(outside, folder / "b.png")
    with pytest.raises(InputError, match="symbolic link to .*secret.png, outside the folder; pass --follow-symlinks"):
        image_paths([str(folder)])
    assert len(image_paths([str(folder)], follow_symlinks=True)) == 3
    os.unlink(folder / "b.png")
    os.symlink(tmp_path, folder / "up")  # a linked folder leading out: not entered (secret.png is not read)
    assert [p.name for p in image_paths([str(folder)])] == ["a.png", "inside.png"]


def test_user_images_are_capped_before_decoding_and_the_flag_raises_the_cap(tmp_path):
    from activemint.data.images import USER_MAX_PIXELS, ImageInputError, load_image_checked

    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((4097, 4096), np.uint8)).save(p)  # one row over the default cap, small on disk
    assert 4097 * 4096 > USER_MAX_PIXELS
    with pytest.raises(ImageInputError, match="over the limit of 16777216 .*raise it with --max-pixels"):
        load_image_checked(p, (1, 28, 28), resize=True)
    img, resized, _ = load_image_checked(p, (1, 28, 28), resize=True, max_pixels=4097 * 4096)
    assert resized and tuple(img.shape) == (1, 28, 28)


@pytest.mark.parametrize("mode,c,needle", [
    ("P", 1, "is a palette (indexed colour) image (PIL mode P), not plain greyscale; the model takes 1-channel"),
    ("RGB", 1, "has 3 channels (PIL mode RGB); the model takes 1-channel greyscale"),
    ("LA", 1, "has 2 channels (PIL mode LA); the model takes 1-channel greyscale"),
    ("P", 3, "has 1 channel (PIL mode P); the model takes 3-channel RGB")])
def test_the_channel_message_says_what_the_file_is(tmp_path, mode, c, needle):
    from activemint.data.images import ImageInputError, load_image_checked

    p = tmp_path / "x.gif"
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).convert(mode).save(p.with_suffix(".png"))
    with pytest.raises(ImageInputError) as e:
        load_image_checked(p.with_suffix(".png"), (c, 28, 28))
    assert needle in str(e.value) and "--convert-channels" in str(e.value)


# --------------------------------------------------------------------- 2. fail closed
@pytest.mark.parametrize("mutation", ["removed", "renamed by one bit", "a list", "model unbound", "bad digest",
                                      "unknown name"])
def test_a_missing_or_malformed_binding_is_inconsistent_never_complete(run, capsys, mutation):
    m = json.loads((run / "metrics.json").read_text())
    if mutation == "removed":
        del m["files"]
    elif mutation == "renamed by one bit":
        m["filer"] = m.pop("files")
    elif mutation == "a list":
        m["files"] = list(m["files"].values())
    elif mutation == "model unbound":
        del m["files"]["model.safetensors"]
    elif mutation == "bad digest":
        m["files"]["model.json"] = "0" * 63
    else:
        m["files"]["../../etc/passwd"] = "0" * 64
    (run / "metrics.json").write_text(json.dumps(m))
    assert RunDir(run).state().kind == "inconsistent"
    one_line_error(capsys, main(["score", str(run), "split:members", "--device", "cpu"]), "run inconsistent")
    one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), "run inconsistent")


def test_weights_swapped_for_another_runs_with_the_binding_removed_are_refused(run, tmp_path, capsys):
    """S2: another run's model (and its scores) in place, metrics.json's 'files' dropped."""
    other = tmp_path / "other"
    Trainer(TrainConfig(**{**TINY, "seed": 6, "epochs": 1}), other, progress=False, log=lambda m: None).run()
    for n in ("model.safetensors", "model.json", "scores.npz"):
        shutil.copy2(other / n, run / n)
    m = json.loads((run / "metrics.json").read_text())
    del m["files"]
    (run / "metrics.json").write_text(json.dumps(m))
    assert RunDir(run).state().kind == "inconsistent"
    for argv in (["score", str(run), "split:members"], ["evaluate", str(run)], ["audit", str(run), "split:members"]):
        one_line_error(capsys, main([*argv, "--device", "cpu"]), "run inconsistent", "'files'")


def test_a_flipped_figure_in_metrics_json_is_refused(run, capsys):
    """S1: AUC 0.5608 -> 0.9608 (one bit of one digit): report, evaluate, audit refuse; nothing written."""
    text = (run / "metrics.json").read_text()
    auc = json.loads(text)["membership"]["auc"]
    s = json.dumps(auc)
    flipped = s[:2] + str((int(s[2]) + 4) % 10) + s[3:]  # 0.5608 -> 0.9608
    (run / "metrics.json").write_text(text.replace(f'"auc": {s}', f'"auc": {flipped}', 1))
    assert json.loads((run / "metrics.json").read_text())["membership"]["auc"] != auc
    assert RunDir(run).state().kind == "inconsistent"
    one_line_error(capsys, main(["report", str(run)]), "figures do not match", "metrics.json")
    one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), "figures do not match")
    assert not (run / "report.html").exists()


def test_a_non_numeric_field_names_file_and_field(run, capsys):
    m = json.loads((run / "metrics.json").read_text())
    m["membership"]["tpr_at_1pct_fpr"] = "high"
    redigest(run, m)  # well signed: the field check itself must refuse it
    one_line_error(capsys, main(["report", str(run)]), str(run / "metrics.json"), "membership.tpr_at_1pct_fpr")
    m["test_accuracy"] = [1]
    redigest(run, m)
    one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), "metrics.json", "'test_accuracy'")


def test_evaluate_checks_the_manifest_pixel_hashes(run, tmp_path, capsys):
    """S3: the data root changed (7 member images altered): evaluate refuses instead of 'matches: yes'."""
    from activemint.data import clear_dataset_cache, read_manifest

    root = drifted_fashion_copy(tmp_path / "fmnist", read_manifest(run / "manifest.csv").members)
    cfg = (run / "config.yaml").read_text()
    assert str(FASHION_ROOT) in cfg
    (run / "config.yaml").write_text(cfg.replace(str(FASHION_ROOT), str(root)))
    clear_dataset_cache()
    try:
        one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), "7 samples of members",
                       str(run / "manifest.csv"), str(root))
    finally:
        clear_dataset_cache()


@pytest.mark.parametrize("field,value,needle", [
    ("num_classes", "ten", "field 'num_classes'"), ("num_classes", 1e30, "field 'num_classes'"),
    ("input_shape", [1, 28], "field 'input_shape'"), ("arch", 3, "field 'arch'")])
def test_model_json_fields_are_checked(run, capsys, field, value, needle):
    meta = json.loads((run / "model.json").read_text())
    meta[field] = value
    (run / "model.json").write_text(json.dumps(meta))
    rebind(run)
    one_line_error(capsys, main(["score", str(run), "split:members", "--device", "cpu"]), str(run / "model.json"), needle)


@pytest.mark.parametrize("kind", ["raw pickle", "object array", "text array", "inf", "renamed", "float32"])
def test_scores_npz_entries_must_be_finite_numeric_arrays(run, capsys, kind):
    import pickle

    with np.load(run / "scores.npz") as z:
        arrays = {k: z[k] for k in z.files}
    if kind == "raw pickle":  # a member named .npy that is no .npy: numpy hands back its bytes
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in arrays.items() if k != "members"})
        with zipfile.ZipFile(buf, "a") as zf:
            zf.writestr("members.npy", pickle.dumps({"x": 1}))
        (run / "scores.npz").write_bytes(buf.getvalue())
        needle = "entry 'members' is not an array (got bytes)"
    else:
        if kind == "object array":
            arrays["members"] = np.array([1, None], dtype=object)
        elif kind == "text array":
            arrays["members"] = np.array(["a", "b"])
        elif kind == "renamed":  # found by the fuzz below: read back as another set of scores, silently
            arrays["calibrationx"] = arrays.pop("calibration")
        elif kind == "float32":
            arrays["members"] = arrays["members"].astype(np.float32)
        else:
            arrays["members"] = arrays["members"].copy()
            arrays["members"][0] = np.inf
        np.savez(run / "scores.npz", **arrays)
        needle = "scores.npz"
    rebind(run)
    one_line_error(capsys, main(["report", str(run)]), needle)


@pytest.mark.parametrize("index", ["1" + "0" * 30, "-1", "1e30"])
def test_a_manifest_index_out_of_range_names_the_manifest(run, capsys, index):
    lines = (run / "manifest.csv").read_text().splitlines()
    f = lines[1].split(",")
    f[2] = index
    lines[1] = ",".join(f)
    (run / "manifest.csv").write_text("\n".join(lines) + "\n")
    one_line_error(capsys, main(["evaluate", str(run), "--device", "cpu"]), f"manifest {run / 'manifest.csv'} line 2")


@pytest.mark.parametrize("dtype", ["nan", "int32"])
def test_weights_of_the_wrong_dtype_or_not_finite_are_refused(run, capsys, dtype):
    from safetensors.torch import load_file, save_file

    t = load_file(str(run / "model.safetensors"))
    k = next(k for k, v in t.items() if v.is_floating_point())
    t[k] = t[k].clone()
    if dtype == "nan":
        t[k].view(-1)[0] = float("nan")
    else:
        t[k] = t[k].to(torch.int32)
    save_file(t, str(run / "model.safetensors"), metadata={"format": "activemint"})
    rebind(run)
    one_line_error(capsys, main(["score", str(run), "split:members", "--device", "cpu"]), str(run / "model.safetensors"),
                   "NaN" if dtype == "nan" else "dtype")


def test_checkpoint_json_refuses_unknown_entries(run, capsys):
    from activemint.training.checkpoint import list_checkpoints

    ck = list_checkpoints(run / "checkpoints")[-1]
    doc = json.loads(ck.manifest_path.read_text())
    doc["files"]["../../../../etc/passwd"] = "0" * 64
    ck.manifest_path.write_text(json.dumps(doc))
    (run / "metrics.json").unlink()  # an interrupted final save: --resume reads the checkpoint
    rc = main(["train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume", "--no-progress"])
    one_line_error(capsys, rc, str(ck.manifest_path), "unknown entries", "etc/passwd")


@pytest.mark.parametrize("mutation", ["path", "absolute", "unknown-key", "not-a-list"])
def test_an_audit_marker_with_unknown_or_path_like_entries_is_not_replaced(run, tmp_path, capsys, mutation):
    """The audit folder's marker is the manifest --force trusts: it lists only the files an audit writes."""
    out = tmp_path / "aud"
    argv = ["audit", str(run), "split:members", "--out", str(out), "--device", "cpu", "--force"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    marker = out / rundir.AUDIT_MARKER
    doc = json.loads(marker.read_text())
    if mutation == "path":
        doc["files"].append("../run/model.safetensors")
    elif mutation == "absolute":
        doc["files"].append("/etc/passwd")
    elif mutation == "unknown-key":
        doc["delete"] = ["../run"]
    else:
        doc["files"] = {n: 1 for n in doc["files"]}
    marker.write_text(json.dumps(doc))
    before = _snapshot(out)
    one_line_error(capsys, main(argv), str(marker), "unknown entries")
    assert _snapshot(out) == before and (run / "model.safetensors").is_file()


def test_manifest_ids_are_neutralised_and_read_back_exactly(tmp_path):
    """Image ids (file names) go into manifest.csv: a spreadsheet must not run them, and the
    manifest must still verify the same ids (the neutralising is undone on reading)."""
    from activemint.data import ArrayDataset
    from activemint.data.splits import SplitSizes, make_splits, read_manifest, verify_manifest, write_manifest

    ids = ["=HYPERLINK(\"http://x\")", "+1+cmd", "-2+3", "@SUM(A1)", "\tx.png", "'=quoted", "'", "-1.5",
           "plain.png"]
    ids += [f"img{i}.png" for i in range(30 - len(ids))]
    g = torch.Generator().manual_seed(0)
    tr = ArrayDataset(torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(30) % 3,
                      ["a", "b", "c"], "x", "train", ids=ids)
    te = ArrayDataset(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(10) % 3,
                      ["a", "b", "c"], "x", "test", ids=[f"t{i}" for i in range(10)])
    splits = make_splits(30, 10, SplitSizes(10, 10, 2, 2, 5), seed=1)
    path = write_manifest(tmp_path / "manifest.csv", splits, tr, te)
    import csv as _csv

    with open(path, newline="") as f:
        cells = [row[5] for row in _csv.reader(f)][1:]
    written = {c for c in cells if c}
    assert all(not c.startswith(("=", "+", "@", "\t", "\r")) for c in written), written
    assert all(not c.startswith("-") or c == "-1.5" for c in written), written  # a number stays a number
    assert read_manifest(path) == splits and verify_manifest(path, tr, te) == []
    swapped = ArrayDataset(tr.images, tr.labels, tr.classes, "x", "train", ids=[i.lstrip("'=") + "x" for i in ids])
    used = set(splits.members.tolist()) | set(splits.external.tolist()) | set(splits.validation.tolist()) \
        | set(splits.calibration.tolist())
    assert len([p for p in verify_manifest(path, swapped, te) if " id " in p]) == len(used)  # ids still compared
    broken = ArrayDataset(tr.images, tr.labels, tr.classes, "x", "train", source="/data/x", ids=[*ids[:-1], "\rx.png"])
    with pytest.raises(UserError, match=r"^/data/x: sample id '\\rx.png' contains a line break"):
        write_manifest(tmp_path / "m2.csv", splits, broken, te)  # a row it would split in two


def test_model_edits_csv_cells_are_neutralised(tmp_path):
    from activemint.edits.table import FILES, EditRow, write_outputs

    row = EditRow(edit="prune", level="0.5", reattach=0, scorer="active_mint", test_accuracy=0.9, accuracy_lost=-1.5, auc=0.8,
                  tpr_at_1pct_fpr=0.1, p_value_100=1e-3, null_draws=0, null_flag_rate=None, null_flag_upper95=None,
                  member_detect_rate=None, edited_run="=cmd|' /C calc'!A0")
    info = {"run_dir": "r", "suspect": 100, "null_draws": 0, "alpha": 0.01, "base_test_accuracy": 0.9, "options": {}, "about": {}}
    write_outputs(tmp_path, [row], info)
    text = (tmp_path / FILES["csv"]).read_text()
    assert ",'=cmd|" in text and ",=cmd" not in text and ",-1.5," in text, text


def test_robustness_saved_scores_are_in_the_folder_when_it_appears(run, tmp_path, capsys):
    """--save-scores's scores.npz is written in the staging folder: the output is complete the
    instant it is renamed into place (killed right then), and a second run may replace it."""
    out = tmp_path / "rob"
    argv = ["robustness", str(run), "--out", str(out), "--transforms", "hflip", "--scorers", "active_mint",
            "--bootstrap", "2", "--max-samples", "40", "--save-scores", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "ACTIVEMINT_KILL_AT": f"write@{out.name}:1"}  # right after the folder's rename
    r = subprocess.run([sys.executable, "-m", "activemint", *argv], env=env, capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted([*rundir.ROBUSTNESS_FILES.values(), "scores.npz"])
    with np.load(out / "scores.npz", allow_pickle=False) as z:
        assert {len(z[k]) for k in z.files if k.endswith("|members")} == {40}
    assert main([*argv[:-5], "--max-samples", "41", "--save-scores", "--device", "cpu"]) == 0, capsys.readouterr().err
    with np.load(out / "scores.npz", allow_pickle=False) as z:
        assert {len(z[k]) for k in z.files if k.endswith("|members")} == {41}


# ----------------------------------------------------------------- 1. atomic outputs
def test_score_output_is_replaced_whole_or_not_at_all(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores.csv"
    out.write_text("previous\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    one_line_error(capsys, main(["score", str(run), "split:members", "-o", str(out), "--device", "cpu"]),
                   f"cannot write {out}", "disk full")
    monkeypatch.undo()
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "scores.csv"]


def test_power_json_on_a_full_disk_leaves_no_file_and_names_it(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "power.json"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    one_line_error(capsys, main(["power", str(run), "--draws", "5", "--size", "10", "--json", str(out)]),
                   f"cannot write {out}", "disk full")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_robustness_on_a_full_disk_leaves_the_old_output_and_names_it(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rob"
    argv = ["robustness", str(run), "--out", str(out), "--transforms", "hflip", "--scorers", "active_mint",
            "--bootstrap", "2", "--max-samples", "50"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) == set(rundir.ROBUSTNESS_FILES.values())

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    rc = main([*argv[:-4], "--bootstrap", "3", "--max-samples", "60"])
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    assert rc == 2 and [ln for ln in err if "error" in ln] == err[-1:], err
    assert f"cannot write {out}" in err[-1] and "disk full" in err[-1], err
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_an_output_folder_with_other_files_is_refused_before_work(run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    one_line_error(capsys, main(["robustness", str(run), "--out", str(out), "--transforms", "hflip"]),
                   f"will not replace {out}", "thesis.tex")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_leftovers_of_a_killed_writer_are_removed_by_the_next(run, tmp_path, capsys):
    """What a SIGKILL leaves (temp folder, temp file, the replaced folder) goes on the next run;
    a replaced folder whose successor never arrived is put back first."""
    dead = 2**22 + 12345  # above the default pid_max (2**22): no such process
    a = tmp_path / "a"
    for p in (tmp_path / f".a.tmp-{dead}-0a0b", tmp_path / f".a.old-{dead}-0c0d"):
        p.mkdir()
    (tmp_path / f".a.old-{dead}-0c0d" / "audit.json").write_text("old")
    (tmp_path / f".s.csv.{dead}-0e0f.part").write_text("cut")
    (tmp_path / ".a.tmp-keepme").mkdir()  # not a name our writers use: left alone
    (tmp_path / ".a.tmp-k2j_x9qz").mkdir()  # an older audit's mkdtemp folder (the leftover)
    clean_stale(a, locked=True)
    assert (a / "audit.json").read_text() == "old"  # put back
    clean_stale(tmp_path / "s.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.tmp-keepme", "a", "run"]
    assert main(["score", str(run), "split:members", "-o", str(tmp_path / "s.csv"), "--device", "cpu"]) == 0


# SIGKILL at the instants where a command's output changes on disk (the kill points of
# activemint.rundir): before the rename into place, between setting the old folder aside and
# renaming the new one in, right after.  Each is a subprocess: the real command line, killed.
def _command(kind: str, run: Path, out: Path, variant: int) -> list[str]:
    return {
        "score": ["score", str(run), "split:members", *(["split:calibration"] if variant else []), "-o", str(out),
                  "--device", "cpu"],
        "power": ["power", str(run), "--draws", "5", "--size", "10", "--seed", str(variant), "--json", str(out)],
        "robustness": ["robustness", str(run), "--out", str(out), "--transforms", "hflip", "--scorers", "active_mint",
                       "--bootstrap", "2", "--max-samples", str(40 + variant)],
        "audit": ["audit", str(run), "split:members" if variant else "split:calibration", "--out", str(out),
                  "--device", "cpu", "--force"],
        "report": ["report", str(run), "--out", str(out)],
    }[kind]


def _snapshot(p: Path):
    if p.is_dir():
        return {q.name: q.read_bytes() for q in p.iterdir() if q.is_file()}
    return p.read_bytes() if p.exists() else None


def _complete(kind: str, p: Path) -> bool:
    if kind == "score":
        return p.read_text().endswith("\n") and len(p.read_text().splitlines()) == 1 + 200 + 300
    if kind == "power":
        return "rows" in json.loads(p.read_text())
    if kind == "report":
        return p.read_text().rstrip().endswith("</html>")
    names = set(rundir.ROBUSTNESS_FILES.values()) if kind == "robustness" else \
        set(rundir.AUDIT_FILES.values()) | {rundir.AUDIT_MARKER}
    return {q.name for q in p.iterdir() if q.is_file()} == names and json.loads(
        (p / ("robustness.json" if kind == "robustness" else "audit.json")).read_text()) is not None


KILLS = [("score", "partial@s.csv:1"), ("score", "write@s.csv:1"), ("power", "partial@p.json:1"),
         ("robustness", "partial@rob:1"), ("robustness", "write@rob.old:1"), ("robustness", "write@rob:1"),
         ("audit", "write@aud.old:1"), ("report", "partial@r.html:1")]
OUT_NAMES = {"score": "s.csv", "power": "p.json", "robustness": "rob", "audit": "aud", "report": "r.html"}


@pytest.mark.parametrize("kind,kill", KILLS, ids=[f"{k}-{v}" for k, v in KILLS])
def test_sigkill_while_writing_leaves_old_absent_or_complete_output(run, tmp_path, kind, kill):
    out = tmp_path / OUT_NAMES[kind]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "activemint"]
    assert main(_command(kind, run, out, 0)) == 0  # the previous output, in this process
    before = _snapshot(out)
    r = subprocess.run([*cli, *_command(kind, run, out, 1)], env={**env, "ACTIVEMINT_KILL_AT": kill}, capture_output=True)
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])  # the kill point was reached
    after = _snapshot(out)
    assert after is None or after == before or _complete(kind, out), kill
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.") and not
                       p.name.endswith(".lock"))
    assert main(_command(kind, run, out, 1)) == 0  # the next run, in this process, cleans up
    assert _complete(kind, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.") and not p.name.endswith(".lock")] \
        == [], leftovers


# SIGKILL at random instants (acceptance 2): each of the six output-writing commands is started
# 10 times and killed at a seeded random instant while it writes its output.  A watcher polls the
# output path (the output itself and its ``.NAME.*`` siblings: temp file, temp folder, the old
# folder set aside); the instant is a uniform draw in [0, W] after the first change it sees, W
# being how long the writing lasted (first to last change) in an undisturbed run of the same
# command.  After each kill the output must be absent, the previous output byte for byte, or
# complete (the file set and each file's shape of an undisturbed run: CSV header and row count,
# JSON keys, Markdown line count, a closed HTML page, a PNG up to its IEND chunk, an npz whose
# members read back).  The commands run as forks of one process that imported the package once
# (the "zygote" below: ``activemint.cli.main(argv)`` in a fresh child, nothing shared but the
# imports), so the 6 x 13 runs cost their work, not 78 imports of torch.
ZYGOTE = r"""
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import activemint.audit, activemint.compare, activemint.report, activemint.robustness, activemint.scorers
from activemint.cli import main
null = os.open(os.devnull, os.O_WRONLY)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    if "run" in req:
        pid = os.fork()
        if pid == 0:
            os.dup2(null, 1)
            os.dup2(null, 2)
            try:
                rc = main(req["run"])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except BaseException:
                rc = 70
            os._exit(rc)
        print(pid, flush=True)
    else:
        print(os.waitstatus_to_exitcode(os.waitpid(req["wait"], 0)[1]), flush=True)
"""


class Zygote:
    """Runs ``activemint`` commands as forked children of one pre-imported process."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
        self.p = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)

    def _ask(self, req) -> int:
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline()
        assert answer, f"the zygote died (exit {self.p.wait()})"
        return int(answer)

    def start(self, argv: list[str]) -> int:
        return self._ask({"run": argv})

    def wait(self, pid: int) -> int:
        """The child's exit status (-9: killed); reaps it."""
        return self._ask({"wait": pid})

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def _running(pid: int) -> bool:
    """The (unreaped) child is still running: not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _seen(out: Path) -> frozenset:
    """What a watcher sees of output ``out``: it and its ``.NAME.*`` siblings (not the lock), with
    each entry's (and a folder's files', not its subfolders') inode, size and mtime."""
    seen = set()
    try:
        for e in os.scandir(out.parent):
            if (e.name == out.name or e.name.startswith(f".{out.name}.")) and not e.name.endswith(".lock"):
                st = e.stat(follow_symlinks=False)
                seen.add((e.name, "", st.st_ino, st.st_size, st.st_mtime_ns))
                if e.is_dir(follow_symlinks=False):
                    for c in os.scandir(e.path):
                        if c.is_file(follow_symlinks=False):  # not a cache folder inside (robustness's cache)
                            cs = c.stat(follow_symlinks=False)
                            seen.add((e.name, c.name, cs.st_ino, cs.st_size, cs.st_mtime_ns))
    except OSError:  # renamed or removed while listed: a change
        seen.add(("?", time.monotonic()))
    return frozenset(seen)


def _watch(pid: int, out: Path, kill_at: float | None = None, kill_after: float | None = None,
           ) -> tuple[float | None, float | None, float]:
    """Poll ``out`` while child ``pid`` runs and SIGKILL it at ``kill_at`` (a ``time.monotonic()``) or
    ``kill_after`` seconds after the first change seen.  Returns the first and last times the watcher
    saw ``out`` change (None: it saw none, a write that fits between two polls) and the end time."""
    last = _seen(out)
    first = last_t = None
    while _running(pid):
        s = _seen(out)
        now = time.monotonic()
        if s != last:
            first = now if first is None else first
            last, last_t = s, now
        if (kill_at is not None and now >= kill_at) or (kill_after is not None and first is not None
                                                          and now >= first + kill_after):
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.0005)
    return first, last_t, time.monotonic()


def _shape(name: str, data: bytes):
    """What a complete file of this kind has, a cut one not: the check of 'complete'."""
    try:
        if name.endswith(".json"):
            return sorted(json.loads(data))
        if name.endswith(".csv"):
            lines = data.decode().splitlines()
            return lines[0], len(lines), data.endswith(b"\n")
        if name.endswith(".html"):
            return data.rstrip().endswith(b"</html>")
        if name.endswith(".png"):
            return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
        if name.endswith(".npz"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                return sorted(z.namelist()), z.testzip()
        return len(data.splitlines()), data.endswith(b"\n")  # Markdown, the audit marker
    except (ValueError, IndexError, zipfile.BadZipFile):
        return "unreadable"


def _shapes(got, name: str):
    """The shape of output ``name`` as snapshotted (a file's bytes or a folder's files)."""
    if isinstance(got, dict):
        return {n: _shape(n, data) for n, data in got.items()}
    return None if got is None else _shape(name, got)


def _random_kill_commands(run: Path, plain: Path, work: Path) -> dict:
    """kind -> (output path, variant -> argv): the six commands with their tiniest options; the
    two variants write different outputs to the same path."""
    return {
        "score": (work / "s.csv", lambda v: ["score", str(run), "split:members", *(["split:calibration"] if v else []),
                                             "-o", str(work / "s.csv"), "--device", "cpu"]),
        "robustness": (work / "rob", lambda v: ["robustness", str(run), "--out", str(work / "rob"), "--transforms", "hflip",
                                                "--scorers", "active_mint", "--bootstrap", "2", "--max-samples", str(40 + v),
                                                "--device", "cpu"]),
        "power": (work / "p.json", lambda v: ["power", str(run), "--draws", "5", "--size", "10", "--seed", str(v),
                                              "--json", str(work / "p.json")]),
        "report": (work / "r.html", lambda v: ["report", str(plain if v else run), "--out", str(work / "r.html")]),
        "audit": (work / "aud", lambda v: ["audit", str(run), "split:members" if v else "split:calibration", "--out",
                                           str(work / "aud"), "--device", "cpu", "--force"]),
        "compare": (work / "cmp", lambda v: ["compare", "--active-run", str(run), "--plain-run", str(plain),
                                             "--reference-models", "0", "--passive-epochs", "1", "--gmint-epochs", str(1 + v),
                                             "--cache-dir", str(work / "cache"), "--out", str(work / "cmp"), "--device", "cpu",
                                             "--no-progress"]),
    }


@pytest.fixture(scope="module")
def tiny_plain_run(tmp_path_factory) -> Path:
    require_fashion_mnist()
    out = tmp_path_factory.mktemp("reliability") / "plain"
    Trainer(TrainConfig(**{**TINY, "mint": False}), out, progress=False, log=lambda m: None).run()
    return out


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


RANDOM_KILLS = 10


@pytest.mark.skipif(not Path("/proc/self/stat").is_file() or not hasattr(os, "fork"), reason="needs Linux /proc and fork")
@pytest.mark.parametrize("kind", ["score", "robustness", "power", "report", "audit", "compare"])
def test_sigkill_at_random_instants_leaves_old_absent_or_complete_output(run, tiny_plain_run, tmp_path, zygote, kind):
    import random

    out, argv_of = _random_kill_commands(run, tiny_plain_run, tmp_path)[kind]
    # Two undisturbed runs: the previous output, then the other variant, timed by the watcher: the
    # command's run time and how long its writing lasted (first to last change seen; a write quick
    # enough to fall between two polls counts as 2 ms).  A third run of the first variant warms a
    # command's caches (compare's trained heads) as in the kills that follow; the fastest of the three
    # sets the run time, so that the kills timed from the start land in the command's run.
    shapes, full, runtime, writing = [], [], float("inf"), 0.002
    for v in (0, 1, 0):
        t0 = time.monotonic()
        pid = zygote.start(argv_of(v))
        first, last, end = _watch(pid, out)
        assert zygote.wait(pid) == 0, (kind, v)
        runtime = min(runtime, end - t0)
        writing = max(writing, (last - first) if first is not None else 0.0)
        if len(full) < 2:
            full.append(_snapshot(out))
            shapes.append(_shapes(full[-1], out.name))
    assert shapes[0] is not None and shapes[1] is not None
    # Files the two variants write alike (an audit's marker): the only ones a new output may share with the old.
    alike = {n for n in full[0] if full[1].get(n) == full[0][n]} if isinstance(full[0], dict) else set()

    def whole(got, before) -> bool:
        """``got`` is one complete output: every file's shape of an undisturbed run, and nothing left of
        the old output but what both variants write alike (no mix of old and new files)."""
        if _shapes(got, out.name) not in shapes:
            return False
        return not isinstance(before, dict) or {n for n in got if before.get(n) == got[n]} <= alike

    def which(snap) -> int | None:
        """The variant whose undisturbed output ``snap`` repeats (None: absent, or nothing in it repeats)."""
        if isinstance(snap, dict):
            hits = [sum(snap[n] == full[v].get(n) for n in snap if n not in alike) for v in (0, 1)]
        else:
            hits = [int(snap is not None and snap == full[v]) for v in (0, 1)]
        return hits.index(max(hits)) if max(hits) > 0 and hits[0] != hits[1] else None

    rng = random.Random(f"activemint-kill-{kind}")  # the instants are reproducible, where they land is the scheduler's
    outcome = {"absent": 0, "previous": 0, "complete": 0, "finished": 0}

    def kill_once(from_start: bool) -> None:
        """One run of the other variant, killed at a random instant; its output checked and counted."""
        before = _snapshot(out)
        variant = 1 - (which(before) or 0)  # the other variant than the one in place: every repeatable file changes
        at = rng.uniform(0, runtime) if from_start else rng.uniform(0, writing)
        t0 = time.monotonic()
        pid = zygote.start(argv_of(variant))
        if from_start:
            _watch(pid, out, kill_at=t0 + at)
        else:
            _watch(pid, out, kill_after=at)
        rc = zygote.wait(pid)
        got = _snapshot(out)
        if rc != -signal.SIGKILL:
            assert rc == 0, (kind, rc)
            kind_of = "finished"
        elif got is None:
            kind_of = "absent"
        elif got == before:
            kind_of = "previous"
        else:
            kind_of = "complete"
        assert got is None or got == before or whole(got, before), (
            f"{kind}: killed {at * 1000:.1f} ms after {'it started' if from_start else 'writing began'}: "
            f"{_shapes(got, out.name)} is no complete output")
        outcome[kind_of] += 1

    # Half the kills at an instant anywhere in the command's run, half at an instant in its writing
    # (after the first change the watcher sees: a write it never sees is not killed, and is checked).
    for i in range(RANDOM_KILLS):
        kill_once(from_start=i % 2 == 0)
    # Not vacuous: at least one kill must land while the command runs (a child that finished first was
    # still checked: it left a whole output).  A kill timed from the start misses only if that run is
    # faster than U x (the fastest of the three timed runs), U uniform in [0, 1]: for exchangeable run
    # times that is at most P(X < min(X1, X2, X3)) = 1/4.  So up to 40 more kills from the start while
    # none has landed: a correct writer on such a machine fails with probability <= (1/4)^45 < 1e-27.
    extra = 0
    while outcome["finished"] == RANDOM_KILLS + extra and extra < 40:
        kill_once(from_start=True)
        extra += 1
    print(kind, f"ran {runtime * 1000:.0f} ms, writing lasted {writing * 1000:.1f} ms;", outcome, f"(+{extra} kills)")
    assert outcome["finished"] < RANDOM_KILLS + extra, outcome
    pid = zygote.start(argv_of(0))  # an undisturbed run after the kills: succeeds and cleans up
    _watch(pid, out)
    assert zygote.wait(pid) == 0
    assert _shapes(_snapshot(out), out.name) == shapes[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.") and not p.name.endswith(".lock")] == []


# ---------------------------------------------------------------- 5. run-file fuzzing
# Every read command goes through one read layer: the run's state and bindings, config.yaml,
# model.json + the weights, metrics.json, scores.npz, manifest.csv against the data, and for
# --resume the last checkpoint.  The fuzz mutates one file of a copy of the tiny run (bit flips,
# truncation, type changes, renamed keys, changed cells) and reads it all back: the reading
# must either give exactly what the untouched run gives (weights' logits on a fixed batch,
# figures, scores, splits, the checkpoint's state) or raise a one-line UserError; anything else
# (another exception, a silently different value) fails.  A few mutants go through the real
# command line too (test_run_file_fuzz_through_the_commands).

FUZZ_FILES = ("metrics.json", "manifest.csv", "config.yaml", "model.json", "checkpoint.json", "scores.npz")
FUZZ_EXAMPLES = int(os.environ.get("ACTIVEMINT_FUZZ_EXAMPLES", "100"))  # acceptance: >= 100 per file in CI
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                        st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.just({}), st.just("ten"),
                        st.just(1e30), st.just("../../../../etc/passwd"))


def read_back(d: Path) -> dict:
    """What the read commands take from run directory ``d`` (raises UserError on a bad file)."""
    from activemint.data import verify_manifest
    from activemint.runs import load_run
    from activemint.training.checkpoint import latest_checkpoint

    run = load_run(d, device="cpu")
    rd = RunDir(d)
    metrics = {k: v for k, v in (rd.read_metrics() or {}).items() if k != "files"}  # the digests, not figures
    out = {"metrics": metrics, "scores": {k: v.tolist() for k, v in (rd.read_scores() or {}).items()},
           "splits": {r: getattr(run.data.splits, r).tolist() for r in
                      ("members", "external", "validation", "calibration", "eval_nonmembers")}}
    problems = verify_manifest(rd.manifest, run.data.train, run.data.test)
    if problems:
        raise UserError(f"{len(problems)} manifest problems")  # what split:/evaluate refuse
    batch = run.data.train.images[torch.as_tensor(run.data.splits.members[:8])]
    out["logits"] = run.membership_logits(batch).tolist()
    ck = latest_checkpoint(rd.checkpoints)
    model = __import__("copy").deepcopy(run.model)
    state, _ = ck.load(model, max_epoch=run.config.epochs)
    out["checkpoint"] = (state["epoch"], [float(p.detach().double().sum()) for p in model.parameters()])
    return out


def _json_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _json_paths(v, (*prefix, i))


def mutate(data, path: Path) -> str:
    """Change ``path`` one way (drawn by hypothesis); returns a description."""
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(["flip", "truncate", "structure"]), label="how")
    if how == "flip" or (how == "structure" and path.suffix == ".yaml" and not raw):
        bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
        b = bytearray(raw)
        b[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(b))
        return f"flip bit {bit}"
    if how == "truncate":
        n = data.draw(st.integers(0, len(raw) - 1), label="keep")
        path.write_bytes(raw[:n])
        return f"truncate to {n}"
    if path.suffix == ".json":
        doc = json.loads(raw)
        paths = list(_json_paths(doc))
        where = data.draw(st.sampled_from(paths), label="where")
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="rename"):
            parent[str(where[-1]) + data.draw(st.sampled_from(["x", "_", " "]))] = parent.pop(where[-1])
            desc = f"rename {where}"
        else:
            parent[where[-1]] = data.draw(JSON_VALUES, label="value")
            desc = f"set {where} = {parent[where[-1]]!r}"
        path.write_text(json.dumps(doc))
        return desc
    if path.suffix == ".csv":
        lines = raw.decode().splitlines()
        row = data.draw(st.integers(0, len(lines) - 1), label="row")
        cells = lines[row].split(",")
        col = data.draw(st.integers(0, len(cells) - 1), label="col")
        cells[col] = data.draw(st.one_of(st.text(max_size=8).map(lambda t: t.replace(",", "").replace("\n", "")),
                                         st.integers(-5, 2**70).map(str), st.just("1e30"), st.just("")), label="cell")
        lines[row] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return f"cell {row},{col} = {cells[col]!r}"
    if path.suffix == ".yaml":
        import yaml

        doc = yaml.safe_load(raw)
        key = data.draw(st.sampled_from(sorted(doc)), label="key")
        if data.draw(st.booleans(), label="rename"):
            doc[key + "x"] = doc.pop(key)
        else:
            doc[key] = data.draw(JSON_VALUES, label="value")
        path.write_text(yaml.safe_dump(doc))
        return f"yaml {key}"
    # scores.npz: an array renamed, or replaced by another dtype / shape / an object array / raw bytes
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    key = data.draw(st.sampled_from(sorted(arrays)), label="key")
    change = data.draw(st.sampled_from(["rename", "float32", "int", "shorter", "text", "object", "pickle", "nan"]),
                       label="change")
    a = arrays[key]
    if change == "rename":
        arrays[key + "x"] = arrays.pop(key)
    elif change == "float32":
        arrays[key] = a.astype(np.float32) if a.dtype.kind in "fiub" else a
    elif change == "int":
        arrays[key] = a.astype(np.int64) if a.dtype.kind in "fiub" else np.asarray(7)
    elif change == "shorter":
        arrays[key] = a[:-1] if a.ndim else a
    elif change == "text":
        arrays[key] = np.asarray(["x"] * max(a.size, 1))
    elif change == "nan":
        arrays[key] = np.full(a.shape, np.nan)
    if change in ("object", "pickle"):
        import pickle

        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in arrays.items() if k != key})
        with zipfile.ZipFile(buf, "a") as zf:
            zf.writestr(f"{key}.npy", pickle.dumps([1, 2]) if change == "pickle" else
                        _npy_bytes(np.array([1, None], dtype=object)))
        path.write_bytes(buf.getvalue())
    else:
        np.savez(path, **arrays)
    return f"npz {key}: {change}"


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _same(a, b) -> bool:
    # Exact on purpose: both read-backs run in this process (same thread count, same batch of 8, same float32
    # kernels) on byte-identical weights, so the logits are the same bits; a value read differently is a silent change.
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def fuzz_bed(tiny_run, tmp_path_factory):
    """A fixed directory re-filled from the tiny run before every example, and the untouched read-back."""
    d = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(tiny_run, d)
    return tiny_run, d, read_back(d)


def _refill(src: Path, d: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file() and p.name != rundir.LOCK:
            q = d / p.relative_to(src)
            if not q.exists() or q.stat().st_size != p.stat().st_size or q.read_bytes() != p.read_bytes():
                shutil.copy2(p, q)
    for q in list(d.rglob("*")):
        if q.is_file() and not (src / q.relative_to(d)).exists():
            q.unlink()


def _resign(d: Path) -> None:
    """Re-sign metrics.json's file digests (not its figures digest: a re-signed figure is not detectable)."""
    m = json.loads((d / "metrics.json").read_text())
    m["files"] = {n: file_sha256(d / n) for n in m["files"] if (d / n).is_file()}
    (d / "metrics.json").write_text(json.dumps(m))


@pytest.mark.parametrize("name", FUZZ_FILES)
def test_run_file_fuzz_reads_back_exactly_or_refuses_in_one_line(fuzz_bed, name):
    src, d, expected = fuzz_bed

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        _refill(src, d)
        target = d / name if name != "checkpoint.json" else sorted((d / "checkpoints").glob("epoch-*"))[-1] / name
        what = mutate(data, target)
        if name != "metrics.json" and data.draw(st.booleans(), label="rebind"):
            what += ", files re-signed"  # only the content checks can catch it now
            _resign(d)
        try:
            got = read_back(d)
        except UserError as e:
            assert "\n" not in str(e) and str(e).strip(), (what, str(e))
            return
        assert _same(got, expected), f"{name}: {what} was read as a different run, silently"

    check()


def _cli(argv: list[str]) -> tuple[int, str, str]:
    import contextlib

    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            rc = main(argv)
        except SystemExit as x:
            rc = x.code
    return rc, o.getvalue(), e.getvalue()


def test_run_file_fuzz_through_the_commands(fuzz_bed, tmp_path_factory):
    """Mutants of every run file through the real commands (in this process): the untouched
    run's output exactly, or a non-zero exit with one line that is not an internal error
    (evaluate's "matches: NO", exit 1, is a detection too)."""
    src, d, _ = fuzz_bed
    out = tmp_path_factory.mktemp("fuzz-out")
    commands = {
        "score": ["score", str(d), "split:members", "--device", "cpu"],
        "evaluate": ["evaluate", str(d), "--device", "cpu"],
        "audit": ["audit", str(d), "split:calibration", "--out", str(out / "a"), "--force", "--device", "cpu"],
        "report": ["report", str(d), "--out", str(out / "r.html")],
    }

    def result(cmd: str):
        rc, so, se = _cli(commands[cmd])
        shown = (out / "a" / "samples.csv").read_text() if cmd == "audit" and rc == 0 else so
        return rc, shown, se

    _refill(src, d)
    expected = {c: result(c) for c in commands}
    assert all(rc == 0 for rc, _, _ in expected.values()), expected

    @settings(max_examples=int(os.environ.get("ACTIVEMINT_FUZZ_CLI_EXAMPLES", "12")), deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        _refill(src, d)
        name = data.draw(st.sampled_from(FUZZ_FILES[:4] + FUZZ_FILES[5:]), label="file")  # checkpoints: --resume only
        what = mutate(data, d / name)
        if data.draw(st.booleans(), label="rebind") and name != "metrics.json":
            _resign(d)
        cmd = data.draw(st.sampled_from(sorted(commands)), label="command")
        rc, shown, err = result(cmd)
        if rc == 0:
            if cmd != "report":  # report's page is checked by its own tests; here: no silent failure
                assert shown == expected[cmd][1], f"{cmd} after {name}: {what}: different output, exit 0"
        elif cmd == "evaluate" and rc == 1:
            assert "matches the saved metrics.json: NO" in shown
        else:
            lines = err.strip().splitlines()
            assert rc == 2 and len(lines) == 1 and "internal error" not in err, (cmd, name, what, err)

    check()
