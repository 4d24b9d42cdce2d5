"""One trainer for plain (``mint=False``) and active (``mint=True``) runs.

Each run writes one directory (its files, their names and how they are written belong to
:mod:`activemint.rundir`)::

    RUN_DIR/
      config.yaml        the resolved TrainConfig
      provenance.yaml    activemint version, git commit, torch version, machine
      manifest.csv       every member / external / validation / calibration / evaluation
                         sample: its index in the source split and a SHA-256 of its pixels
      metrics.jsonl      one line per epoch (losses, validation accuracy and membership AUC)
      checkpoints/       epoch-NNNN/ (weights, optimiser / RNG / epoch state and a manifest of
                         their SHA-256, committed together) for --resume; the best epoch's is
                         kept too when a selection rule is set
      model.safetensors  the final model (+ model.json metadata)
      scores.npz         per-sample membership scores of the evaluation
      metrics.json       the final evaluation, written last (see activemint.rundir)

The run directory is locked while it is written: a second ``train`` into it stops at once.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from activemint import rundir
from activemint.data import (
    read_manifest,
    write_manifest,
)
from activemint.data.streaming import plan_batches
from activemint.io import atomic_write_via, kill_point, make_dir
from activemint.metrics import membership_metrics
from activemint.mint import EnhancedAuditedModel, MultitaskLoss
from activemint.progress import progress
from activemint.rundir import RunDir, RunError, RunExistsError
from activemint.training import distributed
from activemint.training.batches import cycled_permutation, random_shift_flip, to_input
from activemint.training.build import build_model, checkpoint_metadata, preflight, provenance
from activemint.training.checkpoint import (
    Checkpoint,
    checkpoint_dirname,
    clean_leftovers,
    latest_checkpoint,
    load_weights,
    read_metadata,
    save_checkpoint,
    save_weights,
)
from activemint.training.config import TrainConfig
from activemint.training.data import RunData, load_run_data, mint_seen_mask
from activemint.training.evaluation import accuracy, evaluate, membership_scores, write_evaluation
from activemint.training.head import train_head
from activemint.training.selection import epoch_line, selection_info, selection_value
from activemint.transforms import get_policy


# -------------------------------------------------------------------------- model
def _param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """The backbone at ``lr``; an audited model's MINT head at ``lr * head_lr_scale``."""
    head = model.head_parameters()
    if not head or cfg.head_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": head, "lr": cfg.effective_lr() * cfg.head_lr_scale}]


def _optimizer(cfg: TrainConfig, params, *, fused: bool = False) -> torch.optim.Optimizer:
    """The config's optimiser; ``fused``: torch's one-kernel implementation (CUDA parameters)."""
    name, lr, wd = cfg.resolved("optimizer"), cfg.effective_lr(), cfg.resolved("weight_decay")
    kw = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True, **kw)


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
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


def resolve_data_path(cfg: TrainConfig, device: torch.device) -> str:
    """``cfg.data_path`` on ``device``: "auto" is the device path on CUDA, the host path elsewhere."""
    if cfg.data_path == "auto":
        return "device" if device.type == "cuda" else "host"
    return cfg.data_path


# ----------------------------------------------------------------------- trainer
@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    metrics: dict[str, Any]
    seconds: float


class ResumeMismatchError(RunError, ValueError):
    """``--resume`` with a config other than the run's."""


class NothingToResumeError(RunError, FileNotFoundError):
    """``--resume`` of a folder that holds no run."""


#: Runs of fewer training steps than this print their plan without timing it (the timing's
#: 7 steps and one validation would be a sizeable part of them).
MIN_TIMED_RUN_STEPS = 35

#: Most members (and validation samples) whose membership scores make an epoch's validation AUC.
VAL_MEMBERSHIP = 1000


