"""A run's final evaluation: class predictions, membership scores, test accuracy and membership figures, and their files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activemint.data import ArrayDataset
from activemint.io import file_sha256
from activemint.metrics import membership_metrics
from activemint.mint import EnhancedAuditedModel
from activemint.rundir import RunDir
from activemint.scores import EVAL_ROLES, Scores
from activemint.training.batches import to_input
from activemint.training.config import TrainConfig
from activemint.training.data import RunData, mint_seen_mask


@torch.no_grad()
def predict_classes(model: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    """Class logits (N, K) for uint8 images (N, C, H, W)."""
    model.eval()
    out = [model.classify(to_input(images[i : i + batch], device)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def membership_scores(model: EnhancedAuditedModel, images: torch.Tensor, device: torch.device, batch: int = 512) -> np.ndarray:
    """Membership logits (N,) for uint8 images, from truncated forward passes."""
    model.eval()
    out = [model.membership_logit(to_input(images[i : i + batch], device)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy().astype(np.float64)


def accuracy(model: nn.Module, data: ArrayDataset, index: np.ndarray | None, device: torch.device) -> float:
    images = data.rows(index)
    labels = data.labels if index is None else data.labels[torch.as_tensor(index)]
    pred = predict_classes(model, images, device).argmax(1)
    return float((pred == labels).float().mean())


def evaluate(model: nn.Module, cfg: TrainConfig, data: RunData, device: torch.device) -> tuple[dict[str, Any], Scores]:
    """Final figures of a run: test accuracy and, for audited models, membership metrics.

    Members are D; non-members are the evaluation non-members (test split) that neither
    the model nor the head saw; the calibrated threshold comes from the calibration split.
    """
    s = data.splits
    test_index = None  # cfg.test_samples: a seeded random subset of the test split
    if cfg.test_samples is not None and cfg.test_samples < len(data.test):
        test_index = np.sort(np.random.default_rng(cfg.seed).permutation(len(data.test))[: cfg.test_samples])
    n_test = len(data.test) if test_index is None else len(test_index)
    result: dict[str, Any] = {"test_accuracy": accuracy(model, data.test, test_index, device), "n_test": n_test}
    scores = Scores()
    if model.audited:
        for role in EVAL_ROLES:  # each from its source split (rows: a streamed split is decoded in batches)
            idx = data.indices(role)
            scores.scores[role] = membership_scores(model, data.source(role).rows(idx), device)
            scores.indices[role] = idx
        m = membership_metrics(
            scores["members"], scores["eval_nonmembers"], calibration_scores=scores["calibration"],
            target_fpr=cfg.target_fpr, half_threshold=0.0, seed=cfg.seed,
        )
        result["membership"] = m.to_dict()
        if cfg.mint_members < 1.0:  # held-out members: seen and unseen by the MINT loss, apart
            seen = mint_seen_mask(cfg, len(s.members))
            scores.extra["members_mint_seen"] = seen
            for key, sel in (("membership_seen", seen), ("membership_unseen", ~seen)):
                if sel.any():
                    result[key] = membership_metrics(
                        scores["members"][sel], scores["eval_nonmembers"], calibration_scores=scores["calibration"],
                        target_fpr=cfg.target_fpr, half_threshold=0.0, seed=cfg.seed,
                    ).to_dict()
    return result, scores


def write_evaluation(run_dir: Path, metrics: dict[str, Any], scores: Scores) -> dict[str, Any]:
    """scores.npz (bound to model.safetensors), then metrics.json LAST (binding both by SHA-256).

    Returns the metrics as written (with ``run_format`` and the ``files`` digests).
    """
    rd = RunDir(run_dir)
    if scores:
        rd.write_scores(scores, file_sha256(rd.model))
    return rd.write_metrics(metrics)
