"""Evaluate every kept epoch of a run (kept-epochs/epoch-NNNN.safetensors, see train_keep_epochs.py) with the current code's
evaluate(): test accuracy and membership figures (current calibration rule). Writes epochs.json."""
import json
import sys
from pathlib import Path

import torch

from activemint.training import TrainConfig
from activemint.training.build import build_model
from activemint.training.checkpoint import load_weights
from activemint.training.data import load_run_data
from activemint.training.evaluation import evaluate
from activemint.training.selection import selection_value

torch.set_num_threads(1)
run = Path(sys.argv[1])
cfg = TrainConfig.from_yaml(run / "config.yaml")
data = load_run_data(cfg)
log = {r["epoch"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
rules = {}
for rule in ("val_task", "val_mint", "val_task_mint"):
    best, be = -1e9, None
    for e in sorted(log):
        v = selection_value(rule, log[e])
        if v > best:
            best, be = v, e
    rules[rule] = be
rules["last"] = max(log)
print(json.dumps(rules), flush=True)
epochs = sorted(set(rules.values()) | {int(x) for x in sys.argv[2:]})
out = []
for e in epochs:
    model = build_model(cfg, data.train.input_shape, data.train.num_classes)
    load_weights(model, run / "kept-epochs" / f"epoch-{e:04d}.safetensors")
    m, _ = evaluate(model, cfg, data, torch.device("cpu"))
    row = {"epoch": e, "val_accuracy": log[e]["val_accuracy"], "val_membership_auc": log[e].get("val_membership_auc"),
           "test_accuracy": m["test_accuracy"]}
    if "membership" in m:
        mm = m["membership"]
        row.update({k: mm[k] for k in ("auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr",
                                        "accuracy_at_0_5", "tpr_at_0_5", "fpr_at_0_5", "accuracy_at_calibrated",
                                        "tpr_at_calibrated", "fpr_at_calibrated", "n_calibration", "calibration_delta")})
    row["rules"] = [r for r, v in rules.items() if v == e]
    out.append(row)
    print(json.dumps(row), flush=True)
(run / "epochs.json").write_text(json.dumps({"rules": rules, "rows": out}, indent=1))
