"""Before training: the run's plan (split sizes, steps, where it runs) and its expected wall time, timed here."""
from __future__ import annotations

import time

import torch
from torch import nn

from activemint.mint import MultitaskLoss
from activemint.training import distributed
from activemint.training.batches import DeviceBatches
from activemint.training.build import build_model
from activemint.training.data import RunData
from activemint.training.epochs import VAL_MEMBERSHIP, Epochs
from activemint.training.evaluation import accuracy, membership_scores
from activemint.training.forward import train_forward
from activemint.training.optim import build_optimizer, param_groups

#: Runs of fewer training steps than this print their plan without timing it (the timing's
#: 7 steps and one validation would be a sizeable part of them).
MIN_TIMED_RUN_STEPS = 35


def announce(trainer: Epochs, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
              steps_per_epoch: int, epochs_left: int, dgen: torch.Generator, t0: float) -> float | None:
    """Log the run's split sizes, epochs and expected wall time (timed on this machine) before training.

    Returns the expected seconds of this invocation from ``t0`` (its start: what metrics.json's
    ``train_seconds`` measures), the set-up and the timing itself included.
    """
    cfg, s = trainer.cfg, data.splits
    n_test = len(data.test) if cfg.test_samples is None else min(cfg.test_samples, len(data.test))
    sizes = (f"{len(s.members):,} members, {len(s.external):,} externals, {len(s.validation):,} validation, "
             f"{len(s.calibration):,} calibration, {len(s.eval_nonmembers):,} evaluation non-members, {n_test:,} test images")
    steps = (f"{epochs_left} epoch{'s' if epochs_left != 1 else ''} x {steps_per_epoch} steps of {cfg.batch_size} members"
             + (f" + {cfg.external_batch_size} externals" if cfg.mint else "")
             + f", lr {cfg.effective_lr():.3g}" + (f" ({cfg.lr_scaling} scaling)" if cfg.lr_scaling != "none" else "")
             + (f", {cfg.warmup_epochs:g} warm-up epochs" if cfg.warmup_epochs else ""))
    where = (f"{trainer.device}, {trainer.data_path} data path, {'bf16' if trainer.autocast_dtype is not None else 'fp32'}"
             + (", channels-last" if trainer.channels_last else "") + (", torch.compile" if cfg.compile else ""))
    if cfg.alias_note():  # TrainConfig stored the canonical name; say so where the run is logged
        trainer.log(cfg.alias_note())
    trainer.log(f"plan: {sizes}\n  {steps}; {where}")
    if distributed.is_distributed():
        return None
    total_steps = epochs_left * steps_per_epoch
    if total_steps < MIN_TIMED_RUN_STEPS:  # the timing (7 steps and a validation) would be a good part of the run
        trainer.log(f"  expected wall time: not timed ({total_steps} steps in all)")
        return None
    est = estimate(trainer, model, loss_fn, data, members, member_labels, external, seen, seen_host, policy,
                         steps_per_epoch, dgen, n_test)
    total = (time.time() - t0) + epochs_left * (steps_per_epoch * est["step"] + est["validation"] + est["checkpoint"]) + est["evaluation"]
    extra = [" (+ torch.compile's first compilation, not timed)" if cfg.compile else "",
             f" (+ {cfg.head_epochs} head-only epochs, not timed)" if cfg.mint and cfg.head_epochs else ""]
    trainer.log(f"  expected wall time about {_duration(total)}{''.join(extra)}: training {_duration(epochs_left * steps_per_epoch * est['step'])} "
             f"({1000 * est['step']:.1f} ms a step, timed over {est['timed_steps']} steps), validation {_duration(epochs_left * est['validation'])}, "
             f"checkpoints {_duration(epochs_left * est['checkpoint'])}, final evaluation {_duration(est['evaluation'])}, set-up and this timing {_duration(time.time() - t0)}")
    return round(total, 1)

def estimate(trainer: Epochs, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
              steps_per_epoch: int, dgen: torch.Generator, n_test: int) -> dict[str, float]:
    """Seconds per training step, per validation, per checkpoint and for the final evaluation, timed here.

    A copy of the model, optimiser and loss trains a few steps of the run's own epoch code
    (2 untimed, then up to 5 timed) on batches from a separate generator, and runs one
    validation (after a small warm-up batch); the run's model, generators and torch's global RNG are left as they were.
    """
    import hashlib
    import io

    cfg, dev, t_start = trainer.cfg, trainer.device, time.time()
    rng_cpu = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    probe = build_model(cfg, data.train.input_shape, data.train.num_classes).to(dev)
    probe.load_state_dict(trainer.unwrap(model).state_dict())
    if trainer.channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, param_groups(cfg, probe), fused=trainer.fused())
    lossf = MultitaskLoss(lambda_task=cfg.lambda_task, lambda_mint=cfg.lambda_mint, normalize=cfg.loss_norm == "first").to(dev)
    lossf.load_state_dict(loss_fn.state_dict())
    pgen = torch.Generator(device=dgen.device).manual_seed(cfg.seed + 7919)
    warm, timed = min(2, steps_per_epoch), min(5, steps_per_epoch)

    def run(n):
        if trainer.data_path == "device":
            lossf.sync, lossf.primed = False, not bool(torch.isnan(lossf.task0))
            batches = DeviceBatches(cfg, members, member_labels, external, seen, policy, pgen, trainer.channels_last)
            trainer.device_epoch(probe, lossf, opt, None, batches, steps_per_epoch, 0, steps=n, probe=True)
        else:
            trainer.host_epoch(probe, lossf, opt, None, pgen, 0, steps_per_epoch, members, member_labels, external, seen,
                             seen_host, policy, steps=n, probe=True)
        sync(dev)

    forward, trainer.forward = trainer.forward, train_forward  # the probe runs eager: compiling it would compile twice
    try:
        probe.train()
        run(warm)
        t = time.perf_counter()
        run(timed)
        step = (time.perf_counter() - t) / timed
        warm_inference(trainer, probe, data)  # the first inference at its batch shapes pays one-off set-up costs
        t = time.perf_counter()
        trainer.validate(probe, data)
        val = time.perf_counter() - t
        t = time.perf_counter()
        buf = io.BytesIO()  # what a checkpoint writes: weights + optimiser state, hashed
        torch.save({"model": probe.state_dict(), "opt": opt.state_dict()}, buf)
        hashlib.sha256(buf.getbuffer()).hexdigest()
        ckpt = 2 * (time.perf_counter() - t)  # written to disk and hashed again from it
    finally:
        trainer.forward = forward
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

def warm_inference(trainer: Epochs, model: nn.Module, data: RunData) -> None:
    """One batch through each kind of validation inference (classes, membership)."""
    idx = data.splits.validation[:512]  # the evaluation batch size
    accuracy(model, data.train, idx, trainer.device)
    if model.audited:
        membership_scores(model, data.train.rows(idx), trainer.device)
    sync(trainer.device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _duration(seconds: float) -> str:
    """Seconds as ``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
