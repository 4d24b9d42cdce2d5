"""The metrics engine against cases with known answers."""
import numpy as np
import pytest
from scipy import stats
from scipy.stats import norm

from activemint.errors import UserError
from activemint.metrics import (
    CALIBRATION_DELTA,
    CalibrationError,
    calibrate_threshold,
    calibration_rank,
    membership_metrics,
    min_calibration_size,
    roc,
    tpr_at_fpr,
)


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


def test_calibrate_threshold_is_the_binomial_order_statistic():
    s = np.arange(1000, dtype=float)
    t = calibrate_threshold(s, 0.01)
    # k = 4 scores above: P(Bin(1000, 0.01) <= 4) = 0.029 <= 0.05 < P(Bin(1000, 0.01) <= 5) = 0.067
    k = int((s > t).sum())
    assert k == calibration_rank(1000, 0.01) == 4
    assert stats.binom.cdf(k, 1000, 0.01) <= CALIBRATION_DELTA < stats.binom.cdf(k + 1, 1000, 0.01)
    # a looser delta leaves more scores above; a lower target fewer
    assert (s > calibrate_threshold(s, 0.01, delta=0.5)).sum() > k > (s > calibrate_threshold(s, 0.005)).sum()
    with pytest.raises(ValueError):
        calibrate_threshold(s, 0.0)


def test_too_small_calibration_set_is_refused_not_reported():
    # One calibration non-member cannot support a "1% FPR threshold".
    with pytest.raises(CalibrationError, match="needs at least 299 calibration non-members; got 1"):
        calibrate_threshold([0.3], 0.01)
    assert min_calibration_size(0.01) == 299  # 0.99 ** 299 = 0.0495 <= 0.05 < 0.99 ** 298
    assert isinstance(CalibrationError("x"), UserError)
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="needs at least 299"):
        r = membership_metrics(rng.normal(1, size=500), rng.normal(size=500), calibration_scores=rng.normal(size=100),
                               half_threshold=0.0, bootstrap=0)
    assert r.calibrated_threshold is None and r.accuracy_at_calibrated is None
    assert r.n_calibration == 100 and "needs at least 299" in r.calibration_note
    r = membership_metrics(rng.normal(1, size=500), rng.normal(size=500), calibration_scores=rng.normal(size=300),
                           bootstrap=0)
    assert r.calibrated_threshold is not None and r.calibration_note is None and r.calibration_delta == CALIBRATION_DELTA


# Each case: (n calibration scores, target FPR, delta).  Draws per case: R.
SIM_CASES = [(1000, 0.01, 0.05), (299, 0.01, 0.05), (200, 0.05, 0.10), (2000, 0.001, 0.2)]
SIM_R = 2000


@pytest.mark.parametrize("n,target,delta", SIM_CASES)
def test_calibrated_fpr_exceeds_target_at_most_delta_of_the_time(n, target, delta):
    """Simulation of the guarantee P(FPR > target) <= delta over the calibration draw.

    Calibration scores ~ N(0, 1), so the true FPR of a threshold t is norm.sf(t) exactly.
    Over R independent calibration sets the number X of sets whose true FPR exceeds the
    target is Binomial(R, p), p = P(Bin(n, target) <= k) <= delta by the guarantee.
    False-failure probabilities of a correct rule, per case:
      upper check X <= c, c = binom.isf(1e-7, R, delta): P(Bin(R, p) > c) <= P(Bin(R, delta) > c) <= 1e-7;
      exactness (the Beta(k + 1, n - k) law): X outside the central 1 - 1e-7 of Bin(R, p): <= 1e-7;
      mean FPR within 5.5 sd of (k + 1) / (n + 1) (CLT over R draws): 3.8e-8.
    Total <= 2.4e-7 per case, <= 9.5e-7 < 1e-6 over the 4 cases.
    """
    rng = np.random.default_rng(12345 + n)
    k = calibration_rank(n, target, delta)
    p = stats.binom.cdf(k, n, target)  # exact P(FPR > target) for this k
    assert p <= delta
    fpr = np.array([stats.norm.sf(calibrate_threshold(rng.normal(size=n), target, delta)) for _ in range(SIM_R)])
    x = int((fpr > target).sum())
    c = int(stats.binom.isf(1e-7, SIM_R, delta))
    assert stats.binom.sf(c, SIM_R, delta) <= 1e-7
    assert x <= c, (x, c)
    lo, hi = stats.binom.isf(1 - 0.5e-7, SIM_R, p), stats.binom.isf(0.5e-7, SIM_R, p)
    assert lo <= x <= hi, (x, lo, hi)
    # the mean FPR is (k + 1) / (n + 1) (Beta mean); sd of the mean of R Beta draws
    mean, var = (k + 1) / (n + 1), (k + 1) * (n - k) / ((n + 1) ** 2 * (n + 2))
    assert abs(fpr.mean() - mean) <= 5.5 * np.sqrt(var / SIM_R)  # normal tail at 5.5 sd: 3.8e-8


def test_the_earlier_rule_fails_the_same_simulation():
    """The check has power: leaving floor(target n) scores above (the earlier metrics rule)
    exceeds a 1% target in about 58% of calibration draws at n = 1000."""
    rng = np.random.default_rng(7)
    n, target, delta = 1000, 0.01, 0.05
    fpr = np.array([stats.norm.sf(np.sort(rng.normal(size=n))[n - 10 - 1]) for _ in range(500)])
    c = int(stats.binom.isf(1e-7, 500, delta))
    # P(Bin(500, 0.58) <= c) is below 1e-60: this cannot pass by chance.
    assert (fpr > target).sum() > c


def test_tpr_at_fpr_and_errors():
    fpr, tpr, _ = roc([3, 2, 1.5], [0, 1, 2.5])
    # A ratio of counts (1 of 3): exact up to one float64 rounding.
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="NaN"):
        membership_metrics([1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="no scores"):
        membership_metrics([], [0, 1])
