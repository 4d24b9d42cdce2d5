"""The mixture test's p-value: a likelihood ratio calibrated on the pool, exact in finite samples.

H0: the ``m`` suspect scores and the ``n`` calibration scores are exchangeable (no suspect
was a member).  Conditional on the pooled multiset of those ``n + m`` scores and on the
run's member scores (a separate sample), the suspect set is then a uniformly random
``m``-subset of the pool, whatever the non-members' distribution is.  The test uses only
that:

* bins at quantiles of the pool (each holding >= ``MIN_BIN_COUNT`` pooled scores), so the
  pooled bin counts ``t`` do not depend on which scores are the suspects; under H0 the
  suspects' bin counts ``c`` are multivariate hypergeometric ``(t, m)``;
* ``f0 = t / (n + m)`` (the pool's bin shares) and ``f1`` the members' bin shares (+0.5 a
  bin): both are fixed given the conditioning, so the statistic is a function of ``c``
  alone::

      T(c) = max over pi in PI of  sum_b c_b log((1 - pi) + pi f1_b / f0_b)

  the log-likelihood ratio of ``pi`` members against none, maximised over a grid of ``pi``;
* its p-value ``P(T(C) >= T(c))`` under the multivariate hypergeometric law, from ``draws``
  seeded Monte Carlo draws ``p_mc = (1 + #{T >= T(c)}) / (draws + 1)``; below the Monte
  Carlo resolution ``delta = 1 / (draws + 1)`` from a Chernoff bound ``p_ch`` that holds for
  sampling without replacement (Hoeffding 1963, Theorem 4: the sum of a sample without
  replacement is dominated in convex order by one with replacement), with a union bound over
  the grid.  The reported p-value is ``p_ch`` when ``p_ch < delta``, else ``min(1, p_mc +
  delta)``.  For ``a >= delta``: ``P(p <= a) <= P(p_ch < delta) + P(p_mc <= a - delta) <=
  delta + (a - delta) = a``; for ``a < delta`` only ``p_ch <= a`` can happen, and ``p_ch`` is
  at least the exact conditional tail.  So the test has level ``a`` in finite samples, with no
  asymptotics and no condition on how well the head separates members.  (Strictly, over the
  Monte Carlo draws: they are seeded so that a rerun gives the same p-value, and for one seed
  the level at ``a = 0.01`` can differ from ``a`` by about the Monte Carlo standard error of
  the tail at the threshold, ``sqrt(0.01 * 0.99 / draws) = 0.001``.)

Why not the profiled likelihood ratio (the mixture model's own, used for the fraction's
interval): when member scores are distributed like non-member scores (a head that reads
chance, e.g. after distillation) the member density is not identified, and the ratio's law
is no longer ``0.5 chi2_0 + 0.5 chi2_1``: it flagged 18 of 300 null sets of 400 at 0.01
(``docs/audit.md``); this test flagged 2.  Where members are detected the two are about equally
powerful (``docs/audit.md``, "The mixture test's p-value").
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special

#: member fractions over which the statistic maximises the log-likelihood ratio
PI_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: Monte Carlo draws of the conditional null (resolution 1 / (draws + 1))
DRAWS = 10_000


def bin_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    return np.bincount(np.searchsorted(edges, scores, side="left"), minlength=len(edges) + 1).astype(np.float64)


def _chernoff_log_tail(w: np.ndarray, f0: np.ndarray, m: int, t_obs: float) -> float:
    """log of ``min over l >= 0 of exp(-l t_obs) E[exp(l w)]^m`` (``w`` drawn from ``f0``)."""
    if t_obs <= m * float(f0 @ w):  # at or below the mean: no bound below 1
        return 0.0
    logf0 = np.log(f0, where=f0 > 0, out=np.full_like(f0, -np.inf))

    def g(lam: float) -> float:
        return -lam * t_obs + m * float(special.logsumexp(logf0 + lam * w))

    hi = 1.0
    while g(2 * hi) < g(hi) and hi < 1e6:
        hi *= 2
    res = optimize.minimize_scalar(g, bounds=(0.0, 2 * hi), method="bounded", options={"xatol": 1e-10})
    return float(min(0.0, res.fun, g(2 * hi)))


def conditional_mixture_test(suspect: np.ndarray, calibration: np.ndarray, members: np.ndarray, bins, *,
                             draws: int = DRAWS, seed: int = 0) -> tuple[float, float, dict]:
    """(p-value, statistic T, detail) of the conditional likelihood-ratio test above.

    ``bins(pool)`` gives the inner bin edges of the pooled calibration and suspect scores (a
    function of the pool alone, e.g. :func:`activemint.audit.settest.mixture_bins`).
    """
    s = np.asarray(suspect, dtype=np.float64)
    pool = np.r_[np.asarray(calibration, dtype=np.float64), s]
    edges = np.asarray(bins(pool), dtype=np.float64)
    t = bin_counts(pool, edges).astype(np.int64)  # integer colours for the hypergeometric draws
    c = bin_counts(s, edges)
    d = bin_counts(np.asarray(members, dtype=np.float64), edges)
    f1 = (d + 0.5) / (d + 0.5).sum()
    # A bin can hold no pooled score when many scores tie at an edge; no suspect can fall there
    # either (the suspects are part of the pool), so it drops out of the statistic and its law.
    keep = t > 0
    t, c, f1 = t[keep], c[keep], f1[keep]
    f0 = t / t.sum()
    pis = np.asarray(PI_GRID)[:, None]
    w = np.log((1 - pis) + pis * f1[None, :] / f0[None, :])  # (J, K'), every kept bin has t_b > 0
    llr = w @ c  # the log-likelihood ratio at each pi of the grid
    t_obs = float(llr.max())
    delta = 1.0 / (draws + 1)
    rng = np.random.default_rng([seed, len(s), len(pool)])
    sims = rng.multivariate_hypergeometric(t, len(s), size=draws)
    t_sim = (sims @ w.T).max(axis=1)
    tol = 1e-9 * (1.0 + abs(t_obs))
    p_mc = (1 + int(np.sum(t_sim >= t_obs - tol))) / (draws + 1)
    log_ch = special.logsumexp([_chernoff_log_tail(w[j], f0, len(s), t_obs) for j in range(len(w))])
    # exp() of a bound below ~1e-308 underflows to 0; the smallest normal double is still a valid
    # (larger) p-value, and 0 would read as "impossible under H0"
    p_ch = float(min(1.0, max(np.exp(log_ch), np.finfo(np.float64).tiny)))
    p = p_ch if p_ch < delta else min(1.0, p_mc + delta)
    detail = {"n_bins": len(t), "pi_at_max": float(PI_GRID[int(llr.argmax())]), "p_monte_carlo": p_mc, "p_chernoff": p_ch,
              "draws": draws, "null": "exact: pooled bins, multivariate hypergeometric, Monte Carlo + Chernoff"}
    return p, t_obs, detail
