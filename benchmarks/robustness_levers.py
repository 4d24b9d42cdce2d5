"""Plot several runs' robustness tables side by side: AUC and TPR@1%FPR per copy, one bar per run.

    python benchmarks/robustness_levers.py --out docs/img/robustness-levers.png \
        "rall30 (30 ep.)=benchmarks/results/detects/round2/robustness-rall30.json" \
        "s200w=benchmarks/results/detects/round3/robustness-s200w.json" ...

Each argument is ``LABEL=robustness.json``; only the ``--scorer`` rows (default Active MINT)
are drawn, and dashed lines mark issue 8's targets (AUC 0.90, TPR@1%FPR 0.20).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COPIES = {"none:exact": "exact", "translate:2px": "shift 2 px", "crop:0.9": "crop 90%", "resize:0.75": "resize 0.75",
          "jpeg:q50": "JPEG 50", "noise:8/255": "noise 8/255"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=path/to/robustness.json")
    ap.add_argument("--scorer", default="active_mint")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = []
    for spec in a.runs:
        label, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"expected LABEL=FILE, got {spec!r}")
        try:
            table = json.loads(Path(path).read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"{path}: not a robustness.json ({type(e).__name__}: {e})")
        rows = {f"{r['transform']}:{r['level']}": r for r in table if r["scorer"] == a.scorer}
        if not rows:
            ap.error(f"{path}: no rows of scorer {a.scorer!r}")
        series.append((label, rows))
    x = np.arange(len(COPIES))
    width = 0.8 / len(series)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, metric, target, title in ((axes[0], "auc", 0.90, "AUC"), (axes[1], "tpr_at_1pct_fpr", 0.20, "TPR @ 1% FPR")):
        for i, (label, rows) in enumerate(series):
            vals = [rows[c][metric] if c in rows else np.nan for c in COPIES]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label, color=plt.cm.viridis(i / max(1, len(series) - 1)))
        ax.axhline(target, ls="--", color="red", lw=1)
        ax.set_xticks(x, list(COPIES.values()), rotation=20, fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0.5 if metric == "auc" else 0.0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(series)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 * ((len(series) + 3) // 4), 1, 1))
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
