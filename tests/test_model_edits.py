"""Model edits (activemint.edits) on tiny real Fashion-MNIST runs: every edit type, seeds, errors, the table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from activemint.cli import main
from activemint.edits import EDITS, EditError, EditOptions, edit_run, parse_edits
from activemint.io import file_sha256
from activemint.rundir import RunDir
from activemint.runs import load_run, verify_run
from tests.conftest import trained_run

# A tiny but real aMINT run: 2 epochs on 256 members (the edits, not the audit's strength, are tested).
TINY = dict(members=256, external=512, validation=200, calibration=300, eval_nonmembers=300, epochs=2, test_samples=500)


@pytest.fixture(scope="module")
def tiny_run():
    return trained_run(**TINY)


@pytest.fixture(scope="module")
def tiny_plain_run():
    return trained_run(**{**TINY, "mint": False, "epochs": 1})


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(RunDir(run_dir).model))


def _backbone_convs(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in w.items() if k.startswith("backbone.") and k.endswith(".weight") and v.ndim == 4}


def _head(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in w.items() if k.startswith("head.")}


def _edit(tiny_run, tmp_path, name, level, **opts):
    return edit_run(tiny_run, name, level, tmp_path / f"{name}-{level}", options=EditOptions(**opts))


def _check_run(path, name, level):
    """The edited run loads, re-evaluates to its saved figures, and records the edit."""
    v = verify_run(path, device="cpu")
    assert v.matches, (name, level)
    rec = load_run(path, device="cpu").config.extra["model_edit"]
    assert (rec["name"], rec["level"]) == (name, level)
    assert v.saved["model_edit"]["name"] == name
    return rec


@pytest.mark.slow
def test_finetune_edits_change_the_backbone_and_keep_the_head(tiny_run, tmp_path):
    src = _weights(tiny_run)
    for name in ("finetune-external", "finetune-members"):
        path = _edit(tiny_run, tmp_path, name, "1")
        _check_run(path, name, "1")
        w = _weights(path)
        assert all(torch.equal(w[k], v) for k, v in _head(src).items())  # head frozen
        assert any(not torch.equal(w[k], v) for k, v in _backbone_convs(src).items())


@pytest.mark.slow
def test_pruning_zeroes_the_asked_fraction_per_layer(tiny_run, tmp_path):
    src = _weights(tiny_run)
    path = _edit(tiny_run, tmp_path, "prune-unstructured", "0.5")
    _check_run(path, "prune-unstructured", "0.5")
    w = _weights(path)
    for k, v in _backbone_convs(w).items():  # l1_unstructured prunes round(0.5 n) weights of each layer
        assert int((v == 0).sum()) >= round(0.5 * v.numel()), k
    assert all(torch.equal(w[k], v) for k, v in _head(src).items())

    path = _edit(tiny_run, tmp_path, "prune-structured", "0.5")
    _check_run(path, "prune-structured", "0.5")
    for k, v in _backbone_convs(_weights(path)).items():
        zero_filters = int((v.flatten(1).abs().sum(1) == 0).sum())
        assert zero_filters >= round(0.5 * v.shape[0]), k

    path = _edit(tiny_run, tmp_path, "prune-global", "0.5")
    rec = _check_run(path, "prune-global", "0.5")
    convs = _backbone_convs(_weights(path))
    assert 0.49 < rec["zero_fraction"] < 0.51  # half of all conv / linear weights together ...
    assert len({round(float((v == 0).float().mean()), 2) for v in convs.values()}) > 1  # ... not half of each layer

    path = _edit(tiny_run, tmp_path, "prune-unstructured-ft", "0.3")
    rec = _check_run(path, "prune-unstructured-ft", "0.3")
    assert 0.29 < rec["zero_fraction"] < 0.31  # per layer round(0.3 n) zeros, kept through the recovery fine-tune
    for k, v in _backbone_convs(_weights(path)).items():
        assert int((v == 0).sum()) >= round(0.3 * v.numel()), k
    # it did train: the surviving weights moved
    plain = _weights(_edit(tiny_run, tmp_path, "prune-unstructured", "0.3"))
    assert any(not torch.equal(plain[k], v) for k, v in _backbone_convs(_weights(path)).items())


@pytest.mark.slow
def test_quantisation_edits_store_what_they_say_and_run_quantised(tiny_run, tmp_path):
    src = _weights(tiny_run)
    for level in ("bf16", "fp16", "int8-dynamic", "int8-static"):
        path = _edit(tiny_run, tmp_path, "quantize", level, calibration_images=128)
        rec = _check_run(path, "quantize", level)
        w = _weights(path)
        assert all(torch.equal(w[k], v) for k, v in _head(src).items())
        model = load_run(path, device="cpu").model
        if level in ("bf16", "fp16"):
            dt = torch.bfloat16 if level == "bf16" else torch.float16
            assert all(torch.equal(v.to(dt).float(), v) for k, v in w.items() if k.startswith("backbone.") and v.is_floating_point())
            assert next(model.backbone.parameters()).dtype == dt
        elif level == "int8-dynamic":
            assert all(torch.equal(w[k], src[k]) for k in src)  # stored: the float weights before quantisation
            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

            assert isinstance(model.backbone.fc, DynamicLinear)
        else:
            assert rec["runtime"]["calibration_images"] == 128
            for k, v in _backbone_convs(w).items():  # per output channel: on a symmetric int8 grid (<= 255 values)
                for ch in v.flatten(1):
                    assert len(torch.unique(ch)) <= 256, k
                    amax = float(ch.abs().max())  # the largest weight is q * scale with |q| 127 or 128
                    # int8 codes rescaled in float32: q * scale / scale is an integer up to float32 error (~127 x 6e-8 < 1e-5); 1e-3 holds.
                    assert amax == 0 or any(torch.allclose(ch * q / amax, torch.round(ch * q / amax), atol=1e-3)
                                            for q in (127, 128)), k
            # the runtime rounds activations: the loaded model's taps lie on the calibrated 8-bit grid
            scale, zp, qmin, qmax = rec["runtime"]["activations"]["block1.3"]
            x = load_run(path, device="cpu").data.train.rows(np.arange(8))
            from activemint.training.batches import to_input

            tap = model.tap_features(to_input(x))[0].float()
            q = tap / scale + zp
            # Dequantised activations divided back by their scale: integers up to float32 error (|q| <= 255 x 6e-8 ~ 2e-5).
            assert torch.allclose(q, torch.round(q), atol=1e-3) and q.min() >= qmin - 1e-3 and q.max() <= qmax + 1e-3


@pytest.mark.slow
def test_distillation_students_and_their_heads(tiny_run, tmp_path):
    src = _weights(tiny_run)
    path = _edit(tiny_run, tmp_path, "distill-same", "1")
    rec = _check_run(path, "distill-same", "1")
    w = _weights(path)
    assert all(torch.equal(w[k], v) for k, v in _head(src).items()) and rec["head"].startswith("carried")
    assert any(not torch.equal(w[k], v) for k, v in _backbone_convs(src).items())

    path = _edit(tiny_run, tmp_path, "distill-small", "1", posthoc_epochs=1)
    rec = _check_run(path, "distill-small", "1")
    run = load_run(path, device="cpu")
    assert run.config.arch == "small_cnn_half" and rec["head"].startswith("post hoc")
    assert _weights(path)["backbone.block1.0.weight"].shape[0] == 16  # half width


@pytest.mark.slow
def test_reattach_retrains_only_the_head(tiny_run, tmp_path):
    a = _weights(_edit(tiny_run, tmp_path / "a", "prune-structured", "0.3"))
    path = _edit(tiny_run, tmp_path / "b", "prune-structured", "0.3", reattach=1)
    rec = _check_run(path, "prune-structured", "0.3")
    b = _weights(path)
    assert "re-attached" in rec["head"]
    assert all(torch.equal(b[k], v) for k, v in a.items() if k.startswith("backbone."))
    assert any(not torch.equal(b[k], v) for k, v in _head(a).items())


def test_head_training_members_are_a_seeded_part_of_d():
    from activemint.edits import head_training_members

    d = np.arange(1000, 3000)
    a, b, c = (head_training_members(d, 0.5, s) for s in (0, 0, 1))
    assert len(a) == 1000 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(a) <= set(d) and np.array_equal(a, np.sort(a))
    assert np.array_equal(head_training_members(d, 1.0, 0), d)  # all of D: the upper-bound setting
    assert 1 <= len(head_training_members(d[:3], 0.01, 0)) <= 2  # at least one seen and one held out


@pytest.mark.slow
def test_reattached_head_is_scored_on_members_it_never_saw(tiny_run, tmp_path):
    """Held-out re-attachment: the head trains on a seeded half of D, the edited run records which members,
    and every scorer of that run is measured on the other half only (disjoint, together all of D)."""
    from activemint.edits import scored_members
    from activemint.edits.table import run_model_edits

    path = _edit(tiny_run, tmp_path / "h", "quantize", "bf16", reattach=1)
    run = load_run(path, device="cpu")
    rec = run.config.extra["model_edit"]
    d = np.asarray(run.data.splits.members)
    seen = np.asarray(rec["head_trained_members"])
    keep = scored_members(run)
    assert len(seen) == round(0.5 * len(d)) and rec["head_heldout_members"] == len(d) - len(seen)
    assert set(seen) <= set(d) and not set(seen) & set(d[keep]) and len(seen) + keep.sum() == len(d)
    assert "the audit scores the other members" in rec["head"]
    # the table scores the head on exactly those members; a black-box scorer (the loss attack) never
    # saw the head's training members, so it is scored on all of D
    rows = run_model_edits(tiny_run, tmp_path / "t", edits="quantize:bf16", reattach=(0, 1), suspect=50)
    by = {(r.reattach, r.scorer): r for r in rows if r.edit == "quantize"}
    assert by[(0, "head")].members_scored == len(d) and by[(1, "head")].members_scored == keep.sum()
    assert by[(1, "loss")].members_scored == len(d) and not by[(1, "head")].all_members_head
    # reattach_members=1: the old behaviour, on all of D, labelled as an upper bound
    rows = run_model_edits(tiny_run, tmp_path / "t", edits="quantize:bf16", reattach=(1,), suspect=50,
                           options=EditOptions(reattach_members=1.0))
    r = rows[-1]
    assert r.members_scored == len(d) and r.all_members_head and r.edited_run.endswith("+reattach1-allD")
    assert "upper bound" in load_run(r.edited_run, device="cpu").config.extra["model_edit"]["head"]


@pytest.mark.slow
def test_same_seed_same_edited_weights_other_seed_other_weights(tiny_run, tmp_path):
    for name in ("finetune-external", "distill-same"):
        one = _edit(tiny_run, tmp_path / "1", name, "1", seed=3)
        two = _edit(tiny_run, tmp_path / "2", name, "1", seed=3)
        other = _edit(tiny_run, tmp_path / "3", name, "1", seed=4)
        assert file_sha256(RunDir(one).model) == file_sha256(RunDir(two).model), name
        assert file_sha256(RunDir(one).model) != file_sha256(RunDir(other).model), name


def _one_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    return err


def test_unknown_edit_or_level_is_a_one_line_error_before_any_work(capsys, tmp_path):
    out = tmp_path / "out"
    _one_line(capsys, ["model-edits", str(tmp_path / "nosuch"), "--model-edits", "prune-magic:0.5", "--out", str(out)],
              "unknown model edit 'prune-magic'")
    _one_line(capsys, ["model-edits", str(tmp_path / "nosuch"), "--model-edits", "prune-structured:1.5", "--out", str(out)],
              "pruned fraction")
    _one_line(capsys, ["model-edits", str(tmp_path / "nosuch"), "--model-edits", "quantize:int4", "--out", str(out)],
              "quantize:int4")
    assert not out.exists()
    with pytest.raises(EditError):
        parse_edits("finetune-external:0")
    assert len(parse_edits("all")) == sum(len(e.levels) for e in EDITS.values())


def test_bad_reattach_options_are_one_line_errors(capsys, tmp_path):
    out = tmp_path / "out"
    for option, bad in [("--reattach-members", v) for v in ("0", "1.5", "nan")] + [("--reattach-lr", "0")]:
        with pytest.raises(SystemExit) as e:  # argparse's own error: exit status 2, one line naming the option
            main(["model-edits", str(tmp_path / "nosuch"), "--model-edits", "quantize:bf16", "--reattach", "3",
                  option, bad, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and option in err, err
    with pytest.raises(EditError, match="reattach_members"):
        EditOptions(reattach_members=0.0).check()
    with pytest.raises(EditError, match="learning rates"):
        EditOptions(reattach_lr=0.0).check()
    assert not out.exists()


@pytest.mark.slow
def test_edit_of_a_plain_run_is_a_one_line_error(capsys, tiny_plain_run, tmp_path):
    _one_line(capsys, ["model-edits", str(tiny_plain_run), "--model-edits", "quantize:bf16", "--out", str(tmp_path / "o")],
              "plain run (mint off)")


@pytest.mark.slow
def test_model_edits_table(capsys, tiny_run, tmp_path):
    out = tmp_path / "table"
    argv = ["model-edits", str(tiny_run), "--model-edits", "quantize:int8-dynamic,prune-structured:0.7", "--out", str(out),
            "--null-draws", "5", "--suspect", "50", "--threads", "1"]
    assert main(argv) == 0
    doc = json.loads((out / "model-edits.json").read_text())
    rows = doc["rows"]
    assert [(r["edit"], r["scorer"]) for r in rows] == [(e, s) for e in ("none", "quantize", "prune-structured")
                                                         for s in ("head", "loss")]
    saved = RunDir(tiny_run).read_metrics()
    base = rows[0]
    # the unedited head row recomputes the run's own figures from the same model and samples
    # Bit-for-bit in practice: the unedited head re-scores the run's samples with the same float32 weights and batches as
    # training's evaluation, at the thread count the fixture was trained at (this session, or a cache made at the same count).
    assert abs(base["auc"] - saved["membership"]["auc"]) < 1e-9 and base["accuracy_lost"] == 0
    for r in rows:
        edited = RunDir(r["edited_run"]).read_metrics()
        # The table copies each edited run's own metrics.json value: equal floats.
        assert abs(r["test_accuracy"] - edited["test_accuracy"]) < 1e-12
        assert 0 <= r["p_value_100"] <= 1 and 0 <= r["null_flag_rate"] <= 1 and 0 <= r["member_detect_rate"] <= 1
    for f in ("model-edits.md", "model-edits.csv", "model-edits.png"):
        assert (out / f).stat().st_size > 0
    # a second call reuses the edited runs (same edit of the same model)
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.safetensors")}
    assert main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.safetensors")}


@pytest.mark.slow
def test_null_sets_are_flagged_at_most_at_the_level_after_an_edit(tiny_run, tmp_path):
    """Acceptance 3's false-flag half, on a real edited run: after static int8 quantisation (the edit
    with the most null flags of the loss attack on the main-job model, 10 of 300), 300 suspect sets of
    100 non-members, each with a fresh calibration split of the pooled non-members, flagged at alpha 0.01
    by the set-level audit of each scorer (head, loss)."""
    from scipy import stats

    from activemint.edits.table import flag_bound, role_images, role_labels, scorer_scores, set_level

    path = _edit(tiny_run, tmp_path, "quantize", "int8-static")
    run = load_run(path, device="cpu")
    scores = scorer_scores(run, role_images(run), role_labels(run))
    assert set(scores) == {"head", "loss"}
    draws, alpha = 300, 0.01
    # Two scorers, each may fail with probability < 1e-6 / 2 (Bonferroni): a correct level-0.01 test
    # flags more than `bound` of 300 i.i.d. null sets with probability < 5e-7 (Binomial(300, 0.01)
    # tail; bound = 15, expected 3 flags).  The draws are i.i.d. given the pool (fresh permutation each).
    # The mixture p-value's Monte Carlo draws are seeded; even if all 300 draws shared one simulated
    # threshold (true rate q ~ Beta(99, 9902) + 1e-4, test_audit_settest.seeded_mc_upper_bound),
    # E_q[P(Binomial(300, q) > 15)] = 2.0e-7 < 5e-7, so the bound stands.
    bound = flag_bound(draws, alpha, 1e-6 / 2)
    assert stats.binom.sf(bound, draws, alpha) < 1e-6 / 2 <= stats.binom.sf(bound - 1, draws, alpha)
    for name, s in scores.items():
        _, null, _ = set_level(s, target_fpr=run.config.target_fpr, alpha=alpha, seed=3, suspect=100, null_draws=draws)
        assert round(null * draws) <= bound, (name, null)


@pytest.mark.slow
def test_model_edits_lira_and_rmia_rows_against_the_source_reference_models(capsys, tiny_run, tmp_path):
    """--reference-models 4: LiRA and RMIA rows for every edited model, against one set of reference models of the
    source run (trained once, reused by a second call); fewer than 4 is a one-line error."""
    out, cache = tmp_path / "table", tmp_path / "cache"
    argv = ["model-edits", str(tiny_run), "--model-edits", "quantize:bf16", "--out", str(out), "--reference-models", "4",
            "--reference-epochs", "1", "--cache-dir", str(cache), "--threads", "1"]
    assert main(argv) == 0
    doc = json.loads((out / "model-edits.json").read_text())
    assert [(r["edit"], r["scorer"]) for r in doc["rows"]] == [(e, s) for e in ("none", "quantize")
                                                               for s in ("head", "loss", "lira", "rmia")]
    info = doc["info"]["reference_models"]
    assert info["n_models"] == 4 and info["epochs"] == 1 and len(info["test_accuracy"]) == 4
    models = sorted(cache.glob("reference-models/*/model-*/model.safetensors"))
    assert len(models) == 4
    for r in doc["rows"]:
        assert 0 <= r["auc"] <= 1 and 0 <= r["p_value_100"] <= 1 and np.isfinite(r["tpr_at_1pct_fpr"])
    before = {p: p.stat().st_mtime_ns for p in models}
    assert main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in models}  # reused, not retrained
    capsys.readouterr()
    _one_line(capsys, [*argv[:-4], "--reference-models", "2", "--threads", "1"], "at least 4")


# ------------------------------------------------------------ the training-side lever: noise on the taps
def _noisy_model(tap_noise: float, seed: int = 0):
    from activemint.training.build import build_model
    from activemint.training.config import TrainConfig

    return build_model(TrainConfig(arch="small_cnn", setup="entry", tap_noise=tap_noise, seed=seed), (1, 28, 28), 10)


def test_tap_noise_is_seeded_training_only_and_leaves_the_global_rng_alone():
    x = torch.rand(8, 1, 28, 28)
    plain, noisy, twin, other = _noisy_model(0.0), _noisy_model(0.5), _noisy_model(0.5), _noisy_model(0.5, seed=1)
    other.load_state_dict(noisy.state_dict())  # same weights, other noise seed
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), noisy.state_dict().values()))
    for m in (plain, noisy, twin, other):
        m.train()
    state = torch.get_rng_state()
    a, b, c, ref = (m.membership_logit(x) for m in (noisy, twin, other, plain))
    assert torch.equal(torch.get_rng_state(), state)  # its own generator: the global draws are unchanged
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, ref)  # seeded, and really noisy
    assert torch.equal(plain.membership_logit(x), ref)  # no noise at 0: the same output every call
    # the class logits (the backbone's forward) never see the noise, nor does any evaluation
    assert torch.equal(noisy.forward_train(x, x)[0], plain.forward_train(x, x)[0])
    noisy.load_state_dict(plain.state_dict())  # the train-mode calls moved the head's BatchNorm statistics apart
    for m in (plain, noisy):
        m.eval()
    assert torch.equal(noisy.membership_logit(x), plain.membership_logit(x))


def test_tap_noise_option_is_checked_and_off_by_default_in_the_fingerprint():
    from activemint.config import ConfigError
    from activemint.training.config import TrainConfig

    assert TrainConfig().tap_noise == 0.0 and "tap_noise" not in TrainConfig().fingerprint_fields()
    assert TrainConfig(tap_noise=0.3).fingerprint() != TrainConfig().fingerprint()
    with pytest.raises(ConfigError, match="tap_noise"):
        TrainConfig(tap_noise=-0.1).validate()


@pytest.mark.slow
def test_tap_noise_run_records_the_noise_and_trains_other_weights(tiny_run):
    noisy = trained_run(**{**TINY, "tap_noise": 0.3})
    assert load_run(noisy, device="cpu").config.tap_noise == 0.3
    assert file_sha256(RunDir(noisy).model) != file_sha256(RunDir(tiny_run).model)


def test_the_deciding_test_is_chosen_and_an_unknown_one_refused(tiny_run, tmp_path):
    from scipy import stats

    from activemint.edits.table import run_model_edits, set_level

    with np.load(Path(tiny_run) / "scores.npz") as z:
        sc = {k: z[k] for k in ("members", "eval_nonmembers", "calibration")}
    # set_level's p is the chosen test's: Mann-Whitney's is scipy's on the same seeded draw
    p = set_level(sc, target_fpr=0.01, alpha=0.01, seed=0, suspect=50, null_draws=0, test="mann_whitney")[0]
    idx = np.random.default_rng([0, 21]).choice(len(sc["members"]), 50, replace=False)
    want = stats.mannwhitneyu(sc["members"][idx], sc["calibration"], alternative="greater", method="asymptotic").pvalue
    assert p == pytest.approx(want, rel=1e-12)
    # a test that reads no member scores may take all of D as one suspect set (the mixture: half at most)
    n = len(sc["members"])
    p_all = set_level(sc, target_fpr=0.01, alpha=0.01, seed=0, suspect=n, null_draws=0, test="mann_whitney")[0]
    want = stats.mannwhitneyu(sc["members"], sc["calibration"], alternative="greater", method="asymptotic").pvalue
    assert p_all == pytest.approx(want, rel=1e-12)
    run_model_edits(tiny_run, tmp_path / "mw", edits="quantize:bf16", suspect=50, test="mann_whitney")
    info = json.loads((tmp_path / "mw" / "model-edits.json").read_text())["info"]
    assert info["test"] == "mann_whitney" and "mann_whitney test" in (tmp_path / "mw" / "model-edits.md").read_text()
    with pytest.raises(ValueError, match="unknown set-level test"):
        run_model_edits(tiny_run, tmp_path / "bad", edits="quantize:bf16", test="t-test")
