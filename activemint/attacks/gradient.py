"""Gradient MINT (gMINT; DeAlcala et al., 2025): a membership classifier on per-sample gradients.

For every sample, the gradient of the task loss (cross-entropy with the *true label*) with
respect to the weights of the tapped layers is computed on the frozen model (BatchNorm in
eval mode), with ``torch.func``: ``vmap(grad(loss))`` over a batch, via ``functional_call``.
Each weight tensor's per-sample gradient (out, ...) is reduced per output filter: the mean
over all but the first dimension (and, by default, also the mean of absolute values), giving
one number per filter and reduction.  The concatenated features are standardised (statistics
of the training features) and a small MLP is trained on members D (label 1) vs external E
(label 0) in balanced batches, as the MINT head is.  Score = the MLP's logit.

gMINT needs the true labels and white-box access (weights and backprop); it works on any
trained model, plain or active.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from activemint.attacks.config import ScorerConfig
from activemint.mint import membership_bce
from activemint.training.batches import cycled_permutation, to_input

REDUCTIONS = ("mean", "mean_abs")


@dataclass
class GradientMintConfig(ScorerConfig):
    reductions: tuple[str, ...] = ("mean", "mean_abs")
    params: str = "weights"
    max_tensors: int = 32
    hidden: int = 256
    epochs: int = field(default=40, metadata={"help": "epochs of the gMINT classifier"})
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    grad_batch: int = 256
    external_limit: int | None = field(default=None, metadata={
        "help": "train gMINT on at most this many external samples (default: all of E)", "aliases": ("--gmint-external",)})
    seed: int = field(default=0, metadata={"help": "seed of the classifier, the external subset and the cross-fit halves"})

    name: ClassVar[str] = "gMINT"
    description: ClassVar[str] = ("MLP on per-sample gradients of the task loss w.r.t. the tapped layers' weights, reduced "
                                  "per output filter, trained on members (1) / external data (0); needs the true labels "
                                  "and white-box access (DeAlcala et al., 2025)")
    needs: ClassVar[tuple[str, ...]] = ("white-box weights and backprop", "labels", "known members and non-members")
    bounds: ClassVar[dict] = {"max_tensors": (1, 10_000), "hidden": (1, 1 << 16), "epochs": (1, 100_000), "lr": (1e-8, 10.0),
                              "weight_decay": (0.0, 10.0), "batch_size": (1, 1 << 16), "grad_batch": (1, 1 << 16),
                              "external_limit": (1, 1 << 40), "seed": (0, 2**63 - 1)}
    choices: ClassVar[dict] = {"reductions": REDUCTIONS, "params": ("weights", "all")}


def tapped_parameter_names(backbone: nn.Module, taps: Sequence[str], *, params: str = "weights", max_tensors: int = 32) -> list[str]:
    """Names (``backbone.named_parameters()`` keys) of the parameters inside the tapped modules.

    ``params="weights"``: only weight tensors with >= 2 dims (conv / linear filters; one feature
    per output filter); ``"all"``: every parameter (BatchNorm scales and biases included).  At
    most ``max_tensors``, in forward order of the taps.
    """
    names = []
    for tap in taps:
        backbone.get_submodule(tap)  # raises with the module's name if missing
        for n, p in backbone.get_submodule(tap).named_parameters():
            if params == "weights" and (p.ndim < 2 or not n.endswith("weight")):
                continue
            names.append(f"{tap}.{n}")
    if not names:
        raise ValueError(f"the tapped modules {list(taps)} hold no {'weight tensors' if params == 'weights' else 'parameters'}")
    return names[:max_tensors]


@contextmanager
def _plain_layout(module: nn.Module) -> Iterator[None]:
    """Turn off a model's own ``channels_last`` input restriding (e.g. SmallCNN) while under vmap.

    Numerically the same; the NHWC restride is a CPU speed trick that only slows vmap down.
    """
    changed = [m for m in module.modules() if getattr(m, "channels_last", None) is True]
    for m in changed:
        m.channels_last = False
    try:
        yield
    finally:
        for m in changed:
            m.channels_last = True


def per_sample_gradients(
    backbone: nn.Module, names: Sequence[str], x: torch.Tensor, y: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-sample gradients of ``cross_entropy(backbone(x_i), y_i)`` w.r.t. ``names``.

    Args:
        x: (B, C, H, W) float model inputs; y: (B,) int64 labels (same device as the model).
    Returns:
        ``{name: (B, *param.shape)}``.  The backbone is used in eval mode (BatchNorm running
        statistics, no dropout), so each gradient depends on its own sample only.
    """
    backbone.eval()
    all_params = dict(backbone.named_parameters())
    missing = [n for n in names if n not in all_params]
    if missing:
        raise ValueError(f"{missing} are not parameters of {type(backbone).__name__}")
    chosen = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in chosen}
    fixed.update(dict(backbone.named_buffers()))

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(backbone, {**fixed, **p}, (xi.unsqueeze(0),))
        return F.cross_entropy(out.float(), yi.unsqueeze(0))

    with _plain_layout(backbone):
        return vmap(grad(loss), in_dims=(None, 0, 0))(chosen, x, y)


