"""Outsider leakage: is the audited (aMINT) model easier to attack than the plain one?

Runs, on each given model and the same splits (members D vs evaluation non-members):

* the loss attack (``-CE``; Yeom et al., 2018),
* LiRA online with fixed variance (Carlini et al., 2022) with N cached reference models
  (:func:`activemint.attacks.reference_logits`; trained plainly on random halves of the pool),
* a learned black-box attack on the output probabilities: a gradient-boosted classifier on
  each sample's sorted softmax vector plus its true-label probability, trained on one half of
  the members / non-members and scored on the other half (2-fold cross-fit, so every score
  comes from a classifier that never saw that sample).

Figures from :func:`activemint.metrics.membership_metrics`.  Usage::

    python benchmarks/leakage.py --plain RUN_PLAIN --model robust=RUN_A --model amint=RUN_B \
        --reference-models 4 --reference-epochs 10 --out benchmarks/results/leakage.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from activemint.attacks import (
    LiraConfig,
    ReferenceConfig,
    logit_confidence,
    output_scores,
    reference_logits,
)
from activemint.attacks.lira import lira_scores
from activemint.data import read_manifest
from activemint.metrics import membership_metrics
from activemint.runs import load_run
from activemint.training.evaluation import predict_classes

ROLES = ("members", "eval_nonmembers", "calibration")


def prob_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    py = p[np.arange(len(p)), labels]
    return np.c_[-np.sort(-p, axis=1), py, np.log(np.clip(py, 1e-30, None))]


def learned_attack(feats: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """2-fold cross-fit scores of members and eval non-members; calibration scored by both folds' mean."""
    rng = np.random.default_rng(seed)
    fold = {r: rng.permutation(len(feats[r])) % 2 for r in ("members", "eval_nonmembers")}
    out = {r: np.empty(len(feats[r])) for r in ("members", "eval_nonmembers")}
    cal = np.zeros(len(feats["calibration"]))
    for k in (0, 1):
        x = np.r_[feats["members"][fold["members"] == k], feats["eval_nonmembers"][fold["eval_nonmembers"] == k]]
        y = np.r_[np.ones((fold["members"] == k).sum()), np.zeros((fold["eval_nonmembers"] == k).sum())]
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed).fit(x, y)
        for r in out:
            sel = fold[r] != k
            out[r][sel] = clf.predict_proba(feats[r][sel])[:, 1]
        cal += clf.predict_proba(feats["calibration"])[:, 1] / 2
    out["calibration"] = cal
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plain", required=True, help="plain run (mint off); its config and splits define the reference models")
    ap.add_argument("--model", action="append", default=[], help="NAME=RUN_DIR of another model with the same splits")
    ap.add_argument("--reference-models", type=int, default=4)
    ap.add_argument("--reference-epochs", type=int)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache-dir", default=".cache")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    t0 = time.time()
    plain = load_run(a.plain)
    splits = read_manifest(plain.run_dir / "manifest.csv")
    runs = {"plain": plain}
    for spec in a.model:
        name, _, path = spec.partition("=")
        runs[name] = load_run(path)
        if read_manifest(runs[name].run_dir / "manifest.csv") != splits:
            sys.exit(f"{path}: splits differ from the plain run's")
    data = plain.data
    src = {"members": data.train, "eval_nonmembers": data.test, "calibration": data.train}
    images = {r: src[r].images[torch.as_tensor(getattr(splits, r))] for r in ROLES}
    labels = {r: src[r].labels[torch.as_tensor(getattr(splits, r))].numpy() for r in ROLES}
    rc = ReferenceConfig(n_models=a.reference_models, epochs=a.reference_epochs)
    refs = reference_logits(plain.config, splits, rc, a.cache_dir, train=data.train, test=data.test, workers=a.workers,
                            log=lambda m: print(m, file=sys.stderr, flush=True))
    ref_phi = {r: np.stack([logit_confidence(refs.logits[r][:, j], refs.labels[r]) for j in range(refs.logits[r].shape[1])], 1)
               for r in ROLES}
    lc = LiraConfig(variant="online", fixed_variance=True)
    result = {"reference": {"n_models": a.reference_models, "epochs": rc.epochs or plain.config.epochs,
                            "test_accuracy": refs.test_accuracy}, "models": {}}
    for name, run in runs.items():
        logits = {r: predict_classes(run.model, images[r], run.device).double().numpy() for r in ROLES}
        scores = {
            "loss": {r: output_scores(logits[r], labels[r], "loss") for r in ROLES},
            "lira_online_fixed_variance": {r: lira_scores(logit_confidence(logits[r], labels[r]), ref_phi[r], refs.keep[r], lc)
                                           for r in ROLES},
            "learned_blackbox": learned_attack({r: prob_features(logits[r], labels[r]) for r in ROLES}),
        }
        acc = json.loads((run.run_dir / "metrics.json").read_text()).get("test_accuracy")
        result["models"][name] = {"run_dir": str(run.run_dir), "test_accuracy": acc, "attacks": {}}
        for attack, s in scores.items():
            m = membership_metrics(s["members"], s["eval_nonmembers"], calibration_scores=s["calibration"],
                                   target_fpr=0.01, bootstrap=200, seed=0)
            result["models"][name]["attacks"][attack] = {k: getattr(m, k) for k in (
                "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr")}
            print(f"{name:10s} {attack:28s} AUC {m.auc:.3f} [{m.auc_ci_low:.3f}, {m.auc_ci_high:.3f}]  "
                  f"TPR@1%FPR {m.tpr_at_1pct_fpr:.3f}  TPR@0.1%FPR {m.tpr_at_0_1pct_fpr:.3f}")
    result["seconds"] = round(time.time() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