class Trainer:
    """Trains one run into ``run_dir``; ``resume=True`` continues from its last checkpoint.

    Under torchrun every rank runs :meth:`run` and trains its shard of each global batch
    (:mod:`activemint.training.distributed`); rank 0 alone writes the run directory and gets
    the metrics, the other ranks' :class:`RunResult` has empty ``metrics``.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, *, progress: bool = True, log: Callable[[str], None] | None = None,
                 data: RunData | None = None) -> None:
        # ``data``: train on these samples instead of the splits ``cfg`` draws (e.g. reference
        # models of membership attacks, trained on chosen subsets); None = load_run_data(cfg).
        self.cfg = cfg
        self.data = data
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log = log or (lambda msg: tqdm.write(msg))
        self.device = preflight(cfg, data)  # config errors surface here, before anything is written
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.data_path = resolve_data_path(cfg, self.device)
        # channels-last: asked for, or the device path on CUDA (convolutions' fast layout there)
        self.channels_last = self.device.type == "cuda" and (cfg.channels_last or self.data_path == "device")
        self.expected_seconds: float | None = None  # the time estimate logged before training (None: not timed)
        self._forward = train_forward  # the training forward (compiled on the device path with cfg.compile)

    # The files of a run.
    @property
    def ckpt_dir(self) -> Path:
        return RunDir(self.run_dir).checkpoints

    def _check_resume(self, rd: RunDir) -> None:
        saved = TrainConfig.from_yaml(rd.config)
        if saved.to_dict() != self.cfg.to_dict():
            diff = {k: (v, self.cfg.to_dict()[k]) for k, v in saved.to_dict().items() if self.cfg.to_dict()[k] != v}
            raise ResumeMismatchError(f"--resume: {self.run_dir} was started with another config; differences (saved, now): {diff}")

    def run(self, *, resume: bool = False) -> RunResult:
        """Train (or resume) holding the run directory's lock; a second writer gets RunLockedError."""
        rd = RunDir(self.run_dir)
        if self.data is None:
            self.data = load_run_data(self.cfg)  # a missing data set or bad root fails before the lock creates the folder
        self.device = distributed.setup(self.device)  # under torchrun: join the process group (else a no-op)
        if not distributed.is_main():  # rank 0 alone writes the run directory and holds its lock
            self.progress, self.log = False, lambda msg: None
            return self._run(rd, resume)
        with rd.lock("train --resume" if resume else "train"):
            return self._run(rd, resume)

    def _run(self, rd: RunDir, resume: bool) -> RunResult:
        cfg, t0 = self.cfg, time.time()
        main = distributed.is_main()  # torchrun: rank 0 checks and writes; one process: always
        distributed.check_batches({"batch_size": cfg.batch_size, "last batch of an epoch": len(self.data.splits.members) % cfg.batch_size,
                                   "external_batch_size": cfg.external_batch_size if cfg.mint else 0})
        if resume and main:
            if not rd.config.is_file():
                raise NothingToResumeError(f"--resume: {self.run_dir} has no {rundir.CONFIG}; nothing to resume")
            self._check_resume(rd)
        elif main and rd.config.exists():
            raise RunExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out")
        data = self.data
        if self.data_path == "device" and (distributed.is_distributed() or getattr(data.train, "streamed", False)):
            if cfg.data_path == "device":
                why = "under torchrun" if distributed.is_distributed() else "with a streamed data set (max_memory)"
                raise RunError(f"data_path device: not available {why}; use data_path host")
            self.data_path = "host"  # auto: the host path does both
        model = build_model(cfg, data.train.input_shape, data.train.num_classes).to(self.device)  # so do bad archs / taps
        ckpt_root = rd.checkpoints
        if main:
            make_dir(ckpt_root)
            rd.clean_partials()
            if not resume:
                rd.write_text(rundir.CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            else:
                rd.discard_evaluation()  # the run reads as incomplete until the final save is done again
                clean_leftovers(ckpt_root)
            if not resume or not rd.provenance.is_file():
                rd.write_text(rundir.PROVENANCE, yaml.safe_dump(provenance(), sort_keys=False))
            if resume and rd.manifest.is_file():
                if read_manifest(rd.manifest) != data.splits:
                    raise RunError(f"--resume: {rd.manifest} does not list the splits this config draws; refusing to mix them")
            else:
                atomic_write_via(rd.manifest, lambda p: write_manifest(p, data.splits, data.train, data.test))
        distributed.barrier()  # the other ranks read the run directory once rank 0 has checked and prepared it
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = MultitaskLoss(lambda_task=cfg.lambda_task, lambda_mint=cfg.lambda_mint,
                                normalize=cfg.loss_norm == "first").to(self.device)
        if distributed.is_distributed():  # first-batch normalisers: the global first batch's, on every rank
            loss_fn.reduce = distributed.reduce_mean_tensor
        opt = _optimizer(cfg, _param_groups(cfg, model), fused=self._fused())
        steps_per_epoch = math.ceil(len(data.splits.members) / cfg.batch_size)
        sched = _scheduler(cfg, opt, steps_per_epoch)
        gen = torch.Generator().manual_seed(cfg.seed)
        on_device = self.data_path == "device"
        # The device path's draws (permutations, shifts, audit views): a generator on the device
        # (on the CPU: the run's generator itself).
        dgen = torch.Generator(device=self.device).manual_seed(cfg.seed) if on_device and self.device.type != "cpu" else gen
        start_epoch, best, best_epoch = 0, -math.inf, 0
        records: list[dict[str, Any]] = []

        ckpt = latest_checkpoint(ckpt_root) if resume else None
        if ckpt is not None:
            state, doc = ckpt.load(self._unwrap(model), max_epoch=cfg.epochs)
            try:
                opt.load_state_dict(state["optimizer"])
                if sched is not None:
                    sched.load_state_dict(state["scheduler"])
                gen.set_state(state["generator"])
                if dgen is not gen:
                    dgen.set_state(state["device_generator"])
                torch.set_rng_state(state["torch_rng"])
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                raise RunError(f"{ckpt.state_path} does not fit this run's optimiser / RNG: {str(e).splitlines()[0][:200]}") from e
            loss_fn.task0.fill_(float(state["task0"]))
            loss_fn.mint0.fill_(float(state["mint0"]))
            start_epoch, best, best_epoch = ckpt.epoch, float(state["best"]), int(state["best_epoch"])
            records = list(doc["log"])
            self.log(f"resuming {self.run_dir} after epoch {start_epoch}")
        if main and (resume or rd.log.exists()):
            rd.write_log(records)  # exactly one line per checkpointed epoch; later ones are redone

        model = distributed.wrap(model, self.device)  # DDP under torchrun (see activemint.training.distributed)
        if cfg.compile and on_device:
            # The whole training forward (members, externals' truncated pass, head), compiled as one
            # function: an audited model's forward_train is not its forward, so compiling the module
            # alone would leave the training step uncompiled.
            self._forward = torch.compile(train_forward)
        elif cfg.compile:
            model = torch.compile(model)  # type: ignore[assignment]

        dev = self.device
        members = data.train.rows(data.splits.members).to(dev)  # a tensor, or a streamed view (same indexing)
        member_labels = data.train.labels[torch.as_tensor(data.splits.members)].to(dev)
        external = data.train.rows(data.splits.external).to(dev) if cfg.mint else None
        seen_host = mint_seen_mask(cfg, len(members))
        seen = torch.as_tensor(seen_host).to(dev)
        # The audit policy's views: for the MINT loss (and, with audit_views "all", the task loss
        # too).  Without aMINT they remain a data augmentation when they fed the task loss, so
        # that a robust run's plain twin (``--mint off``, ``--baseline``) sees the same images.
        policy = get_policy(cfg.audit_policy) if cfg.audit_policy and (cfg.mint or cfg.audit_views == "all") else None
        batches = _DeviceBatches(cfg, members, member_labels, external, seen, policy, dgen, self.channels_last) if on_device else None
        if main and start_epoch < cfg.epochs:
            self.expected_seconds = self._announce(model, loss_fn, data, members, member_labels, external, seen, seen_host, policy,
                                                   steps_per_epoch, cfg.epochs - start_epoch, dgen, t0)
        if on_device:
            loss_fn.sync = False  # the losses stay on the device; summed there and read once per epoch
            loss_fn.primed = not bool(torch.isnan(loss_fn.task0))  # one read, before the first step

        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.time()
            model.train()
            if on_device:
                sums = self._device_epoch(model, loss_fn, opt, sched, batches, steps_per_epoch, epoch)
            else:
                sums = self._host_epoch(model, loss_fn, opt, sched, gen, epoch, steps_per_epoch, members, member_labels,
                                        external, seen, seen_host, policy)
            sums = distributed.all_reduce_mean(sums)  # the global batches' losses (one process: as they are)
            if not main:  # rank 0 validates, logs and checkpoints; the others wait for it
                distributed.barrier()
                kill_point("epoch")
                continue
            record = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}}
            record.update(self._validate(model, data))
            record["epoch_seconds"] = round(time.time() - t_epoch, 2)
            record["seconds"] = round(time.time() - t0, 1)  # since this (possibly resumed) invocation started
            records.append(record)
            rd.write_log(records)
            self.log(epoch_line(record, cfg.epochs))
            crit = selection_value(cfg.select, record)
            if crit is not None and crit > best:
                best, best_epoch = crit, epoch + 1
            state = {
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else {},
                "task0": float(loss_fn.task0), "mint0": float(loss_fn.mint0), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "best": float(best), "best_epoch": best_epoch,
            }
            if dgen is not gen:
                state["device_generator"] = dgen.get_state()
            save_checkpoint(ckpt_root, epoch + 1, self._unwrap(model), self._metadata(data, epoch + 1), state, records,
                            keep={best_epoch} if cfg.select != "last" and best_epoch else ())
            distributed.barrier()
            kill_point("epoch")

        if not main:  # wait for rank 0's final selection, evaluation and writes
            distributed.barrier()
            return RunResult(self.run_dir, cfg, {}, time.time() - t0)
        last = latest_checkpoint(ckpt_root)
        if last is None or last.epoch != cfg.epochs:
            raise RunError(f"{ckpt_root} holds no checkpoint of the last epoch ({cfg.epochs}); resume the run")
        chosen = Checkpoint(ckpt_root / checkpoint_dirname(best_epoch), best_epoch) if cfg.select != "last" and best_epoch else last
        final = self._unwrap(model)
        chosen.verify(max_epoch=cfg.epochs)
        load_weights(final, chosen.weights)
        meta = read_metadata(chosen.weights)
        meta["selected_by"] = cfg.select
        if cfg.mint and cfg.head_epochs:
            self._train_head(final, data, seen, policy)
        save_weights(final, rd.model, meta)
        metrics, scores = evaluate(final, cfg, data, self.device)
        metrics.update({"run_dir": str(self.run_dir), "epochs_trained": last.epoch, "selected_epoch": meta["epoch"],
                        "selection": selection_info(cfg.select, meta["epoch"], cfg.epochs, records),
                        "train_seconds": round(time.time() - t0, 1), "expected_seconds": self.expected_seconds,
                        "data_path": self.data_path, "mint": cfg.mint, "arch": cfg.arch,
                        "setup": cfg.setup if cfg.mint else None, "dataset": cfg.dataset})
        metrics = write_evaluation(self.run_dir, metrics, scores)
        distributed.barrier()
        return RunResult(self.run_dir, cfg, metrics, time.time() - t0)

    # ---------------------------------------------------------------- epochs
    def _host_epoch(self, model, loss_fn, opt, sched, gen, epoch, steps_per_epoch, members, member_labels, external,
                    seen, seen_host, policy, *, steps: int | None = None, probe: bool = False) -> dict[str, float]:
        """One epoch on the host data path: draws on the CPU generator, views with Pillow, losses read every step.

        ``steps``: stop after this many steps; ``probe``: a timing probe (:meth:`_estimate`):
        no progress bar, no kill points, no read-ahead plan.
        """
        cfg = self.cfg
        step_fn = self._step
        dev = self.device
        perm = torch.randperm(len(members), generator=gen)
        ext_order = (
            cycled_permutation(len(external), steps_per_epoch * cfg.external_batch_size, gen)
            if external is not None else None
        )
        if not probe:
            plan_batches(members, perm, cfg.batch_size)  # streamed: workers decode this epoch's batches ahead
            plan_batches(external, ext_order, cfg.external_batch_size)
        sums: dict[str, float] = {}
        view_rng = np.random.default_rng([cfg.seed, 9, epoch])  # per epoch: resume-safe
        bar = progress(range(steps_per_epoch if steps is None else steps), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=probe or not self.progress, leave=False, unit="step")
        for step in bar:
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
            xe = None if eidx is None else external[eidx[es] if cut else eidx]
            xv = None  # robust aMINT, views for the MINT loss only: transformed members
            if policy is not None:  # robust aMINT: transformed views of members and externals
                if cfg.audit_views == "mint":
                    xv = to_input(policy(xm, view_rng)[ms])
                else:
                    xm = policy(xm, view_rng)
                xe = policy(xe, view_rng)[es] if xe is not None else None
                xm = xm[ms]
            xm = to_input(xm)
            xe = to_input(xe) if xe is not None else None
            if cfg.resolved("augment"):
                xm = random_shift_flip(xm, flip=cfg.augment_flip, generator=gen, part=(ms, len(idx)))
                if xe is not None:
                    xe = random_shift_flip(xe, flip=cfg.augment_flip, generator=gen, part=(es, len(eidx)))
            if distributed.is_distributed():
                loss_fn.shares = loss_shares(seen_host[bidx.numpy()], ms, 0 if eidx is None else len(eidx), es)
            idx = idx[ms]
            parts = step_fn(model, loss_fn, opt, xm, member_labels[idx], xe, seen[idx], xv)
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()}, refresh=False)  # drawn at the bar's own interval
            if not probe:
                kill_point("step")
        bar.close()
        return sums

    def _device_epoch(self, model, loss_fn, opt, sched, batches: _DeviceBatches, steps_per_epoch: int, epoch: int, *,
                      steps: int | None = None, probe: bool = False) -> dict[str, float]:
        """One epoch on the device data path: no host synchronisation per step (with all members
        seen by the MINT loss); the summed losses are read once, at the end."""
        n = steps_per_epoch if steps is None else steps
        sums: dict[str, torch.Tensor] = {}
        bar = progress(total=n, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", disable=probe or not self.progress, leave=False, unit="step")
        for xm, ym, xe, seen, xv in batches.epoch(steps_per_epoch, n):
            parts = self._step(model, loss_fn, opt, xm, ym, xe, seen, xv)
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums[k] + v if k in sums else v.float()
            bar.update(1)
            if not probe:
                kill_point("step")
        bar.close()
        if not sums:
            return {}
        values = torch.stack(list(sums.values())).tolist()  # the epoch's one read-back
        return dict(zip(sums, values))

    # ------------------------------------------------------------- the plan
    def _announce(self, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
                  steps_per_epoch: int, epochs_left: int, dgen: torch.Generator, t0: float) -> float | None:
        """Log the run's split sizes, epochs and expected wall time (timed on this machine) before training.

        Returns the expected seconds of this invocation from ``t0`` (its start: what metrics.json's
        ``train_seconds`` measures), the set-up and the timing itself included.
        """
        cfg, s = self.cfg, data.splits
        n_test = len(data.test) if cfg.test_samples is None else min(cfg.test_samples, len(data.test))
        sizes = (f"{len(s.members):,} members, {len(s.external):,} externals, {len(s.validation):,} validation, "
                 f"{len(s.calibration):,} calibration, {len(s.eval_nonmembers):,} evaluation non-members, {n_test:,} test images")
        steps = (f"{epochs_left} epoch{'s' if epochs_left != 1 else ''} x {steps_per_epoch} steps of {cfg.batch_size} members"
                 + (f" + {cfg.external_batch_size} externals" if cfg.mint else "")
                 + f", lr {cfg.effective_lr():.3g}" + (f" ({cfg.lr_scaling} scaling)" if cfg.lr_scaling != "none" else "")
                 + (f", {cfg.warmup_epochs:g} warm-up epochs" if cfg.warmup_epochs else ""))
        where = (f"{self.device}, {self.data_path} data path, {'bf16' if self.autocast_dtype is not None else 'fp32'}"
                 + (", channels-last" if self.channels_last else "") + (", torch.compile" if cfg.compile else ""))
        self.log(f"plan: {sizes}\n  {steps}; {where}")
        if distributed.is_distributed():
            return None
        total_steps = epochs_left * steps_per_epoch
        if total_steps < MIN_TIMED_RUN_STEPS:  # the timing (7 steps and a validation) would be a good part of the run
            self.log(f"  expected wall time: not timed ({total_steps} steps in all)")
            return None
        est = self._estimate(model, loss_fn, data, members, member_labels, external, seen, seen_host, policy,
                             steps_per_epoch, dgen, n_test)
        total = (time.time() - t0) + epochs_left * (steps_per_epoch * est["step"] + est["validation"] + est["checkpoint"]) + est["evaluation"]
        extra = [" (+ torch.compile's first compilation, not timed)" if cfg.compile else "",
                 f" (+ {cfg.head_epochs} head-only epochs, not timed)" if cfg.mint and cfg.head_epochs else ""]
        self.log(f"  expected wall time about {_duration(total)}{''.join(extra)}: training {_duration(epochs_left * steps_per_epoch * est['step'])} "
                 f"({1000 * est['step']:.1f} ms a step, timed over {est['timed_steps']} steps), validation {_duration(epochs_left * est['validation'])}, "
                 f"checkpoints {_duration(epochs_left * est['checkpoint'])}, final evaluation {_duration(est['evaluation'])}, set-up and this timing {_duration(time.time() - t0)}")
        return round(total, 1)

    def _estimate(self, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
                  steps_per_epoch: int, dgen: torch.Generator, n_test: int) -> dict[str, float]:
        """Seconds per training step, per validation, per checkpoint and for the final evaluation, timed here.

        A copy of the model, optimiser and loss trains a few steps of the run's own epoch code
        (2 untimed, then up to 5 timed) on batches from a separate generator, and runs one
        validation (after a small warm-up batch); the run's model, generators and torch's global RNG are left as they were.
        """
        import hashlib
        import io

        cfg, dev, t_start = self.cfg, self.device, time.time()
        rng_cpu = torch.get_rng_state()
        rng_cuda = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
        probe = build_model(cfg, data.train.input_shape, data.train.num_classes).to(dev)
        probe.load_state_dict(self._unwrap(model).state_dict())
        if self.channels_last:
            probe = probe.to(memory_format=torch.channels_last)
        opt = _optimizer(cfg, _param_groups(cfg, probe), fused=self._fused())
        lossf = MultitaskLoss(lambda_task=cfg.lambda_task, lambda_mint=cfg.lambda_mint, normalize=cfg.loss_norm == "first").to(dev)
        lossf.load_state_dict(loss_fn.state_dict())
        pgen = torch.Generator(device=dgen.device).manual_seed(cfg.seed + 7919)
        warm, timed = min(2, steps_per_epoch), min(5, steps_per_epoch)

        def run(n):
            if self.data_path == "device":
                lossf.sync, lossf.primed = False, not bool(torch.isnan(lossf.task0))
                batches = _DeviceBatches(cfg, members, member_labels, external, seen, policy, pgen, self.channels_last)
                self._device_epoch(probe, lossf, opt, None, batches, steps_per_epoch, 0, steps=n, probe=True)
            else:
                self._host_epoch(probe, lossf, opt, None, pgen, 0, steps_per_epoch, members, member_labels, external, seen,
                                 seen_host, policy, steps=n, probe=True)
            _sync(dev)

        forward, self._forward = self._forward, train_forward  # the probe runs eager: compiling it would compile twice
        try:
            probe.train()
            run(warm)
            t = time.perf_counter()
            run(timed)
            step = (time.perf_counter() - t) / timed
            self._warm_inference(probe, data)  # the first inference at its batch shapes pays one-off set-up costs
            t = time.perf_counter()
            self._validate(probe, data)
            val = time.perf_counter() - t
            t = time.perf_counter()
            buf = io.BytesIO()  # what a checkpoint writes: weights + optimiser state, hashed
            torch.save({"model": probe.state_dict(), "opt": opt.state_dict()}, buf)
            hashlib.sha256(buf.getbuffer()).hexdigest()
            ckpt = 2 * (time.perf_counter() - t)  # written to disk and hashed again from it
        finally:
            self._forward = forward
            torch.set_rng_state(rng_cpu)
            if rng_cuda is not None:
                torch.cuda.set_rng_state_all(rng_cuda)
        # The final evaluation scores the same kind of images as a validation, more of them.
        s = data.splits
        k = min(len(s.members), len(s.validation), VAL_MEMBERSHIP)
        audited = cfg.mint
        val_units = len(s.validation) + (2 * k if audited else 0)
        eval_units = n_test + (len(s.members) + len(s.eval_nonmembers) + len(s.calibration) if audited else 0)
        return {"step": step, "validation": val, "checkpoint": ckpt, "evaluation": val * eval_units / max(1, val_units),
                "timed_steps": timed, "probe": time.time() - t_start}

    def _warm_inference(self, model: nn.Module, data: RunData) -> None:
        """One batch through each kind of validation inference (classes, membership)."""
        idx = data.splits.validation[:512]  # the evaluation batch size
        accuracy(model, data.train, idx, self.device)
        if model.audited:
            membership_scores(model, data.train.rows(idx), self.device)
        _sync(self.device)

    def _fused(self) -> bool:
        """The fused (one-kernel) Adam / AdamW / SGD step: on the device path on CUDA."""
        return self.data_path == "device" and self.device.type == "cuda"

    # ---------------------------------------------------------------- helpers
    def _step(self, model, loss_fn, opt, xm, ym, xe, seen=None, xv=None) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits, mint_m, mint_e = distributed.call(model, self._forward, xm, xe, xv)  # through DDP when wrapped
            if mint_m is not None:
                if seen is not None and not bool(seen.all()):
                    mint_m = mint_m[seen]  # held-out members: task loss only
                loss, parts = loss_fn(logits.float(), ym, mint_m.float(), None if mint_e is None else mint_e.float())
            else:
                loss, parts = loss_fn(logits.float(), ym)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return parts

    def _train_head(self, model: EnhancedAuditedModel, data: RunData, seen: torch.Tensor, policy) -> None:
        """``cfg.head_epochs`` more epochs of the MINT loss alone, backbone frozen (eval mode)."""
        cfg = self.cfg
        members = data.train.rows(data.splits.members[seen.cpu().numpy()])
        external = data.train.rows(data.splits.external)
        train_head(model, members, external, epochs=cfg.head_epochs, lr=1e-3, batch_size=cfg.batch_size,
                   policy=policy, seed=cfg.seed + 10, device=self.device, log=self.log)

    @staticmethod
    def _unwrap(model: nn.Module) -> nn.Module:
        return distributed.unwrap(model)  # inside torch.compile / DDP

    def _validate(self, model: nn.Module, data: RunData) -> dict[str, float]:
        m = self._unwrap(model)
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

    def _metadata(self, data: RunData, epoch: int) -> dict[str, Any]:
        return checkpoint_metadata(self.cfg, data.train.input_shape, data.train.num_classes, epoch)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _duration(seconds: float) -> str:
    """Seconds as ``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _DeviceBatches:
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

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = to_input(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def epoch(self, steps_per_epoch: int, steps: int):
        """Yield ``steps`` batches ``(xm, ym, xe, seen, xv)`` of an epoch of ``steps_per_epoch``."""
        cfg, gen, dev = self.cfg, self.gen, self.members.device
        b, eb = cfg.batch_size, cfg.external_batch_size
        perm = torch.randperm(len(self.members), generator=gen, device=gen.device).to(dev)
        ext = self.external
        order = None
        if ext is not None:
            reps = max(1, -(-(steps_per_epoch * eb) // len(ext)))
            order = torch.cat([torch.randperm(len(ext), generator=gen, device=gen.device) for _ in range(reps)]).to(dev)
        for step in range(steps):
            idx = perm[step * b : (step + 1) * b]
            xm, xe, xv = self.members[idx], None if order is None else ext[order[step * eb : (step + 1) * eb]], None
            if self.policy is not None:
                if cfg.audit_views == "mint":
                    xv = self._input(self.policy.on_device(xm, gen))
                else:
                    xm = self.policy.on_device(xm, gen)
                xe = self.policy.on_device(xe, gen) if xe is not None else None
            xm = to_input(xm)
            xe = to_input(xe) if xe is not None else None
            if self.augment:
                xm = random_shift_flip(xm, flip=cfg.augment_flip, generator=gen)
                xe = random_shift_flip(xe, flip=cfg.augment_flip, generator=gen) if xe is not None else None
            if self.channels_last:
                xm = xm.contiguous(memory_format=torch.channels_last)
                xe = xe.contiguous(memory_format=torch.channels_last) if xe is not None else None
            yield xm, self.labels[idx], xe, None if self.seen is None else self.seen[idx], xv


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


def loss_shares(seen: np.ndarray, ms: slice, n_ext: int, es: slice) -> tuple[float, float]:
    """This rank's weights of the task and MINT loss terms (:func:`activemint.training.distributed.share`).

    ``seen``: which members of the global batch the MINT loss sees; ``ms`` / ``es``: this rank's
    slices of the global member / external batch (``n_ext`` externals).
    """
    task = distributed.share(ms.stop - ms.start, len(seen))
    mint = distributed.share(int(seen[ms].sum()) + (es.stop - es.start), int(seen.sum()) + n_ext)
    return task, mint
