"""Output-based membership attacks and the per-sample signals LiRA and RMIA use.

All functions are pure: they take class logits ``(N, K)`` (any float dtype; computed in
float64) and true labels ``(N,)`` and return ``(N,)`` float64 arrays.  Attack scores are
oriented "higher = more likely member":

* ``loss``: ``-CE(logits, y)`` (Yeom et al., 2018),
* ``confidence``: the largest softmax probability,
* ``entropy``: ``-H(softmax)`` (members get confident, low-entropy outputs),
* ``modified_entropy``: ``-Mentr(p, y)`` with
  ``Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)`` (Song & Mittal, 2021), which
  uses the true label and, unlike the entropy, penalises confident wrong predictions.

Every ``log(1 - p_i)`` is computed as ``logsumexp_{j != i} z_j - logsumexp_j z_j``, never as
``log1p(-p_i)``: a confident model's ``p_i`` rounds to 1 in floating point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

from activemint.attacks.config import ScorerConfig

SIGNALS = ("loss", "confidence", "entropy", "modified_entropy")


def _check(logits, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with K >= 2, got shape {z.shape}")
    if labels is None:
        return z, None
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(z):
        raise ValueError(f"{len(z)} logit rows but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}")
    return z, y


def log_softmax(logits) -> np.ndarray:
    z, _ = _check(logits)
    return z - logsumexp(z, axis=1, keepdims=True)


def log_one_minus_softmax(logits, chunk: int = 4096) -> np.ndarray:
    """``log(1 - p_i)`` for every class, ``(N, K)``, stable when ``p_i`` is near 1."""
    z, _ = _check(logits)
    n, k = z.shape
    out = np.empty_like(z)
    lse = logsumexp(z, axis=1, keepdims=True)
    eye = np.eye(k, dtype=bool)
    rows = max(1, chunk * 64 // max(k * k, 1))
    for s in range(0, n, rows):
        block = np.broadcast_to(z[s : s + rows, None, :], (min(rows, n - s), k, k)).copy()
        block[:, eye] = -np.inf  # block[b, i, :] = logits without class i
        out[s : s + rows] = logsumexp(block, axis=2) - lse[s : s + rows]
    return out


def true_label_log_prob(logits, labels) -> np.ndarray:
    """``log p_y``, (N,)."""
    z, y = _check(logits, labels)
    return z[np.arange(len(z)), y] - logsumexp(z, axis=1)


def true_label_prob(logits, labels) -> np.ndarray:
    """``p_y`` (softmax probability of the true class), (N,); RMIA's ``Pr(x | theta)``."""
    return np.exp(true_label_log_prob(logits, labels))


def logit_confidence(logits, labels) -> np.ndarray:
    """LiRA's logit-scaled confidence ``phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j``, (N,).

    Computed from the logits directly, so it stays finite (and keeps its ordering) even when
    ``p_y`` rounds to 1.
    """
    z, y = _check(logits, labels)
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - logsumexp(others, axis=1)


def loss_score(logits, labels) -> np.ndarray:
    """``-cross_entropy`` per sample (higher = member)."""
    return true_label_log_prob(logits, labels)


def confidence_score(logits, labels=None) -> np.ndarray:
    """Largest softmax probability per sample."""
    return np.exp(log_softmax(logits).max(axis=1))


def entropy_score(logits, labels=None) -> np.ndarray:
    """Negated prediction entropy ``sum_i p_i log p_i`` (higher = member)."""
    lp = log_softmax(logits)
    return (np.exp(lp) * lp).sum(axis=1)


def modified_entropy_score(logits, labels) -> np.ndarray:
    """Negated modified entropy of Song & Mittal (2021) (higher = member)."""
    z, y = _check(logits, labels)
    lp = log_softmax(z)
    l1m = log_one_minus_softmax(z)
    p = np.exp(lp)
    rows = np.arange(len(z))
    p_y, lp_y = p[rows, y], lp[rows, y]
    terms = -p * l1m  # -p_i log(1 - p_i), >= 0
    terms[rows, y] = 0.0
    mentr = -(1.0 - p_y) * lp_y + terms.sum(axis=1)
    return -mentr


_FUNCS = {"loss": loss_score, "confidence": confidence_score, "entropy": entropy_score,
          "modified_entropy": modified_entropy_score}


@dataclass
class OutputAttackConfig(ScorerConfig):
    """One output-based attack: a fixed function of the model's class outputs."""

    signal: str = "loss"

    name: ClassVar[str] = "output attack"
    description: ClassVar[str] = ("Threshold on a function of the model's softmax output (black-box, no training): "
                                  "loss and modified entropy need the true label, confidence and entropy do not")
    needs: ClassVar[tuple[str, ...]] = ("black-box outputs",)
    choices: ClassVar[dict] = {"signal": SIGNALS}

    @property
    def display_name(self) -> str:
        return {"loss": "Loss", "confidence": "Confidence (max softmax)", "entropy": "Entropy",
                "modified_entropy": "Modified entropy"}[self.signal]

    @property
    def uses_labels(self) -> bool:
        return self.signal in ("loss", "modified_entropy")

    def describe(self) -> dict:
        d = super().describe()
        d["name"] = self.display_name
        d["description"] = {
            "loss": "Negated cross-entropy of the true label: members have lower loss (Yeom et al., 2018)",
            "confidence": "Largest softmax probability: members get more confident predictions",
            "entropy": "Negated entropy of the softmax output: members get lower-entropy predictions",
            "modified_entropy": "Negated modified entropy -(1-p_y) log p_y - sum_{i!=y} p_i log(1-p_i), which also "
                                "penalises confident wrong predictions (Song & Mittal, 2021)",
        }[self.signal] + "; a fixed function of the output, nothing trained"
        d["needs"] = ["black-box outputs"] + (["labels"] if self.uses_labels else [])
        return d


def output_scores(logits, labels, signal: str) -> np.ndarray:
    """Membership scores (N,) of output attack ``signal`` (one of :data:`SIGNALS`)."""
    if signal not in _FUNCS:
        raise ValueError(f"unknown output signal {signal!r}; choose from {SIGNALS}")
    return _FUNCS[signal](logits, labels)
