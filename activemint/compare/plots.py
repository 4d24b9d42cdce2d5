"""ROC curves of every ``compare`` row on one plot (linear and log-log)."""
from __future__ import annotations

from pathlib import Path

from activemint.metrics import roc


def plot_rocs(rows: list, linear: Path, loglog: Path) -> None:
    """``rows``: :class:`activemint.compare.results.MethodResult` s (method, model, scores per role)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in rows))
    cmap = plt.get_cmap("tab20")
    colors = {m: cmap(i % 20) for i, m in enumerate(methods)}
    for path, log_scale in ((linear, False), (loglog, True)):
        fig, ax = plt.subplots(figsize=(9, 6.5))
        for r in rows:
            fpr, tpr, _ = roc(r.scores["members"], r.scores["eval_nonmembers"])
            lw = 2.4 if r.method == "Active MINT" else 1.2
            ax.plot(fpr, tpr, color=colors[r.method], lw=lw, ls="-" if r.model == "active" else "--",
                    label=f"{r.method} ({r.model}) AUC {r.metrics.auc:.3f}")
        lo = 1.0 / max(len(rows[0].scores["eval_nonmembers"]), 1)
        if log_scale:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo / 2, 1)
            ax.set_ylim(lo / 2, 1)
            ax.plot([lo / 2, 1], [lo / 2, 1], color="grey", lw=0.8, ls=":")
        else:
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate (evaluation non-members)")
        ax.set_ylabel("true positive rate (members)")
        ax.set_title("ROC of every membership scorer" + (" (log-log)" if log_scale else "") + "; solid = active model, dashed = plain")
        ax.legend(fontsize=6.5, loc="lower right", ncol=1 if len(rows) <= 14 else 2)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)
