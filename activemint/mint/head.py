"""The MINT head: reads tapped activation maps and returns one membership logit.

One branch per tapped map, concatenated, then an MLP (paper, Sec. 3):

* feature maps (B, C, H, W): conv3x3 -> ReLU -> max-pool 2 -> conv3x3 -> ReLU -> global max-pool;
* token sequences (B, N, D) (Vision Transformers): Linear -> ReLU -> Linear -> ReLU -> max over tokens.

The paper's heads use 1024-4096 channel convolutions.  ``width`` sets the branch width; the
default (64) is far lighter.  Measured on Fashion-MNIST (small_cnn, Entry, 25 epochs;
``benchmarks/results/head-width-cpu.md``): width 64 keeps the AUC of width 256 within ~0.01
(0.982-0.990 vs 0.992), while 32 and 16 lose (0.971, 0.928); width 256 is better at very low
FPR (TPR@1%FPR 0.79 vs 0.53-0.62) with 11x the parameters.  ``stride=2`` (first conv strided
on maps of >= 8 px) cuts the head's share of an Entry training step (mobilenet_v2: 20% -> 7%,
small_cnn: 51% -> 27%; ``benchmarks/results/throughput-cpu.md``) for a loss at low FPR
(AUC 0.979, TPR@1%FPR 0.45 at width 64); it is an option, not the default.

``pool`` (``TrainConfig.head_pool``) sets how a conv branch subsamples and reduces its map, for
copies that are shifted or re-framed (issue 20; ``docs/near-copy-heads.md``): ``"max"`` (the
design above, the default), ``"blur"`` (the max-pool anti-aliased: max over 2x2 at stride 1,
then a 3x3 binomial blur at stride 2; Zhang, "Making convolutional networks shift-invariant
again", ICML 2019), ``"global-max"`` / ``"global-avg"`` (no subsampling in the branch: both
convs at the tap's resolution, then one global max / mean, so the branch is shift-equivariant
up to its borders and the vector shift-invariant up to them; about 4x the second conv's cost).

``norm="mlp"`` (the trainer's default, ``TrainConfig.head_norm``) puts a BatchNorm on the
concatenated branch vectors before the MLP.  Without it the head's output hardly varies
between samples at initialisation (logit std 0.016 over 256 Fashion-MNIST images): the
branch vectors are global maxima of ReLU maps, nearly the same for every image, and the MINT
loss sat at chance (0.69) until the classifier had overfitted its members.  With it the MINT
loss falls below 0.6 at epoch 7 instead of 12 and validation membership AUC reaches 0.9 at
epoch 10 instead of 15 (small_cnn Entry, 1000 members; ``benchmarks/results/head-early-cpu.md``).
``norm="branch"`` also normalises each conv branch after its first pool (not measured to the
end).  The class :class:`MintHead` and :class:`~activemint.mint.EnhancedAuditedModel` keep
``norm="none"`` as their own default (the paper's head, and passive MINT's).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

HEAD_NORMS = ("none", "mlp", "branch")
HEAD_POOLS = ("max", "blur", "global-max", "global-avg")


HEAD_CONVS = ("full", "separable")


def _conv3x3(cin: int, cout: int, stride: int, kind: str) -> nn.Module:
    """A 3x3 conv: ``full``, or ``separable`` (depthwise 3x3 then pointwise 1x1: the same
    receptive field and resolution for about 1/8 of the multiply-adds at 32-64 channels)."""
    if kind == "full":
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    if kind == "separable":
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin), nn.Conv2d(cin, cout, 1))
    raise ValueError(f"head conv must be one of {HEAD_CONVS}, got {kind!r}")


class BlurPool(nn.Module):
    """Anti-aliased max-pool (Zhang 2019's MaxBlurPool): max over 2x2 at stride 1, then a 3x3
    binomial ([1, 2, 1] x [1, 2, 1] / 16) depthwise blur at stride 2 on a reflect-padded map.

    Same output size as ``MaxPool2d(2)`` on even maps (14 -> 7).  The blur is a fixed,
    non-persistent buffer: the state dict has no extra keys.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(k, k) / 16.0
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, stride=1)
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)


