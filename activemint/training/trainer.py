"""One trainer for plain (``mint=False``) and active (``mint=True``) runs.

Each run writes one directory, whose files, their names and how they are written belong to
:mod:`activemint.rundir` (the layout is described there).  :meth:`Trainer._run` is
prepare (checks, model, the run's first files, optimiser, generators) / restore (the last
checkpoint, with ``--resume``) / batches (:mod:`activemint.training.batches`: views, sharding,
augmentation) / epochs (:mod:`activemint.training.epochs`) / finish (selection, final save,
evaluation).  The run directory is locked while it is written: a second ``train`` into it stops at once.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from activemint import rundir
from activemint.data import read_manifest, write_manifest
from activemint.io import atomic_write_via, kill_point, make_dir
from activemint.mint import EnhancedAuditedModel, MultitaskLoss
from activemint.progress import progress
from activemint.rundir import RunDir, RunError, RunExistsError
from activemint.training import distributed
from activemint.training.batches import DeviceBatches
from activemint.training.build import build_loss, build_model, checkpoint_metadata, preflight, provenance
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
from activemint.training.epochs import Epochs
from activemint.training.evaluation import evaluate, write_evaluation
from activemint.training.externals import check_pool, external_pool, levers_on
from activemint.training.forward import train_forward
from activemint.training.head import curriculum_policy, train_head
from activemint.training.optim import build_optimizer, build_scheduler, param_groups
from activemint.training.selection import epoch_line, selection_info, selection_value
from activemint.training.timing import Beside, announce, signal_beside, wait_for_go
from activemint.transforms import get_policy


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


@dataclass
class _Training:
    """What :meth:`Trainer._run`'s steps share: the model, loss, optimiser, generators, progress and batches' sources."""
    main: bool  # torchrun: rank 0 checks and writes; one process: always
    data: RunData
    ckpt_root: Path
    model: nn.Module
    loss_fn: MultitaskLoss
    opt: torch.optim.Optimizer
    sched: Any
    steps_per_epoch: int
    gen: torch.Generator
    dgen: torch.Generator
    on_device: bool
    start_epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    members: Any = None
    member_labels: Any = None
    external: Any = None
    seen: Any = None
    seen_host: Any = None
    policy: Any = None
    batches: DeviceBatches | None = None
    externals_record: dict[str, Any] | None = None  # the externals' levers, when any is on (metrics.json "externals")


class Trainer(Epochs):
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
        # A process training beside this run, let go once this run's steps are timed alone (train --baseline
        # on a CPU: activemint.training.baseline), and the estimate of the whole (this run and it; None: not timed).
        self.beside: Beside | None = None
        self.expected_with_beside: float | None = None
        self.t0: float | None = None  # when _run started (train_seconds counts from it)
        self.forward = train_forward  # the training forward (compiled on the device path with cfg.compile)

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
        t0 = self.t0 = time.time()
        st = self._prepare(rd, resume)
        self._restore(rd, st, resume)
        self._wrap(st)
        self._batches(st)
        cfg, main = self.cfg, st.main
        if main and st.start_epoch < cfg.epochs:
            self.expected_seconds, self.expected_with_beside = announce(
                self, st.model, st.loss_fn, st.data, st.members, st.member_labels, st.external, st.seen, st.seen_host, st.policy,
                st.steps_per_epoch, cfg.epochs - st.start_epoch, st.dgen, t0, beside=self.beside)
        elif main:  # nothing left to train: nothing to time
            wait_for_go()
            signal_beside("estimated", expected_end=None)
        if self.beside is not None:
            self.beside.go()  # (done in announce when it ran)
        if st.on_device:
            st.loss_fn.sync = False  # the losses stay on the device; summed there and read once per epoch
            st.loss_fn.primed = not bool(torch.isnan(st.loss_fn.task0))  # one read, before the first step
        # One bar over all the run's steps, its ETA from the average rate so far (validations and
        # checkpoints included: smoothing 0), above each epoch's own bar.
        self.run_bar = progress(total=(cfg.epochs - st.start_epoch) * st.steps_per_epoch, desc="run", unit="step", smoothing=0,
                                disable=not (self.progress and main), leave=False)
        try:
            for epoch in range(st.start_epoch, cfg.epochs):
                self._epoch(rd, st, epoch, t0)
        finally:
            self.run_bar.close()
            self.run_bar = None
        return self._finish(rd, st, t0)

    # ------------------------------------------------------------- the steps of _run
    def _prepare(self, rd: RunDir, resume: bool) -> _Training:
        """Check the run directory and the config, build the model, write the run's first files,
        make the loss, optimiser, schedule and generators."""
        cfg = self.cfg
        main = distributed.is_main()  # torchrun: rank 0 checks and writes; one process: always
        distributed.check_batches({"batch_size": cfg.batch_size, "last batch of an epoch": len(self.data.splits.members) % cfg.batch_size,
                                   "external_batch_size": cfg.external_batch_size if cfg.mint else 0})
        if cfg.view_pairs and distributed.is_distributed():  # its forwards run outside DDP's, so its gradients would not sync
            raise distributed.DistributedError("view_pairs is not supported under torchrun; train it in one process")
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
        loss_fn = build_loss(cfg).to(self.device)
        if distributed.is_distributed():  # first-batch normalisers: the global first batch's, on every rank
            loss_fn.reduce = distributed.reduce_mean_tensor
        opt = build_optimizer(cfg, param_groups(cfg, model), fused=self.fused())
        steps_per_epoch = math.ceil(len(data.splits.members) / cfg.batch_size)
        sched = build_scheduler(cfg, opt, steps_per_epoch)
        gen = torch.Generator().manual_seed(cfg.seed)
        on_device = self.data_path == "device"
        # The device path's draws (permutations, shifts, audit views): a generator on the device
        # (on the CPU: the run's generator itself).
        dgen = torch.Generator(device=self.device).manual_seed(cfg.seed) if on_device and self.device.type != "cpu" else gen
        return _Training(main, data, ckpt_root, model, loss_fn, opt, sched, steps_per_epoch, gen, dgen, on_device)

    def _restore(self, rd: RunDir, st: _Training, resume: bool) -> None:
        """With ``resume``: the model, optimiser, schedule, generators, loss normalisers and log of the last checkpoint."""
        cfg, opt, sched, gen, dgen, loss_fn = self.cfg, st.opt, st.sched, st.gen, st.dgen, st.loss_fn
        ckpt = latest_checkpoint(st.ckpt_root) if resume else None
        if ckpt is not None:
            state, doc = ckpt.load(self.unwrap(st.model), max_epoch=cfg.epochs)
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
            st.start_epoch, st.best, st.best_epoch = ckpt.epoch, float(state["best"]), int(state["best_epoch"])
            st.records = list(doc["log"])
            self.log(f"resuming {self.run_dir} after epoch {st.start_epoch}")
        if st.main and (resume or rd.log.exists()):
            rd.write_log(st.records)  # exactly one line per checkpointed epoch; later ones are redone

    def _wrap(self, st: _Training) -> None:
        """DDP under torchrun (see activemint.training.distributed); torch.compile with ``cfg.compile``."""
        st.model = distributed.wrap(st.model, self.device)
        if self.cfg.compile and st.on_device:
            # The whole training forward (members, externals' truncated pass, head), compiled as one
            # function: an audited model's forward_train is not its forward, so compiling the module
            # alone would leave the training step uncompiled.
            self.forward = torch.compile(train_forward)
        elif self.cfg.compile:
            st.model = torch.compile(st.model)  # type: ignore[assignment]

    def _batches(self, st: _Training) -> None:
        """What the batches are drawn from: the members, their labels, the externals, the audit policy's views."""
        cfg, data, dev = self.cfg, st.data, self.device
        st.members = data.train.rows(data.splits.members).to(dev)  # a tensor, or a streamed view (same indexing)
        st.member_labels = data.train.labels[torch.as_tensor(data.splits.members)].to(dev)
        st.external = None
        if cfg.mint:  # the external split, plus what the externals' levers add (activemint.training.externals)
            pool = external_pool(cfg, data)
            check_pool(cfg, pool)
            st.external = pool.images.to(dev)
            if levers_on(cfg):
                st.externals_record = pool.record(cfg)
                self.log(f"externals: {st.externals_record}")
        st.seen_host = mint_seen_mask(cfg, len(st.members))
        st.seen = torch.as_tensor(st.seen_host).to(dev)
        # The audit policy's views: for the MINT loss (and, with audit_views "all", the task loss
        # too).  Without aMINT they remain a data augmentation when they fed the task loss, so
        # that a robust run's plain twin (``--mint off``, ``--baseline``) sees the same images.
        st.policy = get_policy(cfg.audit_policy) if cfg.audit_policy and (cfg.mint or cfg.audit_views == "all") else None
        st.batches = (DeviceBatches(cfg, st.members, st.member_labels, st.external, st.seen, st.policy, st.dgen, self.channels_last)
                      if st.on_device else None)

    def _epoch(self, rd: RunDir, st: _Training, epoch: int, t0: float) -> None:
        """Train one epoch; rank 0 validates it, logs it and checkpoints it."""
        cfg, model, data = self.cfg, st.model, st.data
        t_epoch = time.time()
        model.train()
        policy = curriculum_policy(st.policy, epoch, cfg.view_curriculum_epochs)  # the view curriculum's (or st.policy)
        if st.on_device:
            st.batches.policy = policy
            sums = self.device_epoch(model, st.loss_fn, st.opt, st.sched, st.batches, st.steps_per_epoch, epoch)
        else:
            sums = self.host_epoch(model, st.loss_fn, st.opt, st.sched, st.gen, epoch, st.steps_per_epoch, st.members,
                                   st.member_labels, st.external, st.seen, st.seen_host, policy)
        sums = distributed.all_reduce_mean(sums)  # the global batches' losses (one process: as they are)
        if not st.main:  # rank 0 validates, logs and checkpoints; the others wait for it
            distributed.barrier()
            kill_point("epoch")
            return
        record = {"epoch": epoch + 1, **{k: v / st.steps_per_epoch for k, v in sums.items()}}
        record.update(self.validate(model, data))
        record["epoch_seconds"] = round(time.time() - t_epoch, 2)
        record["seconds"] = round(time.time() - t0, 1)  # since this (possibly resumed) invocation started
        st.records.append(record)
        rd.write_log(st.records)
        self.log(epoch_line(record, cfg.epochs))
        crit = selection_value(cfg.select, record)
        if crit is not None and crit > st.best:
            st.best, st.best_epoch = crit, epoch + 1
        state = {
            "optimizer": st.opt.state_dict(), "scheduler": st.sched.state_dict() if st.sched is not None else {},
            "task0": float(st.loss_fn.task0), "mint0": float(st.loss_fn.mint0), "generator": st.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "best": float(st.best), "best_epoch": st.best_epoch,
        }
        if st.dgen is not st.gen:
            state["device_generator"] = st.dgen.get_state()
        save_checkpoint(st.ckpt_root, epoch + 1, self.unwrap(model), self._metadata(data, epoch + 1), state, st.records,
                        keep={st.best_epoch} if cfg.select != "last" and st.best_epoch else ())
        distributed.barrier()
        kill_point("epoch")

    def _finish(self, rd: RunDir, st: _Training, t0: float) -> RunResult:
        """The selected epoch's weights (+ head-only epochs), saved; the final evaluation, written last."""
        cfg, data, ckpt_root, best_epoch, records = self.cfg, st.data, st.ckpt_root, st.best_epoch, st.records
        if not st.main:  # wait for rank 0's final selection, evaluation and writes
            distributed.barrier()
            return RunResult(self.run_dir, cfg, {}, time.time() - t0)
        last = latest_checkpoint(ckpt_root)
        if last is None or last.epoch != cfg.epochs:
            raise RunError(f"{ckpt_root} holds no checkpoint of the last epoch ({cfg.epochs}); resume the run")
        chosen = Checkpoint(ckpt_root / checkpoint_dirname(best_epoch), best_epoch) if cfg.select != "last" and best_epoch else last
        final = self.unwrap(st.model)
        chosen.verify(max_epoch=cfg.epochs)
        load_weights(final, chosen.weights)
        meta = read_metadata(chosen.weights)
        meta["selected_by"] = cfg.select
        if cfg.mint and cfg.head_epochs:
            self._train_head(final, data, st.seen, st.policy, st.external)
        save_weights(final, rd.model, meta)
        metrics, scores = evaluate(final, cfg, data, self.device)
        metrics.update({"run_dir": str(self.run_dir), "epochs_trained": last.epoch, "selected_epoch": meta["epoch"],
                        "selection": selection_info(cfg.select, meta["epoch"], cfg.epochs, records),
                        "train_seconds": round(time.time() - t0, 1), "expected_seconds": self.expected_seconds,
                        "data_path": self.data_path, "mint": cfg.mint, "arch": cfg.arch,
                        "setup": cfg.setup if cfg.mint else None, "dataset": cfg.dataset})
        if st.externals_record is not None:
            metrics["externals"] = st.externals_record
        metrics = write_evaluation(self.run_dir, metrics, scores)
        distributed.barrier()
        return RunResult(self.run_dir, cfg, metrics, time.time() - t0)

    def _train_head(self, model: EnhancedAuditedModel, data: RunData, seen: torch.Tensor, policy, pool=None) -> None:
        """``cfg.head_epochs`` more epochs of the MINT loss alone, backbone frozen (eval mode); ``pool``: the
        run's externals with an external_source (else the external split)."""
        cfg = self.cfg
        members = data.train.rows(data.splits.members[seen.cpu().numpy()])
        external = pool.cpu() if cfg.external_source is not None and pool is not None else data.train.rows(data.splits.external)
        train_head(model, members, external, epochs=cfg.head_epochs, lr=1e-3, batch_size=cfg.batch_size,
                   policy=policy, seed=cfg.seed + 10, device=self.device, log=self.log)

    def _metadata(self, data: RunData, epoch: int) -> dict[str, Any]:
        return checkpoint_metadata(self.cfg, data.train.input_shape, data.train.num_classes, epoch)
