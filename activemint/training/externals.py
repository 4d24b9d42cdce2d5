"""Where a run's externals come from, and what a step does to them: the levers of issue 19 item 4.

The MINT head learns members (1) against externals E (0).  As |D| grows towards the whole
data set, the train split has few samples left for E, and the head memorises E as well as D
(benchmarks/results/externals-levers-cpu.md).  Each :class:`~activemint.training.config.TrainConfig`
field below adds non-members without touching D; with all of them at their defaults the
externals are the run's ``external`` split exactly as before (the same draws, the same bits).

* ``external_source`` (+ ``external_source_root``, ``external_source_size``): the train split
  of another registered data set, converted to the run's channels and size, added to E
  (:func:`external_pool`).  Images pixel-identical to a member are left out.
* ``external_per_epoch``: each epoch draws its externals from a fresh seeded subset of this
  many of E (:func:`external_order`): the same externals per epoch from a larger pool.
* ``external_generated`` / ``external_generator``: this fraction of every external batch is
  replaced by a blend of two externals of the batch (``mixup``: a pixel-wise mix; ``cutmix``: a
  box pasted from the other), weight or area uniform in :data:`MIX_RANGE`, fresh each step
  (:func:`generate`).  Only externals are blended: mixing in members would leak D into E.
* ``external_views``: an audit policy's transformed views (:mod:`activemint.transforms`) of
  the externals only, members untouched.  (Views of both members and externals for the MINT
  loss are ``audit_policy`` with ``audit_views mint``.)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from activemint.errors import UserError
from activemint.training.config import TrainConfig

#: A generated external mixes two externals with a weight (mixup) or pasted area (cutmix) drawn
#: uniformly in this range: never (nearly) one external alone.
MIX_RANGE = (0.25, 0.75)


class ExternalsError(UserError):
    """The externals a config asks for cannot be built (one line, naming the option)."""


def levers_on(cfg: TrainConfig) -> bool:
    """True when any field of this module is away from its default (the externals are not just the split)."""
    return (cfg.external_source is not None or cfg.external_per_epoch is not None or cfg.external_generated > 0
            or cfg.external_views is not None)


@dataclass(frozen=True)
class ExternalPool:
    """The externals a run draws from: the ``external`` split, then the other source's images."""

    images: Any  # uint8 (N, C, H, W) tensor (or, without a source, the split's rows as the data set gives them)
    n_split: int
    n_source: int = 0
    dropped: int = 0  # source images pixel-identical to a member, left out
    source_sha256: str | None = None  # SHA-256 of the source images used, in order (their C, H, W bytes)

    def record(self, cfg: TrainConfig) -> dict[str, Any]:
        """What metrics.json says about the externals (with any lever on)."""
        out: dict[str, Any] = {"pool": self.n_split + self.n_source, "from_split": self.n_split}
        if cfg.external_source is not None:
            out.update({"source": cfg.external_source, "from_source": self.n_source,
                        "source_dropped_as_members": self.dropped, "source_sha256": self.source_sha256})
        for k in ("external_per_epoch", "external_generated", "external_generator", "external_views"):
            out[k.removeprefix("external_")] = getattr(cfg, k)
        return out


def source_images(cfg: TrainConfig, shape: tuple[int, int, int]) -> torch.Tensor:
    """The train split of ``cfg.external_source`` as uint8 ``(N, *shape)``: channels and size converted,
    a seeded subset of ``external_source_size`` (all when None)."""
    from activemint.data import DatasetError, load_dataset

    c, h, w = shape
    try:
        ds = load_dataset(cfg.external_source, "train", root=cfg.external_source_root, image_size=(h, w), channels=c,
                          max_memory="off")
    except (DatasetError, ValueError) as e:
        raise ExternalsError(f"external_source {cfg.external_source!r}: {str(e).splitlines()[0]}") from None
    images = ds.images
    if tuple(images.shape[1:]) != (c, h, w):  # a reader that ignores the requested size
        raise ExternalsError(f"external_source {cfg.external_source!r} gives {tuple(images.shape[1:])} images, "
                             f"the run needs {(c, h, w)}")
    if cfg.external_source_size is not None:
        if cfg.external_source_size > len(images):
            raise ExternalsError(f"external_source_size {cfg.external_source_size} > the {len(images)} train images of "
                                 f"{cfg.external_source!r}")
        pick = np.sort(np.random.default_rng([cfg.seed, 11]).permutation(len(images))[: cfg.external_source_size])
        images = images[torch.as_tensor(pick)]
    return images


