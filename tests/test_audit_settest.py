"""Set-level tests on a real trained Fashion-MNIST run (acceptance 1) and their level under H0."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from activemint.audit.calibration import make_calibration
from activemint.audit.power import draw_suspect, power_study
from activemint.audit.settest import (
    DEFAULT_TEST,
    TESTS,
    MixtureModel,
    betabinom_sf_inclusive,
    exceedance_test,
    set_tests,
)


@pytest.fixture(scope="module")
def scores(audited_run_dir) -> dict[str, np.ndarray]:
    with np.load(audited_run_dir / "scores.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def cal(scores):
    return make_calibration(scores["calibration"], 0.01, member_scores=scores["members"],
                            eval_nonmember_scores=scores["eval_nonmembers"])


@pytest.fixture(scope="module")
def mixture(cal):
    return MixtureModel.fit(cal.scores, cal.member_scores)


def binomial_upper_bound(n: int, p: float, tail: float) -> int:
    """Smallest k with P(Binomial(n, p) > k) < tail: a count a correct test exceeds with probability < tail."""
    k = int(stats.binom.isf(tail, n, p))
    while stats.binom.sf(k, n, p) >= tail:
        k += 1
    return k


def seeded_mc_upper_bound(n: int, a: float, tail: float) -> int:
    """The same for the mixture test, whose Monte Carlo draws are seeded: in the worst case all n
    draws share one simulated threshold.  p = p_mc + delta <= a leaves at most j = floor(a (B + 1)) - 2
    of the B simulated statistics above the observed one, so the true rejection rate given the seed
    is the tail beyond the (j + 1)-th largest of B i.i.d. draws, q ~ Beta(j + 1, B - j), plus at
    most delta = 1 / (B + 1) from the importance-sampling branch (P(p_is < delta) <= delta; its
    draws are seeded by the set's own bin counts, so they differ between sets).  Smallest k with E_q[P(Binomial(n, q +
    delta) > k)] < tail (the expectation over 20,000 quantiles of q)."""
    from activemint.audit.mixture_lr import DRAWS

    j = int(np.floor(a * (DRAWS + 1))) - 2
    q = stats.beta(j + 1, DRAWS - j).ppf((np.arange(20_000) + 0.5) / 20_000) + 1 / (DRAWS + 1)
    k = binomial_upper_bound(n, a, tail)
    while stats.binom.sf(k, n, np.minimum(q, 1.0)).mean() >= tail:
        k += 1
    return k


# ------------------------------------------------------------------ acceptance 1
def test_100_members_give_tiny_p(scores, cal, mixture):
    rng = np.random.default_rng(1)
    rep = set_tests(rng.choice(scores["members"], 100, replace=False), cal, mixture=mixture)
    assert rep.default_test == DEFAULT_TEST
    assert rep.p_value < 1e-6 and rep.reject
    for t in TESTS:
        assert rep.tests[t].p_value < 1e-6, t
    assert rep.fraction.ci_low > 0.9


def test_unseen_nonmembers_keep_h0_at_level_over_300_draws(scores, cal):
    """Fresh non-members: 100 of the run's unseen non-member scores per draw, with a fresh
    calibration split each draw (pooled calibration + evaluation non-members, permuted).

    Why a fresh calibration: a valid test has P(p <= 0.05) <= 0.05 over the calibration draw;
    with one fixed calibration set the rejection rate is that set's own (it can sit well above
    0.05 for a correct test), so draws sharing it are not Binomial(n, 0.05).  With a fresh
    permutation of the pooled non-members per draw the draws are i.i.d. given the pool and
    exchangeable within each draw, so the number of rejections is stochastically below
    Binomial(300, 0.05).
    """
    rng = np.random.default_rng(2)
    pooled = np.r_[cal.scores, cal.eval_nonmember_scores]
    rejected = 0
    fractions_high = []
    for _ in range(300):
        perm = rng.permutation(len(pooled))
        c = make_calibration(pooled[perm[: cal.n]], 0.01, member_scores=cal.member_scores)
        rep = set_tests(pooled[perm[cal.n : cal.n + 100]], c)
        rejected += rep.p_value <= 0.05
        fractions_high.append(rep.fraction.ci_high)
    # P(Binomial(300, 0.05) >= 37) = 5.1e-7 (scipy.stats.binom.sf(36, 300, 0.05)): a correct
    # test fails this bound with probability < 1e-6.  Expected: 15 rejections.
    assert rejected <= 36, rejected
    # The interval says "few, if any": the median upper bound is below 10%.  It fails only if
    # >= 150 of 300 draws have ci_high >= 0.1; for a 95% interval that covers 0 under H0 and
    # excludes 0.1 in at least 70% of draws (benchmarks/settest_assumptions.py on this run: 95.5% of 200 draws, median
    # ci_high 0.044), P(Binomial(300, 0.3)
    # >= 150) = 3.5e-13.
    assert np.median(fractions_high) < 0.1


def test_20_of_100_members_detected_and_fraction_covered(scores, cal, mixture):
    rng = np.random.default_rng(3)
    rep = set_tests(draw_suspect(scores["members"], scores["eval_nonmembers"], 100, 20, rng), cal, alpha=0.01, mixture=mixture)
    # power >= 0.99 here (see below): this draw is detected
    assert rep.reject and rep.p_value < 0.01
    # the estimate's sd over 300 draws on this run is 0.018 (mean 0.203; settest_assumptions.py): 0.05 and 0.4 are 8.4
    # and 11 sd away (normal tail < 1e-16).  Coverage of one interval is checked over 20 draws
    # below, not on one draw (a 95% interval misses 0.2 in up to 5% of single draws).
    assert 0.05 < rep.fraction.estimate < 0.4
    # not a lucky draw: over 20 more draws.  Each is detected with probability = the power
    # at 20 members in 100 (>= 0.99 on this run: 200 of 200 draws detected, largest p 3.4e-9, by
    # benchmarks/settest_assumptions.py), so P(detected
    # <= 11) <= P(Binomial(20, 0.01) >= 9) = 1.5e-13.  A 95% interval misses 0.2 with
    # probability <= 0.05, so P(covered <= 11) = P(Binomial(20, 0.05) >= 9) = 2.0e-7.
    # Both bounds together: false failure < 1e-6 for a correct implementation.
    detected = covered = 0
    for _ in range(20):
        r = set_tests(draw_suspect(scores["members"], scores["eval_nonmembers"], 100, 20, rng), cal, mixture=mixture)
        detected += r.reject
        covered += r.fraction.ci_low <= 0.2 <= r.fraction.ci_high
    assert detected >= 12 and covered >= 12, (detected, covered)


# ------------------------------------------------------------- level under H0
def test_mixture_test_holds_its_level_when_the_head_reads_chance(cal):
    """The regression of the mixture test's validity defect (docs/audit.md): a head that reads
    chance (a distilled student's, docs/model-edits.md) gives member scores distributed like the
    non-members'.  Here the "members" are 1,000 of the run's real evaluation non-member scores, and
    each of 300 draws takes a fresh calibration split and a suspect set of 400 from the other
    non-members (pooled, permuted: i.i.d. draws given the pool, exchangeable within each).  The
    earlier, profiled likelihood ratio with its asymptotic law flagged 18 of 300 such sets at 0.01
    on a distilled student's scores; the conditional test is exact, so its flags are stochastically
    below Binomial(300, 0.01), which exceeds 14 with probability 5.3e-7 (binom.sf(14, 300, 0.01)).
    Its Monte Carlo draws are seeded, so in the worst case all 300 draws share one simulated
    threshold, whose true tail q is Beta(99, 9902) (mean 0.0099, sd 0.00099), plus up to 1e-4
    from the importance-sampling branch (seeded_mc_upper_bound): then E_q[binom.sf(14, 300, q + 1e-4)] is
    just above 1e-6, and the bound is 15 (the derivation runs below).
    """
    rng = np.random.default_rng(11)
    ev = rng.permutation(cal.eval_nonmember_scores)
    fake_members, pooled = ev[:1000], np.r_[cal.scores, ev[1000:]]
    flags = 0
    for _ in range(300):
        perm = rng.permutation(len(pooled))
        c = make_calibration(pooled[perm[: cal.n]], 0.01, member_scores=fake_members)
        flags += set_tests(pooled[perm[cal.n : cal.n + 400]], c).tests["mixture"].p_value < 0.01
    bound = seeded_mc_upper_bound(300, 0.01, 1e-6)  # 15: a correct test exceeds it with P < 1e-6
    assert flags <= bound, (flags, bound)


def test_mixture_test_with_scores_tied_at_a_bin_edge_is_finite():
    """Many tied scores (a saturated loss or RMIA score) leave a pooled bin empty; the test drops it."""
    import warnings

    rng = np.random.default_rng(0)
    cal = np.r_[rng.normal(size=1900), np.full(100, 5.0)]
    suspect = np.r_[rng.normal(size=380), np.full(20, 5.0)]
    c = make_calibration(cal, 0.01, member_scores=rng.normal(1.0, 1.0, size=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        p = set_tests(suspect, c).tests["mixture"].p_value
    assert 0 < p <= 1


def test_mixture_pvalue_is_reproducible_and_states_its_parts(scores, cal, mixture):
    s = draw_suspect(scores["members"], scores["eval_nonmembers"], 100, 5, np.random.default_rng(4))
    a, b = set_tests(s, cal, mixture=mixture), set_tests(s, cal, mixture=mixture)
    assert a.tests["mixture"].p_value == b.tests["mixture"].p_value
    d = a.tests["mixture"].detail
    # the reported p-value is the importance-sampling one below the Monte Carlo resolution, else p_mc + 1/(draws + 1)
    delta = 1 / (d["draws"] + 1)
    p_is = d["p_importance"]
    want = p_is if p_is is not None and p_is < delta else min(1.0, d["p_monte_carlo"] + delta)
    assert a.tests["mixture"].p_value == want
    # p_chernoff bounds the exact conditional tail p* from above; p_mc estimates p* with sd
    # <= 0.5 / sqrt(draws) = 0.005, so p_mc > p_chernoff + 0.05 (10 sd) has probability < 1e-20
    assert d["p_chernoff"] is None or d["p_chernoff"] >= d["p_monte_carlo"] - 0.05


def test_pvalues_are_at_least_uniform_under_h0_on_real_nonmember_scores(cal):
    """Every test, on 300 draws of 100 real non-member scores with a fresh calibration split
    each time: the count of p <= a is at most the Binomial(300, a) quantile that a valid test
    exceeds with probability 1e-6 / 15 (15 checks: 3 tests x 5 levels; Bonferroni), for a in
    1%, 5%, 10%, 25%, 50%: a correct implementation fails this test with probability < 1e-6."""
    rng = np.random.default_rng(5)
    pooled = np.r_[cal.scores, cal.eval_nonmember_scores]
    pvals = {t: [] for t in TESTS}
    for _ in range(300):
        perm = rng.permutation(len(pooled))
        c = make_calibration(pooled[perm[: cal.n]], 0.01, member_scores=cal.member_scores)
        rep = set_tests(pooled[perm[cal.n : cal.n + 100]], c)
        for t in TESTS:
            pvals[t].append(rep.tests[t].p_value)
    for t in TESTS:
        p = np.asarray(pvals[t])
        for a in (0.01, 0.05, 0.1, 0.25, 0.5):
            # largest count allowed: P(Binomial(300, a) > bound) < 1e-6 / 15; bounds 16, 38, 61,
            # 116, 195 for the five levels (expected 3, 15, 30, 75, 150).  The mixture's p-value
            # rests on seeded Monte Carlo draws: its bound also covers one shared simulated threshold.
            bound = (seeded_mc_upper_bound if t == "mixture" else binomial_upper_bound)(len(p), a, 1e-6 / 15)
            assert (p <= a).sum() <= bound, (t, a, (p <= a).sum(), bound)
        assert 0 < p.min() and p.max() <= 1


def test_power_study_runs_on_the_run(cal):
    study = power_study(cal, size=50, fractions=(0.0, 0.2), draws=20, seed=8)
    assert [r["n_members"] for r in study["rows"]] == [0, 10]
    null, mixed = study["rows"]
    for t in TESTS:
        assert 0 <= null[f"reject_{t}"] <= 1 and mixed[f"reject_{t}"] >= null[f"reject_{t}"]
    assert mixed["mean_estimate"] > null["mean_estimate"]


def test_exceedance_null_is_exact_on_synthetic_continuous_scores():
    """X ~ BetaBinomial(m, k+1, n-k) when calibration and suspect are iid: simulate it."""
    rng = np.random.default_rng(6)
    n, m = 200, 50
    pvals, counts = [], []
    for _ in range(2000):
        c = make_calibration(rng.normal(size=n), 0.05)
        r = exceedance_test(rng.normal(size=m), c)
        pvals.append(r.p_value)
        counts.append(r.statistic)
    k = n_above = c.n_above
    # the simulated counts follow the beta-binomial (chi-square goodness of fit on pooled cells)
    obs = np.bincount(np.minimum(np.asarray(counts, int), 8), minlength=9)
    pmf = stats.betabinom.pmf(np.arange(8), m, k + 1, n - n_above)
    exp = np.r_[pmf, 1 - pmf.sum()] * len(counts)
    # seeded, so deterministic; for a fresh seed a correct implementation gives a goodness-of-fit
    # p-value below 1e-7 with probability ~1e-7 (asymptotically uniform p-value)
    assert stats.chisquare(obs, exp).pvalue > 1e-7
    p = np.asarray(pvals)
    # P(Binomial(2000, 0.05) > 149) = 9.6e-7 (scipy.stats.binom.sf(149, 2000, 0.05)); expected 100
    assert (p <= 0.05).sum() <= binomial_upper_bound(len(p), 0.05, 1e-6)


def test_betabinomial_tail_is_accurate():
    for x, m, a, b in [(3, 100, 11, 990), (30, 100, 11, 990), (0, 10, 2, 5), (11, 10, 2, 5)]:
        ref = stats.betabinom.sf(x - 1, m, a, b)
        got = betabinom_sf_inclusive(x, m, a, b)
        # logsumexp of scipy's log-pmf vs scipy's own sf: both float64 (~1e-13 relative apart on these cases); rel 1e-6 is headroom,
        # abs 1e-15 only for tails below double precision's reach.
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-15)
    assert 0 < betabinom_sf_inclusive(90, 100, 11, 990) < 1e-60  # far tail, not 0 from 1 - cdf


def test_mixture_pvalue_far_in_the_tail_is_positive():
    """A bound below double precision's range is reported as the smallest normal double, never 0."""
    from activemint.audit.mixture_lr import conditional_mixture_test
    from activemint.audit.settest import mixture_bins

    rng = np.random.default_rng(8)
    p = conditional_mixture_test(rng.normal(6, 1, 1000), rng.normal(size=2000), rng.normal(6, 1, 2000), mixture_bins)[0]
    assert 0 < p <= 1e-300


def test_mixture_recovers_a_known_fraction_on_synthetic_scores():
    rng = np.random.default_rng(7)
    cal, mem = rng.normal(0, 1, 2000), rng.normal(3, 1, 2000)
    mm = MixtureModel.fit(cal, mem)
    covered = 0
    for _ in range(40):
        suspect = np.r_[rng.normal(3, 1, 60), rng.normal(0, 1, 240)]
        est, test = mm.fraction(suspect)
        covered += est.ci_low <= 0.2 <= est.ci_high
        # the estimate's sd here is 0.0128 (1000 simulated draws, benchmarks/settest_assumptions.py): 0.12 is 9.4 sd, P(miss) <
        # 40 * 2 * Phi(-9.4) = 4e-19 over the 40 draws (the estimate is close to normal)
        assert abs(est.estimate - 0.2) < 0.12
        # 60 members at 3 sd in 300: the largest p-value in 1000 simulated draws was 8e-21
        assert test.p_value < 1e-6
    # a 95% interval misses with probability <= 0.05 (0.2% measured): P(Binomial(40, 0.05) >= 13)
    # = 3.7e-7, so at least 28 of 40 cover 0.2 (38 expected)
    assert covered >= 28


def test_bad_alpha_and_unknown_test_are_refused(cal):
    with pytest.raises(ValueError, match="alpha"):
        set_tests([1.0, 2.0], cal, alpha=0)
    with pytest.raises(ValueError, match="unknown test"):
        set_tests([1.0, 2.0], cal, default_test="t-test")
    with pytest.raises(ValueError, match="empty"):
        set_tests([], cal)


def test_chernoff_bound_is_above_the_exact_hypergeometric_tail():
    """The bound behind the mixture test's smallest p-values, against the exact tail of a linear
    statistic of a small multivariate hypergeometric draw (every outcome enumerated)."""
    from itertools import product
    from math import comb

    from activemint.audit.mixture_lr import _chernoff_log_tail

    t, m = np.array([6, 4, 3, 2]), 5
    f0 = t / t.sum()
    for w in (np.array([-0.5, 0.0, 0.7, 2.0]), np.log(np.array([0.1, 0.2, 0.3, 0.4]) / f0)):
        outcomes = [c for c in product(*(range(k + 1) for k in t)) if sum(c) == m]
        pmf = np.array([np.prod([comb(int(k), ci) for k, ci in zip(t, c)]) for c in outcomes]) / comb(int(t.sum()), m)
        stat = np.array([np.dot(w, c) for c in outcomes])
        assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
        for s in np.unique(stat):
            exact = pmf[stat >= s - 1e-12].sum()
            # the bound may only be above the exact tail (1e-9: the optimiser's and float slack)
            assert np.exp(_chernoff_log_tail(w, f0, m, float(s))) >= exact - 1e-9, (w, s)


def test_the_cli_offers_exactly_the_set_level_tests_with_the_default_first():
    from activemint.cli.options import SET_TESTS

    assert SET_TESTS == TESTS and SET_TESTS[0] == DEFAULT_TEST
