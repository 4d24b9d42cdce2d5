"""The short end-of-run summary a newcomer can read."""
from __future__ import annotations

from typing import Any

from activemint.metrics import fmt_rate, fmt_tpr, fpr_supported, unsupported_note


def describe_selection(sel: dict[str, Any] | None) -> str:
    """``kept epoch 27 of 30: best validation accuracy 0.861 (--select val_task)``."""
    if not sel:
        return ""
    what = sel.get("criterion", sel.get("rule"))
    if sel.get("value") is not None:
        what += f" {sel['value']:.3f}"
        if sel.get("rule") == "val_task_mint" and sel.get("val_membership_auc") is not None:
            what += f" ({sel['val_accuracy']:.3f} + {sel['val_membership_auc']:.3f})"
    return f"kept epoch {sel['epoch']} of {sel['epochs']}: {what} (--select {sel['rule']})"


def _s(x: float) -> str:
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def train_time(metrics: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """``train time 1350 s`` or, with a baseline, ``train time 3475 s: aMINT 1350 s + baseline 2125 s``."""
    t = metrics.get("train_seconds")
    if t is None:
        return "train time unknown"
    b = None if baseline is None else baseline.get("train_seconds")
    if b is None:
        return f"train time {_s(t)}"
    if metrics.get("baseline_beside"):
        return f"train time {_s(max(t, b))}: aMINT run {_s(t)} and baseline {_s(b)} side by side"
    return f"train time {_s(t + b)}: aMINT run {_s(t)} + baseline {_s(b)}"


def figures_scope(n_members: int | None, n_nonmembers: int | None, what: str = "") -> str:
    """What a table of membership figures can say, in one sentence (the robustness and compare pages' limits).

    ``what``: the figures' own caveat (e.g. one draw of each transformation), appended.
    """
    if not n_members or not n_nonmembers:
        return ""
    rests = [f"TPR at {100 * f:g}% FPR on the {max(1, int(n_nonmembers * f))} highest" for f in (0.01, 0.001)]
    rough = [f"{100 * f:g}%" for f in (0.01, 0.001) if not fpr_supported(n_nonmembers, f)]
    return (f"What these figures can say: {n_members} members vs {n_nonmembers} non-members of one trained model; "
            f"{rests[0]} and {rests[1]} non-member scores"
            + (f", too few for {' and '.join(rough)} FPR (marked *, rough figures)" if rough else "")
            + "; intervals are 95% (AUC bootstrap, TPR Clopper-Pearson over the members)" + (f"; {what}" if what else "") + ".")


def calibrated_tpr(m: dict[str, Any], digits: int = 3) -> str:
    """``TPR 0.410 [0.388, 0.432] (n = 2000 members / 2000 calibration non-members), observed FPR 0.0085``.

    The TPR at the calibrated threshold with its 95% Clopper-Pearson interval over the members;
    ``*`` when the calibration non-members are fewer than 10 / target FPR (the threshold then
    rests on their few highest scores)."""
    tpr, nm = m.get("tpr_at_calibrated"), m.get("n_members")
    if tpr is None:
        return "TPR n/a"
    text = f"TPR {tpr:.{digits}f}"
    if nm:
        n_cal, target = m.get("n_calibration"), m.get("calibration_target_fpr")
        text = f"TPR {fmt_rate(tpr, nm, digits)} (n = {nm} members" + (f" / {n_cal} calibration non-members)" if n_cal else ")")
        if n_cal and target and not fpr_supported(n_cal, target):
            text += " *"
    fpr = m.get("fpr_at_calibrated")
    return text + (f", observed FPR {fpr:.4f}" if fpr is not None else "")


def run_summary(metrics: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """A few lines: audited accuracy (and the plain baseline's), membership figures, run dir."""
    lines = ["", "=== activemint run summary ==="]
    what = f"{metrics.get('dataset')} / {metrics.get('arch')}"
    if metrics.get("mint"):
        what += f" / aMINT setup '{metrics.get('setup')}'"
    else:
        what += " / plain training (no aMINT)"
    sel = describe_selection(metrics.get("selection"))
    lines.append(f"model: {what}, {metrics.get('epochs_trained')} epochs; "
                 + (sel or f"kept epoch {metrics.get('selected_epoch')}"))
    if baseline is not None and baseline.get("selection"):
        lines.append(f"  baseline (without aMINT): {describe_selection(baseline['selection'])}")
    acc = metrics["test_accuracy"]
    who = "audited model" if metrics.get("mint") else "plain model (no aMINT)"
    line = f"{who} test accuracy: {acc:.4f} on {metrics.get('n_test')} test images"
    if baseline is not None:
        b = baseline["test_accuracy"]
        line += f"   | same model without aMINT: {b:.4f}  (difference {100 * (acc - b):+.2f} points)"
    lines.append(line)
    m = metrics.get("membership")
    if m:
        lines.append(
            f"membership test (members D vs {m['n_nonmembers']} unseen non-members): "
            f"AUC {m['auc']:.4f} [95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}]"
        )
        nm, nn = m.get("n_members"), m.get("n_nonmembers")
        lines.append(
            f"  TPR at 1% FPR {fmt_tpr(m['tpr_at_1pct_fpr'], nm, nn, 0.01, 4)}, "
            f"at 0.1% FPR {fmt_tpr(m['tpr_at_0_1pct_fpr'], nm, nn, 0.001, 4)}  "
            "(share of members caught while flagging at most 1% / 0.1% of non-members; 95% interval over the members)"
        )
        if nm is not None and not (fpr_supported(nn, 0.01) and fpr_supported(nn, 0.001)):
            lines.append("  " + unsupported_note(0.001 if fpr_supported(nn, 0.01) else 0.01))
        lines.append(
            f"  accuracy at P=0.5 (paper's metric, balanced set): {m['accuracy_at_0_5']:.4f} "
            f"(TPR {m['tpr_at_0_5']:.3f}, FPR {m['fpr_at_0_5']:.3f})"
        )
        if m.get("accuracy_at_calibrated") is not None:
            conf = f" with probability >= {1 - m['calibration_delta']:g}" if m.get("calibration_delta") else ""
            n_cal = f"{m['n_calibration']} " if m.get("n_calibration") else ""
            lines.append(
                f"  accuracy at a threshold calibrated on {n_cal}held-out non-members for FPR <= "
                f"{100 * m['calibration_target_fpr']:g}%{conf}: {m['accuracy_at_calibrated']:.4f} "
                f"({calibrated_tpr(m)})"
            )
        elif m.get("calibration_note"):
            lines.append(f"  {m['calibration_note']}")
    lines.append(f"run directory: {metrics.get('run_dir')}  ({train_time(metrics, baseline)})")
    return "\n".join(lines)
