"""ROC curves of every ``compare`` row on one plot (linear and log-log)."""
from __future__ import annotations

from pathlib import Path

from activemint.metrics import roc

#: Line styles cycled with the colours, so that no two curves look alike.
LINESTYLES = ("-", "--", "-.", ":")


def best_per_family(rows: list) -> list:
    """Active MINT and, per family (MINT, output, reference, ...), the row with the highest AUC."""
    best: dict[str, object] = {}
    for r in rows:
        fam = getattr(r, "family", None) or r.method
        if fam not in best or r.metrics.auc > best[fam].metrics.auc:
            best[fam] = r
    keep = {id(r) for r in best.values()} | {id(r) for r in rows if r.method == "Active MINT" and r.model == "active"}
    return [r for r in rows if id(r) in keep]


def plot_rocs(rows: list, linear: Path, loglog: Path, *, every_row: bool = False) -> None:
    """``rows``: :class:`activemint.compare.results.MethodResult` s (method, model, scores per role).

    By default only Active MINT and the best row of each family are drawn (all rows are in
    the table); ``every_row`` draws them all.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = rows if every_row else best_per_family(rows)
    cmap = plt.get_cmap("tab10")
    for path, log_scale in ((linear, False), (loglog, True)):
        fig, ax = plt.subplots(figsize=(9, 6.5))
        for i, r in enumerate(drawn):
            fpr, tpr, _ = roc(r.scores["members"], r.scores["eval_nonmembers"])
            lw = 2.6 if r.method == "Active MINT" else 1.6
            fam = getattr(r, "family", "")
            ax.plot(fpr, tpr, color=cmap(i % 10), lw=lw, ls=LINESTYLES[i % len(LINESTYLES)],
                    label=f"{r.method} ({r.model} model{', best of ' + fam if fam and not every_row else ''}) AUC {r.metrics.auc:.3f}")
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
        ax.set_xlabel(ax.get_xlabel(), fontsize=11)
        ax.set_ylabel(ax.get_ylabel(), fontsize=11)
        what = "every membership scorer" if every_row else f"Active MINT and the best scorer of each family ({len(rows)} in the table)"
        ax.set_title(f"ROC of {what}" + (" (log-log)" if log_scale else ""), fontsize=11)
        ax.legend(fontsize=9 if len(drawn) <= 8 else 7, loc="lower right", ncol=1 if len(drawn) <= 14 else 2)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)
