"""``compare`` end to end on real Fashion-MNIST, with tiny reference models; and its cache.

The audited and plain runs are small cached session runs (400 members, 15 epochs; trained
once by ``conftest.trained_run``); the reference models (4, one epoch each), the passive
heads (one epoch) and the gMINT classifiers (3 epochs, 300 external samples) are
deliberately tiny: this checks the pipeline, the files and the cache, not the strength of
the attacks (the closed-form tests in test_attacks_scores.py check the LiRA / RMIA math).
The first call trains into an empty cache; later calls must not.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import trained_run

from activemint.attacks import GradientMintConfig, PassiveMintConfig, ReferenceConfig
from activemint.cli import main
from activemint.compare import COMPARE_SCORERS, run_compare
from activemint.metrics import membership_metrics
from activemint.runs import ensure_run, load_run
from activemint.scorers import Scorer, cross_fit_folds, cross_fit_scores, register, unregister
from activemint.training import TrainConfig

#: Small splits keep every per-sample method cheap (gMINT, reference logits, heads).
# calibration >= 299: the one calibration rule's minimum for a 1% FPR threshold at 95% confidence
SMALL = dict(members=400, external=800, validation=100, calibration=300, eval_nonmembers=400, epochs=15)
REQUIRED = {"Active MINT", "Passive MINT", "gMINT", "Loss", "Confidence (max softmax)", "Entropy", "Modified entropy",
            "LiRA online", "LiRA online (fixed variance)", "LiRA offline", "LiRA offline (fixed variance)",
            "RMIA offline (a=0.3)", "RMIA online", "Passive MINT (cross-fit)", "gMINT (cross-fit)"}
TINY = dict(reference=ReferenceConfig(n_models=4, epochs=1, population=300),
            configs={"passive_mint": PassiveMintConfig(epochs=1), "gmint": GradientMintConfig(epochs=3, external_limit=300)},
            bootstrap=20, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def small_runs():
    return trained_run(**SMALL), trained_run(**SMALL, mint=False)


@pytest.fixture(scope="module")
def first(small_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    active_dir, plain_dir = small_runs
    result = run_compare(None, tmp / "out1", active_run=active_dir, plain_run=plain_dir, cache_dir=tmp / "cache", **TINY)
    return tmp, result


def test_compare_rows_files_and_headline(first, small_runs):
    tmp, res = first
    audited_run_dir, plain_run_dir = small_runs
    assert {r.method for r in res.rows} == REQUIRED
    # One row per (method, model); the methods that need aMINT or a plain model appear only on it.
    keys = [(r.method, r.model) for r in res.rows]
    assert len(set(keys)) == len(keys)
    assert {r.model for r in res.rows if r.method == "Active MINT"} == {"active"}
    assert {r.model for r in res.rows if r.method.startswith("Passive MINT")} == {"plain"}
    assert {r.model for r in res.rows if r.method == "gMINT (cross-fit)"} == {"plain", "active"}
    for r in res.rows:
        assert r.metrics.n_members == 400 and r.metrics.n_nonmembers == 400
        assert 0.0 <= r.metrics.auc <= 1.0 and r.metrics.accuracy_at_calibrated is not None
        assert (r.metrics.accuracy_at_0_5 is None) == (r.half_threshold is None)
        assert r.scores["members"].shape == (400,) and r.scores["calibration"].shape == (300,)
    active = res.row("Active MINT", "active")
    saved = json.loads((audited_run_dir / "metrics.json").read_text())
    # One metrics engine: Active MINT's figures are exactly the run's own evaluation.
    # Bit-for-bit (1e-12 is float64 noise on a ratio of counts): compare scores the run's images again with the same
    # float32 weights and batches as training's evaluation; holds at one thread count (the fixture trained in this session,
    # or cached by one at the same count), not against a cache trained at another (a near-tie could flip: 1/(400*400)).
    assert active.metrics.auc == pytest.approx(saved["membership"]["auc"], abs=1e-12)
    assert active.metrics.accuracy_at_calibrated == pytest.approx(saved["membership"]["accuracy_at_calibrated"], abs=1e-12)
    assert active.test_accuracy == pytest.approx(saved["test_accuracy"])
    plain_acc = json.loads((plain_run_dir / "metrics.json").read_text())["test_accuracy"]
    # test_accuracy is read from the runs' metrics.json, not recomputed: equal floats; approx is headroom.
    assert res.row("Loss", "plain").test_accuracy == pytest.approx(plain_acc)
    # The 15-epoch models overfit: the loss attack is clearly better than chance (higher = member).
    assert res.row("Loss", "plain").metrics.auc > 0.6
    # The headline compares Active MINT with the best other row, as ratios.
    best = max((r for r in res.rows if r.method != "Active MINT"), key=lambda r: r.metrics.auc)
    assert res.headline.startswith("Active MINT vs best other method: AUC")
    assert f"({best.method}, {best.model} model) = {active.metrics.auc / best.metrics.auc:.2f}x" in res.headline
    for name in ("compare.md", "compare.csv", "compare.json", "roc_linear.png", "roc_loglog.png", "scores.npz"):
        assert (res.out_dir / name).stat().st_size > 0
    assert (res.out_dir / "roc_loglog.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((res.out_dir / "compare.json").read_text())
    assert [(r["method"], r["model"]) for r in doc["rows"]] == keys and doc["headline"] == res.headline
    gm = next(r for r in doc["rows"] if r["method"] == "gMINT")
    assert "labels" in gm["needs"] and any("white-box" in n for n in gm["needs"])
    csv_lines = (res.out_dir / "compare.csv").read_text().strip().splitlines()
    assert len(csv_lines) == len(keys) + 1 and csv_lines[0].startswith("method,model,auc")
    md = (res.out_dir / "compare.md").read_text()
    assert "| Active MINT | active |" in md and res.headline in md
    # Reference models: every pool sample (all targets) is IN for exactly 2 of the 4 models.
    ref = res.info["reference_models"]
    assert len(ref["training_sizes"]) == 4 and sum(ref["training_sizes"]) == 2 * (400 + 400 + 300)
    assert ref["population"] == 300
    keep = np.load(res.info["reference_models"]["cache_dir"] + "/plan.npz")["keep"]
    assert keep.shape == (4, 400 + 400 + 300) and np.all(keep.sum(axis=0) == 2)
    trained = " | ".join(res.trained)
    for what in ("passive MINT head ", "passive MINT heads (cross-fit)", "gMINT classifier (plain)",
                 "gMINT classifier (active)", "gMINT classifiers (cross-fit) (active)"):
        assert what in trained
    assert sum("reference model" in t for t in res.trained) == 4


#: What training or scoring writes: a second compare must not write any of them again.
TRAINED = (".safetensors", "logits.npz", "scores.npz")


def _files(root) -> dict:
    """Every file under ``root``: its SHA-256, and for trained artifacts also its modification time (ns)."""
    import hashlib

    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns if p.name.endswith(TRAINED) else None)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_compare_trains_nothing_and_gives_identical_numbers(first, small_runs):
    tmp, res1 = first
    audited_run_dir, plain_run_dir = small_runs
    cache_before = _files(tmp / "cache")
    runs_before = _files(audited_run_dir), _files(plain_run_dir)
    res2 = run_compare(None, tmp / "out2", active_run=audited_run_dir, plain_run=plain_run_dir, cache_dir=tmp / "cache", **TINY)
    # What a user sees: the cache and the runs hold the same bytes, and no model, logits or
    # scores file was written again (nothing trained or re-run: reference logits come from files).
    assert _files(tmp / "cache") == cache_before
    assert (_files(audited_run_dir), _files(plain_run_dir)) == runs_before
    assert res2.trained == []
    assert any("4 reference models" in r for r in res2.reused)
    assert res2.info["reference_models"]["logits_computed_now"] == []
    assert [(r.method, r.model) for r in res2.rows] == [(r.method, r.model) for r in res1.rows]
    for a, b in zip(res1.rows, res2.rows):
        assert a.metrics.to_dict() == b.metrics.to_dict(), (a.method, a.model)
        for role in a.scores:
            np.testing.assert_array_equal(a.scores[role], b.scores[role])
    assert (tmp / "out1" / "compare.csv").read_text() == (tmp / "out2" / "compare.csv").read_text()
    assert "nothing (all from cache)" in (tmp / "out2" / "compare.md").read_text()


def test_cli_compare_reuses_the_cache_and_prints_one_headline(first, small_runs, capsys):
    tmp, res1 = first
    audited_run_dir, plain_run_dir = small_runs
    rc = main(["compare", "--active-run", str(audited_run_dir), "--plain-run", str(plain_run_dir),
               "--reference-models", "4", "--reference-epochs", "1", "--population", "300", "--passive-epochs", "1",
               "--gmint-epochs", "3", "--gmint-external", "300", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "out3")])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "trained nothing" in err
    heads = [ln for ln in out.splitlines() if ln.startswith("Active MINT vs best other method")]
    assert len(heads) == 1 and "AUC" in heads[0] and "TPR@1%FPR" in heads[0]
    assert "| Active MINT | active |" in out
    # Same scores, so the same AUCs (the CLI's 200 bootstrap resamples change only the intervals).
    doc = json.loads((tmp / "out3" / "compare.json").read_text())
    assert [r["metrics"]["auc"] for r in doc["rows"]] == [r.metrics.auc for r in res1.rows]


def test_ensure_run_trains_once_then_reuses(tmp_path):
    cfg = TrainConfig(dataset="fashion-mnist", arch="small_cnn", setup="entry", members=100, external=100, validation=50,
                      calibration=50, eval_nonmembers=100, epochs=1, lr=1e-3, seed=5, test_samples=500)
    log = []
    plain = cfg.without_mint()
    d1, trained1 = ensure_run(plain, tmp_path / plain.fingerprint(), progress=False, log=log.append)
    d2, trained2 = ensure_run(plain, tmp_path / plain.fingerprint(), progress=False, log=log.append)
    assert trained1 and not trained2 and d1 == d2
    assert len(d1.name) == 64 and plain.fingerprint() != cfg.fingerprint()
    assert load_run(d1).config == plain and len(log) >= 1
    assert plain.mint is False and plain.members == 100
    assert TrainConfig(select="val_mint").without_mint().select == "val_task"
    assert TrainConfig(select="last").without_mint().select == "last"


def test_cross_fit_scores_members_with_the_other_fold():
    folds = cross_fit_folds({"members": 10, "eval_nonmembers": 7, "calibration": 4}, seed=0)
    assert folds["members"].sum() == 5 and folds["eval_nonmembers"].sum() == 3
    seen = []

    def score(k, role, pos):
        seen.append((k, role, tuple(pos)))
        return np.full(len(pos), 10.0 * k + {"members": 1, "eval_nonmembers": 2, "calibration": 3}[role])

    out = cross_fit_scores(folds, score)
    # A member of fold k is scored by model 1 - k (which never trained on it); a non-member by model k.
    np.testing.assert_array_equal(out["members"], np.where(folds["members"] == 0, 11.0, 1.0))
    np.testing.assert_array_equal(out["eval_nonmembers"], np.where(folds["eval_nonmembers"] == 0, 2.0, 12.0))
    assert all(np.isfinite(v).all() for v in out.values())


class MeanPixel(Scorer):
    """A toy method in a few lines: the mean pixel value of the image."""

    key, method, family, needs = "toy_mean_pixel", "Mean pixel (toy)", "toy", "the images only"

    def score_images(self, images):
        return images.double().mean(dim=(1, 2, 3)).numpy()


def test_a_registered_toy_scorer_gets_rows_with_every_metric(first, small_runs):
    tmp, _ = first
    active_dir, plain_dir = small_runs
    register(MeanPixel)
    try:
        assert "toy_mean_pixel" in COMPARE_SCORERS  # compare's default list picks it up
        res = run_compare(None, tmp / "toy", active_run=active_dir, plain_run=plain_dir, cache_dir=tmp / "cache",
                          scorers=["active_mint", "toy_mean_pixel"], **TINY)
    finally:
        unregister("toy_mean_pixel")
    assert "toy_mean_pixel" not in COMPARE_SCORERS
    assert [(r.method, r.model) for r in res.rows] == [("Active MINT", "active"), ("Mean pixel (toy)", "plain"),
                                                       ("Mean pixel (toy)", "active")]
    run = load_run(active_dir)
    s, train, test = run.data.splits, run.data.train, run.data.test
    for r in res.rows[1:]:
        # Its figures are the one metrics engine's on its own scores, computed here from the images.
        mean = {"members": train.images[torch.as_tensor(s.members)].double().mean(dim=(1, 2, 3)).numpy(),
                "eval_nonmembers": test.images[torch.as_tensor(s.eval_nonmembers)].double().mean(dim=(1, 2, 3)).numpy(),
                "calibration": train.images[torch.as_tensor(s.calibration)].double().mean(dim=(1, 2, 3)).numpy()}
        want = membership_metrics(mean["members"], mean["eval_nonmembers"], calibration_scores=mean["calibration"],
                                  target_fpr=run.config.target_fpr, bootstrap=20, seed=run.config.seed)
        assert r.metrics.to_dict() == want.to_dict()
        np.testing.assert_array_equal(r.scores.indices["members"], s.members)
        assert r.metrics.auc_ci_low is not None and r.metrics.accuracy_at_calibrated is not None
        assert r.family == "toy" and r.needs == ["the images only"]
    md = (res.out_dir / "compare.md").read_text()
    assert "| Mean pixel (toy) | plain |" in md and "| Mean pixel (toy) | active |" in md
    assert sum(ln.startswith("Mean pixel (toy),") for ln in (res.out_dir / "compare.csv").read_text().splitlines()) == 2


def test_scores_round_trip_through_the_run_files(audited_run_dir):
    from activemint.rundir import RunDir
    from activemint.scores import Scores

    saved = RunDir(audited_run_dir).read_scores()
    s = Scores.from_arrays(saved)
    run = load_run(audited_run_dir)
    # The trainer's scores.npz is one Scores: per role the scores and the manifest's sample indices.
    for role in ("members", "eval_nonmembers", "calibration"):
        np.testing.assert_array_equal(s.indices[role], getattr(run.data.splits, role))
        assert s[role].dtype == np.float64 and len(s[role]) == len(s.indices[role])
    again = Scores.from_arrays(s.arrays())
    assert again.roles == s.roles and all(np.array_equal(again[r], s[r]) for r in s)
    with pytest.raises(ValueError, match="indices"):
        Scores({"members": np.zeros(3)}, {"members": np.arange(2)})
