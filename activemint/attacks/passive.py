"""Passive MINT (DeAlcala et al., 2024): a MINT head on a frozen, plainly trained model.

The plain model's backbone is wrapped in an :class:`~activemint.mint.EnhancedAuditedModel`
with the same tap points as the active run, the backbone is frozen (eval mode, no gradients:
its BatchNorm statistics stay those of training), and only the head is trained: binary
cross-entropy on member batches (label 1) and external batches (label 0), with the same
batch sizes, epochs and learning rate as the active run, so the only difference to Active
MINT is that the audited model was not trained to be auditable.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from activemint.attacks.config import ScorerConfig
from activemint.mint import EnhancedAuditedModel
from activemint.training.evaluation import membership_scores


@dataclass
class PassiveMintConfig(ScorerConfig):
    """``None`` fields take the active run's value (epochs, lr, member / external batch sizes)."""

    epochs: int | None = field(default=None, metadata={
        "help": "epochs of the passive MINT head (default: the audited run's)", "aliases": ("--passive-epochs",)})
    lr: float | None = field(default=None, metadata={"help": "learning rate of the passive head (default: the audited run's)"})
    batch_size: int | None = field(default=None, metadata={"help": "member batch size (default: the audited run's)"})
    external_batch_size: int | None = field(default=None, metadata={
        "help": "external batch size (default: the audited run's)"})
    seed: int = field(default=0, metadata={"help": "seed of the head's initialisation, batch order and cross-fit halves"})

    name: ClassVar[str] = "Passive MINT"
    description: ClassVar[str] = ("MINT head on the same tap points of the frozen plainly trained model, trained on its "
                                  "activations with the active run's members (1) / external data (0) (DeAlcala et al., 2024)")
    needs: ClassVar[tuple[str, ...]] = ("white-box activations", "known members and non-members")
    bounds: ClassVar[dict] = {"epochs": (1, 10_000), "lr": (1e-8, 10.0), "batch_size": (1, 1 << 16),
                              "external_batch_size": (1, 1 << 16), "seed": (0, 2**63 - 1)}


def wrap_frozen(backbone: nn.Module, taps: Sequence[str], input_shape: Sequence[int], *, head_width: int, head_hidden: int,
                seed: int) -> EnhancedAuditedModel:
    """A CPU copy of ``backbone`` with a fresh MINT head on ``taps``; backbone frozen."""
    torch.manual_seed(seed)
    model = EnhancedAuditedModel(copy.deepcopy(backbone).cpu(), taps, input_shape=input_shape,
                                 head_width=head_width, head_hidden=head_hidden)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return model


def train_passive_head(
    model: EnhancedAuditedModel,
    members: torch.Tensor,
    external: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    external_batch_size: int,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
    log_every: int = 1,
    progress: bool = False,
) -> EnhancedAuditedModel:
    """Train ``model.head`` only, on uint8 member / external images (N, C, H, W): the one frozen-head
    loop (:func:`activemint.training.head.train_head`) with the active run's two batch sizes."""
    from activemint.training.head import train_head

    return train_head(model, members, external, epochs=epochs, lr=lr, batch_size=batch_size,
                      external_batch_size=external_batch_size, seed=seed, device=device, log=log, log_every=log_every,
                      what="passive MINT head", progress=progress)


def passive_mint_scores(model: EnhancedAuditedModel, images: torch.Tensor, device: torch.device) -> np.ndarray:
    """(N,) membership logits of the passive head for uint8 images."""
    return membership_scores(model, images, device)
