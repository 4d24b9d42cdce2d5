"""One Markdown table from `activemint robustness --save-scores` outputs: a row per scorer, a column
per copy, each cell AUC / TPR@1%FPR / TPR@0.1%FPR, and with ``--intervals`` a second table with
95% bootstrap intervals of the two TPRs (members and non-members resampled together, B = 200,
seed 0; activemint.metrics.roc / tpr_at_fpr on each resample).

    python benchmarks/neighbourhood_table.py --intervals runs/nb/rb-seen runs/nb/rb-unseen
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from activemint.metrics import roc, tpr_at_fpr


def tpr_interval(m: np.ndarray, n: np.ndarray, target: float, b: int = 200, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    got = []
    for _ in range(b):
        mm, nn = rng.choice(m, len(m)), rng.choice(n, len(n))
        fpr, tpr, _ = roc(mm, nn)
        got.append(tpr_at_fpr(fpr, tpr, target))
    return float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5))


def main(argv: list[str]) -> int:
    intervals = "--intervals" in argv
    dirs = [Path(a) for a in argv if a != "--intervals"]
    rows, scores = [], {}
    for d in dirs:
        rows += json.loads((d / "robustness.json").read_text())["rows"]
        if intervals:
            with np.load(d / "scores.npz", allow_pickle=False) as z:
                scores.update({k: z[k] for k in z.files})
    copies = list(dict.fromkeys(f"{r['transform']}:{r['level']}" for r in rows))
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    by = {(r["scorer"], f"{r['transform']}:{r['level']}"): r for r in rows}
    head = "| scorer | " + " | ".join("exact" if c == "none:exact" else c for c in copies) + " |"
    print(head)
    print("|---|" + "---|" * len(copies))
    for s in scorers:
        cells = [f"{r['auc']:.3f} / {r['tpr_at_1pct_fpr']:.2f} / {r['tpr_at_0_1pct_fpr']:.3f}" if (r := by.get((s, c))) else ""
                 for c in copies]
        print(f"| `{s}` | " + " | ".join(cells) + " |")
    if intervals:
        print("\n95% bootstrap intervals, TPR@1%FPR; TPR@0.1%FPR\n")
        print(head)
        print("|---|" + "---|" * len(copies))
        for s in scorers:
            cells = []
            for c in copies:
                m, n = scores[f"{s}|{c}|members"], scores[f"{s}|{c}|eval_nonmembers"]
                a, b = tpr_interval(m, n, 0.01)
                e, f = tpr_interval(m, n, 0.001)
                cells.append(f"[{a:.2f}, {b:.2f}]; [{e:.3f}, {f:.3f}]")
            print(f"| `{s}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