class ConvBranch(nn.Module):
    """Conv branch for a (B, C, H, W) map -> (B, width) vector."""

    def __init__(self, in_channels: int, spatial: int, width: int, stride: int = 1, norm: bool = False,
                 conv: str = "full", pool: str = "max") -> None:
        super().__init__()
        if pool not in HEAD_POOLS:
            raise ValueError(f"head pool must be one of {HEAD_POOLS}, got {pool!r}")
        # ``stride`` > 1: the first conv subsamples maps of at least 8 px (a lighter head: the
        # first conv at full resolution is most of the head's cost on early taps).
        stride = stride if spatial >= 8 else 1
        self.conv1 = _conv3x3(in_channels, width, stride, conv)
        # Pool only where there is room for it: late stages of small inputs are 1x1 or 2x2.
        room = -(-spatial // stride) >= 4
        self.pool_kind = pool
        if pool == "max" and room:
            self.pool: nn.Module = nn.MaxPool2d(2)
        elif pool == "blur" and room:
            self.pool = BlurPool(width)
        else:  # global-max / global-avg: no subsampling inside the branch
            self.pool = nn.Identity()
        self.norm = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.conv2 = _conv3x3(width, width, 1, conv)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_kind == "blur":  # the blur is linear: ReLU before it (Zhang's conv -> ReLU -> MaxBlurPool)
            x = self.act(self.norm(self.pool(self.act(self.conv1(x)))))
        else:
            # conv -> ReLU -> max-pool -> conv -> ReLU -> global max-pool, computed with each ReLU
            # after its max-pool: ReLU and max commute, so the values are the same, but the ReLU
            # (and its backward) then runs on a 4x smaller map, and on (B, width) at the end.
            x = self.act(self.norm(self.pool(self.conv1(x))))
        if self.pool_kind == "global-avg":
            return torch.mean(self.act(self.conv2(x)), dim=(2, 3))
        return self.act(torch.amax(self.conv2(x), dim=(2, 3)))


class TokenBranch(nn.Module):
    """Token branch for a (B, N, D) sequence -> (B, width) vector."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.mlp(x), dim=1)


class MintHead(nn.Module):
    """Membership classifier over several tapped activations.

    Args:
        shapes: per tapped map, its shape without the batch dimension: (C, H, W) or (N, D).
        width: channels of each branch.
        hidden: width of the MLP's hidden layer.
        stride: stride of each conv branch's first conv (on maps of at least 8 px); 1 = the
            paper's design.
        norm: "none"; "mlp": batch-normalise the concatenated branch vectors before the MLP;
            "branch": that, and a BatchNorm after each conv branch's first pool.
        conv: the branches' 3x3 convs: "full" (the paper's) or "separable" (depthwise + pointwise).
        pool: how a conv branch subsamples and reduces its map: "max" (the paper's), "blur"
            (anti-aliased max-pool), "global-max" / "global-avg" (no subsampling, one global
            max / mean); token branches always take the max over tokens.

    ``forward(features)`` takes the list of tapped tensors (same order as ``shapes``) and
    returns membership logits of shape (B,).  ``sigmoid(logit)`` is P(member).
    """

    def __init__(self, shapes: Sequence[Sequence[int]], *, width: int = 64, hidden: int = 128, stride: int = 1,
                 norm: str = "none", conv: str = "full", pool: str = "max") -> None:
        super().__init__()
        if not shapes:
            raise ValueError("MintHead needs at least one tapped activation")
        branches = []
        for shape in shapes:
            if len(shape) == 3:
                branches.append(ConvBranch(shape[0], min(shape[1], shape[2]), width, stride, norm == "branch", conv, pool))
            elif len(shape) == 2:
                branches.append(TokenBranch(shape[1], width))
            else:
                raise ValueError(
                    f"a tapped activation must be (C, H, W) or (N, D) per sample, got {tuple(shape)}"
                )
        self.shapes = [tuple(int(s) for s in shape) for shape in shapes]
        self.width, self.hidden, self.stride, self.norm, self.conv = width, hidden, stride, norm, conv
        self.pool = pool
        self.branches = nn.ModuleList(branches)
        n = width * len(branches)
        if norm not in HEAD_NORMS:
            raise ValueError(f"head norm must be one of {HEAD_NORMS}, got {norm!r}")
        layers: list[nn.Module] = [nn.BatchNorm1d(n)] if norm != "none" else []
        self.mlp = nn.Sequential(*layers, nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def embed(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The MLP's hidden activations (B, hidden): what the final linear layer reads."""
        if len(features) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} tapped tensors, got {len(features)}")
        parts = [branch(f) for branch, f in zip(self.branches, features)]
        return self.mlp[:-1](torch.cat(parts, dim=1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.mlp[-1](self.embed(features)).squeeze(1)