def external_pool(cfg: TrainConfig, data) -> ExternalPool:
    """The run's externals (``data``: its :class:`~activemint.training.data.RunData`): the ``external``
    split's rows, followed by ``external_source``'s images (none pixel-identical to a member)."""
    split = data.train.rows(data.splits.external)
    if cfg.external_source is None:
        return ExternalPool(split, len(data.splits.external))
    if getattr(data.train, "streamed", False):
        raise ExternalsError("external_source: not available with a streamed data set (max_memory); "
                             "raise --max-memory or leave external_source unset")
    src = source_images(cfg, tuple(data.train.input_shape))
    from activemint.data import pixel_sha256

    members = set(pixel_sha256(data.train.rows(data.splits.members)))
    keep = np.array([d not in members for d in pixel_sha256(src)], dtype=bool)
    dropped = int((~keep).sum())
    if dropped:
        src = src[torch.as_tensor(keep)]
    digest = hashlib.sha256(np.ascontiguousarray(src.numpy()).tobytes()).hexdigest()
    return ExternalPool(torch.cat([split, src]), len(data.splits.external), len(src), dropped, digest)


def check_pool(cfg: TrainConfig, pool: ExternalPool) -> None:
    """One-line errors for levers that do not fit the pool actually built."""
    n = pool.n_split + pool.n_source
    if cfg.external_per_epoch is not None and cfg.external_per_epoch > n:
        raise ExternalsError(f"external_per_epoch {cfg.external_per_epoch} > the {n} externals of this run "
                             f"({pool.n_split} external split + {pool.n_source} external_source)")
    if cfg.external_generated > 0 and cfg.external_batch_size < 2:
        raise ExternalsError("external_generated needs external_batch_size >= 2 (a generated external blends two of a batch)")


def external_order(n: int, need: int, gen: torch.Generator, per_epoch: int | None = None) -> torch.Tensor:
    """At least ``need`` indices into an external pool of ``n``, on ``gen``'s device.

    ``per_epoch`` None: fresh permutations of the whole pool, concatenated (the trainer's order
    before this module).  Else: a fresh random subset of ``per_epoch`` of the pool, cycled in
    fresh permutations of it (``external_per_epoch``).
    """
    dev = gen.device
    k = n if per_epoch is None else per_epoch
    reps = max(1, -(-need // k))
    if per_epoch is None:
        return torch.cat([torch.randperm(n, generator=gen, device=dev) for _ in range(reps)])
    subset = torch.randperm(n, generator=gen, device=dev)[:k]
    return subset[torch.cat([torch.randperm(k, generator=gen, device=dev) for _ in range(reps)])]


def generate(x: torch.Tensor, frac: float, kind: str, gen: torch.Generator) -> torch.Tensor:
    """uint8 externals ``x`` (B, C, H, W) with about ``frac`` of them replaced by blends of two of ``x``.

    Each row is replaced with probability ``frac`` by a blend of itself and another row of the
    batch (never itself): ``mixup`` = ``l * a + (1 - l) * b``, ``cutmix`` = ``a`` with a box of
    area ``1 - l`` from ``b`` at a random place, ``l`` uniform in :data:`MIX_RANGE`.  A fixed
    number of draws from ``gen`` per batch (on its device), tensor ops on ``x``'s device.
    """
    b = len(x)
    if frac <= 0 or b < 2:
        return x
    gd, dev = gen.device, x.device

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=gd).to(dev)

    pick = rand(b) < frac
    partner = (torch.arange(b, device=dev) + torch.randint(1, b, (b,), generator=gen, device=gd).to(dev)) % b
    lo, hi = MIX_RANGE
    lam = lo + (hi - lo) * rand(b)
    u, v = rand(b), rand(b)
    a, other = x.float(), x[partner].float()
    if kind == "mixup":
        y = lam[:, None, None, None] * a + (1 - lam)[:, None, None, None] * other
    elif kind == "cutmix":
        h, w = x.shape[2:]
        side = torch.sqrt(1 - lam)  # a box of area (1 - lam) of the image, the image's aspect
        bh, bw = (side * h).round().clamp(1, h), (side * w).round().clamp(1, w)
        top, left = (u * (h - bh + 1)).floor(), (v * (w - bw + 1)).floor()
        r = torch.arange(h, device=dev)[None]
        c = torch.arange(w, device=dev)[None]
        rows = (r >= top[:, None]) & (r < (top + bh)[:, None])
        cols = (c >= left[:, None]) & (c < (left + bw)[:, None])
        box = (rows[:, :, None] & cols[:, None, :])[:, None]
        y = torch.where(box, other, a)
    else:
        raise ExternalsError(f"external_generator {kind!r}: expected mixup or cutmix")
    return torch.where(pick[:, None, None, None], y.round().clamp(0, 255), a).to(torch.uint8)


def external_policy(cfg: TrainConfig):
    """The audit policy of ``external_views`` (None when unset)."""
    if cfg.external_views is None:
        return None
    from activemint.transforms import get_policy

    return get_policy(cfg.external_views)
