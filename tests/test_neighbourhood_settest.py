"""benchmarks/neighbourhood_settest.py: --matched-only keeps the same draws, --copies selects, errors are one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
# Real scores: the 34-epoch robust aMINT run of docs/what-amint-detects.md's fifth round (2,000 of each role).
SCORES = ROOT / "benchmarks" / "results" / "neighbourhood" / "round5" / "sev-seen" / "scores.npz"


@pytest.fixture(scope="module")
def settest():
    return load_benchmark("neighbourhood_settest")


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory) -> Path:
    if not SCORES.is_file():
        pytest.skip(f"{SCORES} not in this checkout")
    d = tmp_path_factory.mktemp("rb")
    with np.load(SCORES, allow_pickle=False) as f:
        keep = {k: f[k] for k in f.files if k.split("|")[1] in ("none:exact", "translate:2px")}
    np.savez(d / "scores.npz", **keep)
    return d


def test_matched_only_gives_the_same_matched_columns(settest, scores_dir, tmp_path):
    common = [str(scores_dir), "--scorer", "active_mint", "--copies", "translate:2px", "--draws", "20"]
    assert settest.main([*common, "--out", str(tmp_path / "full.json")]) == 0
    assert settest.main([*common, "--matched-only", "--out", str(tmp_path / "matched.json")]) == 0
    full = json.loads((tmp_path / "full.json").read_text())["rows"]
    matched = json.loads((tmp_path / "matched.json").read_text())["rows"]
    assert [r["copy"] for r in full] == [r["copy"] for r in matched] == ["translate:2px"]
    f, m = full[0], matched[0]
    assert "members_max_p" in f and "members_max_p" not in m and "nonmembers_deployed_flagged_at_0.01" not in m
    # the same seeded draws either way: every matched column is identical
    for k, v in m.items():
        assert f[k] == v, k


def test_bounds_are_the_binomial_ones(settest):
    from scipy import stats

    assert settest.binomial_bound(300, 0.01) == 14
    assert stats.binom.sf(14, 300, 0.01) < 1e-6 <= stats.binom.sf(13, 300, 0.01)
    assert settest.binomial_bound(300, 1e-4) == 3


def test_unknown_copy_is_a_one_line_exit(settest, scores_dir, tmp_path):
    with pytest.raises(SystemExit) as e:
        settest.main([str(scores_dir), "--scorer", "active_mint", "--copies", "crop:0.7", "--out", str(tmp_path / "x.json")])
    msg = str(e.value.code)
    assert "crop:0.7" in msg and "\n" not in msg
