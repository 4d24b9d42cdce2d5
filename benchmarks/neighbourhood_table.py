"""One Markdown table from `activemint robustness` outputs: a row per scorer, a column per copy,
each cell AUC / TPR@1%FPR / TPR@0.1%FPR.

    python benchmarks/neighbourhood_table.py runs/nb/rb-seen/robustness.json runs/nb/rb-unseen/robustness.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    rows = []
    for p in paths:
        rows += json.loads(Path(p).read_text())["rows"]
    copies = list(dict.fromkeys(f"{r['transform']}:{r['level']}" for r in rows))
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    by = {(r["scorer"], f"{r['transform']}:{r['level']}"): r for r in rows}
    print("| scorer | " + " | ".join("exact" if c == "none:exact" else c for c in copies) + " |")
    print("|---|" + "---|" * len(copies))
    for s in scorers:
        cells = []
        for c in copies:
            r = by.get((s, c))
            cells.append("" if r is None else f"{r['auc']:.3f} / {r['tpr_at_1pct_fpr']:.2f} / {r['tpr_at_0_1pct_fpr']:.2f}")
        print(f"| `{s}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
