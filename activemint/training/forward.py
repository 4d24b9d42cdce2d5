"""The training forward of a model: class logits and, for an audited model, membership logits."""
from __future__ import annotations

import torch
from torch import nn


def train_forward(model: nn.Module, xm: torch.Tensor, xe: torch.Tensor | None, xv: torch.Tensor | None = None):
    """One training forward: (class logits, members' membership logits, externals' membership logits).

    The membership logits are None for a plain model.  Externals stop at the last tap; with
    robust views ``xv`` the members' membership logits are those of the views.  Under torchrun
    this whole function is DDP's forward (:func:`activemint.training.distributed.call`).
    """
    m = getattr(model, "_orig_mod", model)
    if m.audited:
        logits, mint_m, mint_e = m.forward_train(xm, xe)
        if xv is not None:  # the MINT loss reads the transformed member views instead
            mint_m = m.membership_logit(xv)
        return logits, mint_m, mint_e
    # A plain model's training forward is its forward: called through the wrapper (torch.compile ...).
    return model(xm), None, None
