"""Scoring math of the attacks: output signals, LiRA and RMIA against closed-form answers.

LiRA and RMIA are pure functions of arrays of reference-model statistics, so they are tested
on synthetic "models" whose statistics are Gaussian with known means: per sample i a
difficulty c_i (shared by every model), members' statistic c_i + mu_in + sigma * eps and
non-members' c_i + mu_out + sigma * eps.  The likelihood ratio of a sample is then monotone
in (statistic - c_i) and its AUC is Phi((mu_in - mu_out) / (sigma * sqrt(2))) in closed form,
while thresholding the raw statistic (which ignores c_i) does much worse.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from activemint.attacks import (
    GradientMintConfig,
    LiraConfig,
    OutputAttackConfig,
    PassiveMintConfig,
    ReferenceConfig,
    RmiaConfig,
    confidence_score,
    entropy_score,
    fit_gaussians,
    lira_offline,
    lira_online,
    logit_confidence,
    loss_score,
    modified_entropy_score,
    reference_probability,
    rmia_scores,
    true_label_prob,
)
from activemint.metrics import membership_metrics

MU_IN, MU_OUT, SIGMA, TAU = 1.0, 0.0, 1.0, 3.0
N_PER_CLASS = 4000
AUC_CLOSED = float(norm.cdf((MU_IN - MU_OUT) / (SIGMA * np.sqrt(2))))  # 0.7602
# AUC tolerance, measured on 30 other seeds (100-129) of these worlds: the estimate's error has mean -0.011
# (LiRA online: 64 reference models estimate each sample's in/out Gaussians, the closed form knows them) and sd
# <= 0.0056 (RMIA); |mean| + 4.9 sd <= 0.035 for every attack here, so a correct implementation misses 0.04 with
# probability < 1e-6 (normal tail beyond 4.9 sd: 1e-6) whatever the seed; the seeds below fix the outcome anyway.
TOL = 0.04


def auc(members, nonmembers) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(nonmembers))], np.r_[members, nonmembers]))


def balanced_keep(rng, n: int, n_models: int) -> np.ndarray:
    """(n, N): every sample IN for exactly N/2 models, as LiRA's keep matrix."""
    return (rng.random((n_models, n)).argsort(axis=0) < n_models // 2).T


def gaussian_world(seed: int, n_models: int):
    """Synthetic reference statistics and target statistics of members (first half) and non-members."""
    rng = np.random.default_rng(seed)
    n = 2 * N_PER_CLASS
    c = rng.normal(0.0, TAU, n)  # per-sample difficulty
    keep = balanced_keep(rng, n, n_models)
    ref = c[:, None] + np.where(keep, MU_IN, MU_OUT) + SIGMA * rng.standard_normal((n, n_models))
    is_member = np.r_[np.ones(N_PER_CLASS, bool), np.zeros(N_PER_CLASS, bool)]
    target = c + np.where(is_member, MU_IN, MU_OUT) + SIGMA * rng.standard_normal(n)
    return target, ref, keep, is_member


# ------------------------------------------------------------------- output signals
def test_output_signals_match_direct_formulas():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (200, 10))
    y = rng.integers(0, 10, 200)
    p = softmax(z, axis=1)
    rows = np.arange(200)
    # float64 formulas vs scipy's softmax on |z| <= ~15: a few ops at 1.1e-16 each, so 1e-10 .. 1e-8 relative is >= 1e4 x
    # the float error (log(p / (1 - p)) loses digits as p -> 1: hence its atol); SIMD libm differences across CPUs are ~1 ulp.
    np.testing.assert_allclose(loss_score(z, y), np.log(p[rows, y]), rtol=1e-10)
    np.testing.assert_allclose(confidence_score(z), p.max(1), rtol=1e-10)
    np.testing.assert_allclose(entropy_score(z), (p * np.log(p)).sum(1), rtol=1e-9)
    np.testing.assert_allclose(logit_confidence(z, y), np.log(p[rows, y] / (1 - p[rows, y])), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(true_label_prob(z, y), p[rows, y], rtol=1e-10)
    onehot = np.eye(10, dtype=bool)[y]
    mentr = -(1 - p[rows, y]) * np.log(p[rows, y]) - np.where(onehot, 0.0, p * np.log(1 - p)).sum(1)
    np.testing.assert_allclose(modified_entropy_score(z, y), -mentr, rtol=1e-9)


def test_signals_stay_finite_and_ordered_for_confident_models():
    """p_y rounds to 1.0 in float64; phi must still grow with the margin (no inf, no ties)."""
    z = np.zeros((3, 10))
    z[:, 0] = [40.0, 60.0, 80.0]
    y = np.zeros(3, dtype=int)
    phi = logit_confidence(z, y)
    assert np.all(np.isfinite(phi)) and np.all(np.diff(phi) > 19)
    m = modified_entropy_score(z, y)
    assert np.all(np.isfinite(m))
    # A confident *wrong* prediction is penalised by the modified entropy, not by the entropy.
    wrong = np.zeros((1, 10))
    wrong[0, 3] = 12.0
    right = np.zeros((1, 10))
    right[0, 0] = 12.0
    assert modified_entropy_score(wrong, [0])[0] < modified_entropy_score(right, [0])[0] - 5
    # The same probabilities permuted: the entropy sums them in another order, float64 error ~1e-16 << approx's 1e-6 rel.
    assert entropy_score(wrong)[0] == pytest.approx(entropy_score(right)[0])


# ------------------------------------------------------------------- LiRA
@pytest.mark.parametrize("fixed_variance", [False, True])
@pytest.mark.parametrize("variant", ["online", "offline"])
def test_lira_matches_closed_form_auc(variant, fixed_variance):
    target, ref, keep, is_member = gaussian_world(seed=1, n_models=64)
    fn = lira_online if variant == "online" else lira_offline
    s = fn(target, ref, keep, fixed_variance=fixed_variance)
    got = auc(s[is_member], s[~is_member])
    # Seeded draw (numpy PCG64, platform-independent), so the outcome is the same on every machine; TOL: see its definition.
    assert abs(got - AUC_CLOSED) < TOL, (got, AUC_CLOSED)
    # TPR at 1% FPR of a Gaussian shift d: 1 - Phi(Phi^-1(0.99) - d).
    tpr_closed = 1 - norm.cdf(norm.ppf(0.99) - (MU_IN - MU_OUT) / SIGMA)
    m = membership_metrics(s[is_member], s[~is_member], bootstrap=0)
    # TPR at 1% FPR (closed form 0.092) on 4000 + 4000, measured on seeds 100-129: error mean -0.023 (LiRA online)
    # and sd <= 0.011, |mean| + 4.9 sd <= 0.064 for every variant: a correct LiRA misses 0.07 with P < 1e-6.
    assert abs(m.tpr_at_1pct_fpr - tpr_closed) < 0.07, (m.tpr_at_1pct_fpr, tpr_closed)
    # The per-sample calibration is what makes it work: the raw statistic is far weaker.
    raw = auc(target[is_member], target[~is_member])
    assert raw < AUC_CLOSED - 0.1


def test_lira_gaussian_fits_recover_parameters():
    _, ref, keep, _ = gaussian_world(seed=2, n_models=64)
    f = fit_gaussians(ref, keep)
    # Means over 8000 samples x 32 IN / 32 OUT models: sd of the mean difference ~ sqrt(2/32/8000) ~ 0.003; 0.02 is ~7 sd
    # (P < 1e-11); the pooled sds have sd ~ 1/sqrt(2 * 256000) ~ 0.0014: 0.02 is > 10 sd.  Seeded: same outcome everywhere.
    np.testing.assert_allclose(np.nanmean(f.mu_in - f.mu_out), MU_IN - MU_OUT, atol=0.02)
    assert f.pooled_std_in == pytest.approx(SIGMA, abs=0.02)
    assert f.pooled_std_out == pytest.approx(SIGMA, abs=0.02)


def test_lira_fixed_variance_helps_with_few_reference_models():
    """With 4 models each sample has 2 IN and 2 OUT: per-sample spreads are noise (Carlini et al.)."""
    target, ref, keep, is_member = gaussian_world(seed=3, n_models=4)
    per_sample = lira_online(target, ref, keep)
    fixed = lira_online(target, ref, keep, fixed_variance=True)
    a_ps, a_fixed = auc(per_sample[is_member], per_sample[~is_member]), auc(fixed[is_member], fixed[~is_member])
    assert a_fixed > a_ps + 0.03  # measured: 0.665 vs 0.593 (seed 3)
    assert a_fixed < AUC_CLOSED  # 2 IN / 2 OUT models also leave the means noisy


def test_lira_online_log_likelihood_ratio_value():
    """One sample, hand-computed: IN {1, 3} (mu 2, s sqrt 2), OUT {0, 0.5} (mu .25, s sqrt .125)."""
    ref = np.array([[1.0, 3.0, 0.0, 0.5]])
    keep = np.array([[True, True, False, False]])
    x = 1.5
    expect = norm.logpdf(x, 2.0, np.sqrt(2.0)) - norm.logpdf(x, 0.25, np.sqrt(0.125))
    # Hand-computed float64 closed forms of the same few ops: error ~1e-15 relative, 1e-12 leaves 1000x.
    assert lira_online([x], ref, keep)[0] == pytest.approx(expect, rel=1e-12)
    assert lira_offline([x], ref, keep)[0] == pytest.approx((x - 0.25) / np.sqrt(0.125), rel=1e-12)


def test_lira_rejects_missing_in_models_and_bad_shapes():
    ref = np.zeros((2, 4))
    with pytest.raises(ValueError, match="IN"):
        lira_online([0.0, 0.0], ref, np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="n_samples, n_models"):
        lira_online([0.0], ref, np.zeros((3, 4), bool))
    lira_offline([0.0, 1.0], ref + np.arange(4), np.zeros((2, 4), bool))  # offline works without IN models


# ------------------------------------------------------------------- RMIA
def rmia_world(seed: int, n_models: int, n_pop: int = 3000):
    """log Pr(x|model) = c_i + s: s ~ N(mu_in, sigma) if the model trained on x, else N(mu_out, sigma)."""
    rng = np.random.default_rng(seed)
    n = 2 * N_PER_CLASS
    c = rng.normal(-12.0, 2.0, n + n_pop)  # hard and easy samples; probabilities stay < 1
    keep = np.zeros((n + n_pop, n_models), bool)
    keep[:n] = balanced_keep(rng, n, n_models)
    ref_p = np.exp(c[:, None] + np.where(keep, MU_IN, MU_OUT) + SIGMA * rng.standard_normal(keep.shape))
    is_member = np.r_[np.ones(N_PER_CLASS, bool), np.zeros(N_PER_CLASS, bool)]
    s = np.r_[np.where(is_member, MU_IN, MU_OUT), np.full(n_pop, MU_OUT)] + SIGMA * rng.standard_normal(n + n_pop)
    target_p = np.exp(c + s)
    x, z = slice(0, n), slice(n, n + n_pop)
    return (target_p[x], ref_p[x], keep[x], target_p[z], ref_p[z], keep[z]), is_member


@pytest.mark.parametrize("variant", ["offline", "online"])
def test_rmia_matches_closed_form_auc(variant):
    args, is_member = rmia_world(seed=4, n_models=128)
    s = rmia_scores(*args, variant=variant, a=1.0)
    assert np.all((s >= 0) & (s <= 1))
    got = auc(s[is_member], s[~is_member])
    # As for LiRA: seeded (same outcome everywhere); TOL: see its definition (RMIA's error: mean -0.003, sd 0.0056).
    assert abs(got - AUC_CLOSED) < TOL, (got, AUC_CLOSED)
    raw = auc(args[0][is_member], args[0][~is_member])
    assert raw < AUC_CLOSED - 0.1
    if variant == "offline":
        # Non-members' scores are ~uniform: the population z comes from the same distribution.
        # Mean of 4000 ~uniform scores: sd sqrt(1/12/4000) = 0.0046; 0.03 is 6.5 sd (P < 1e-10).
        assert np.mean(s[~is_member]) == pytest.approx(0.5, abs=0.03)


def test_rmia_offline_a_and_gamma():
    ref = np.array([[0.2, 0.4, 0.9]])
    keep = np.array([[False, False, True]])
    # Exact arithmetic on 3 numbers in float64 (error ~1e-16); approx's default 1e-6 relative is pure headroom.
    assert reference_probability(ref, keep, variant="offline", a=1.0)[0] == pytest.approx(0.3)
    assert reference_probability(ref, keep, variant="offline", a=0.0)[0] == pytest.approx(0.65)
    assert reference_probability(ref, keep, variant="offline", a=0.3)[0] == pytest.approx((1.3 * 0.3 + 0.7) / 2)
    assert reference_probability(ref, keep, variant="online")[0] == pytest.approx((0.9 + 0.3) / 2)
    # Score = fraction of z with LR(x) / LR(z) > gamma; LR(z) here = 1, 2, 3, 4 (a = 1, Pr(z) = 0.1).
    tz = np.array([0.1, 0.2, 0.3, 0.4])
    rz = np.full((4, 2), 0.1)
    kz = np.zeros((4, 2), bool)
    tx = np.array([0.25, 0.5])
    rx = np.full((2, 2), 0.1)  # LR(x) = 2.5, 5
    kx = np.zeros((2, 2), bool)
    # Counts of 4 comparisons / 4: exact values (the ratios are 2.5 and 5 against 1..4, no ties); rtol 1e-7 is headroom.
    np.testing.assert_allclose(rmia_scores(tx, rx, kx, tz, rz, kz, a=1.0, gamma=1.0), [0.5, 1.0])
    np.testing.assert_allclose(rmia_scores(tx, rx, kx, tz, rz, kz, a=1.0, gamma=2.0), [0.25, 0.5])


# ------------------------------------------------------------------- configs
def test_configs_have_bounds_descriptions_and_reject_unknown_keys():
    for cls in (LiraConfig, RmiaConfig, GradientMintConfig, PassiveMintConfig, ReferenceConfig, OutputAttackConfig):
        assert cls.description and cls().describe()["description"]
        with pytest.raises(ValueError, match="unknown keys"):
            cls.from_dict({"no_such_key": 1})
    with pytest.raises(ValueError, match=r"a must be a number in \[0.0, 1.0\]"):
        RmiaConfig(a=1.5)
    with pytest.raises(ValueError, match="n_models"):
        ReferenceConfig(n_models=3)
    with pytest.raises(ValueError, match="variant"):
        LiraConfig(variant="sideways")
    with pytest.raises(ValueError, match="reductions"):
        GradientMintConfig(reductions=("median",))
    g = GradientMintConfig().describe()
    assert "labels" in g["needs"] and any("white-box" in n for n in g["needs"])
    assert "white-box" in GradientMintConfig.description and "labels" in GradientMintConfig.description
    assert OutputAttackConfig(signal="confidence").describe()["needs"] == ["black-box outputs"]
    assert "labels" in OutputAttackConfig(signal="modified_entropy").describe()["needs"]


def test_reference_models_train_where_they_are_scored_not_where_the_run_was_trained():
    """A run trained on a GPU (``device: cuda`` in its config) is often attacked on a CPU:
    its reference models take the scoring machine's device, and share the cache of the same
    recipe trained anywhere."""
    from activemint.attacks.reference import reference_train_config
    from activemint.training import TrainConfig

    rc = ReferenceConfig(n_models=4, epochs=3)
    on_gpu = reference_train_config(TrainConfig(device="cuda", epochs=30), rc)
    here = reference_train_config(TrainConfig(epochs=30), rc)
    assert on_gpu.device == "auto" and on_gpu.epochs == 3 and not on_gpu.mint
    assert on_gpu.fingerprint() == here.fingerprint()
