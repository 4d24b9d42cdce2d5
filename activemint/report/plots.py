"""Matplotlib (Agg) figures of scores and runs, returned as base64 PNG data URIs.

Every function takes plain arrays / dicts and returns ``data:image/png;base64,...`` so a
report embeds its images in one self-contained HTML file.  Figures are built with
``matplotlib.figure.Figure`` (Agg canvas), never through ``pyplot``, so the caller's
matplotlib backend and open figures are left alone.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc as _auc

from activemint.metrics import roc

COLORS = {"suspect": "#d62728", "calibration non-members": "#1f77b4", "members": "#2ca02c",
          "eval non-members": "#9467bd", "non-members": "#9467bd"}


def to_data_uri(fig, dpi: int = 110) -> str:
    """Render a figure to a PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def score_histogram(
    groups: Mapping[str, np.ndarray],
    *,
    threshold: float | None = None,
    threshold_label: str = "calibrated threshold",
    title: str = "membership scores",
    xlabel: str = "membership logit (higher = more member-like)",
) -> str:
    """Overlaid density histograms of several score groups on shared bins."""
    fig = Figure(figsize=(7.5, 3.6), layout="tight")
    ax = fig.subplots()
    allv = np.concatenate([np.asarray(v, dtype=float) for v in groups.values() if len(v)])
    lo, hi = np.quantile(allv, [0.001, 0.999]) if len(allv) > 20 else (allv.min(), allv.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    pad = 0.05 * (hi - lo or 1.0)
    smallest = min(len(v) for v in groups.values() if len(v))
    bins = np.linspace(lo - pad, hi + pad, int(np.clip(2.5 * np.sqrt(smallest), 12, 50)) + 1)
    for i, (name, v) in enumerate(groups.items()):
        v = np.clip(np.asarray(v, dtype=float), bins[0], bins[-1])
        color = COLORS.get(name, f"C{i}")
        ax.hist(v, bins=bins, density=True, alpha=0.45, color=color, label=f"{name} (n={len(v)})")
        ax.hist(v, bins=bins, density=True, histtype="step", color=color, linewidth=1.2)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1.2, label=f"{threshold_label} ({threshold:.2f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def roc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    operating_point: tuple[float, float] | None = None,
    operating_label: str = "calibrated threshold",
    title: str = "ROC: members vs evaluation non-members",
) -> str:
    """ROC curves, linear and log-log side by side; ``curves`` maps a name to (members, non-members)."""
    many = len(curves) > 6
    fig = Figure(figsize=(10, 4.2) if not many else (11, 5 + 0.12 * len(curves)), layout="constrained" if many else "tight")
    axes = fig.subplots(1, 2)
    for i, (name, (mem, non)) in enumerate(curves.items()):
        fpr, tpr, _ = roc(mem, non)
        label = f"{name} (AUC {_auc(fpr, tpr):.3f})"
        color = _color(i, len(curves))
        ls = ("-", "--", "-.", ":")[(i + i // 20) % 4]  # colours repeat every 20: the style shifts, so no two curves alike
        axes[0].plot(fpr, tpr, color=color, label=label, linestyle=ls)
        ok = fpr > 0
        axes[1].plot(fpr[ok], tpr[ok], color=color, label=label, linestyle=ls)
        floor = 1.0 / len(non)
    for ax, log in zip(axes, (False, True)):
        lim = (floor / 2, 1) if log else (0, 1)
        ax.plot(lim, lim, color="grey", linestyle=":", linewidth=1, label="chance")
        if operating_point is not None:
            x, y = operating_point
            if not log or x > 0:
                ax.plot([max(x, floor / 2) if log else x], [max(y, floor / 2) if log else y], "o", color="k",
                        markersize=7, label=f"{operating_label} (FPR {x:.3f}, TPR {y:.3f})")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(floor / 2, 1)
            ax.set_ylim(floor / 2, 1.05)
            ax.set_title("log-log (low-FPR regime)")
        else:
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_title("linear")
        ax.set_xlabel("false-positive rate (non-members flagged)")
        ax.set_ylabel("true-positive rate (members flagged)")
        ax.grid(alpha=0.3)
        if len(curves) <= 6:
            ax.legend(fontsize=7.5, loc="lower right")
    if len(curves) > 6:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=7)
    fig.suptitle(title)
    return to_data_uri(fig)


def learning_curves(records: Sequence[Mapping[str, float]], kept: int | None = None) -> str:
    """Per-epoch panels from ``metrics.jsonl`` records: task loss, val accuracy, MINT loss, val AUC.

    ``kept``: the epoch whose weights the run kept (``selected_epoch``), marked on every panel.
    """
    panels = [("task_loss", "task loss (train, members)"), ("val_accuracy", "validation accuracy"),
              ("mint_loss", "MINT loss (train, members + external)"), ("val_membership_auc", "validation membership AUC")]
    panels = [(k, t) for k, t in panels if any(k in r for r in records)]
    if not panels:
        raise ValueError("metrics.jsonl has none of task_loss, val_accuracy, mint_loss, val_membership_auc")
    cols = 2 if len(panels) > 1 else 1
    rows = int(np.ceil(len(panels) / cols))
    fig = Figure(figsize=(5 * cols, 3.1 * rows), layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (key, title) in zip(axes.ravel(), panels):
        pts = [(r["epoch"], r[key]) for r in records if key in r and r[key] is not None]
        x, y = zip(*pts)
        ax.plot(x, y, marker="o", markersize=3)
        if kept is not None and kept in x:
            ax.axvline(kept, color="#c62828", linestyle="--", linewidth=1.2, label=f"kept epoch {kept}")
            ax.plot([kept], [y[x.index(kept)]], marker="*", markersize=12, color="#c62828", linestyle="none")
            ax.legend(fontsize=8, loc="best")
        if key == "val_membership_auc":
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    return to_data_uri(fig)


def _color(i: int, n: int):
    if n <= 10:
        return f"C{i}"
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def metric_bars(values: Mapping[str, Mapping[str, float]], keys: Sequence[str], title: str) -> str:
    """Horizontal bars, one panel per metric key (AUC with its CI when known), one bar per method."""
    methods = list(values)
    keys = [k for k in keys if any(isinstance(values[m].get(k), (int, float)) for m in methods)][:3]
    fig = Figure(figsize=(4.0 * max(1, len(keys)) + 2.5, 0.8 + 0.28 * len(methods)), layout="tight")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(keys)), sharey=True, squeeze=False)).ravel()
    ys = np.arange(len(methods))[::-1]
    for j, (ax, k) in enumerate(zip(axes, keys)):
        v = np.array([values[m].get(k) if isinstance(values[m].get(k), (int, float)) else np.nan for m in methods], float)
        err = None
        if k == "auc" and all(isinstance(values[m].get("auc_ci_low"), (int, float)) for m in methods):
            lo = np.array([values[m]["auc_ci_low"] for m in methods])
            hi = np.array([values[m]["auc_ci_high"] for m in methods])
            err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        ax.barh(ys, v, xerr=err, color=f"C{j}", height=0.7, capsize=2)
        ax.set_xlim(0, 1)
        if k == "auc":
            ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title({"auc": "AUC", "tpr_at_1pct_fpr": "TPR at 1% FPR", "tpr_at_0_1pct_fpr": "TPR at 0.1% FPR"}.get(k, k), fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(labelsize=7.5)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(methods, fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    return to_data_uri(fig)


def histogram_grid(methods: Mapping[str, tuple[np.ndarray, np.ndarray]], *, cols: int = 3) -> str:
    """Small multiples: members vs non-members score histogram per method (own x range each)."""
    n = len(methods)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 2.6 * rows), layout="tight")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, (mem, non)) in zip(axes, methods.items()):
        allv = np.r_[mem, non].astype(float)
        lo, hi = np.quantile(allv, [0.002, 0.998])
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        bins = np.linspace(lo, hi, 40)
        for v, label, color in ((mem, "members", COLORS["members"]), (non, "non-members", COLORS["non-members"])):
            ax.hist(np.clip(v, lo, hi), bins=bins, density=True, alpha=0.5, color=color, label=label)
        ax.set_title(name, fontsize=8.5)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    for ax in axes[n:]:
        ax.axis("off")
    return to_data_uri(fig)
