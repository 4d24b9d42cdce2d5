"""Neighbourhood scoring: views that undo a change, seeded view sets, aggregations, and the
``--neighbourhood`` option of ``activemint robustness`` and ``audit``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from activemint.cli import main
from activemint.neighbourhood import (
    VIEW_SETS,
    Aggregate,
    NeighbourhoodError,
    get_view_set,
    neighbourhood_scores,
    parse_aggregate,
    parse_aggregates,
    view_scores,
)
from activemint.transforms import apply_transform


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """200 real Fashion-MNIST training images (uint8, 1x28x28)."""
    from conftest import require_fashion_mnist

    from activemint.data import load_dataset

    require_fashion_mnist()
    return load_dataset("fashion-mnist", "train").images[:200].clone()


def test_view_sets_start_with_the_exact_image_and_have_no_duplicates(images):
    for name, vs in VIEW_SETS.items():
        assert vs.views[0].is_identity, name
        assert len(set(vs.views)) == len(vs), name
        assert torch.equal(vs.views[0].apply(images), images)
        for v in vs.views:
            out = v.apply(images[:5])
            assert out.dtype == torch.uint8 and out.shape == images[:5].shape, (name, v.label())
    assert [len(VIEW_SETS[k]) for k in ("exact", "shift1", "shift2", "photometric")] == [1, 9, 25, 5]


def test_a_shift_view_undoes_a_shifted_copy(images):
    # A 2-px shifted copy (zero fill) is shifted back by one view of shift2: pixel for pixel away from
    # the 2-px band along the edges (what the shift pushed out of the frame is lost).
    shifted = apply_transform(images, "translate", "2px", seed=0)
    inner = np.s_[..., 2:-2, 2:-2]

    def undone(name):
        views = torch.stack([v.apply(shifted) for v in get_view_set(name).views])  # (V, N, C, H, W)
        return (views[inner] == images.unsqueeze(0)[inner]).flatten(2).all(dim=2).any(dim=0)

    assert bool(undone("shift2").all())
    # shift1 cannot undo a 2-px shift of these real images (no view lines the interior up)
    assert not bool(undone("shift1").any())
    # and the exact image alone does not match the shifted copy
    assert not bool((shifted[inner] == images[inner]).flatten(1).all(dim=1).any())


def test_random_view_sets_are_seeded():
    a, b, c = get_view_set("random:12", 0), get_view_set("random:12", 0), get_view_set("random:12", 1)
    assert a == b and len(a) == 12 and a.views[0].is_identity
    assert a.views != c.views  # another seed draws other views (continuous draws: equal with probability 0)


def test_unknown_view_set_and_aggregation_are_one_line_errors():
    for bad in ("nope", "random:1", "random:x", "random:"):
        with pytest.raises(NeighbourhoodError) as e:
            get_view_set(bad)
        assert "\n" not in str(e.value) and bad in str(e.value)
    for bad in ("median", "topk:0", "trimmed:0.5", "topk:x", "max:2", ""):
        with pytest.raises(NeighbourhoodError):
            parse_aggregates(bad)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 6)), elements=st.floats(-50, 50)),
       st.integers(1, 15), st.floats(0, 0.49))
def test_aggregations_match_their_definitions(s, k, f):
    v = len(s)
    np.testing.assert_array_equal(parse_aggregate("max")(s), s.max(axis=0))
    # float64 means / sorts of the same few values in possibly another order: ~1e-15 x |s|; 1e-12 holds (numpy, no threads).
    np.testing.assert_allclose(parse_aggregate("mean")(s), s.mean(axis=0), rtol=1e-12, atol=1e-12)
    top = np.array([np.mean(sorted(col)[::-1][:min(k, v)]) for col in s.T])
    np.testing.assert_allclose(Aggregate("topk", k)(s), top, rtol=1e-12, atol=1e-12)
    cut = int(np.floor(f * v))
    trim = np.array([np.mean(sorted(col)[cut:v - cut]) for col in s.T])
    np.testing.assert_allclose(Aggregate("trimmed", f)(s), trim, rtol=1e-12, atol=1e-12)
    # every aggregation lies between the lowest and the highest view score
    for a in (parse_aggregate("max"), parse_aggregate("mean"), Aggregate("topk", k), Aggregate("trimmed", f)):
        got = a(s)
        assert np.all(got <= s.max(axis=0) + 1e-9) and np.all(got >= s.min(axis=0) - 1e-9)


def test_zmax_standardises_each_view_on_the_reference():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 50)) * np.array([[1.0], [2.0], [0.5], [3.0]]) + np.array([[0.0], [5.0], [-1.0], [2.0]])
    s = rng.normal(size=(4, 7))
    agg = parse_aggregate("zmax").fit(ref)
    expect = ((s - ref.mean(axis=1, keepdims=True)) / ref.std(axis=1, keepdims=True)).max(axis=0)
    # The same float64 z-scores (mean, std of 4 x 7 values): ~1e-15 relative apart.
    np.testing.assert_allclose(agg(s), expect, rtol=1e-12, atol=1e-12)
    # a view that scores every image higher by a constant no longer decides the maximum
    shifted_ref, shifted_s = ref.copy(), s.copy()
    shifted_ref[1] += 100.0
    shifted_s[1] += 100.0
    # Adding 100 loses ~log2(100) ~ 7 bits of the float64 mantissa: error ~100 x 1.1e-16 x a few ops ~1e-13; 1e-9 holds.
    np.testing.assert_allclose(parse_aggregate("zmax").fit(shifted_ref)(shifted_s), expect, rtol=1e-9, atol=1e-9)
    with pytest.raises(NeighbourhoodError):
        parse_aggregate("zmax")(s)  # not fitted
    with pytest.raises(NeighbourhoodError):
        agg(s[:3])  # fitted on other views


def test_view_scores_call_the_scorer_once_per_view(images):
    calls = []

    def score(x):
        calls.append(len(x))
        return x.double().mean(dim=(1, 2, 3)).numpy()

    vs = get_view_set("shift1")
    got = view_scores(score, images, vs)
    assert got.shape == (9, len(images)) and sum(calls) == 9 * len(images)
    np.testing.assert_array_equal(got[0], score(images))
    np.testing.assert_array_equal(neighbourhood_scores(score, images, "shift1", "max"), got.max(axis=0))


# ------------------------------------------------------------------- on a trained run
SMALL = {"members": 400, "external": 800, "validation": 100, "calibration": 300, "eval_nonmembers": 400, "epochs": 15}


@pytest.fixture(scope="module")
def small_run():
    from conftest import trained_run

    return trained_run(**SMALL)  # shared with test_robustness / test_compare (same cache key)


@pytest.mark.slow
def test_robustness_neighbourhood_rows_are_identical_on_a_rerun(small_run, tmp_path):
    args = ["robustness", str(small_run), "--transforms", "translate:2px", "--scorers", "active_mint,phash",
            "--max-samples", "150", "--bootstrap", "0", "--neighbourhood", "random:6", "--aggregate", "max,topk:2,zmax", "--save-scores"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "robustness.json").read_text()) for d in "ab")
    assert a["rows"] == b["rows"]
    with np.load(tmp_path / "a" / "scores.npz") as za, np.load(tmp_path / "b" / "scores.npz") as zb:
        assert za.files == zb.files and len(za.files) == 8 * 2 * 3  # rows x copies x roles
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k])
    keys = {r["scorer"] for r in a["rows"]}
    assert keys == {f"{s}{n}" for s in ("active_mint", "phash")
                    for n in ("", "@random:6/max", "@random:6/topk:2", "@random:6/zmax")}
    assert a["info"]["neighbourhood"]["n_views"] == 6 and "6 views" in a["info"]["neighbourhood"]["cost_per_query"]
    # The view set "exact" is the plain score: its rows equal the plain scorer's, figure for figure.
    assert main(["robustness", str(small_run), "--transforms", "translate:2px", "--scorers", "active_mint",
                 "--max-samples", "150", "--bootstrap", "0", "--neighbourhood", "exact", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c" / "robustness.json").read_text())["rows"]
    by = {(r["scorer"], r["transform"]): r for r in c}
    for t in ("none", "translate"):
        plain, nb = by["active_mint", t], by["active_mint@exact/max", t]
        assert {k: v for k, v in plain.items() if k not in ("scorer", "method")} == \
               {k: v for k, v in nb.items() if k not in ("scorer", "method")}


@pytest.mark.slow
def test_audit_with_neighbourhood_calibrates_on_nonmembers_scored_the_same_way(small_run):
    from activemint.audit import audit
    from activemint.runs import load_run

    r = audit(small_run, ["split:calibration"], neighbourhood="shift1", aggregate="zmax", device="cpu",
              save_calibration=False)
    run = load_run(small_run, device="cpu")
    split = run.data.splits
    cal_images = run.data.train.images[torch.as_tensor(np.asarray(split.calibration))]
    externals = run.data.train.images[torch.as_tensor(np.asarray(split.external))]
    expect = neighbourhood_scores(run.membership_logits, cal_images, "shift1", "zmax", reference=externals)
    # the suspect set is the calibration split itself: its scores are the calibration scores
    np.testing.assert_array_equal(np.sort(r.scores), np.sort(r.calibration.scores))
    np.testing.assert_array_equal(np.sort(r.calibration.scores), np.sort(expect))
    # ... so the calibrated rule flags exactly n_above of them
    assert int(r.flagged.sum()) == r.calibration.n_above
    assert r.options["neighbourhood"]["name"] == "shift1" and r.options["neighbourhood"]["aggregate"] == "zmax"
    assert "neighbourhood shift1" in r.calibration.source
    again = audit(small_run, ["split:calibration"], neighbourhood="shift1", aggregate="zmax", device="cpu",
                  save_calibration=False)
    np.testing.assert_array_equal(again.scores, r.scores)


def test_cli_unknown_view_set_is_one_line_exit_2(tmp_path, capsys):
    # checked before the run is read: the run folder need not exist for the error to be about the option
    run = tmp_path / "no-run"
    for cmd in (["robustness", str(run), "--out", str(tmp_path / "x")],
                ["audit", str(run), "split:members", "--out", str(tmp_path / "y")]):
        for extra in (["--neighbourhood", "wobble"], ["--neighbourhood", "shift1", "--aggregate", "median"]):
            assert main([*cmd, *extra]) == 2, (cmd[0], extra)
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"activemint {cmd[0]}: error:") and "\n" not in err, err
            assert extra[-1] in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("command", ["robustness", "audit"])
def test_cli_help_names_every_view_set_and_aggregation(command, capsys):
    # The help texts are written out (the CLI does not import torch to build its parser): this
    # keeps them from going stale when a view set or an aggregation is added.
    from activemint.cli import main
    from activemint.neighbourhood import AGGREGATES, VIEW_SETS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*VIEW_SETS, *AGGREGATES]:
        assert name in text, name
