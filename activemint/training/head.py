"""Training a MINT head alone on a frozen backbone (``TrainConfig.head_epochs``, the robust post-hoc head),
and the view curriculum of robust aMINT (``TrainConfig.view_curriculum_epochs``)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from activemint.data.streaming import plan_batches
from activemint.mint import EnhancedAuditedModel
from activemint.mint.loss import membership_bce
from activemint.training.batches import cycled_permutation, to_input


def train_head(model: EnhancedAuditedModel, members: torch.Tensor, external: torch.Tensor, *, epochs: int, lr: float,
               batch_size: int, external_batch_size: int | None = None, policy=None, seed: int = 0,
               device: torch.device | str = "cpu", log: Callable[[str], None] | None = None, log_every: int = 1,
               what: str = "head", progress: bool = False) -> EnhancedAuditedModel:
    """Train only ``model.head`` (backbone frozen, eval mode) on uint8 members (1) / externals (0).

    The one loop of every head trained on a frozen backbone: ``TrainConfig.head_epochs``, the
    passive MINT head and the (robust) post-hoc head.  Per epoch: a seeded permutation of the
    members, cut in batches of ``batch_size``, each with ``external_batch_size`` external samples
    (``None``: as many as its members) from a cycled permutation of E.  ``policy`` (an
    :class:`activemint.transforms.AuditPolicy`): transformed views of both, drawn per epoch from
    ``seed``.  ``progress``: a bar over the epochs.
    """
    if len(members) == 0 or len(external) == 0:
        raise ValueError(f"{what}: needs members and external samples")
    device = torch.device(device)
    model.to(device).eval()
    opt = torch.optim.Adam(model.head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    frozen = [(p, p.requires_grad) for p in model.backbone.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    ebs = external_batch_size or batch_size
    steps = math.ceil(len(members) / batch_size)
    epochs_iter = range(epochs)
    if progress:
        from activemint.progress import progress as bar

        epochs_iter = bar(epochs_iter, desc=what, unit="epoch", leave=False)
    for epoch in epochs_iter:
        rng = np.random.default_rng([seed, 10, epoch])
        perm = torch.randperm(len(members), generator=gen)
        eorder = cycled_permutation(len(external), steps * ebs if external_batch_size else len(perm), gen)
        plan_batches(members, perm, batch_size)  # streamed views: workers decode these batches ahead
        plan_batches(external, eorder, ebs)
        total = 0.0
        for step in range(steps):
            xm = members[perm[step * batch_size:(step + 1) * batch_size]]
            xe = external[eorder[step * ebs:(step + 1) * ebs]]
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
        if log is not None and ((epoch + 1) % log_every == 0 or epoch + 1 in (1, epochs)):
            log(f"{what} epoch {epoch + 1}/{epochs}  mint_loss {total / len(perm):.4f}")
    for p, flag in frozen:
        p.requires_grad_(flag)
    model.eval()
    return model


def curriculum_policy(policy, epoch: int, ramp_epochs: int):
    """The audit policy of 0-based ``epoch`` under a view curriculum of ``ramp_epochs`` (``TrainConfig.view_curriculum_epochs``).

    Exact images first, then more and more views: the policy's probability of a transformed
    view is ``p * min(1, epoch / ramp_epochs)`` (0 at the first epoch, the policy's own from
    epoch ``ramp_epochs`` on); its transformations and severity ranges are unchanged.
    ``ramp_epochs`` 0 or no policy: ``policy`` itself (the same object: runs without a
    curriculum draw exactly as before).
    """
    if policy is None or ramp_epochs <= 0 or epoch >= ramp_epochs:
        return policy
    return dataclasses.replace(policy, p=policy.p * epoch / ramp_epochs)
