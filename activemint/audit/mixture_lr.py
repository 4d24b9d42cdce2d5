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
  Carlo resolution ``delta = 1 / (draws + 1)`` from importance sampling ``p_is`` (Harrison,
  *Conservative hypothesis tests and confidence intervals using importance sampling*,
  Biometrika 2012): ``draws`` multinomial draws from a mixture of the null's bin shares and,
  for every ``pi`` of the grid, those shares exponentially tilted until the draws' mean
  statistic is the observed one (the Chernoff bound's saddle point), weighted by the exact
  ratio ``w`` of hypergeometric to proposal probability::

      p_is = (w(c) + sum_i w(Y_i) 1{T(Y_i) >= T(c)}) / (draws + 1)

  which is a valid p-value however good the proposal is (``P(p_is <= a) <= a``: Harrison's
  Theorem 1; the observation's own weight is what makes it valid).  The reported p-value is
  ``p_is`` when ``p_is < delta``, else ``min(1, p_mc + delta)``; ``p_is`` is only computed when
  fewer than ``IMPORTANCE_BELOW_HITS`` plain draws reach ``T(c)``, where it can matter
  (skipping it only makes ``p`` larger, so the argument below is unchanged).  For ``a >= delta``:
  ``P(p <= a) <= P(p_is < delta) + P(p_mc <= a - delta) <= delta + (a - delta) = a``; for ``a <
  delta`` only ``p_is <= a`` can happen.  So the test has level ``a`` in finite samples, with no
  asymptotics and no condition on how well the head separates members.  (Strictly, over the
  Monte Carlo draws.  They are seeded so that a rerun gives the same p-value: the plain draws
  by the run's seed and the set's size, so for one seed the level at ``a = 0.01`` can differ
  from ``a`` by about the Monte Carlo standard error of the tail at the threshold, ``sqrt(0.01 *
  0.99 / draws) = 0.001``; the importance draws also by the observed bin counts, so that sets
  with other counts get other draws.)  The Chernoff bound ``p_ch``, computed with ``p_is``
  (Hoeffding 1963, Theorem 4: a sum sampled without replacement is dominated in convex order
  by one with replacement; a union bound over the grid), is an upper bound on the exact tail
  and is reported beside.  It is 26-57 times ``p_is`` near 1e-6 and much more far in the tail,
  where sampling without replacement matters, which is why it is no longer the p-value
  (``docs/audit.md``).

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
#: Monte Carlo draws of the conditional null (resolution 1 / (draws + 1)); as many importance draws
DRAWS = 10_000
#: the importance-sampling p-value is computed only when fewer plain draws than this reach the
#: observed statistic (p_mc <= 1e-3 at the default draws)
IMPORTANCE_BELOW_HITS = 10


def bin_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    return np.bincount(np.searchsorted(edges, scores, side="left"), minlength=len(edges) + 1).astype(np.float64)


def _chernoff(w: np.ndarray, f0: np.ndarray, m: int, t_obs: float) -> tuple[float, float]:
    """(log of ``min over l >= 0 of exp(-l t_obs) E[exp(l w)]^m``, the minimising ``l``), ``w`` drawn from ``f0``."""
    if t_obs <= m * float(f0 @ w):  # at or below the mean: no bound below 1
        return 0.0, 0.0
    logf0 = np.log(f0, where=f0 > 0, out=np.full_like(f0, -np.inf))

    def g(lam: float) -> float:
        return -lam * t_obs + m * float(special.logsumexp(logf0 + lam * w))

    hi = 1.0
    while g(2 * hi) < g(hi) and hi < 1e6:
        hi *= 2
    res = optimize.minimize_scalar(g, bounds=(0.0, 2 * hi), method="bounded", options={"xatol": 1e-10})
    lam, val = (float(res.x), float(res.fun)) if res.fun <= g(2 * hi) else (2 * hi, g(2 * hi))
    return min(0.0, val), lam


def _chernoff_log_tail(w: np.ndarray, f0: np.ndarray, m: int, t_obs: float) -> float:
    """log of the Chernoff bound on ``P(w . C >= t_obs)`` (see :func:`_chernoff`)."""
    return _chernoff(w, f0, m, t_obs)[0]


def log_hypergeometric_pmf(counts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log P(C = counts) for C multivariate hypergeometric (colours ``t``, ``counts.sum(-1)`` drawn); -inf off the support."""
    counts = np.atleast_2d(counts).astype(np.float64)
    t = np.asarray(t, dtype=np.float64)
    m, n = counts.sum(axis=1), t.sum()
    inside = (counts <= t).all(axis=1)
    c = np.minimum(counts, t)  # keeps gammaln's arguments positive; off-support rows are masked below
    log_num = (special.gammaln(t + 1) - special.gammaln(c + 1) - special.gammaln(t - c + 1)).sum(axis=1)
    log_den = special.gammaln(n + 1) - special.gammaln(m + 1) - special.gammaln(n - m + 1)
    return np.where(inside, log_num - log_den, -np.inf)


def log_multinomial_pmf(counts: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """log P(C = counts) for C multinomial with log cell probabilities ``log_q`` (rows of ``counts``)."""
    counts = np.atleast_2d(counts).astype(np.float64)
    m = counts.sum(axis=1)
    terms = np.where(counts > 0, counts * log_q, 0.0)  # 0 * log 0 = 0
    return special.gammaln(m + 1) - special.gammaln(counts + 1).sum(axis=1) + terms.sum(axis=1)


def importance_proposal(t: np.ndarray, w: np.ndarray, lams: np.ndarray, t_obs: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(mixture weights, log cell probabilities per component) of the importance proposal.

    1/10 the null's bin shares ``f0 = t / t.sum()`` (defensive), the rest shared by the grid
    points whose Chernoff tilt ``lams[j]`` is positive and whose statistic ``w_j . C`` (``m``
    draws) can reach ``t_obs`` at all, each ``f0 exp(lams[j] w_j)`` renormalised.
    """
    log_f0 = np.log(t / t.sum())
    tilts = [log_f0 + lam * w[j] for j, lam in enumerate(lams) if lam > 0 and w[j].max() * m >= t_obs]
    comps = np.stack([log_f0] + [lq - special.logsumexp(lq) for lq in tilts])
    mix = np.r_[1.0, np.full(len(tilts), 9.0 / len(tilts))] / 10 if tilts else np.ones(1)
    return mix, comps


def importance_log_weight(x: np.ndarray, t: np.ndarray, mix: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """log of hypergeometric over proposal probability for each row of counts ``x``."""
    log_mix = special.logsumexp(np.stack([np.log(a) + log_multinomial_pmf(x, lq) for a, lq in zip(mix, comps)]), axis=0)
    return log_hypergeometric_pmf(x, t) - log_mix


def importance_log_p(c: np.ndarray, t: np.ndarray, w: np.ndarray, lams: np.ndarray, *, draws: int,
                     rng: np.random.Generator) -> float:
    """log of Harrison's importance-sampling p-value of ``T(c) = max_j w_j . c`` (module docstring).

    Every component of the proposal (:func:`importance_proposal`) is multinomial, so its
    probability and the weight ``w = hypergeometric / mixture`` are exact.
    """
    c = np.asarray(c, dtype=np.float64)
    t_obs = float((w @ c).max())
    m = int(round(c.sum()))
    mix, comps = importance_proposal(t, w, lams, t_obs, m)
    n_per = rng.multinomial(draws, mix)
    sims = np.concatenate([rng.multinomial(m, np.exp(lq) / np.exp(lq).sum(), size=k) for lq, k in zip(comps, n_per)])
    tol = 1e-9 * (1.0 + abs(t_obs))
    hit = sims[(sims @ w.T).max(axis=1) >= t_obs - tol]
    terms = np.r_[importance_log_weight(c[None, :], t, mix, comps), importance_log_weight(hit, t, mix, comps) if len(hit) else []]
    return float(special.logsumexp(terms) - np.log(draws + 1))


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
    hits = int(np.sum(t_sim >= t_obs - tol))
    p_mc = (1 + hits) / (draws + 1)
    tiny = np.finfo(np.float64).tiny
    p_is = p_ch = None
    if hits < IMPORTANCE_BELOW_HITS:  # the tilts are the Chernoff bounds' minimisers
        chern = [_chernoff(w[j], f0, len(s), t_obs) for j in range(len(w))]
        # the importance draws are seeded by the observed counts too: another set gets other draws
        rng_is = np.random.default_rng([seed, 1, len(s), len(pool), *c.astype(np.int64).tolist(), *t.tolist()])
        log_is = importance_log_p(c, t, w, np.array([lam for _, lam in chern]), draws=draws, rng=rng_is)
        # exp() of a p-value below ~1e-308 underflows to 0; the smallest normal double is still a valid
        # (larger) p-value, and 0 would read as "impossible under H0"
        p_is = float(min(1.0, max(np.exp(log_is), tiny)))
        p_ch = float(min(1.0, max(np.exp(special.logsumexp([lb for lb, _ in chern])), tiny)))
    p = p_is if p_is is not None and p_is < delta else min(1.0, p_mc + delta)
    detail = {"n_bins": len(t), "pi_at_max": float(PI_GRID[int(llr.argmax())]), "p_monte_carlo": p_mc,
              "p_importance": p_is, "p_chernoff": p_ch, "draws": draws,
              "null": "exact: pooled bins, multivariate hypergeometric, Monte Carlo + importance sampling"}
    return p, t_obs, detail
