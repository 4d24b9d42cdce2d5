"""Set-level audits of transformed copies, from the scores of ``activemint robustness --save-scores``.

For every copy (exact and each transformation) and every scorer row named (e.g. ``active_mint``
and ``active_mint@compact/max``), over ``--draws`` draws of ``--size`` images:

* **members**: ``size`` transformed members, the calibration the deployed audit uses (the
  untransformed calibration non-members, scored the same way): the largest p-value of the
  default (mixture) test over the draws, and how many draws reach p < 1e-6;
* **members, matched calibration**: the same draws against the *transformed* calibration
  non-members (an auditor who knows, or guesses, what was done to the images);
* **non-members, deployed calibration**: ``size`` transformed evaluation non-members against
  the untransformed calibration: how many draws are flagged at alpha 0.01 and at 1e-4.  The
  calibration is fixed, so these draws are not independent, and the transformed non-members
  are not exchangeable with the calibration set: an empirical check, no guarantee;
* **non-members, matched calibration**: the transformed calibration and evaluation
  non-members pooled and permuted afresh for each draw, ``size`` of them the suspect set and
  the rest the calibration, so the calibration is disjoint from that draw's suspect set.
  Within a draw suspect and calibration scores are exchangeable, so a valid test at level a
  rejects with probability <= a.  The draws are i.i.d. *given the pool*: the count is
  Binomial(draws, p_pool), where p_pool (the rejection rate over re-splits of this one
  pool) averages <= a over pools.  4,000 non-members make only 40 disjoint sets of 100, so
  300 draws overlap: two suspect sets share 100 * 100 / 4000 = 2.5 samples on average, and a
  sample in one draw's suspect set sits in another draw's calibration.

``--matched-only`` keeps only the matched-calibration columns (the acceptance's protocol),
at half the cost; ``--copies`` restricts the copies.

    python benchmarks/neighbourhood_settest.py ROBUSTNESS_OUT --scorer active_mint \\
        --scorer active_mint@compact/max --out settest.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from activemint.audit.calibration import make_calibration
from activemint.audit.settest import MixtureModel, set_tests


def binomial_bound(n: int, a: float, tail: float = 1e-6) -> int:
    """The smallest k with P(Binomial(n, a) > k) < tail."""
    k = 0
    while stats.binom.sf(k, n, a) >= tail:
        k += 1
    return k


def study(z: dict[str, np.ndarray], scorer: str, copy: str, *, size: int, draws: int, seed: int, matched_only: bool = False) -> dict:
    g = lambda c, r: z[f"{scorer}|{c}|{r}"]  # noqa: E731
    mem_exact, cal_exact = g("none:exact", "members"), g("none:exact", "calibration")
    mem, ev, cal_t = g(copy, "members"), g(copy, "eval_nonmembers"), g(copy, "calibration")
    cal = make_calibration(cal_exact, 0.01, member_scores=mem_exact)
    mixture = MixtureModel.fit(cal.scores, mem_exact)
    cal_m = make_calibration(cal_t, 0.01, member_scores=mem)
    mixture_m = MixtureModel.fit(cal_t, mem)
    rng = np.random.default_rng(seed)
    p_mem, p_mem_m, p_non, p_matched = [], [], [], []
    for _ in range(draws):
        sus = rng.choice(mem, size, replace=False)
        non = rng.choice(ev, size, replace=False)  # drawn either way, so --matched-only keeps the same draws
        p_mem_m.append(set_tests(sus, cal_m, mixture=mixture_m).p_value)
        if not matched_only:
            p_mem.append(set_tests(sus, cal, mixture=mixture).p_value)
            p_non.append(set_tests(non, cal, mixture=mixture).p_value)
        pool = rng.permutation(np.r_[cal_t, ev])
        c2 = make_calibration(pool[size:], 0.01, member_scores=mem)
        p_matched.append(set_tests(pool[:size], c2).p_value)
    p_mem, p_mem_m, p_non, p_matched = map(np.asarray, (p_mem, p_mem_m, p_non, p_matched))
    row = {
        "scorer": scorer, "copy": copy, "size": size, "draws": draws,
        "members_matched_max_p": float(p_mem_m.max()), "members_matched_median_p": float(np.median(p_mem_m)),
        "members_matched_draws_p_below_1e-6": int((p_mem_m < 1e-6).sum()),
        "nonmembers_matched_flagged_at_0.01": int((p_matched < 0.01).sum()),
        "nonmembers_matched_flagged_at_1e-4": int((p_matched < 1e-4).sum()),
        "nonmembers_matched_min_p": float(p_matched.min()),
    }
    if not matched_only:
        row.update({
            "members_max_p": float(p_mem.max()), "members_median_p": float(np.median(p_mem)),
            "members_draws_p_below_1e-6": int((p_mem < 1e-6).sum()),
            "nonmembers_deployed_flagged_at_0.01": int((p_non < 0.01).sum()),
            "nonmembers_deployed_flagged_at_1e-4": int((p_non < 1e-4).sum()),
        })
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("robustness_out", help="an `activemint robustness --save-scores` output folder")
    ap.add_argument("--scorer", action="append", required=True, help="a row key of the robustness table (repeatable)")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copies", help="comma-separated copies to study (TRANSFORM:LEVEL as in the scores; default all)")
    ap.add_argument("--matched-only", action="store_true",
                    help="only the matched-calibration columns (members and non-members against non-members transformed alike)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    path = Path(a.robustness_out) / "scores.npz"
    if not path.is_file():
        sys.exit(f"neighbourhood_settest: {path} not found: run `activemint robustness ... --save-scores` first")
    with np.load(path, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    copies = list(dict.fromkeys(k.split("|")[1] for k in z))
    if a.copies:
        wanted = [c.strip() for c in a.copies.split(",") if c.strip()]
        missing = [c for c in wanted if c not in copies]
        if missing:
            sys.exit(f"neighbourhood_settest: no copy {missing[0]!r} in {path}; copies: {', '.join(copies)}")
        copies = wanted
    rows = []
    for sc in a.scorer:
        if not any(k.startswith(sc + "|") for k in z):
            sys.exit(f"neighbourhood_settest: no scores of {sc!r} in {path}")
        for c in copies:
            if f"{sc}|{c}|members" not in z:
                continue
            rows.append(study(z, sc, c, size=a.size, draws=a.draws, seed=a.seed, matched_only=a.matched_only))
            r = rows[-1]
            deployed = ("" if a.matched_only else
                        f"deployed cal.: members max p {r['members_max_p']:.2e} ({r['members_draws_p_below_1e-6']}/{a.draws} "
                        f"< 1e-6), non-members flagged at 0.01 / 1e-4 {r['nonmembers_deployed_flagged_at_0.01']} / "
                        f"{r['nonmembers_deployed_flagged_at_1e-4']};  ")
            print(f"{sc:28s} {c:28s} {deployed}matched cal.: members max p {r['members_matched_max_p']:.2e} "
                  f"({r['members_matched_draws_p_below_1e-6']}/{a.draws} < 1e-6), non-members flagged at 0.01 / 1e-4 "
                  f"{r['nonmembers_matched_flagged_at_0.01']} / {r['nonmembers_matched_flagged_at_1e-4']}", flush=True)
    bounds = {
        "note": ("matched calibration: a valid test at level a flags each draw with probability <= a; given the pool the count is "
                 "Binomial(draws, p_pool) with p_pool <= a on average over pools; "
                 "bound_at_a = the smallest k with P(Binomial(draws, a) > k) < 1e-6, so a correct implementation exceeds it "
                 "with probability < 1e-6"),
        "bound_at_0.01": binomial_bound(a.draws, 0.01), "bound_at_1e-4": binomial_bound(a.draws, 1e-4),
        "p_exceeds_bound_at_0.01": float(stats.binom.sf(binomial_bound(a.draws, 0.01), a.draws, 0.01)),
        "p_exceeds_1pct_of_draws_at_1e-4": float(stats.binom.sf(int(0.01 * a.draws), a.draws, 1e-4)),
    }
    Path(a.out).write_text(json.dumps({"source": str(path), "bounds": bounds, "rows": rows}, indent=2))
    print(json.dumps(bounds, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
