"""``compare``'s results: one row per method x model, the headline, the table and the files."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from activemint.compare.plots import plot_rocs
from activemint.io import csv_row, output_dir
from activemint.metrics import MembershipMetrics, fmt_rate, fpr_supported, unsupported_note
from activemint.rundir import COMPARE_FILES
from activemint.scorers import EVAL_ROLES, Scores


# ------------------------------------------------------------------- results
@dataclass
class MethodResult:
    """One row: a method on one model, with its figures and per-sample scores."""

    method: str
    model: str  # "plain" (trained without aMINT) or "active" (the Enhanced Audited Model)
    family: str
    description: str
    needs: list[str]
    params: dict[str, Any]
    half_threshold: float | None
    metrics: MembershipMetrics
    test_accuracy: float
    scores: Scores = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "model": self.model, "family": self.family, "description": self.description,
                "needs": self.needs, "params": self.params, "half_threshold": self.half_threshold,
                "test_accuracy": self.test_accuracy, "metrics": self.metrics.to_dict()}


@dataclass
class CompareResult:
    rows: list[MethodResult]
    headline: str
    trained: list[str]
    reused: list[str]
    out_dir: Path
    files: dict[str, Path]
    seconds: float
    info: dict[str, Any]

    def row(self, method: str, model: str) -> MethodResult:
        for r in self.rows:
            if r.method == method and r.model == model:
                return r
        raise KeyError(f"no row {method!r} on the {model} model")

    def table(self) -> str:
        return markdown_table(self.rows)


# ------------------------------------------------------------------- report
def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "inf" if a > 0 else "n/a"
    return f"{a / b:.2f}x"


def headline_line(rows: list[MethodResult]) -> str:
    """One line: Active MINT's AUC and TPR@1%FPR against the best other method (ratios)."""
    act = next((r for r in rows if r.method == "Active MINT"), None)
    others = [r for r in rows if r.method != "Active MINT"]
    if act is None or not others:
        return "no Active MINT row to compare"
    ba = max(others, key=lambda r: r.metrics.auc)
    bt = max(others, key=lambda r: (r.metrics.tpr_at_1pct_fpr, r.metrics.auc))
    return (f"Active MINT vs best other method: AUC {act.metrics.auc:.3f} vs {ba.metrics.auc:.3f} "
            f"({ba.method}, {ba.model} model) = {_ratio(act.metrics.auc, ba.metrics.auc)}; "
            f"TPR@1%FPR {_tpr(act.metrics, 0.01)} vs {_tpr(bt.metrics, 0.01)} "
            f"({bt.method}, {bt.model} model) = {_ratio(act.metrics.tpr_at_1pct_fpr, bt.metrics.tpr_at_1pct_fpr)} "
            f"(n = {act.metrics.n_members} members / {act.metrics.n_nonmembers} non-members, 95% intervals)"
            + ("; on exact copies of the head's own training members (the paper's protocol). 'Passive MINT' = a post-hoc "
               "head on the plain model trained on the same D; its cross-fit row = heads tested on members they never saw"
               if any(r.method.startswith("Passive MINT") for r in others) else ""))


