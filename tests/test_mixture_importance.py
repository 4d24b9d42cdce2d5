"""The mixture test's p-value below its Monte Carlo resolution: Harrison's importance sampling.

``activemint.audit.mixture_lr`` reports ``p_is`` (importance sampling with the observation's
own weight) where the plain Monte Carlo p-value cannot go below ``1 / (draws + 1)``.  These
tests check it against the exact hypergeometric tail of a small case where every outcome is
enumerated, and its level where only the importance branch can reject.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from activemint.audit import mixture_lr as M

T_SMALL = np.array([60, 50, 40, 30, 20])  # pooled bin counts of a small, enumerable case
M_SMALL = 30  # suspects drawn from them


def _small_case():
    f0 = T_SMALL / T_SMALL.sum()
    f1 = np.array([0.05, 0.1, 0.15, 0.3, 0.4])  # members' bin shares: more of them in the top bins
    pis = np.asarray(M.PI_GRID)[:, None]
    w = np.log((1 - pis) + pis * f1[None, :] / f0[None, :])
    # every outcome of the multivariate hypergeometric draw: c_1..c_4 on a grid, c_5 the rest
    grid = np.stack(np.meshgrid(*(np.arange(min(k, M_SMALL) + 1) for k in T_SMALL[:4]), indexing="ij"), -1).reshape(-1, 4)
    last = M_SMALL - grid.sum(axis=1)
    ok = (last >= 0) & (last <= T_SMALL[4])
    outcomes = np.c_[grid[ok], last[ok]]
    return f0, w, outcomes


def test_log_pmfs_match_scipy():
    rng = np.random.default_rng(0)
    t = np.array([7, 5, 4, 2])
    counts = np.array([rng.multivariate_hypergeometric(t, 6) for _ in range(20)])
    # float64 log-gamma sums against scipy's own: ~1e-13 apart; 1e-9 is headroom
    np.testing.assert_allclose(M.log_hypergeometric_pmf(counts, t), stats.multivariate_hypergeom.logpmf(counts, t, 6), rtol=0, atol=1e-9)
    assert M.log_hypergeometric_pmf(np.array([[3, 3, 0, 0]]), np.array([2, 5, 4, 2]))[0] == -np.inf  # 3 > 2 of a colour
    q = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(M.log_multinomial_pmf(counts, np.log(q)), stats.multinomial.logpmf(counts, 6, q), rtol=0, atol=1e-9)


def test_hypergeometric_pmf_of_the_small_case_sums_to_one():
    _, _, outcomes = _small_case()
    # 45,661 outcomes; float64 sums of exp(log-pmf): off by ~1e-12
    assert np.exp(M.log_hypergeometric_pmf(outcomes, T_SMALL)).sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("c_obs", [[2, 3, 5, 9, 11], [0, 0, 2, 12, 16]])
def test_importance_pvalue_matches_the_exact_tail_far_below_monte_carlo_resolution(c_obs):
    """p_is (n + 1) = w(c) + sum_i Z_i with Z_i = w(Y_i) 1{T(Y_i) >= T(c)} i.i.d. from the proposal,
    whose mean is the exact tail.  Z's variance and range are computed exactly over the enumerated
    outcomes, so Bernstein's inequality gives the deviation a correct implementation exceeds with
    probability < 1e-6: P(|mean Z - tail| >= e) <= 2 exp(-n e^2 / (2 var + 2 range e / 3))."""
    f0, w, outcomes = _small_case()
    c = np.asarray(c_obs, dtype=np.float64)
    t_obs = float((w @ c).max())
    stat = (outcomes @ w.T).max(axis=1)
    in_tail = outcomes[stat >= t_obs - 1e-9 * (1 + abs(t_obs))]
    log_p = M.log_hypergeometric_pmf(in_tail, T_SMALL)
    tail = float(np.exp(log_p).sum())
    lams = np.array([M._chernoff(w[j], f0, M_SMALL, t_obs)[1] for j in range(len(w))])
    mix, comps = M.importance_proposal(T_SMALL, w, lams, t_obs, M_SMALL)
    log_wt = M.importance_log_weight(in_tail, T_SMALL, mix, comps)
    var = float(np.exp(log_p + log_wt).sum()) - tail**2  # E_q[Z^2] = sum over the tail of p^2 / q
    rng_max = float(np.exp(log_wt.max()))
    n = M.DRAWS
    log_2_over_tail = np.log(2 / 1e-6)
    b = 2 * rng_max * log_2_over_tail / (3 * n)  # solve n e^2 = L (2 var + 2 range e / 3) for e
    eps = b / 2 + np.sqrt(b**2 / 4 + 2 * var * log_2_over_tail / n)
    p_is = np.exp(M.importance_log_p(c, T_SMALL, w, lams, draws=n, rng=np.random.default_rng(3)))
    w_obs = float(np.exp(M.importance_log_weight(c[None, :], T_SMALL, mix, comps)[0]))
    z_bar = (p_is * (n + 1) - w_obs) / n
    assert abs(z_bar - tail) <= eps, (z_bar, tail, eps)
    assert eps < tail  # informative: it pins p_is between 0 and twice the exact tail
    assert tail < 1e-8 < 1 / (n + 1)  # far below what n plain draws can resolve
    # the Chernoff bound it replaces is above the exact tail, and much looser (x420 and x6.5e5 here)
    p_ch = np.exp(M.special.logsumexp([M._chernoff(w[j], f0, M_SMALL, t_obs)[0] for j in range(len(w))]))
    assert p_ch >= tail and p_ch > 100 * p_is


def test_importance_branch_holds_its_level_below_the_monte_carlo_resolution():
    """With 99 plain draws (resolution 0.01) only the importance branch can give p <= 0.005 or
    0.001.  H0: suspects and calibration i.i.d.  Each of 3,000 draws has its own seed, so the draws
    are independent and the count of p <= a is stochastically below Binomial(3000, a): the
    bounds below are exceeded with probability < 0.5e-6 each (1e-6 over both levels)."""
    from activemint.audit.settest import mixture_bins

    rng = np.random.default_rng(12)
    members = rng.normal(1.0, 1.0, 500)
    p = np.array([M.conditional_mixture_test(rng.normal(size=40), rng.normal(size=400), members, mixture_bins,
                                             draws=99, seed=i)[0] for i in range(3000)])
    for a in (0.005, 0.001):
        k = int(stats.binom.isf(0.5e-6, len(p), a))
        while stats.binom.sf(k, len(p), a) >= 0.5e-6:
            k += 1
        assert (p <= a).sum() <= k, (a, (p <= a).sum(), k)  # k = 37 and 15 (expected 15 and 3)
    assert (p <= 0.01).sum() > 0  # the branch was reached