def reduce_per_filter(grads: dict[str, torch.Tensor], reductions: Sequence[str] = REDUCTIONS) -> torch.Tensor:
    """(B, F) features: per weight tensor and reduction, one number per output filter (first dim)."""
    parts = []
    for g in grads.values():
        flat = g.reshape(g.shape[0], g.shape[1], -1) if g.ndim > 2 else g.reshape(g.shape[0], -1, 1)
        for r in reductions:
            parts.append(flat.mean(dim=2) if r == "mean" else flat.abs().mean(dim=2))
    return torch.cat(parts, dim=1)


def gradient_features(
    backbone: nn.Module, names: Sequence[str], images: torch.Tensor, labels: torch.Tensor, device: torch.device,
    *, reductions: Sequence[str] = REDUCTIONS, batch: int = 256,
) -> np.ndarray:
    """(N, F) float64 per-filter gradient features of uint8 images (N, C, H, W) with labels (N,)."""
    backbone.to(device).eval()
    out = []
    for i in range(0, len(images), batch):
        x = to_input(images[i : i + batch], device)
        y = labels[i : i + batch].to(device)
        out.append(reduce_per_filter(per_sample_gradients(backbone, names, x, y), reductions).double().cpu())
    return torch.cat(out).numpy()


class GradientMintMLP(nn.Module):
    """Standardise, then Linear -> ReLU -> Linear -> ReLU -> Linear: one membership logit."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int) -> None:
        super().__init__()
        n = len(mean)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2 or 1), nn.ReLU(),
                                 nn.Linear(hidden // 2 or 1, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats - self.mean) / self.std).squeeze(1)


def train_gradient_mlp(
    members: np.ndarray, external: np.ndarray, config: GradientMintConfig, *, log: Callable[[str], None] | None = None,
) -> GradientMintMLP:
    """Train the gMINT classifier on member (label 1) / external (label 0) features (N, F)."""
    torch.manual_seed(config.seed)
    both = np.concatenate([members, external])
    mean = both.mean(axis=0)
    std = both.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    mlp = GradientMintMLP(mean, std, config.hidden)
    xm = torch.as_tensor(members, dtype=torch.float32)
    xe = torch.as_tensor(external, dtype=torch.float32)
    opt = torch.optim.Adam(mlp.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    bs = config.batch_size
    steps = math.ceil(len(xm) / bs)
    for epoch in range(config.epochs):
        mlp.train()
        perm = torch.randperm(len(xm), generator=gen)
        ext = cycled_permutation(len(xe), steps * bs, gen)
        total = 0.0
        for s in range(steps):
            bm = xm[perm[s * bs : (s + 1) * bs]]
            be = xe[ext[s * bs : (s + 1) * bs]]
            logits = mlp(torch.cat([bm, be]))
            loss = membership_bce(logits, len(bm))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if log is not None and (epoch + 1) % 10 == 0:
            log(f"gMINT MLP: epoch {epoch + 1}/{config.epochs} loss {total / steps:.4f}")
    mlp.eval()
    return mlp


@torch.no_grad()
def gradient_mint_scores(mlp: GradientMintMLP, features: np.ndarray) -> np.ndarray:
    """(N,) membership logits of the gMINT classifier."""
    mlp.eval()
    return mlp(torch.as_tensor(features, dtype=torch.float32)).double().numpy()
