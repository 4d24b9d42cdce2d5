"""Severity curves of near-copy detection, from the scores of ``activemint robustness --save-scores``.

For every scorer row named (``active_mint``, ``active_mint@axis/topk:2``, ...) and every copy in
the scores (exact, each transformation at each named level, compositions):

* **AUC** against the 2,000 evaluation non-members transformed alike, with its bootstrap 95%
  interval (:func:`activemint.metrics.membership_metrics`);
* **TPR@1%FPR** against the same non-members, with its 95% Clopper-Pearson interval over the
  members (:func:`activemint.metrics.fmt_rate`, threshold held fixed);
* **TPR@0.1%FPR on the pooled non-members**: the evaluation *and* the calibration non-members,
  both transformed alike (4,000 on README's splits), so the threshold is the 4th-highest
  non-member score rather than the 2nd; its Clopper-Pearson interval, and a bootstrap 95%
  interval that resamples members *and* non-members (so it includes the threshold's own
  uncertainty);
* **a calibrated 0.1% threshold**: :func:`activemint.metrics.calibrate_threshold` needs
  :func:`~activemint.metrics.min_calibration_size` (2,995 at delta 0.05) non-members; the
  calibration non-members plus the first ``need - n_cal`` evaluation non-members (seeded
  permutation) calibrate it, and the TPR and FPR are measured on the members and on the
  remaining evaluation non-members.

Then, per transformation, whether detection falls as severity grows (the levels in the
registry's order, mildest first): a rise of the AUC from one level to the next severer one is
listed, with whether the two AUC intervals overlap.

    python benchmarks/severity.py ROBUSTNESS_OUT --scorer active_mint --scorer active_mint@axis/topk:2 \\
        --out benchmarks/results/neighbourhood/severity
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from activemint.metrics import (
    calibrate_threshold,
    fmt_rate,
    membership_metrics,
    min_calibration_size,
    tpr_at_fpr,
)
from activemint.transforms import TRANSFORMS

EXACT = "none:exact"


def tpr_at(m: np.ndarray, n: np.ndarray, fpr: float) -> float:
    f, t, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
    return tpr_at_fpr(f, t, fpr)


def bootstrap_tpr(m: np.ndarray, n: np.ndarray, fpr: float, reps: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of TPR@``fpr`` over resamples of members and non-members."""
    rng = np.random.default_rng(seed)
    v = [tpr_at(m[rng.integers(0, len(m), len(m))], n[rng.integers(0, len(n), len(n))], fpr) for _ in range(reps)]
    lo, hi = np.quantile(v, [0.025, 0.975])
    return float(lo), float(hi)


def calibrated_low_fpr(m: np.ndarray, ev: np.ndarray, cal: np.ndarray, fpr: float, seed: int) -> dict:
    """TPR / FPR at a threshold calibrated for ``fpr`` on the calibration plus enough evaluation non-members."""
    need = min_calibration_size(fpr)
    extra = max(0, need - len(cal))
    if extra >= len(ev):
        return {"needed": need, "note": f"needs {need} calibration non-members; {len(cal)} + {len(ev)} available"}
    perm = np.random.default_rng(seed).permutation(len(ev))
    calib, held = np.r_[cal, ev[perm[:extra]]], ev[perm[extra:]]
    t = calibrate_threshold(calib, fpr)
    return {"needed": need, "n_calibration": len(calib), "from_eval_nonmembers": int(extra), "threshold": float(t),
            "tpr": float((m > t).mean()), "n_members": len(m), "fpr": float((held > t).mean()), "n_held_out": len(held)}


def copy_row(z: dict, scorer: str, copy: str, *, bootstrap: int, seed: int) -> dict:
    g = lambda r: z[f"{scorer}|{copy}|{r}"]  # noqa: E731
    m, ev, cal = g("members"), g("eval_nonmembers"), g("calibration")
    mm = membership_metrics(m, ev, bootstrap=bootstrap, seed=seed)
    pooled = np.r_[ev, cal]
    t01 = tpr_at(m, pooled, 0.001)
    b_lo, b_hi = bootstrap_tpr(m, pooled, 0.001, bootstrap, seed)
    return {
        "scorer": scorer, "copy": copy, "n_members": len(m), "n_eval_nonmembers": len(ev), "n_pooled_nonmembers": len(pooled),
        "auc": mm.auc, "auc_ci": [mm.auc_ci_low, mm.auc_ci_high],
        "tpr_at_1pct_fpr": mm.tpr_at_1pct_fpr, "tpr_at_1pct_fpr_txt": fmt_rate(mm.tpr_at_1pct_fpr, len(m)),
        "tpr_at_0_1pct_fpr_eval": mm.tpr_at_0_1pct_fpr,
        "tpr_at_0_1pct_fpr_pooled": t01, "tpr_at_0_1pct_fpr_pooled_txt": fmt_rate(t01, len(m)),
        "tpr_at_0_1pct_fpr_pooled_bootstrap_ci": [b_lo, b_hi],
        "calibrated_0_1pct": calibrated_low_fpr(m, ev, cal, 0.001, seed),
    }


