"""Pivot ``robustness.json`` files into Markdown: one row per transformation, one column per scorer.

    python benchmarks/robustness_pivot.py runs/exp/rb-heldout-seen/robustness.json [more.json ...] [--metric auc]

Each cell is ``AUC / TPR@1%FPR`` (or the chosen metrics); files given later add columns
(scorers already present keep the first file's figures, so pass the audited run first).
"""
from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", action="append", default=[], help="FILE_INDEX:SCORER=COLUMN label overrides")
    ap.add_argument("--calibrated", action="store_true", help="also TPR/FPR at the exact-calibrated threshold")
    a = ap.parse_args(argv)
    cells: dict[tuple[str, str], str] = {}
    order_t: list[str] = []
    order_s: list[str] = []
    for f in a.files:
        for r in json.load(open(f))["rows"]:
            t, s = f"{r['transform']}:{r['level']}".replace("none:exact", "exact copy"), r["scorer"]
            if (t, s) in cells:
                continue
            c = f"{r['auc']:.3f} / {r['tpr_at_1pct_fpr']:.2f}"
            if a.calibrated:
                c += f" ({r['tpr_at_exact_cal']:.2f}/{r['fpr_at_exact_cal']:.3f})"
            cells[t, s] = c
            order_t += [t] if t not in order_t else []
            order_s += [s] if s not in order_s else []
    print("| copy | " + " | ".join(order_s) + " |")
    print("|---|" + "---|" * len(order_s))
    for t in order_t:
        print(f"| {t} | " + " | ".join(cells.get((t, s), "–") for s in order_s) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
