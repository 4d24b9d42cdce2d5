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
from activemint.metrics import membership_metrics
from activemint.mint import EnhancedAuditedModel, MultitaskLoss
from activemint.progress import progress
from activemint.rundir import RunDir, RunError, RunExistsError, kill_point
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
    return [{"params": rest}, {"params": head, "lr": cfg.resolved("lr") * cfg.head_lr_scale}]


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    name, lr, wd = cfg.resolved("optimizer"), cfg.resolved("lr"), cfg.resolved("weight_decay")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True)


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
        model = build_model(cfg, data.train.input_shape, data.train.num_classes).to(self.device)  # so do bad archs / taps
        ckpt_root = rd.checkpoints
        if main:
            rundir.make_dir(ckpt_root)
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
                rundir.atomic_write_via(rd.manifest, lambda p: write_manifest(p, data.splits, data.train, data.test))
        distributed.barrier()  # the other ranks read the run directory once rank 0 has checked and prepared it
        if cfg.channels_last and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        loss_fn = MultitaskLoss(lambda_task=cfg.lambda_task, lambda_mint=cfg.lambda_mint,
                                normalize=cfg.loss_norm == "first").to(self.device)
        if distributed.is_distributed():  # first-batch normalisers: the global first batch's, on every rank
            loss_fn.reduce = distributed.reduce_mean_tensor
        opt = _optimizer(cfg, _param_groups(cfg, model))
        steps_per_epoch = math.ceil(len(data.splits.members) / cfg.batch_size)
        sched = None
        if cfg.resolved("schedule") == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(cfg.seed)
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

        step_fn = self._step
        model = distributed.wrap(model, self.device)  # DDP under torchrun (see activemint.training.distributed)
        if cfg.compile:
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

        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.time()
            model.train()
            perm = torch.randperm(len(members), generator=gen)
            ext_order = (
                cycled_permutation(len(external), steps_per_epoch * cfg.external_batch_size, gen)
                if external is not None else None
            )
            plan_batches(members, perm, cfg.batch_size)  # streamed: workers decode this epoch's batches ahead
            plan_batches(external, ext_order, cfg.external_batch_size)
            sums: dict[str, float] = {}
            view_rng = np.random.default_rng([cfg.seed, 9, epoch])  # per epoch: resume-safe
            bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.progress, leave=False,
                           unit="step")
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
                    bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
                kill_point("step")
            bar.close()
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
                        "train_seconds": round(time.time() - t0, 1), "mint": cfg.mint, "arch": cfg.arch,
                        "setup": cfg.setup if cfg.mint else None, "dataset": cfg.dataset})
        metrics = write_evaluation(self.run_dir, metrics, scores)
        distributed.barrier()
        return RunResult(self.run_dir, cfg, metrics, time.time() - t0)

    # ---------------------------------------------------------------- helpers
    def _step(self, model, loss_fn, opt, xm, ym, xe, seen=None, xv=None) -> dict[str, float]:
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits, mint_m, mint_e = distributed.call(model, train_forward, xm, xe, xv)  # through DDP when wrapped
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