def severity_order(copy: str) -> tuple[str, int] | None:
    """(transformation, position of its level among the registry's levels) for a single named level."""
    name, _, level = copy.partition(":")
    t = TRANSFORMS.get(name)
    if t is None or level not in t.levels:
        return None
    return name, list(t.levels).index(level)


def monotonicity(rows: list[dict]) -> list[dict]:
    """Per scorer and transformation: every step to a severer level where the AUC rises."""
    out = []
    by: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for r in rows:
        o = severity_order(r["copy"])
        if o is not None:
            by.setdefault((r["scorer"], o[0]), []).append((o[1], r))
    for (scorer, name), lv in by.items():
        lv.sort(key=lambda x: x[0])
        aucs = [r["auc"] for _, r in lv]
        rises = []
        for (_, a), (_, b) in zip(lv, lv[1:]):
            if b["auc"] > a["auc"]:
                overlap = b["auc_ci"][0] <= a["auc_ci"][1]
                rises.append({"from": a["copy"], "to": b["copy"], "auc_from": a["auc"], "auc_to": b["auc"],
                              "intervals_overlap": bool(overlap)})
        out.append({"scorer": scorer, "transform": name, "levels": [r["copy"] for _, r in lv], "aucs": aucs,
                    "falls_with_severity": not rises, "rises": rises})
    return out


def markdown(rows: list[dict], mono: list[dict], scorers: list[str]) -> str:
    lines = ["Cells: AUC [95% bootstrap] / TPR@1%FPR [95% CP] vs the evaluation non-members / "
             "TPR@0.1%FPR [95% CP] [95% bootstrap] vs the pooled evaluation + calibration non-members / "
             "calibrated 0.1% threshold: TPR, held-out FPR.", ""]
    for sc in scorers:
        lines += [f"### `{sc}`", "", "| copy | AUC | TPR@1%FPR | TPR@0.1%FPR (pooled) | calibrated 0.1%: TPR / FPR |",
                  "|---|---|---|---|---|"]
        for r in (r for r in rows if r["scorer"] == sc):
            c = r["calibrated_0_1pct"]
            cal = (f"{c['tpr']:.3f} / {c['fpr']:.4f} (cal. {c['n_calibration']}, held out {c['n_held_out']})"
                   if "tpr" in c else c["note"])
            b = r["tpr_at_0_1pct_fpr_pooled_bootstrap_ci"]
            lines.append(f"| {r['copy']} | {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}] | "
                         f"{r['tpr_at_1pct_fpr_txt']} | {r['tpr_at_0_1pct_fpr_pooled_txt']} [{b[0]:.3f}, {b[1]:.3f}] | {cal} |")
        lines.append("")
    lines += ["### Does detection fall with severity? (AUC, mildest level first)", "",
              "| scorer | transformation | AUC by level | falls | rises (intervals overlap?) |", "|---|---|---|---|---|"]
    for m in mono:
        rises = "; ".join(f"{x['from']} {x['auc_from']:.3f} -> {x['to']} {x['auc_to']:.3f} "
                          f"({'overlap' if x['intervals_overlap'] else 'apart'})" for x in m["rises"]) or "-"
        lines.append(f"| `{m['scorer']}` | {m['transform']} | {' / '.join(f'{a:.3f}' for a in m['aucs'])} | "
                     f"{'yes' if m['falls_with_severity'] else 'no'} | {rises} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("robustness_out", nargs="+", help="`activemint robustness --save-scores` output folder(s)")
    ap.add_argument("--scorer", action="append", required=True, help="a row key of the robustness table (repeatable)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output path without extension (.md and .json are written)")
    a = ap.parse_args(argv)
    z: dict[str, np.ndarray] = {}
    for d in a.robustness_out:
        path = Path(d) / "scores.npz"
        if not path.is_file():
            sys.exit(f"severity: {path} not found: run `activemint robustness ... --save-scores` first")
        with np.load(path, allow_pickle=False) as f:
            z.update({k: f[k] for k in f.files})
    rows = []
    for sc in a.scorer:
        copies = list(dict.fromkeys(k.split("|")[1] for k in z if k.startswith(sc + "|")))
        if not copies:
            sys.exit(f"severity: no scores of {sc!r} in {', '.join(a.robustness_out)}")
        copies.sort(key=lambda c: c != EXACT)
        for c in copies:
            rows.append(copy_row(z, sc, c, bootstrap=a.bootstrap, seed=a.seed))
            r = rows[-1]
            print(f"{sc:26s} {c:28s} AUC {r['auc']:.3f}  TPR@1% {r['tpr_at_1pct_fpr_txt']}  "
                  f"TPR@0.1% (pooled) {r['tpr_at_0_1pct_fpr_pooled_txt']}", flush=True)
    mono = monotonicity(rows)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"sources": a.robustness_out, "rows": rows, "monotonicity": mono}, indent=2))
    out.with_suffix(".md").write_text(markdown(rows, mono, a.scorer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
