"""Turning in-memory uint8 images into model inputs, with vectorised augmentation.

Small data sets live as one uint8 tensor (on the GPU when there is one); a batch is an index
into it.  No per-sample PIL pipeline.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MEAN, STD = 0.5, 0.5  # the paper's normalisation


def to_input(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) in 0..255 -> float32 (B, C, H, W) normalised to [-1, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    x = images.to(device, non_blocking=True) if device is not None else images
    return x.float().div_(255.0).sub_(MEAN).div_(STD)


def cycled_permutation(n: int, need: int, generator: torch.Generator) -> torch.Tensor:
    """At least ``need`` indices into ``range(n)``: fresh random permutations, concatenated.

    Used for external batches, whose set E may be smaller or larger than one epoch needs.
    """
    reps = max(1, -(-need // n))
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])


def random_shift_flip(x: torch.Tensor, *, pad: int = 2, flip: bool = False, generator: torch.Generator | None = None,
                      part: tuple[slice, int] | None = None) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding) and optional horizontal flip.

    Vectorised over the batch: one gather, no Python loop.  ``x``: (B, C, H, W) float.
    ``part=(rows, n)``: ``x`` is the rows ``rows`` of a batch of ``n`` (a torchrun process's
    shard); the random draws are those of the whole batch, of which ``rows`` are applied.
    """
    b, c, h, w = x.shape
    mine, n = part if part is not None else (slice(0, b), b)
    gen_device = generator.device if generator is not None else "cpu"
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)[mine].to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)[mine].to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None].expand(b, c, h, w)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :].expand(b, c, h, w)
    out = xp[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator, device=gen_device)[mine].to(x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out
