"""``activemint robustness``: every baseline's row, the exact-hash baseline, one-line errors.

Uses the small cached session runs of test_compare.py (400 members, 15 epochs; trained once
by ``conftest.trained_run``) and a seeded subset of 150 samples per role.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import trained_run

from activemint.cli import main
from activemint.robustness import SCORERS, RobustnessError, run_robustness

# the same sizes as test_compare.SMALL, so both share the cached runs (300 calibration: the
# calibration rule needs 299 non-members for a 1% FPR threshold)
SMALL = {"members": 400, "external": 800, "validation": 100, "calibration": 300, "eval_nonmembers": 400, "epochs": 15}


@pytest.fixture(scope="module")
def small_runs():
    return trained_run(**SMALL), trained_run(**SMALL, mint=False)


def _hashes(root) -> dict[str, str]:
    """Every file under ``root`` (names and SHA-256 of the bytes)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_cli_writes_table_plot_and_every_baseline(small_runs, tmp_path, capsys):
    active, plain = small_runs
    out = tmp_path / "rb"
    before = _hashes(active), _hashes(plain)
    rc = main(["robustness", str(active), "--plain-run", str(plain), "--transforms", "translate:2px,jpeg:q50",
               "--max-samples", "150", "--bootstrap", "0", "--out", str(out)])
    assert rc == 0
    # The input runs are read, never written: the post-hoc head trained on the plain run is cached in OUT/cache.
    assert (_hashes(active), _hashes(plain)) == before
    assert list((out / "cache" / "posthoc-heads").glob("posthoc_head-*.safetensors"))
    for name in ("robustness.md", "robustness.csv", "robustness.json", "robustness.png", "robustness.html"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "robustness.json").read_text())
    rows = doc["rows"]
    # Every baseline has its row; the robust post-hoc head only where the run has an audit policy.
    assert {r["scorer"] for r in rows} == set(SCORERS) - {"posthoc_head_robust"}
    assert "audit-policy" in doc["info"]["skipped"]["posthoc_head_robust"]
    assert {(r["transform"], r["level"]) for r in rows} == {("none", "exact"), ("translate", "2px"), ("jpeg", "q50")}
    by = {(r["scorer"], r["transform"]): r for r in rows}
    # Exact lookup: every exact member is in the manifest, no non-member is -> AUC 1, no false positive.
    assert by["exact_sha256", "none"]["auc"] == 1.0 and by["exact_sha256", "none"]["fpr_at_exact_cal"] == 0.0
    # A shifted copy has other pixels: no member is found any more (all scores 0 -> AUC 0.5).
    assert by["exact_sha256", "translate"]["auc"] == 0.5 and by["exact_sha256", "translate"]["tpr_at_exact_cal"] == 0.0
    # Perceptual hash: an exact copy has distance 0 to its member.
    assert by["phash", "none"]["tpr_at_exact_cal"] == 1.0
    # The HTML run report picks the section up when written under RUN_DIR/robustness.
    from activemint.report.robustness import robustness_section

    assert "Robustness to near-copies" in robustness_section(out)


def test_bad_arguments_one_line_exit_2(small_runs, tmp_path, capsys):
    active, _ = small_runs
    for args in (["--transforms", "blur"], ["--transforms", "jpeg:500"], ["--transforms", "noise:q9"],
                 ["--scorers", "magic"], ["--members", "seen"]):
        assert main(["robustness", str(active), "--out", str(tmp_path / "x"), *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("activemint robustness: error:") and "\n" not in err, err
    # A run directory without its manifest.
    bare = tmp_path / "no-manifest"
    shutil.copytree(active, bare, ignore=shutil.ignore_patterns("checkpoints", "robustness"))
    (bare / "manifest.csv").unlink()
    assert main(["robustness", str(bare), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "manifest" in err and "\n" not in err
    with pytest.raises(RobustnessError):
        run_robustness(bare, tmp_path / "z")


def test_markdown_gives_every_rate_its_interval_and_the_compare_headline_its_n():
    """Issue 24: every TPR at an FPR carries its interval and n: the robustness table's calibrated columns too,
    and compare's one headline line."""
    from activemint.compare.results import MethodResult, headline_line
    from activemint.metrics import membership_metrics, tpr_interval
    from activemint.robustness.evaluate import Row, markdown_table

    row = Row("active_mint", "Active MINT", "active run", "none", "exact", 0.9, 0.88, 0.92, 0.4, 0.1, 1.0, 0.35, 0.008,
              1.1, 0.30, 0.009, 300, 400)
    md = markdown_table([row])
    for v, n in ((0.35, 300), (0.008, 400), (0.30, 300), (0.009, 400)):
        lo, hi = tpr_interval(v, n)
        assert f"{v:.3f} [{lo:.3f}, {hi:.3f}]" in md, (v, md)
    rng = np.random.default_rng(0)
    m = membership_metrics(rng.normal(1, 1, 300), rng.normal(0, 1, 400), bootstrap=0)
    rows = [MethodResult(method=name, model=model, family=name, description="", needs=[], params={}, half_threshold=None,
                         metrics=m, test_accuracy=0.9, scores=None)
            for name, model in (("Active MINT", "active"), ("Loss", "plain"))]
    line = headline_line(rows)
    lo, hi = tpr_interval(m.tpr_at_1pct_fpr, 300)
    assert f"{m.tpr_at_1pct_fpr:.3f} [{lo:.3f}, {hi:.3f}]" in line and "n = 300 members / 400 non-members" in line
