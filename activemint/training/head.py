"""Training a MINT head alone on a frozen backbone (``TrainConfig.head_epochs``, the robust post-hoc head)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from activemint.data.streaming import plan_batches
from activemint.mint import EnhancedAuditedModel
from activemint.mint.loss import membership_bce
from activemint.training.batches import cycled_permutation, to_input


def train_head(model: EnhancedAuditedModel, members: torch.Tensor, external: torch.Tensor, *, epochs: int, lr: float,
               batch_size: int, policy=None, seed: int = 0, device: torch.device | str = "cpu",
               log: Callable[[str], None] | None = None) -> EnhancedAuditedModel:
    """Train only ``model.head`` (backbone frozen, eval mode) on uint8 members (1) / externals (0).

    ``policy`` (an :class:`activemint.transforms.AuditPolicy`): transformed views of both, drawn
    per epoch from ``seed``.  Used for ``TrainConfig.head_epochs`` and the robust post-hoc head.
    """
    device = torch.device(device)
    model.to(device).eval()
    opt = torch.optim.Adam(model.head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    frozen = [(p, p.requires_grad) for p in model.backbone.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, 10, epoch])
        perm = torch.randperm(len(members), generator=gen)
        eorder = cycled_permutation(len(external), len(perm), gen)
        plan_batches(members, perm, batch_size)  # streamed views: workers decode these batches ahead
        plan_batches(external, eorder, batch_size)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            xm, xe = members[perm[i:i + batch_size]], external[eorder[i:i + batch_size]]
            if policy is not None:
                xm, xe = policy(xm, rng), policy(xe, rng)
            with torch.no_grad():
                x = to_input(torch.cat([xm, xe]), device)
            model.head.train()
            logits = model.membership_logit(x)
            loss = membership_bce(logits, len(xm))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xm)
        if log is not None:
            log(f"head epoch {epoch + 1}/{epochs}  mint_loss {total / len(perm):.4f}")
    for p, flag in frozen:
        p.requires_grad_(flag)
    model.eval()
    return model
