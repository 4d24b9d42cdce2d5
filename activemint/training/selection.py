"""Which epoch a run keeps (``TrainConfig.select``), and the per-epoch log line."""
from __future__ import annotations

from typing import Any


def _seconds(x: float) -> str:
    """Seconds with sensible precision: 0.43 s, 4.8 s, 57 s."""
    return f"{x:.2f} s" if x < 1 else f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One epoch's log line: ``epoch 12/30  task_loss 0.2767 ... val_accuracy 0.8175  4.8 s (total 57 s)``."""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for k, v in record.items():
        if k in ("epoch", "seconds", "epoch_seconds"):
            continue
        parts.append(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}")
    if "epoch_seconds" in record:
        parts.append(f"{_seconds(record['epoch_seconds'])} (total {_seconds(record['seconds'])})")
    return "  ".join(parts)


def selection_value(rule: str, record: dict[str, Any]) -> float | None:
    """What ``--select rule`` maximises over epochs, from one metrics.jsonl record (None: "last").

    ``val_task_mint`` (the default) adds validation accuracy and validation membership AUC:
    both outputs of an audited model count, so a late dip in accuracy is skipped without
    going back to an early epoch whose MINT head has not learned yet (with the Output setup,
    validation accuracy can peak while the membership AUC is still far below its final
    value).  On a plain model (no AUC) it is validation accuracy alone.

    The validation membership AUC scores members of D (there are no other members) against
    validation non-members; the final evaluation scores the same members against test-split
    non-members, so selecting on it (``val_task_mint``, ``val_mint``) can make the reported
    membership figures slightly optimistic (of the order of the AUC's sampling error).
    """
    if rule == "val_task":
        return record["val_accuracy"]
    if rule == "val_mint":
        return record.get("val_membership_auc", -1.0)
    if rule == "val_task_mint":
        return record["val_accuracy"] + record.get("val_membership_auc", 0.0)
    return None


def selection_info(rule: str, epoch: int, epochs: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Which epoch a run kept and why: rule, epoch, criterion, its value and the validation figures.

    ``records`` are the run's per-epoch metrics.jsonl records.
    """
    info: dict[str, Any] = {"rule": rule, "epoch": int(epoch), "epochs": int(epochs)}
    rec: dict[str, Any] = next((r for r in records if r.get("epoch") == epoch), {})
    if rule == "last":
        info["criterion"] = "the last epoch"
    elif rule == "val_task_mint" and "val_membership_auc" not in rec:
        info["criterion"] = "best validation accuracy"
    else:
        info["criterion"] = {"val_task": "best validation accuracy", "val_mint": "best validation membership AUC",
                             "val_task_mint": "best validation accuracy + membership AUC"}[rule]
    if rule != "last" and rec:
        info["value"] = selection_value(rule, rec)
    for key in ("val_accuracy", "val_membership_auc"):
        if key in rec:
            info[key] = rec[key]
    return info
