"""Measure the figures the set-level test bounds in tests/test_audit_settest.py rest on.

    PYTHONPATH=. python benchmarks/settest_assumptions.py [RUN_DIR]

RUN_DIR: the test fixture run (default: the newest under .cache/test-runs holding scores.npz
of an aMINT run).  Prints: power and interval coverage at 20 members in 100 (fixed
calibration and mixture, 200 draws); under H0 with a fresh calibration split per draw, the
rejection rate at 0.05 and how often the fraction's upper bound reaches 0.1 (200 draws); the
estimate's sd at 20/100 (300 draws); and, on synthetic N(0,1) vs N(3,1) scores, the sd of the
mixture estimate, its coverage and largest p-value (1000 draws).  Seeded: rerunning gives the
same numbers on one machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from activemint.audit.calibration import make_calibration
from activemint.audit.power import draw_suspect
from activemint.audit.settest import MixtureModel, set_tests


def main(run_dir: Path) -> None:
    with np.load(run_dir / "scores.npz") as z:
        scores = {k: z[k] for k in z.files}
    cal = make_calibration(scores["calibration"], 0.01, member_scores=scores["members"],
                           eval_nonmember_scores=scores["eval_nonmembers"])
    mixture = MixtureModel.fit(cal.scores, cal.member_scores)
    rng = np.random.default_rng(11)
    det = cov = 0
    maxp = 0.0
    for _ in range(200):
        r = set_tests(draw_suspect(scores["members"], scores["eval_nonmembers"], 100, 20, rng), cal, mixture=mixture)
        det += r.reject
        cov += r.fraction.ci_low <= 0.2 <= r.fraction.ci_high
        maxp = max(maxp, r.p_value)
    print(f"20/100 members: power {det / 200:.3f}, coverage of 0.2 {cov / 200:.3f}, largest p {maxp:.2g}")
    pooled = np.r_[cal.scores, cal.eval_nonmember_scores]
    hi, rej = [], 0
    for _ in range(200):
        perm = rng.permutation(len(pooled))
        c = make_calibration(pooled[perm[: cal.n]], 0.01, member_scores=cal.member_scores)
        rep = set_tests(pooled[perm[cal.n : cal.n + 100]], c)
        hi.append(rep.fraction.ci_high)
        rej += rep.p_value <= 0.05
    hi_a = np.asarray(hi)
    print(f"H0 (fresh calibration): reject at 0.05 {rej / 200:.3f}, P(ci_high >= 0.1) {(hi_a >= 0.1).mean():.3f}, "
          f"median ci_high {np.median(hi_a):.3f}")
    rng = np.random.default_rng(12)
    est = np.array([set_tests(draw_suspect(scores["members"], scores["eval_nonmembers"], 100, 20, rng), cal,
                              mixture=mixture).fraction.estimate for _ in range(300)])
    print(f"20/100 estimate: mean {est.mean():.4f}, sd {est.std():.4f}")
    rng = np.random.default_rng(123)
    mm = MixtureModel.fit(rng.normal(0, 1, 2000), rng.normal(3, 1, 2000))
    ests, ps, covered = [], [], 0
    for _ in range(1000):
        e, t = mm.fraction(np.r_[rng.normal(3, 1, 60), rng.normal(0, 1, 240)])
        ests.append(e.estimate)
        ps.append(t.p_value)
        covered += e.ci_low <= 0.2 <= e.ci_high
    print(f"synthetic 60/300: estimate sd {np.std(ests):.4f}, coverage {covered / 1000:.3f}, largest p {max(ps):.2g}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run = Path(sys.argv[1])
    else:
        runs = [p.parent for p in Path(".cache/test-runs").glob("*/scores.npz")]
        if not runs:
            sys.exit("no cached test run: run the test suite once (it trains the fixture), or pass RUN_DIR")
        run = max(runs, key=lambda p: p.stat().st_mtime)
    main(run)
