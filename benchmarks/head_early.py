"""Screen training settings for how early the MINT head starts to learn.

Each variant is ``NAME=JSON`` of TrainConfig overrides on top of a base config (``--base``,
JSON).  Every run trains to ``epochs`` and records, per epoch, the MINT loss and the
validation membership AUC; the table gives the first epoch where the MINT loss falls below
0.6 (chance is ln 2 = 0.693) and where validation AUC reaches 0.9, then the final figures
of the last epoch and of the validation-best epoch (``select: val_task``, evaluated from
that run's best checkpoint).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/head_early.py --threads 1 --runs runs/head-early \\
        --base '{"members": 1000, "external": 4000, "epochs": 15}' \\
        'today={}' 'head10={"head_lr_scale": 10}' --out benchmarks/results/head-early-screen.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE = {"dataset": "fashion-mnist", "arch": "small_cnn", "setup": "entry", "members": 1000, "external": 4000,
        "validation": 500, "calibration": 500, "eval_nonmembers": 1000, "test_samples": 2000, "epochs": 15,
        "lr": 1e-3, "select": "val_task"}


def first(records, key, pred):
    for r in records:
        if key in r and pred(r[key]):
            return r["epoch"]
    return None


def run_variant(name, overrides, base, runs, threads):
    import torch

    from activemint.training import TrainConfig, Trainer
    from activemint.training.build import build_model
    from activemint.training.checkpoint import latest_checkpoint, load_weights
    from activemint.training.data import load_run_data
    from activemint.training.evaluation import evaluate

    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict({**base, **overrides})
    run_dir = Path(runs) / name
    t0 = time.time()
    if (run_dir / "metrics.json").is_file():
        res = json.loads((run_dir / "metrics.json").read_text())
    else:
        res = Trainer(cfg, run_dir, progress=False, log=lambda m: None).run(resume=(run_dir / "config.yaml").exists()).metrics
    secs = time.time() - t0
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = res
    # Last epoch too, when the run selected another one.
    if res.get("selected_epoch") != cfg.epochs:
        data = load_run_data(cfg)
        model = build_model(cfg, data.train.input_shape, data.train.num_classes)
        load_weights(model, latest_checkpoint(run_dir / "checkpoints").weights)  # the last epoch's weights
        last, _ = evaluate(model, cfg, data, torch.device("cpu"))
    return {
        "name": name, "overrides": overrides, "train_s": round(secs),
        "mint_below_0.6": first(recs, "mint_loss", lambda v: v < 0.6),
        "val_auc_0.9": first(recs, "val_membership_auc", lambda v: v >= 0.9),
        "mint_loss": [round(r.get("mint_loss", float("nan")), 3) for r in recs],
        "val_auc": [round(r.get("val_membership_auc", float("nan")), 3) for r in recs],
        "val_acc": [round(r["val_accuracy"], 3) for r in recs],
        "selected_epoch": res.get("selected_epoch"),
        "sel": {"acc": res["test_accuracy"], **{k: res.get("membership", {}).get(k) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr")}},
        "last": {"acc": last["test_accuracy"], **{k: last.get("membership", {}).get(k) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr")}},
    }


def evaluate_checkpoint(run_dir: str, checkpoint: str, threads: int) -> dict:
    """Final figures of one saved checkpoint of a run (e.g. an epoch's ``checkpoints/epoch-NNNN/weights.safetensors``
    copied aside while the run went on: with a constant learning rate, epoch k of an N-epoch
    run is the model a k-epoch run ends with)."""
    import torch

    from activemint.training import TrainConfig
    from activemint.training.build import build_model
    from activemint.training.checkpoint import load_weights
    from activemint.training.data import load_run_data
    from activemint.training.evaluation import evaluate

    torch.set_num_threads(threads)
    cfg = TrainConfig.from_yaml(Path(run_dir) / "config.yaml")
    data = load_run_data(cfg)
    model = build_model(cfg, data.train.input_shape, data.train.num_classes)
    load_weights(model, checkpoint)
    res, _ = evaluate(model, cfg, data, torch.device("cpu"))
    meta = json.loads(Path(checkpoint).with_suffix(".json").read_text())
    m = res.get("membership", {})
    return {"run": run_dir, "checkpoint": checkpoint, "epoch": meta["epoch"], "acc": res["test_accuracy"],
            "n_test": res["n_test"], **{k: m.get(k) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", help="NAME=JSON overrides")
    ap.add_argument("--evaluate", nargs=2, action="append", default=[], metavar=("RUN_DIR", "CHECKPOINT"),
                    help="instead of training: evaluate this checkpoint of this run")
    ap.add_argument("--base", default="{}", help="JSON overrides of the base config")
    ap.add_argument("--runs", default="runs/head-early")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="append a JSON line per variant to this file")
    a = ap.parse_args()
    base = {**BASE, **json.loads(a.base)}
    for run_dir, ckpt in a.evaluate:
        line = json.dumps(evaluate_checkpoint(run_dir, ckpt, a.threads))
        print(line, flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(line + "\n")
    for v in a.variants:
        name, _, js = v.partition("=")
        r = run_variant(name, json.loads(js or "{}"), base, a.runs, a.threads)
        r["base"] = base
        line = json.dumps(r)
        print(line, flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
