"""The metrics engine against cases with known answers."""
import numpy as np
import pytest
from scipy.stats import norm

from activemint.metrics import calibrate_threshold, membership_metrics, roc, tpr_at_fpr


def test_gaussian_scores_match_closed_form():
    # Members ~ N(d, 1), non-members ~ N(0, 1): AUC = Phi(d / sqrt 2), TPR at FPR f = 1 - Phi(z_{1-f} - d).
    rng = np.random.default_rng(1)
    d = 1.5
    m, n = rng.normal(d, 1, 40000), rng.normal(0, 1, 40000)
    r = membership_metrics(m, n, calibration_scores=rng.normal(0, 1, 40000), target_fpr=0.05, bootstrap=50)
    # Bounds of >= 5 standard errors, so a correct implementation fails with probability < 1e-6
    # (normal approximation; the draw is seeded, so the outcome is also the same everywhere).
    # AUC: Hanley-McNeil sd for A = 0.856 on 40000 + 40000 scores is 0.0013; 0.007 = 5.3 sd (P = 1.2e-7).
    assert r.auc == pytest.approx(norm.cdf(d / np.sqrt(2)), abs=0.007)
    # TPR at 1% FPR (0.204): binomial sd 0.002 of the TPR plus the empirical 99% quantile's sd
    # (0.0186 in score units x density 0.283 = 0.0053): total 0.0057; 0.03 = 5.3 sd (P = 1.2e-7).
    assert r.tpr_at_1pct_fpr == pytest.approx(1 - norm.cdf(norm.ppf(0.99) - d), abs=0.03)
    assert r.auc_ci_low < r.auc < r.auc_ci_high
    # Calibrated at 5% FPR on independent non-members: the observed FPR is near 5%.
    # sd of the observed FPR: sqrt(2 x 0.05 x 0.95 / 40000) = 0.0015 (threshold and evaluation
    # both estimated); 0.008 = 5.2 sd (P = 2e-7).
    assert r.fpr_at_calibrated == pytest.approx(0.05, abs=0.008)
    assert r.accuracy_at_0_5 is None  # no natural 0.5 point was declared
    assert r.oracle_best_accuracy >= r.accuracy_at_calibrated


def test_accuracy_at_half_is_balanced():
    # 1000 members all above 0, 100 non-members all below: balanced accuracy is 1 whatever the sizes.
    m = np.linspace(0.1, 5, 1000)
    n = -np.linspace(0.1, 5, 100)
    r = membership_metrics(m, n, half_threshold=0.0, bootstrap=0)
    assert r.accuracy_at_0_5 == 1.0 and r.auc == 1.0
    # Random scores give chance figures.
    rng = np.random.default_rng(0)
    r = membership_metrics(rng.normal(size=5000), rng.normal(size=5000), half_threshold=0.0, bootstrap=0)
    # null AUC sd sqrt((n + m + 1) / (12 n m)) = 0.0058 and balanced-accuracy sd 0.005 on
    # 5000 + 5000: 0.03 is 5.2 and 6 sd (P < 2e-7 and 2e-9).
    assert abs(r.auc - 0.5) < 0.03 and abs(r.accuracy_at_0_5 - 0.5) < 0.03


def test_calibrate_threshold_bounds_fpr():
    s = np.arange(1000, dtype=float)
    t = calibrate_threshold(s, 0.01)
    assert (s > t).sum() == 10
    with pytest.raises(ValueError):
        calibrate_threshold(s, 0.0)


def test_tpr_at_fpr_and_errors():
    fpr, tpr, _ = roc([3, 2, 1.5], [0, 1, 2.5])
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="NaN"):
        membership_metrics([1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="no scores"):
        membership_metrics([], [0, 1])
