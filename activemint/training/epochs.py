"""The training steps and epochs of a :class:`~activemint.training.trainer.Trainer`, and its per-epoch validation."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from activemint.io import kill_point
from activemint.metrics import membership_metrics
from activemint.mint.loss import view_pair_loss
from activemint.progress import progress
from activemint.training import distributed
from activemint.training.batches import DeviceBatches, host_batches
from activemint.training.config import TrainConfig
from activemint.training.data import RunData
from activemint.training.evaluation import accuracy, membership_scores

#: Most members (and validation samples) whose membership scores make an epoch's validation AUC.
VAL_MEMBERSHIP = 1000


class Epochs:
    """The base of :class:`~activemint.training.trainer.Trainer`: one optimisation step, one epoch
    on the host or the device data path, one validation.  It reads the trainer's attributes."""

    cfg: TrainConfig
    device: torch.device
    progress: bool
    data_path: str
    autocast_dtype: torch.dtype | None
    channels_last: bool
    log: Callable[[str], None]
    forward: Callable[..., Any]  # the training forward (activemint.training.forward.train_forward, or compiled)
    run_bar: Any = None  # the progress bar over the whole run's steps (with its ETA), advanced by each step; None: none

    # ---------------------------------------------------------------- epochs
    def host_epoch(self, model, loss_fn, opt, sched, gen, epoch, steps_per_epoch, members, member_labels, external,
                   seen, seen_host, policy, *, steps: int | None = None, probe: bool = False) -> dict[str, float]:
        """One epoch on the host data path (:func:`activemint.training.batches.host_batches`): losses read every step.

        ``steps``: stop after this many steps; ``probe``: a timing probe (:func:`activemint.training.timing.estimate`):
        no progress bar, no kill points, no read-ahead plan.
        """
        cfg = self.cfg
        step_fn = self.step
        batches = host_batches(cfg, members, member_labels, external, seen, seen_host, policy, gen, epoch, steps_per_epoch,
                               self.device, plan=not probe)
        sums: dict[str, float] = {}
        bar = progress(range(steps_per_epoch if steps is None else steps), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=probe or not self.progress, leave=False, unit="step")
        for step, (xm, ym, xe, seen_b, xv, xp, shares) in zip(bar, batches):
            if shares is not None:
                loss_fn.shares = shares
            parts = step_fn(model, loss_fn, opt, xm, ym, xe, seen_b, xv, xp)
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)  # drawn at the bar's own interval
            if not probe:
                if self.run_bar is not None:
                    self.run_bar.update(1)
                kill_point("step")
        bar.close()
        return sums

    def device_epoch(self, model, loss_fn, opt, sched, batches: DeviceBatches, steps_per_epoch: int, epoch: int, *,
                     steps: int | None = None, probe: bool = False) -> dict[str, float]:
        """One epoch on the device data path: no host synchronisation per step (with all members
        seen by the MINT loss); the summed losses are read once, at the end."""
        n = steps_per_epoch if steps is None else steps
        sums: dict[str, torch.Tensor] = {}
        bar = progress(total=n, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", disable=probe or not self.progress, leave=False, unit="step")
        for xm, ym, xe, seen, xv, xp in batches.epoch(steps_per_epoch, n):
            parts = self.step(model, loss_fn, opt, xm, ym, xe, seen, xv, xp)
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums[k] + v if k in sums else v.float()
            bar.update(1)
            if not probe:
                if self.run_bar is not None:
                    self.run_bar.update(1)
                kill_point("step")
        bar.close()
        if not sums:
            return {}
        values = torch.stack(list(sums.values())).tolist()  # the epoch's one read-back
        return dict(zip(sums, values))

    def fused(self) -> bool:
        """The fused (one-kernel) Adam / AdamW / SGD step: on the device path on CUDA."""
        return self.data_path == "device" and self.device.type == "cuda"

    # ---------------------------------------------------------------- helpers
    def step(self, model, loss_fn, opt, xm, ym, xe, seen=None, xv=None, xp=None) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits, mint_m, mint_e = distributed.call(model, self.forward, xm, xe, xv)  # through DDP when wrapped
            if mint_m is not None:
                if seen is not None and bool(seen.all()):
                    seen = None  # every member seen: no mask (one read-back a step, shared with the pairs below)
                if seen is not None:
                    mint_m = mint_m[seen]  # held-out members: task loss only
                loss, parts = loss_fn(logits.float(), ym, mint_m.float(), None if mint_e is None else mint_e.float())
                if xp is not None:  # contrastive pairs of views (TrainConfig.view_pairs): one process only
                    loss = loss + self._pair_loss(model, loss_fn, xv if xv is not None else xm, xp, seen, parts)
            else:
                loss, parts = loss_fn(logits.float(), ym)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return parts

    def _pair_loss(self, model, loss_fn, x1, x2, seen, parts) -> torch.Tensor:
        """``view_pairs`` times the NT-Xent of the head's embeddings of two views of the members
        (those in the mask ``seen``; None: all), logged as the loss logs its own terms."""
        m = self.unwrap(model)
        e1, e2 = m.membership_embedding(x1), m.membership_embedding(x2)
        if seen is not None:
            e1, e2 = e1[seen], e2[seen]
        pair = view_pair_loss(e1, e2)
        parts["pair_loss"] = float(pair.detach()) if loss_fn.sync else pair.detach()
        return self.cfg.view_pairs * pair

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        return distributed.unwrap(model)  # inside torch.compile / DDP

    def validate(self, model: nn.Module, data: RunData) -> dict[str, float]:
        m = self.unwrap(model)
        out = {"val_accuracy": accuracy(m, data.train, data.splits.validation, self.device)}
        if m.audited:
            # Up to VAL_MEMBERSHIP members and as many validation samples (both splits are in
            # random order): enough to rank epochs (AUC standard error <= 0.013 at 1000 + 1000),
            # and the head's inference is most of an epoch's validation cost.
            k = min(len(data.splits.members), len(data.splits.validation), VAL_MEMBERSHIP)
            mem = membership_scores(m, data.train.rows(data.splits.members[:k]), self.device)
            val = membership_scores(m, data.train.rows(data.splits.validation[:k]), self.device)
            out["val_membership_auc"] = membership_metrics(mem, val, bootstrap=0).auc
        return out
