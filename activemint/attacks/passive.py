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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from activemint.attacks.config import ScorerConfig
from activemint.mint import EnhancedAuditedModel, membership_bce
from activemint.training.batches import cycled_permutation, to_input
from activemint.training.evaluation import membership_scores


@dataclass
class PassiveMintConfig(ScorerConfig):
    """``None`` fields take the active run's value (epochs, lr, member / external batch sizes)."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    external_batch_size: int | None = None
    seed: int = 0

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
) -> EnhancedAuditedModel:
    """Train ``model.head`` only, on uint8 member / external images (N, C, H, W)."""
    if len(members) == 0 or len(external) == 0:
        raise ValueError("passive MINT needs members and external samples")
    model.to(device)
    opt = torch.optim.Adam(model.head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(members) / batch_size)
    for epoch in range(epochs):
        model.train()
        model.backbone.eval()  # frozen: running statistics of the plain training stay as they are
        perm = torch.randperm(len(members), generator=gen)
        need = steps * external_batch_size
        ext_order = cycled_permutation(len(external), need, gen)
        total = 0.0
        for step in range(steps):
            xm = to_input(members[perm[step * batch_size : (step + 1) * batch_size]], device)
            xe = to_input(external[ext_order[step * external_batch_size : (step + 1) * external_batch_size]], device)
            logits = model.membership_logit(torch.cat([xm, xe]))
            loss = membership_bce(logits, len(xm))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if log is not None and ((epoch + 1) % log_every == 0 or epoch + 1 in (1, epochs)):
            log(f"passive MINT head: epoch {epoch + 1}/{epochs} loss {total / steps:.4f}")
    model.eval()
    return model


def passive_mint_scores(model: EnhancedAuditedModel, images: torch.Tensor, device: torch.device) -> np.ndarray:
    """(N,) membership logits of the passive head for uint8 images."""
    return membership_scores(model, images, device)
