"""A calibrated 0.1% FPR flag with enough non-members: the run's training images it never used.

README's splits hold 2,000 calibration non-members; a threshold calibrated for 0.1% FPR
(:func:`activemint.metrics.calibrate_threshold`, FPR <= target with probability >= 0.95) needs
at least 2,995 and sits near the true 0.1% quantile only from about 10,000 on.  The data set's
training split has many images that no role of the run touched (not members, externals,
validation or calibration): non-members drawn from the same distribution as the members and
the calibration set.  This script takes a seeded ``--nonmembers`` of them, calibrates the 0.1%
threshold on the first ``--calibration`` and measures, per copy (exact and each
``--transforms``; members and non-members transformed alike, same seed):

* the TPR of the 2,000 members at that threshold, with its 95% Clopper-Pearson interval;
* the FPR of the other (held-out) non-members at it, with its interval;
* the empirical TPR@0.1%FPR against the held-out non-members, with a bootstrap interval.

    python benchmarks/neighbourhood_lowfpr.py runs/nb/rall34 --transforms jpeg:q50,noise:8/255 \\
        --nonmembers 30000 --calibration 10000 --threads 1 --out lowfpr.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from activemint.data import read_manifest
from activemint.metrics import calibrate_threshold, calibration_rank, fmt_rate, tpr_interval
from activemint.runs import load_run
from activemint.transforms import apply_transform, parse_spec


def unused_train_indices(splits, n_train: int) -> np.ndarray:
    """Indices of the training split that no role of the run uses."""
    used = np.concatenate([splits.members, splits.external, splits.validation, splits.calibration])
    mask = np.ones(n_train, dtype=bool)
    mask[used] = False
    return np.flatnonzero(mask)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--transforms", default="", help="comma-separated NAME:LEVEL copies besides the exact one")
    ap.add_argument("--nonmembers", type=int, default=30000, help="unused training images to score (seeded subset)")
    ap.add_argument("--calibration", type=int, default=10000, help="of those, how many calibrate the threshold")
    ap.add_argument("--target-fpr", type=float, default=0.001)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    run = load_run(a.run_dir, device="cpu")
    splits = read_manifest(run.dir.manifest)
    train = run.data.train
    pool = unused_train_indices(splits, len(train.images))
    if a.nonmembers > len(pool) or not 0 < a.calibration < a.nonmembers:
        sys.exit(f"neighbourhood_lowfpr: {len(pool)} unused training images; need --calibration < --nonmembers <= {len(pool)}")
    pick = np.random.default_rng(a.seed).permutation(pool)[:a.nonmembers]
    held_idx = pick[a.calibration:]  # pick[:a.calibration] calibrates
    members = train.images[torch.as_tensor(splits.members)]
    nonmembers = train.images[torch.as_tensor(pick)]
    copies = [("none", "exact")] + (parse_spec(a.transforms, members.shape[1]) if a.transforms else [])
    rank = calibration_rank(a.calibration, a.target_fpr)
    rows = []
    for name, level in copies:
        tm = members if name == "none" else apply_transform(members, name, level, seed=a.seed)
        tn = nonmembers if name == "none" else apply_transform(nonmembers, name, level, seed=a.seed)
        sm, sn = run.membership_logits(tm), run.membership_logits(tn)
        cal, held = sn[:a.calibration], sn[a.calibration:]
        thr = calibrate_threshold(cal, a.target_fpr)
        tpr, fpr = float((sm > thr).mean()), float((held > thr).mean())
        # empirical TPR at <= target FPR against the held-out non-members, and its bootstrap interval
        def emp(m, n):
            k = int(np.floor(a.target_fpr * len(n)))  # non-members allowed above the threshold
            t = np.sort(n)[::-1][k] if k < len(n) else -np.inf
            return float((m > t).mean())
        rng = np.random.default_rng(a.seed)
        boots = [emp(sm[rng.integers(0, len(sm), len(sm))], held[rng.integers(0, len(held), len(held))])
                 for _ in range(a.bootstrap)]
        e = emp(sm, held)
        row = {"copy": f"{name}:{level}", "threshold": float(thr), "calibration_rank": int(rank),
               "tpr_at_calibrated": tpr, "tpr_at_calibrated_ci": list(tpr_interval(tpr, len(sm))),
               "fpr_held_out": fpr, "fpr_held_out_ci": list(tpr_interval(fpr, len(held))),
               "tpr_at_target_fpr_held_out": e, "tpr_at_target_fpr_held_out_bootstrap_ci":
               [float(x) for x in np.quantile(boots, [0.025, 0.975])]}
        rows.append(row)
        print(f"{row['copy']:18s} calibrated {a.target_fpr:g} threshold (rank {rank} of {a.calibration}): "
              f"TPR {fmt_rate(tpr, len(sm))}, held-out FPR {fmt_rate(fpr, len(held), 4)} (n = {len(held)}); "
              f"empirical TPR@{a.target_fpr:g}FPR {e:.3f} boot. [{row['tpr_at_target_fpr_held_out_bootstrap_ci'][0]:.3f}, "
              f"{row['tpr_at_target_fpr_held_out_bootstrap_ci'][1]:.3f}]", flush=True)
    out = {"run_dir": str(a.run_dir), "n_members": len(splits.members), "unused_train_images": len(pool),
           "n_calibration": a.calibration, "n_held_out": len(held_idx), "target_fpr": a.target_fpr,
           "calibration_rank": int(rank), "rows": rows, "seconds": round(time.time() - t0, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
