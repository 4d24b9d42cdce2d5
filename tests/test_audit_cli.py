"""`activemint audit` end to end on PNG files from real Fashion-MNIST members, and bad inputs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activemint.cli import main

RUN_FILES = ("config.yaml", "manifest.csv", "model.safetensors", "model.json", "scores.npz", "metrics.json", "metrics.jsonl")


@pytest.fixture(scope="module")
def env(audited_run_dir, tmp_path_factory):
    """A private copy of the run and folders of PNGs: 100 members, 20 fresh non-members."""
    from activemint.runs import load_run

    root = tmp_path_factory.mktemp("audit_cli")
    run_dir = root / "run"
    run_dir.mkdir()
    for name in RUN_FILES:
        shutil.copy2(audited_run_dir / name, run_dir / name)
    run = load_run(run_dir, device="cpu")
    data, splits = run.data, run.data.splits
    rng = np.random.default_rng(0)
    members = rng.choice(splits.members, 100, replace=False)
    nonmembers = rng.choice(splits.eval_nonmembers, 20, replace=False)
    (root / "members").mkdir()
    for i in members:
        Image.fromarray(data.train.images[i, 0].numpy()).save(root / "members" / f"train_{i:05d}.png")
    (root / "nonmembers").mkdir()
    for i in nonmembers:
        Image.fromarray(data.test.images[i, 0].numpy()).save(root / "nonmembers" / f"test_{i:05d}.png")
    expected = run.membership_logits(data.train.images[np.sort(members)])
    return {"root": root, "run": run_dir, "members": root / "members", "nonmembers": root / "nonmembers",
            "member_index": np.sort(members), "member_logits": expected}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


def test_audit_folder_of_member_pngs_end_to_end(env, capsys):
    out = env["root"] / "out-members"
    rc = main(["audit", str(env["run"]), str(env["members"]), "--out", str(out), "--device", "cpu"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert sorted(p.name for p in out.iterdir()) == [".activemint-audit", "audit.json", "report.html", "samples.csv", "summary.md"]
    summary = json.loads((out / "audit.json").read_text())
    assert summary["p_value"] < 1e-6 and summary["decision"] == "members detected"
    assert summary["member_fraction"]["ci_high"] >= summary["member_fraction"]["estimate"] > 0.85
    assert summary["data"]["n_images"] == 100 and len(summary["data"]["sha256"]) == 64
    assert summary["model"]["arch"] == "small_cnn" and summary["model"]["setup"] == "entry"
    assert len(summary["model"]["weights_sha256"]) == 64
    assert summary["calibration"]["n_calibration"] == 1000
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert len(rows) == 100
    # the PNGs carry the exact pixels: per-sample scores equal the model's on the source images
    got = np.array([float(r["membership_logit"]) for r in rows])  # files sorted by name = by index
    # The CSV's logits have 6 decimals (<= 5e-7 off); both sides are scored in this process from the same pixels, up to
    # float32 summation order if batches differ (~1e-7 x |logit| < 3e-6): 1e-5 holds on any CPU and thread count.
    np.testing.assert_allclose(got, env["member_logits"], atol=1e-5)
    assert {r["member_at_0.01_fpr"] for r in rows} <= {"0", "1"}
    flagged = sum(int(r["member_at_0.01_fpr"]) for r in rows)
    assert flagged == summary["per_sample"]["n_flagged"] > 20
    for r in rows:
        # The CSV prints the logit and the probability with 6 decimals each (a confident member's
        # sigmoid(logit) reads 1.000000).  Bound on |p - sigmoid(logit)| as read back:
        #   rounding of p                      <= 0.5e-6
        # + rounding of the logit, through sigmoid's slope (<= 1/4)   <= 0.25 * 0.5e-6 = 1.25e-7
        # + the probability's float32 computation (a few ops at 2^-24 ~ 6e-8 each, on values <= 1)  < 3e-7
        # = < 9.25e-7, whatever the CPU or thread count; 1e-6 holds by construction (5e-7 did not:
        # rounding alone reaches it, and a fresh clone saw 5.1e-7).
        p, logit = float(r["membership_probability"]), float(r["membership_logit"])
        assert 0 < float(r["conformal_p_value"]) <= 1 and 0 <= p <= 1
        assert abs(p - 1 / (1 + np.exp(-logit))) <= 1e-6
    assert summary["verdict"] in printed.out and "| mixture (decides) |" in printed.out
    assert (out / "summary.md").read_text() in printed.out
    assert (env["run"] / "calibration.json").is_file() and (env["run"] / "calibration.npz").is_file()
    assert _leftovers(env["root"]) == []


def test_file_list_and_data_hash_ignore_names_and_order(env, capsys):
    from activemint.audit import load_suspect
    from activemint.runs import load_run

    files = sorted(env["nonmembers"].glob("*.png"))
    lst = env["root"] / "list.txt"
    lst.write_text("# suspect files\n" + "\n".join(f"nonmembers/{p.name}" for p in reversed(files)) + "\n\n")
    out = env["root"] / "out-list"
    assert main(["audit", str(env["run"]), str(lst), "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    a = json.loads((out / "audit.json").read_text())
    assert a["data"]["n_images"] == 20
    # the same images under other names, in another order, from a folder: the same data hash
    renamed = env["root"] / "renamed"
    renamed.mkdir()
    for i, p in enumerate(files):
        shutil.copy(p, renamed / f"img_{len(files) - i:03d}.png")
    folder = load_suspect(load_run(env["run"], device="cpu"), [str(renamed)])
    assert folder.data_sha256 == a["data"]["sha256"]
    assert folder.ids != [str(p) for p in files]


def test_duplicates_count_once_in_the_set_test(env, capsys):
    dup = env["root"] / "dups"
    dup.mkdir()
    src = sorted(env["nonmembers"].glob("*.png"))[:5]
    for i, p in enumerate(src):
        shutil.copy(p, dup / p.name)
        shutil.copy(p, dup / f"copy_{i}.png")
    out = env["root"] / "out-dups"
    assert main(["audit", str(env["run"]), str(dup), "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    s = json.loads((out / "audit.json").read_text())
    assert s["data"]["n_images"] == 10 and s["data"]["n_unique"] == 5
    assert s["tests"]["exceedance"]["detail"]["n_suspect"] == 5 and s["tests"]["mixture"]["p_value"] > 0
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert sum(1 for r in rows if r["duplicate_of"]) == 5


def _bad(env, capsys, args, match):
    out = env["root"] / "out-bad"
    rc = main(["audit", str(env["run"]), *args, "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("activemint audit: error:"), err
    assert match in lines[0], err
    assert not out.exists()
    assert _leftovers(env["root"]) == []
    return lines[0]


def test_missing_folder(env, capsys):
    _bad(env, capsys, [str(env["root"] / "no-such-folder")], "does not exist")


def test_empty_folder(env, capsys):
    (env["root"] / "empty").mkdir(exist_ok=True)
    _bad(env, capsys, [str(env["root"] / "empty")], "holds no image files")


def test_unreadable_image(env, capsys):
    d = env["root"] / "broken"
    d.mkdir(exist_ok=True)
    shutil.copy(next(env["members"].glob("*.png")), d / "ok.png")
    (d / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    _bad(env, capsys, [str(d)], "cannot read image")


def test_wrong_size_or_channels_are_errors_unless_asked_to_convert(env, capsys):
    src = sorted(env["members"].glob("*.png"))[:3]
    big, rgb, both = (env["root"] / n for n in ("big", "rgb", "both"))
    for d in (big, rgb, both):
        d.mkdir(exist_ok=True)
    for p in src:
        Image.open(p).resize((32, 32)).save(big / p.name)
        Image.open(p).convert("RGB").save(rgb / p.name)
        Image.open(p).resize((32, 32)).convert("RGB").save(both / p.name)
    line = _bad(env, capsys, [str(big)], "is 32x32 pixels; the model takes 28x28")
    assert "--resize" in line
    line = _bad(env, capsys, [str(rgb)], "has 3 channels (PIL mode RGB); the model takes 1-channel greyscale")
    assert "--convert-channels" in line
    _bad(env, capsys, [str(both), "--resize"], "has 3 channels")
    _bad(env, capsys, [str(both), "--convert-channels"], "is 32x32 pixels")
    out = env["root"] / "out-converted"
    assert main(["audit", str(env["run"]), str(both), "--resize", "--convert-channels", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    s = json.loads((out / "audit.json").read_text())
    assert s["data"]["n_resized"] == 3 and s["data"]["n_channels_converted"] == 3
    assert s["options"]["resize"] is True and s["options"]["convert_channels"] is True


def test_run_without_checkpoint(env, capsys, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.yaml", "manifest.csv", "metrics.jsonl"):
        shutil.copy2(env["run"] / name, bare / name)
    out = tmp_path / "out"
    rc = main(["audit", str(bare), str(env["members"]), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "has no checkpoint model.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (bare / "calibration.json").exists()


def test_existing_output_folder_is_not_overwritten(env, capsys):
    out = env["root"] / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["audit", str(env["run"]), str(env["nonmembers"]), "--out", str(out), "--device", "cpu"])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_failure_while_writing_leaves_nothing(env, capsys, monkeypatch):
    import activemint.report.audit as rep

    def boom(result):
        raise ValueError("renderer failed")

    monkeypatch.setattr(rep, "audit_html", boom)
    _bad(env, capsys, [str(env["nonmembers"])], "renderer failed")


def test_split_role_input(env, capsys):
    out = env["root"] / "out-split"
    assert main(["audit", str(env["run"]), "split:eval_nonmembers", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    s = json.loads((out / "audit.json").read_text())
    assert s["data"]["n_images"] == 2000
    # The same count over the same 2000 samples, divided once each: equal up to one float64 rounding.
    assert s["per_sample"]["n_flagged"] / 2000 == pytest.approx(s["calibration"]["observed_fpr_eval_nonmembers"])
    # unseen non-members: under H0 a valid p-value is below 1e-6 with probability <= 1e-6
    assert s["p_value"] > 1e-6


def test_plain_run_has_nothing_to_audit_with(plain_run_dir, env, capsys, tmp_path):
    out = tmp_path / "out"
    rc = main(["audit", str(plain_run_dir), str(env["nonmembers"]), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "plain run (mint off)" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (plain_run_dir / "calibration.json").exists()
