"""Calibrated per-sample decisions: the one calibration rule, its saved form, and its FPR on real data."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from activemint.audit.calibration import (
    CALIBRATION_JSON,
    CALIBRATION_NPZ,
    CalibrationError,
    calibrate_run,
    conformal_pvalues,
    load_calibration,
    make_calibration,
    n_allowed_above,
)
from activemint.metrics import calibrate_threshold

RUN_FILES = ("config.yaml", "manifest.csv", "model.safetensors", "model.json", "scores.npz", "metrics.json", "metrics.jsonl")


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a finished run (the files an audit reads), so tests never write into the cache."""
    dst.mkdir(parents=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def run_copy(audited_run_dir, tmp_path_factory) -> Path:
    return copy_run(audited_run_dir, tmp_path_factory.mktemp("cal") / "run")


@pytest.fixture(scope="module")
def scores(audited_run_dir) -> dict[str, np.ndarray]:
    with np.load(audited_run_dir / "scores.npz") as z:
        return {k: z[k] for k in z.files}


def test_conformal_pvalues_by_hand():
    cal = np.array([0.0, 1.0, 2.0, 3.0])
    # (1 + #{cal >= s}) / 5
    # Counts divided by 5: exact up to one float64 rounding (1e-16); rtol 1e-7 is headroom.
    np.testing.assert_allclose(conformal_pvalues([3.5, 3.0, 1.5, -1.0], cal), [1 / 5, 2 / 5, 3 / 5, 5 / 5])


def test_threshold_is_the_metrics_rule_and_a_pvalue_cut_on_real_scores(scores):
    cal, probe = scores["calibration"], np.r_[scores["members"], scores["eval_nonmembers"], scores["calibration"]]
    for target in (0.005, 0.01, 0.05, 0.2):
        c = make_calibration(cal, target)
        assert c.threshold == calibrate_threshold(cal, target)  # one rule: the audit's is the metrics engine's
        k = n_allowed_above(len(cal), target)
        assert int((cal > c.threshold).sum()) == k == c.n_above
        # flagging = conformal p-value <= (k + 1) / (n + 1), the rule's mean FPR, below the target
        np.testing.assert_array_equal(probe > c.threshold, conformal_pvalues(probe, cal) <= (k + 1) / (len(cal) + 1))
        assert c.expected_fpr == (k + 1) / (len(cal) + 1) < target
        # P(FPR > target) = P(Bin(n, target) <= k) <= delta, and k is the largest such
        assert stats.binom.cdf(k, len(cal), target) <= c.delta < stats.binom.cdf(k + 1, len(cal), target)


def test_too_few_calibration_scores_is_a_clear_error():
    with pytest.raises(CalibrationError, match="needs at least 299 calibration"):
        make_calibration(np.arange(50.0), 0.01)


def test_calibrated_fpr_on_fresh_nonmembers_is_within_sampling_error(scores):
    """1% target -> observed FPR on the run's evaluation non-members (test split, never used
    for calibration) within sampling error of the rule's law, and not above 1% beyond it."""
    cal = make_calibration(scores["calibration"], 0.01, eval_nonmember_scores=scores["eval_nonmembers"])
    fresh = scores["eval_nonmembers"]
    x = int(cal.decide(fresh).sum())
    n, k, m = cal.n, cal.n_above, len(fresh)
    assert cal.expected_fpr <= 0.01
    # Sampling error of both the calibration set (threshold) and the fresh set: the count of
    # fresh non-members above the threshold is BetaBinomial(m, k + 1, n - k).
    # Central interval of probability 1 - 5e-7: a correct rule falls outside it with
    # probability <= 5e-7 (scipy.stats.betabinom quantiles).
    lo, hi = stats.betabinom.ppf([2.5e-7, 1 - 2.5e-7], m, k + 1, n - k)
    assert lo <= x <= hi, (x, lo, hi)
    # and plainly: the observed rate is within 5.03 standard errors (two-sided normal tail
    # 5e-7) of 1% on 2000 samples plus the calibration's own (k + 1) / (n + 1) uncertainty.
    # Both checks together: false failure < 1e-6.
    se = np.sqrt(0.01 * 0.99 / m + 0.01 * 0.99 / n)
    assert abs(x / m - 0.01) <= 5.03 * se, (x / m, se)
    assert cal.observed_fpr() == x / m


def test_calibration_is_saved_and_reused(run_copy):
    from activemint.runs import load_run

    run = load_run(run_copy, device="cpu")
    cal = calibrate_run(run, 0.01)
    doc = json.loads((run_copy / CALIBRATION_JSON).read_text())
    assert doc["threshold_logit"] == cal.threshold and doc["target_fpr"] == 0.01
    assert doc["n_calibration"] == 1000 and doc["model_sha256"] == cal.model_sha256
    again = load_calibration(run_copy)
    assert again.threshold == cal.threshold
    np.testing.assert_array_equal(again.scores, cal.scores)
    # another target reuses the saved scores and records its threshold
    cal5 = calibrate_run(run, 0.05)
    assert cal5.threshold < cal.threshold
    assert set(json.loads((run_copy / CALIBRATION_JSON).read_text())["thresholds_by_target_fpr"]) == {"0.01", "0.05"}
    # a calibration made with other weights is not reused
    doc["model_sha256"] = "0" * 64
    (run_copy / CALIBRATION_JSON).write_text(json.dumps(doc))
    fresh = calibrate_run(run, 0.01)
    assert fresh.model_sha256 == cal.model_sha256 != "0" * 64
    # a tampered score file is refused
    with np.load(run_copy / CALIBRATION_NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["calibration"] = arrays["calibration"] - 1.0
    np.savez(run_copy / CALIBRATION_NPZ, **arrays)
    with pytest.raises(CalibrationError, match="does not match"):
        load_calibration(run_copy)


def test_calibration_files_with_unknown_or_mistyped_entries_are_refused(audited_run_dir, tmp_path):
    """calibration.json / .npz hold exactly what save_calibration writes: anything else is one line naming the file."""
    from activemint.runs import load_run

    run_copy = copy_run(audited_run_dir, tmp_path / "run")
    calibrate_run(load_run(run_copy, device="cpu"), 0.01)
    jpath, npath = run_copy / CALIBRATION_JSON, run_copy / CALIBRATION_NPZ
    good = jpath.read_text()
    for change, match in (({"../../etc/passwd": "x"}, "unknown entries"), ({"target_fpr": "ten"}, "'target_fpr' is not a number"),
                          ({"delta": 2.0}, "'delta' is not a number"), ({"thresholds_by_target_fpr": [1]}, "not an object")):
        jpath.write_text(json.dumps({**json.loads(good), **change}))
        with pytest.raises(CalibrationError, match=match) as e:
            load_calibration(run_copy)
        assert str(jpath) in str(e.value) and "\n" not in str(e.value)
    jpath.write_text(good)
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(npath, **arrays, extra=np.zeros(3))
    with pytest.raises(CalibrationError, match="unknown arrays"):
        load_calibration(run_copy)


def test_calibration_without_scores_file_scores_the_manifest(run_copy, scores, tmp_path):
    """A run without scores.npz is calibrated by scoring its calibration split with the model."""
    from activemint.runs import load_run

    bare = tmp_path / "run"
    bare.mkdir()
    for name in ("config.yaml", "manifest.csv", "model.safetensors", "model.json"):
        shutil.copy2(run_copy / name, bare / name)
    cal = calibrate_run(load_run(bare, device="cpu"), 0.01, save=False)
    assert cal.source.startswith("model")
    # float32 logits scored again now vs those saved at training: the same weights and pixels, but possibly another batch
    # split or thread count (summation order): ~1e-7 x |logit| (< 30) per op, < 1e-5; 1e-4 holds on any CPU.
    np.testing.assert_allclose(cal.scores, scores["calibration"], atol=1e-4)
    np.testing.assert_allclose(cal.member_scores, scores["members"], atol=1e-4)
    assert not (bare / CALIBRATION_JSON).exists()  # save=False leaves the run untouched


def test_calibration_saved_by_the_earlier_rule_is_recomputed(audited_run_dir, tmp_path):
    """A calibration.json of format /1 (the earlier conformal-mean threshold) is never reused."""
    from activemint.runs import load_run

    run_dir = copy_run(audited_run_dir, tmp_path / "run")
    run = load_run(run_dir, device="cpu")
    cal = calibrate_run(run, 0.01)
    doc = json.loads((run_dir / CALIBRATION_JSON).read_text())
    assert doc["format"] == "activemint-calibration/2" and doc["delta"] == cal.delta
    old_threshold = float(np.sort(cal.scores)[cal.n - int(0.01 * (cal.n + 1))])  # what /1 kept
    doc.update(format="activemint-calibration/1", threshold_logit=old_threshold,
               thresholds_by_target_fpr={"0.01": old_threshold})
    (run_dir / CALIBRATION_JSON).write_text(json.dumps(doc))
    again = calibrate_run(run, 0.01)
    assert again.threshold == cal.threshold != old_threshold
    assert json.loads((run_dir / CALIBRATION_JSON).read_text())["format"] == "activemint-calibration/2"
