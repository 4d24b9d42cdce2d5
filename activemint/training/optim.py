"""The optimiser of a run, its parameter groups and its learning-rate schedule (from a :class:`TrainConfig`)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from activemint.training.config import TrainConfig


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """The backbone at ``lr``; an audited model's MINT head at ``lr * head_lr_scale``."""
    head = model.head_parameters()
    if not head or cfg.head_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": head, "lr": cfg.effective_lr() * cfg.head_lr_scale}]


def build_optimizer(cfg: TrainConfig, params, *, fused: bool = False) -> torch.optim.Optimizer:
    """The config's optimiser; ``fused``: torch's one-kernel implementation (CUDA parameters)."""
    name, lr, wd = cfg.resolved("optimizer"), cfg.effective_lr(), cfg.resolved("weight_decay")
    kw = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True, **kw)


def build_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule, stepped once per optimiser step (None: constant).

    Without warm-up: torch's CosineAnnealingLR (or none), as before.  With ``warmup_epochs``:
    one LambdaLR, a linear ramp from 1/W to 1 over the first W steps times the cosine decay
    of the steps after it (or 1 when the schedule is constant).
    """
    total = cfg.epochs * steps_per_epoch
    cosine = cfg.resolved("schedule") == "cosine"
    warm = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    if warm <= 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if cosine else None

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)

