"""The multitask loss of Active MINT.

``L = λ1 · L_aud / L_aud,0 + λ2 · L_mint / L_mint,0``

* ``L_aud``: cross-entropy of the class logits on the member batch (only D trains the task);
* ``L_mint``: binary cross-entropy with logits on members (label 1) and externals (label 0);
* ``L_·,0``: the value of each term on the first batch, so both tasks start at 1.  The
  normalisers are buffers: they are saved in checkpoints and survive ``--resume``.

``flood`` b > 0 (Ishida et al., ICML 2020, "Do we need zero training loss after achieving zero
training error?"): the MINT term becomes ``|L_mint - b| + b``, so once the batch's membership
loss falls below b the step climbs back up to it instead of driving it to zero.  A lever against
the head memorising a small external set E (issue 19): the logged ``mint_loss`` is the raw BCE.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def membership_bce(logits: torch.Tensor, n_members: int) -> torch.Tensor:
    """Binary cross-entropy with logits for ``[members; externals]``: label 1 for the first
    ``n_members`` entries of ``logits`` (shape (B,)), label 0 for the rest."""
    target = torch.zeros_like(logits)
    target[:n_members] = 1.0
    return F.binary_cross_entropy_with_logits(logits, target)


def view_pair_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) over ``B`` pairs of embeddings: each of the ``2B`` embeddings must pick its
    pair's among the other ``2B - 1``; divided by ``log(2B - 1)``, its value when the embeddings
    carry no information, so that it starts near 1 like the normalised multitask terms."""
    n = len(a)
    if n < 2:
        return a.sum() * 0.0
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(sim.device)
    return F.cross_entropy(sim, target) / math.log(2 * n - 1)


class MultitaskLoss(nn.Module):
    def __init__(self, *, lambda_task: float = 1.0, lambda_mint: float = 1.0, normalize: bool = True,
                 flood: float = 0.0) -> None:
        super().__init__()
        if lambda_task < 0 or lambda_mint < 0 or lambda_task + lambda_mint == 0:
            raise ValueError("λ1 and λ2 must be >= 0 and not both 0")
        if not flood >= 0:
            raise ValueError(f"flood must be >= 0, got {flood}")
        self.lambda_task, self.lambda_mint, self.normalize, self.flood = lambda_task, lambda_mint, normalize, flood
        self.register_buffer("task0", torch.tensor(float("nan")))
        self.register_buffer("mint0", torch.tensor(float("nan")))
        # torchrun runs (activemint.training.distributed): this process's weight of each term,
        # so that the mean over processes is the global batch's mean, and how the first-batch
        # normalisers are averaged over processes.  One process: (1, 1) and None.
        self.shares: tuple[float, float] = (1.0, 1.0)
        self.reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
        # ``sync=False`` (the trainer's device data path): no host synchronisation in forward.
        # The logged parts are detached 0-d tensors (the caller sums them on the device), and
        # whether the first-batch normalisers are set is ``primed``, a Python flag the caller
        # sets once from the buffers (a resumed run restores them), not a NaN test per step.
        self.sync = True
        self.primed = False

    def forward(
        self,
        class_logits: torch.Tensor,
        labels: torch.Tensor,
        mint_members: torch.Tensor | None = None,
        mint_external: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Returns the total loss and the raw (unnormalised) terms for logging (floats; 0-d tensors when ``sync`` is off)."""
        task = F.cross_entropy(class_logits, labels)
        if self.shares[0] != 1.0:
            task = task * self.shares[0]
        out = (lambda t: float(t.detach())) if self.sync else (lambda t: t.detach())
        parts = {"task_loss": out(task)}
        if mint_members is None:
            return task, parts
        mint_logits = mint_members if mint_external is None else torch.cat([mint_members, mint_external])
        mint = membership_bce(mint_logits, len(mint_members))
        if self.shares[1] != 1.0:
            mint = mint * self.shares[1]
        parts["mint_loss"] = out(mint)
        if self.flood:  # equal to the raw loss while it is above b (the first batch's normaliser: always, for b < log 2)
            mint = (mint - self.flood).abs() + self.flood
        if not self.normalize:
            return self.lambda_task * task + self.lambda_mint * mint, parts
        if not self.sync:
            if not self.primed:  # the same values as below (float32 max with 1e-8), without a read-back
                task0, mint0 = task.detach(), mint.detach()
                if self.reduce is not None:
                    task0, mint0 = self.reduce(task0), self.reduce(mint0)
                self.task0.copy_(task0.clamp_min(1e-8))
                self.mint0.copy_(mint0.clamp_min(1e-8))
                self.primed = True
        elif torch.isnan(self.task0):
            task0, mint0 = task.detach(), mint.detach()
            if self.reduce is not None:  # every process: the global first batch's values
                task0, mint0 = self.reduce(task0), self.reduce(mint0)
            self.task0.fill_(max(float(task0), 1e-8))
            self.mint0.fill_(max(float(mint0), 1e-8))
        total = self.lambda_task * task / self.task0 + self.lambda_mint * mint / self.mint0
        return total, parts
