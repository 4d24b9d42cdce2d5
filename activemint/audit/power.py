"""How the set-level tests behave on a real run's scores: false alarms, power, coverage.

Suspect sets are drawn (without replacement) from the run's own scores: fresh
non-members from the evaluation non-members (test split, never used for calibration), and
members from D.  The calibration set stays fixed, as in a real audit.  For each member
fraction the study reports, per test, the share of draws with p < alpha, and for the
mixture model the coverage of the member fraction's interval.

Run it on a run directory (the command line is :mod:`activemint.cli.power`)::

    activemint power RUN_DIR [--size 100] [--draws 1000] [--alpha 0.01]
"""
from __future__ import annotations

from typing import Any

import numpy as np

from activemint.audit.calibration import Calibration, make_calibration
from activemint.audit.settest import TESTS, MixtureModel, set_tests


def draw_suspect(members: np.ndarray, nonmembers: np.ndarray, size: int, n_members: int, rng: np.random.Generator) -> np.ndarray:
    """Scores of a suspect set: ``n_members`` drawn from ``members``, the rest from ``nonmembers``."""
    a = rng.choice(members, n_members, replace=False) if n_members else np.empty(0)
    b = rng.choice(nonmembers, size - n_members, replace=False)
    return np.r_[a, b]


def power_study(
    calibration: Calibration,
    *,
    fresh_nonmembers: np.ndarray | None = None,
    members: np.ndarray | None = None,
    size: int = 100,
    fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 1.0),
    draws: int = 1000,
    alpha: float = 0.01,
    seed: int = 0,
    resample_calibration: bool = False,
) -> dict[str, Any]:
    """Rejection rates of every test and the fraction interval's coverage, per member fraction.

    With ``resample_calibration=False`` the run's calibration set stays fixed (what one
    audit sees: rates conditional on that calibration set).  With ``True`` every draw
    splits the pooled calibration + fresh non-member scores anew into a calibration set of
    the same size and a pool of fresh non-members (rates averaged over calibration sets,
    which is what the tests' guarantees are about).

    Returns ``{"size", "draws", "alpha", "rows": [{"fraction", "n_members", "reject_<test>",
    "p_lt_0_05_<test>", "coverage", "mean_estimate", "mean_ci_width"}...]}``.
    """
    fresh = calibration.eval_nonmember_scores if fresh_nonmembers is None else np.asarray(fresh_nonmembers)
    mem = calibration.member_scores if members is None else np.asarray(members)
    if fresh is None or mem is None:
        raise ValueError("the power study needs fresh non-member and member scores")
    mixture = MixtureModel.fit(calibration.scores, mem)
    pooled = np.r_[calibration.scores, fresh]
    rng = np.random.default_rng(seed)
    rows = []
    for frac in fractions:
        k = int(round(frac * size))
        pvals = {t: [] for t in TESTS}
        cover, est, width = [], [], []
        for _ in range(draws):
            cal, mix, pool = calibration, mixture, fresh
            if resample_calibration:
                perm = rng.permutation(len(pooled))
                cal = make_calibration(pooled[perm[: calibration.n]], calibration.target_fpr, member_scores=mem)
                mix = MixtureModel.fit(cal.scores, mem)
                pool = pooled[perm[calibration.n:]]
            s = draw_suspect(mem, pool, size, k, rng)
            rep = set_tests(s, cal, alpha=alpha, mixture=mix)
            for t in TESTS:
                pvals[t].append(rep.tests[t].p_value)
            f = rep.fraction
            cover.append(f.ci_low <= k / size <= f.ci_high)
            est.append(f.estimate)
            width.append(f.ci_high - f.ci_low)
        row: dict[str, Any] = {"fraction": k / size, "n_members": k}
        for t in TESTS:
            p = np.asarray(pvals[t])
            row[f"reject_{t}"] = float((p < alpha).mean())
            row[f"p_lt_0_05_{t}"] = float((p < 0.05).mean())
            row[f"median_p_{t}"] = float(np.median(p))
        row.update(coverage=float(np.mean(cover)), mean_estimate=float(np.mean(est)), mean_ci_width=float(np.mean(width)))
        rows.append(row)
    return {"size": size, "draws": draws, "alpha": alpha, "target_fpr": calibration.target_fpr,
            "calibration": "resampled per draw" if resample_calibration else "fixed (the run's)",
            "n_calibration": calibration.n, "n_fresh_nonmembers": len(fresh), "n_members_pool": len(mem), "rows": rows}


def format_study(study: dict[str, Any]) -> str:
    """A Markdown table of a :func:`power_study` result."""
    a = study["alpha"]
    lines = [
        f"suspect sets of {study['size']}, {study['draws']} draws per row, alpha = {a:g}, "
        f"calibration n = {study['n_calibration']} ({study.get('calibration', 'fixed')}), target FPR {study['target_fpr']:g}",
        "",
        "| members in set | " + " | ".join(f"{t}: P(p<{a:g})" for t in TESTS) + " | fraction CI coverage | mean estimate |",
        "|---|" + "---|" * (len(TESTS) + 2),
    ]
    for r in study["rows"]:
        lines.append(
            f"| {r['n_members']} ({100 * r['fraction']:.0f}%) | " + " | ".join(f"{r[f'reject_{t}']:.3f}" for t in TESTS)
            + f" | {r['coverage']:.3f} | {r['mean_estimate']:.3f} |"
        )
    null = [r for r in study["rows"] if r["n_members"] == 0]
    if null:
        lines.append("")
        lines.append("under H0 (no members): share of p < 0.05: " + ", ".join(f"{t} {null[0][f'p_lt_0_05_{t}']:.3f}" for t in TESTS))
    return "\n".join(lines)
