"""The short end-of-run summary a newcomer can read."""
from __future__ import annotations

from typing import Any


def run_summary(metrics: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """A few lines: audited accuracy (and the plain baseline's), membership figures, run dir."""
    lines = ["", "=== activemint run summary ==="]
    what = f"{metrics.get('dataset')} / {metrics.get('arch')}"
    if metrics.get("mint"):
        what += f" / aMINT setup '{metrics.get('setup')}'"
    else:
        what += " / plain training (no aMINT)"
    lines.append(f"model: {what}, {metrics.get('epochs_trained')} epochs (selected epoch {metrics.get('selected_epoch')})")
    acc = metrics["test_accuracy"]
    line = f"audited model test accuracy: {acc:.4f} on {metrics.get('n_test')} test images"
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
        lines.append(
            f"  TPR at 1% FPR {m['tpr_at_1pct_fpr']:.4f}, at 0.1% FPR {m['tpr_at_0_1pct_fpr']:.4f}  "
            "(share of members caught while flagging at most 1% / 0.1% of non-members)"
        )
        lines.append(
            f"  accuracy at P=0.5 (paper's metric, balanced set): {m['accuracy_at_0_5']:.4f} "
            f"(TPR {m['tpr_at_0_5']:.3f}, FPR {m['fpr_at_0_5']:.3f})"
        )
        if m.get("accuracy_at_calibrated") is not None:
            lines.append(
                f"  accuracy at a threshold calibrated for {100 * m['calibration_target_fpr']:g}% FPR on held-out "
                f"non-members: {m['accuracy_at_calibrated']:.4f} (observed FPR {m['fpr_at_calibrated']:.4f})"
            )
    lines.append(f"run directory: {metrics.get('run_dir')}  (train time {metrics.get('train_seconds')} s)")
    return "\n".join(lines)
