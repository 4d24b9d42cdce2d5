"""A run's training batches: drawn, viewed (audit policy), sharded (torchrun), normalised, augmented.

Small data sets live as one uint8 tensor (on the GPU when there is one); a batch is an index
into it.  No per-sample PIL pipeline.  :func:`host_batches` are the host data path's batches
(draws on the CPU generator, views with Pillow); :class:`DeviceBatches` the device data path's
(every draw on the device).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from activemint.data.streaming import plan_batches
from activemint.training import distributed
from activemint.training.config import TrainConfig
from activemint.training.externals import external_order, external_policy, generate

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


def host_batches(cfg: TrainConfig, members, member_labels, external, seen, seen_host, policy, gen: torch.Generator, epoch: int,
                 steps_per_epoch: int, device: torch.device, *, plan: bool = True):
    """Yield the batches ``(xm, ym, xe, seen, xv, xp, shares)`` of an epoch on the host data path.

    Draws on the CPU generator ``gen`` (the members' permutation, the externals' order, the
    augmentation) and views with Pillow; ``shares``: this rank's loss shares under torchrun
    (:func:`loss_shares`), None in one process.  ``plan``: streamed data sets' workers decode
    the epoch's batches ahead.
    """
    dev = device
    perm = torch.randperm(len(members), generator=gen)
    ext_order = None
    if external is not None:  # external_per_epoch: a fresh subset of the pool each epoch (activemint.training.externals)
        need = steps_per_epoch * cfg.external_batch_size
        ext_order = (cycled_permutation(len(external), need, gen) if cfg.external_per_epoch is None
                     else external_order(len(external), need, gen, cfg.external_per_epoch))
    ext_policy = external_policy(cfg)  # external_views: views of the externals only
    ext_rng = np.random.default_rng([cfg.seed, 12, epoch]) if ext_policy is not None else None
    ext_whole = ext_policy is not None or cfg.external_generated > 0  # drawn on the global batch, then cut
    if plan:
        plan_batches(members, perm, cfg.batch_size)  # streamed: workers decode this epoch's batches ahead
        plan_batches(external, ext_order, cfg.external_batch_size)
    view_rng = np.random.default_rng([cfg.seed, 9, epoch])  # per epoch: resume-safe
    for step in range(steps_per_epoch):
        bidx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        idx = bidx.to(dev)
        eidx = None
        if ext_order is not None:
            eidx = ext_order[step * cfg.external_batch_size : (step + 1) * cfg.external_batch_size].to(dev)
        # torchrun: this rank's part of the global batch (one process: all of it).  A robust-aMINT
        # policy draws per sample from one stream, so it transforms the global batch, then cut.
        ms, es = distributed.shard(len(idx)), distributed.shard(0 if eidx is None else len(eidx))
        cut = policy is None
        xm = members[idx[ms] if cut else idx]
        xe = None if eidx is None else external[eidx[es] if cut and not ext_whole else eidx]
        if xe is not None and ext_whole:  # generated externals, external views: of the global batch, then this rank's part
            xe = generate(xe, cfg.external_generated, cfg.external_generator, gen)
            xe = ext_policy(xe, ext_rng) if ext_policy is not None else xe
            xe = xe[es] if cut else xe
        xv = xp = None  # robust aMINT: views for the MINT loss only; a second view of each member (view_pairs)
        if policy is not None:  # robust aMINT: transformed views of members and externals
            x0 = xm
            if cfg.audit_views == "mint":
                xv = to_input(policy(xm, view_rng)[ms])
            else:
                xm = policy(xm, view_rng)
            xe = policy(xe, view_rng)[es] if xe is not None else None
            xm = xm[ms]
            if cfg.view_pairs:  # drawn after the others, so a run without pairs keeps its views
                xp = to_input(policy(x0, view_rng)[ms])
        xm = to_input(xm)
        xe = to_input(xe) if xe is not None else None
        if cfg.resolved("augment"):
            xm = random_shift_flip(xm, flip=cfg.augment_flip, generator=gen, part=(ms, len(idx)))
            if xe is not None:
                xe = random_shift_flip(xe, flip=cfg.augment_flip, generator=gen, part=(es, len(eidx)))
        shares = None
        if distributed.is_distributed():
            shares = loss_shares(seen_host[bidx.numpy()], ms, 0 if eidx is None else len(eidx), es)
        idx = idx[ms]
        yield xm, member_labels[idx], xe, seen[idx], xv, xp, shares


class DeviceBatches:
    """The device data path's batches: the run's uint8 members / externals on the device,
    indexed by permutations drawn there, viewed (audit policy), normalised and shifted there.

    Every draw comes from ``gen`` (a generator on the device; the run's own on a CPU), in the
    same order on every run, so a seed gives the same batches and a resumed run continues the
    stream from the checkpointed generator state.
    """

    def __init__(self, cfg: TrainConfig, members, labels, external, seen, policy, gen: torch.Generator, channels_last: bool) -> None:
        self.cfg, self.members, self.labels, self.external = cfg, members, labels, external
        self.policy, self.gen, self.channels_last = policy, gen, channels_last
        self.seen = None if bool(seen.all()) else seen  # held-out members: one boolean read-back per step (mint_m[seen])
        self.augment = cfg.resolved("augment")
        self.ext_policy = external_policy(cfg)  # external_views (activemint.training.externals)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = to_input(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def epoch(self, steps_per_epoch: int, steps: int):
        """Yield ``steps`` batches ``(xm, ym, xe, seen, xv, xp)`` of an epoch of ``steps_per_epoch``."""
        cfg, gen, dev = self.cfg, self.gen, self.members.device
        b, eb = cfg.batch_size, cfg.external_batch_size
        perm = torch.randperm(len(self.members), generator=gen, device=gen.device).to(dev)
        ext = self.external
        order = None
        if ext is not None:
            order = external_order(len(ext), steps_per_epoch * eb, gen, cfg.external_per_epoch).to(dev)
        for step in range(steps):
            idx = perm[step * b : (step + 1) * b]
            xm, xe, xv, xp = self.members[idx], None if order is None else ext[order[step * eb : (step + 1) * eb]], None, None
            if xe is not None:  # generated externals, external views (activemint.training.externals)
                xe = generate(xe, cfg.external_generated, cfg.external_generator, gen)
                xe = self.ext_policy.on_device(xe, gen) if self.ext_policy is not None else xe
            if self.policy is not None:
                x0 = xm
                if cfg.audit_views == "mint":
                    xv = self._input(self.policy.on_device(xm, gen))
                else:
                    xm = self.policy.on_device(xm, gen)
                xe = self.policy.on_device(xe, gen) if xe is not None else None
                if cfg.view_pairs:  # a second view of each member, drawn last (activemint.mint.loss.view_pair_loss)
                    xp = self._input(self.policy.on_device(x0, gen))
            xm = to_input(xm)
            xe = to_input(xe) if xe is not None else None
            if self.augment:
                xm = random_shift_flip(xm, flip=cfg.augment_flip, generator=gen)
                xe = random_shift_flip(xe, flip=cfg.augment_flip, generator=gen) if xe is not None else None
            if self.channels_last:
                xm = xm.contiguous(memory_format=torch.channels_last)
                xe = xe.contiguous(memory_format=torch.channels_last) if xe is not None else None
            yield xm, self.labels[idx], xe, None if self.seen is None else self.seen[idx], xv, xp


def loss_shares(seen: np.ndarray, ms: slice, n_ext: int, es: slice) -> tuple[float, float]:
    """This rank's weights of the task and MINT loss terms (:func:`activemint.training.distributed.share`).

    ``seen``: which members of the global batch the MINT loss sees; ``ms`` / ``es``: this rank's
    slices of the global member / external batch (``n_ext`` externals).
    """
    task = distributed.share(ms.stop - ms.start, len(seen))
    mint = distributed.share(int(seen[ms].sum()) + (es.stop - es.start), int(seen.sum()) + n_ext)
    return task, mint
