"""The mixture test's two p-values side by side on a run's saved scores: the conditional (exact)
one that decides, and the profiled likelihood ratio with its asymptotic law that it replaced.

    PYTHONPATH=. python benchmarks/mixture_pvalue.py RUN_DIR [--draws 500] [--null-draws N] [--no-power] [--size 100] [--null-size 400]
    PYTHONPATH=. python benchmarks/mixture_pvalue.py --synthetic 3000
    PYTHONPATH=. python benchmarks/mixture_pvalue.py --tail 12 [--reference-draws 2000000]

Prints, from one run and one seed:
  * power at alpha = 0.01: share of ``--draws`` suspect sets of ``--size`` with k members
    (k = 0, 2, 5, 10, 20 % of the set; the rest evaluation non-members), the run's calibration
    fixed, for the conditional mixture test, the profiled one, exceedance and Mann-Whitney;
  * size where the head reads chance: "members" replaced by half of the evaluation non-members,
    ``--draws`` null sets of ``--null-size`` from the other non-members with a fresh calibration
    split per draw; share flagged at 0.01 by each test (a valid test: <= 0.01 up to sampling);
  * the same null draws with the run's real members (the run as it is).
``--synthetic N`` instead: N draws of N(0, 1) scores (2,000 calibration, 400 suspects, 2,000
"members" from the same law): the conditional p-value's rejection rates at 0.01, 0.05, 0.1.
``--tail N`` instead: the p-value below the Monte Carlo resolution, on N synthetic suspect sets
of 100 (scores N(0.3, 1) against 2,000 N(0, 1) calibration, "members" N(0.6, 1)): the
importance-sampling p-value that decides there, the Chernoff bound it replaced and the profiled
asymptotic p-value, beside a reference: the same test with ``--reference-draws`` plain Monte
Carlo draws (resolution 1 / (draws + 1)); ratios to the reference where it resolves the tail.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from activemint.audit.calibration import make_calibration
from activemint.audit.mixture_lr import conditional_mixture_test
from activemint.audit.power import draw_suspect
from activemint.audit.settest import MixtureModel, mixture_bins, set_tests

NAMES = ("conditional", "profiled", "exceedance", "mann_whitney")


def _flags(rep, alpha: float = 0.01) -> dict[str, bool]:
    t = rep.tests
    return {"conditional": t["mixture"].p_value < alpha, "profiled": t["mixture"].detail["profile_lr_p_asymptotic"] < alpha,
            "exceedance": t["exceedance"].p_value < alpha, "mann_whitney": t["mann_whitney"].p_value < alpha}


def _null(members, calibration, nonmembers, size, draws, rng) -> dict[str, float]:
    pooled = np.r_[calibration, nonmembers]
    n = len(calibration)
    size = min(size, len(pooled) - n)
    hits = dict.fromkeys(NAMES, 0)
    for _ in range(draws):
        perm = rng.permutation(len(pooled))
        cal = make_calibration(pooled[perm[:n]], 0.01, member_scores=members)
        for k, v in _flags(set_tests(pooled[perm[n:n + size]], cal)).items():
            hits[k] += v
    return {k: v / draws for k, v in hits.items()}


def synthetic(draws: int) -> None:
    rng = np.random.default_rng(1)
    p = np.array([conditional_mixture_test(rng.normal(size=400), rng.normal(size=2000), rng.normal(size=2000), mixture_bins)[0]
                  for _ in range(draws)])
    print(f"synthetic N(0, 1), {draws} draws: rejection rate " + ", ".join(f"{(p < a).mean():.4f} at {a}" for a in (0.01, 0.05, 0.1)))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2g}"


def tail(sets: int, reference_draws: int) -> None:
    rng = np.random.default_rng(2)
    cal, members = rng.normal(size=2000), rng.normal(0.6, 1, 2000)
    calib = make_calibration(cal, 0.01, member_scores=members)
    print(f"{sets} sets of 100 N(0.3, 1) suspects, 2,000 N(0, 1) calibration, 2,000 N(0.6, 1) members; "
          f"reference: {reference_draws:,} plain Monte Carlo draws")
    print("| set | importance (decides) | Chernoff | profiled, asymptotic | reference | importance / reference | Chernoff / importance |")
    print("|---|---|---|---|---|---|---|")
    for i in range(sets):
        s = rng.normal(0.3, 1, 100)
        p, _, d = conditional_mixture_test(s, cal, members, mixture_bins)
        prof = set_tests(s, calib).tests["mixture"].detail["profile_lr_p_asymptotic"]
        ref = conditional_mixture_test(s, cal, members, mixture_bins, draws=reference_draws, seed=1)[2]["p_monte_carlo"]
        resolved = ref >= 10 / (reference_draws + 1)  # at least 9 hits: a usable reference
        p_is, p_ch = d["p_importance"], d["p_chernoff"]
        ratio = f"{p_is / ref:.2f}" if p_is is not None and resolved else "-"
        ch = f"{p_ch / p_is:.0f}" if p_is is not None else "-"
        print(f"| {i} | {_fmt(p_is)} | {_fmt(p_ch)} | {prof:.2g} | {ref:.2g}{'' if resolved else ' (floor)'} | {ratio} | {ch} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--null-draws", type=int, default=None, help="null sets (default: --draws)")
    ap.add_argument("--no-power", action="store_true", help="only the null sets")
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--null-size", type=int, default=400)
    ap.add_argument("--tail", type=int, default=0, help="synthetic sets for the tail comparison")
    ap.add_argument("--reference-draws", type=int, default=2_000_000)
    args = ap.parse_args()
    if args.tail:
        return tail(args.tail, args.reference_draws)
    if args.synthetic:
        return synthetic(args.synthetic)
    if args.run_dir is None:
        ap.error("RUN_DIR is required without --synthetic or --tail")
    null_draws = args.draws if args.null_draws is None else args.null_draws
    with np.load(args.run_dir / "scores.npz") as z:
        m, ev, c0 = z["members"], z["eval_nonmembers"], z["calibration"]
    auc = roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(ev))], np.r_[m, ev])
    print(f"{args.run_dir}: {len(m)} members, {len(c0)} calibration, {len(ev)} evaluation non-members; head AUC {auc:.3f}")
    rng = np.random.default_rng(0)
    cal = make_calibration(c0, 0.01, member_scores=m)
    mix = MixtureModel.fit(cal.scores, m)
    if not args.no_power:
        power(m, ev, mix, cal, args, rng)
    half = rng.permutation(ev)
    chance = _null(half[: len(half) // 2], c0, half[len(half) // 2:], args.null_size, null_draws, rng)
    real = _null(m, c0, ev, args.null_size, null_draws, rng)
    print(f"\nnull sets of {args.null_size} (fresh calibration split per draw), share flagged at 0.01, {null_draws} draws:")
    print("| members' scores | " + " | ".join(NAMES) + " |\n|---|" + "---|" * len(NAMES))
    print("| half of the non-members (a head reading chance) | " + " | ".join(f"{chance[n]:.3f}" for n in NAMES) + " |")
    print("| the run's members | " + " | ".join(f"{real[n]:.3f}" for n in NAMES) + " |")


def power(m, ev, mix, cal, args, rng) -> None:
    print(f"\npower at alpha 0.01, suspect sets of {args.size}, {args.draws} draws, calibration fixed:")
    print("| members in the set | " + " | ".join(NAMES) + " |\n|---|" + "---|" * len(NAMES))
    for frac in (0.0, 0.02, 0.05, 0.1, 0.2):
        k = round(frac * args.size)
        hits = dict.fromkeys(NAMES, 0)
        for _ in range(args.draws):
            for key, v in _flags(set_tests(draw_suspect(m, ev, args.size, k, rng), cal, mixture=mix)).items():
                hits[key] += v
        print(f"| {k} | " + " | ".join(f"{hits[n] / args.draws:.3f}" for n in NAMES) + " |")


if __name__ == "__main__":
    main()