def _f(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


COLUMNS = ["method", "model", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr",
           "accuracy_at_0_5", "accuracy_at_calibrated", "test_accuracy"]


def markdown_table(rows: list[MethodResult]) -> str:
    if not rows:
        return ""
    fpr = rows[0].metrics.calibration_target_fpr
    head = ["Method", "Model", "AUC [95% CI]", "TPR@1%FPR [95% CI]", "TPR@0.1%FPR [95% CI]", "Acc@0.5",
            f"Acc@calibrated ({fpr:g} FPR)" if fpr is not None else "Acc@calibrated", "Model test acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.metrics
        lines.append("| " + " | ".join([
            r.method, r.model, f"{m.auc:.3f} [{m.auc_ci_low:.3f}, {m.auc_ci_high:.3f}]", _tpr(m, 0.01),
            _tpr(m, 0.001), _f(m.accuracy_at_0_5), _f(m.accuracy_at_calibrated), f"{r.test_accuracy:.4f}",
        ]) + " |")
    m = rows[0].metrics
    lines += ["", f"n = {m.n_members} members / {m.n_nonmembers} evaluation non-members; TPR intervals: 95% Clopper-Pearson "
                  "over the members, threshold held fixed."]
    if not fpr_supported(m.n_nonmembers, 0.001):
        lines.append(unsupported_note(0.001 if fpr_supported(m.n_nonmembers, 0.01) else 0.01))
    return "\n".join(lines)


def _tpr(m, fpr: float) -> str:
    """A TPR at ``fpr`` with its interval; ``*`` when the non-members cannot support the FPR."""
    v = m.tpr_at_1pct_fpr if fpr == 0.01 else m.tpr_at_0_1pct_fpr
    if v is None:
        return "–"
    return fmt_rate(v, m.n_members) + ("" if fpr_supported(m.n_nonmembers, fpr) else " *")


def _descriptions(rows: list[MethodResult]) -> list[str]:
    seen: dict[str, MethodResult] = {}
    for r in rows:
        seen.setdefault(r.method, r)
    return [f"- **{name}**: {r.description}. Needs: {', '.join(r.needs)}." for name, r in seen.items()]


def write_outputs(out_dir: Path, rows: list[MethodResult], headline: str, info: dict[str, Any], trained: list[str],
                  reused: list[str], seconds: float) -> dict[str, Path]:
    """Write the compare outputs into ``out_dir`` as one folder, built beside it and renamed into place."""
    with output_dir(out_dir, COMPARE_FILES.values(), what="compare") as tmp:
        _write_files({k: tmp / name for k, name in COMPARE_FILES.items()}, rows, headline, info, trained, seconds, reused)
    return {k: out_dir / name for k, name in COMPARE_FILES.items()}


def _write_files(files: dict[str, Path], rows: list[MethodResult], headline: str, info: dict[str, Any], trained: list[str],
                 seconds: float, reused: list[str]) -> None:
    with open(files["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            d = r.metrics.to_dict()
            w.writerow(csv_row([r.method, r.model] + ["" if d.get(c) is None else d[c] for c in COLUMNS[2:-1]] + [r.test_accuracy]))
    files["json"].write_text(json.dumps({
        "headline": headline, "rows": [r.to_dict() for r in rows], "info": info, "trained": trained, "reused": reused,
        "seconds": round(seconds, 1)}, indent=2, default=str))
    np.savez(files["scores"], **{f"{r.method}|{r.model}|{role}": r.scores[role] for r in rows for role in EVAL_ROLES})
    ref = info.get("reference_models") or {}
    lines = [f"# Membership methods side by side: {info['dataset']} / {info['arch']} / aMINT setup '{info['setup']}'", ""]
    if info.get("command"):
        lines += ["```", info["command"], "```", ""]
    lines += [markdown_table(rows), "", f"**{headline}**", "",
              (f"Members D: {info['n_members']}; evaluation non-members: {info['n_eval_nonmembers']} (test split); "
              f"calibration non-members (thresholds at {info['target_fpr']:g} FPR): {info['n_calibration']}; external E: "
              f"{info['n_external']}.  'plain' = the same architecture and splits trained without aMINT; 'active' = the "
              "Enhanced Audited Model.  Acc@0.5 only where a score has a natural 0.5 point (logits; LiRA online's log "
              "likelihood ratio).  Accuracies are on a balanced member / non-member set."), ""]
    if ref:
        accs = [a for a in ref["test_accuracy"] if not np.isnan(a)]
        lines += [(f"Reference models (LiRA, RMIA): {len(ref['training_sizes'])}, trained plainly with the audited run's "
                  f"recipe for {ref['epochs']} epochs on {min(ref['training_sizes'])}-{max(ref['training_sizes'])} samples "
                  "each: random halves of members + evaluation non-members + calibration (+ external fill up to 2 x |D|), "
                  f"so every evaluated sample is IN for half of them; mean test accuracy {np.mean(accs):.4f} (held-out "
                  f"test images); RMIA population z: {ref['population']} external samples no reference model trained on."), ""]
    lines += ["## Methods", ""] + _descriptions(rows) + ["", "## Notes", "",
              ("- The MINT-family heads (Active MINT, Passive MINT, gMINT) are trained on the members D they later score "
              "(the paper's audit protocol: the auditor knows D), so part of their signal can be the head memorising D "
              "itself. The '(cross-fit)' rows score every member with a head that never saw it; Active MINT's head cannot "
              "be cross-fitted without retraining the audited model. Output attacks, LiRA and RMIA never use the "
              "membership labels of D."),
              ("- On the active model, the external set E (RMIA's population) trained the MINT head and the shared layers, "
              "not the classifier."),
              "- LiRA and RMIA query every sample once (no augmented queries), with one set of reference models for both.",
              (f"- Wall time of this call: {seconds:.0f} s.  Trained now: "
              f"{', '.join(t.rsplit(' ', 1)[0] for t in trained) if trained else 'nothing (all from cache)'}."), ""]
    files["markdown"].write_text("\n".join(lines))
    plot_rocs(rows, files["roc_linear"], files["roc_loglog"])


