"""benchmarks/severity.py: severity order from the transformation registry, a calibrated 0.1% threshold, the tables."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark

from activemint.metrics import calibrate_threshold, min_calibration_size
from activemint.transforms import TRANSFORMS


@pytest.fixture(scope="module")
def severity():
    return load_benchmark("severity")


def _scores(copies_shift: dict[str, float], n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Saved-scores layout of `robustness --save-scores`: members shifted up by ``shift`` per copy."""
    rng = np.random.default_rng(seed)
    z = {}
    for c, shift in copies_shift.items():
        z[f"s|{c}|members"] = rng.normal(shift, 1, n)
        z[f"s|{c}|eval_nonmembers"] = rng.normal(0, 1, n)
        z[f"s|{c}|calibration"] = rng.normal(0, 1, n)
    return z


def test_severity_order_follows_the_registry_mildest_first(severity):
    for name in ("translate", "crop", "jpeg", "perspective"):
        levels = list(TRANSFORMS[name].levels)
        assert [severity.severity_order(f"{name}:{lv}") for lv in levels] == [(name, i) for i in range(len(levels))]
    assert severity.severity_order("none:exact") is None
    assert severity.severity_order("crop+jpeg:0.9+q50") is None  # compositions have no severity order
    assert severity.severity_order("crop:0.85") is None  # not a named level


def test_monotonicity_lists_each_rise_with_whether_the_intervals_overlap(severity):
    # crop: 0.95 strong, 0.9 weak, 0.8 strong again -> one rise (0.9 -> 0.8), far apart;
    # translate falls level by level -> no rise.
    z = _scores({"none:exact": 3.0, "crop:0.95": 2.0, "crop:0.9": 0.2, "crop:0.8": 2.5,
                 "translate:1px": 2.0, "translate:2px": 1.0, "translate:4px": 0.3})
    rows = [severity.copy_row(z, "s", c, bootstrap=50, seed=0) for c in
            ("none:exact", "crop:0.8", "crop:0.95", "crop:0.9", "translate:4px", "translate:1px", "translate:2px")]
    mono = {m["transform"]: m for m in severity.monotonicity(rows)}
    assert set(mono) == {"crop", "translate"}
    assert mono["translate"]["falls_with_severity"] and not mono["translate"]["rises"]
    assert mono["translate"]["levels"] == ["translate:1px", "translate:2px", "translate:4px"]
    crop = mono["crop"]
    assert not crop["falls_with_severity"]
    assert [(r["from"], r["to"]) for r in crop["rises"]] == [("crop:0.9", "crop:0.8")]
    # members shifted by 0.2 vs 2.5 sd, 2,000 each: AUC about 0.56 vs 0.96, bootstrap intervals
    # ~ +-0.02 wide: apart.
    assert crop["rises"][0]["intervals_overlap"] is False
    md = severity.markdown(rows, severity.monotonicity(rows), ["s"])
    assert "| `s` | crop |" in md and "crop:0.9 " in md


def test_calibrated_low_fpr_uses_enough_nonmembers_and_holds_the_rest_out(severity):
    rng = np.random.default_rng(1)
    m, ev, cal = rng.normal(2, 1, 2000), rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    r = severity.calibrated_low_fpr(m, ev, cal, 0.001, seed=0)
    need = min_calibration_size(0.001)
    assert r["needed"] == need and r["n_calibration"] == need
    assert r["from_eval_nonmembers"] == need - len(cal) and r["n_held_out"] == len(ev) - (need - len(cal))
    # the threshold is the project's calibration rule on exactly the calibration set plus the
    # first (need - 2000) evaluation non-members of the seeded permutation
    perm = np.random.default_rng(0).permutation(len(ev))
    t = calibrate_threshold(np.r_[cal, ev[perm[:need - len(cal)]]], 0.001)
    assert r["threshold"] == t
    assert r["tpr"] == float((m > t).mean()) and r["fpr"] == float((ev[perm[need - len(cal):]] > t).mean())
    # too few non-members in all: a note, no figure
    short = severity.calibrated_low_fpr(m, ev[:500], cal[:500], 0.001, seed=0)
    assert "tpr" not in short and str(need) in short["note"]
