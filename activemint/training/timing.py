"""Before training: the run's plan (split sizes, steps, where it runs) and its expected wall time, timed here.

With ``train --baseline`` on a CPU the plain baseline trains beside the run, in a child
process (:mod:`activemint.training.baseline`), and the run goes through two phases: both
processes share the cores until the baseline is done, then the run has them alone.  Both
start together and load their data; the child (:class:`Beside`) then says it is ready and
waits, the run times its steps *alone*, lets the child go, and times its steps again
*while the child times its own*; the child writes what it expects (its own estimate, timed
beside the run) into a small JSON file named by :data:`BESIDE_SIGNAL` (the run lets it go
by creating that name + ``.go``).  :func:`two_phase` combines the three.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from activemint.training import distributed
from activemint.training.batches import DeviceBatches
from activemint.training.build import build_loss, build_model
from activemint.training.data import RunData
from activemint.training.epochs import VAL_MEMBERSHIP, Epochs
from activemint.training.evaluation import accuracy, membership_scores
from activemint.training.forward import train_forward
from activemint.training.optim import build_optimizer, param_groups

#: Runs of fewer training steps than this print their plan without timing it (the timing's
#: 7 steps and one validation would be a sizeable part of them).
MIN_TIMED_RUN_STEPS = 35

#: The environment variable naming the file through which a baseline trained beside a run
#: (a child process) tells the run that it is ready to time its steps (``{"stage": "ready"}``,
#: then it waits for the file of the same name + ``.go``), that it is timing them
#: (``{"stage": "timing"}``) and what it expects (``{"stage": "estimated", "expected_end":
#: <unix time or null>}``).
BESIDE_SIGNAL = "ACTIVEMINT_BESIDE_SIGNAL"
#: Most seconds the run waits for the child beside it (to be ready, to time itself), and the child for the run.
BESIDE_WAIT = 300.0
#: Steps the run times while the child beside it times its own: at least MIN, at most MAX.
BESIDE_MIN_STEPS, BESIDE_MAX_STEPS = 5, 100


@dataclass
class Beside:
    """A child process training beside this run; it times its steps once the run has timed its own alone.

    ``alive`` says whether it still runs; ``signal`` is the file it writes its stages to
    (:data:`BESIDE_SIGNAL`); :meth:`go` lets it time its steps and train.
    """

    alive: Callable[[], bool]
    signal: Path
    name: str = "the baseline"
    log_path: Path | None = None

    def go(self) -> None:
        """Let the child go on (idempotent): call it once this run's steps are timed, or when they will not be."""
        go_file(self.signal).touch()

    def wait_ready(self, wait: float = BESIDE_WAIT) -> bool:
        """Wait (idle) until the child is ready to time its steps; False if it ended or took longer than ``wait``."""
        deadline = time.time() + wait
        while self.read().get("stage") is None:
            if not self.alive() or time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def read(self) -> dict[str, Any]:
        """The child's last stage (``{}`` before it wrote one, or if the file is unreadable)."""
        try:
            doc = json.loads(self.signal.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}


def go_file(signal: str | Path) -> Path:
    return Path(f"{signal}.go")


def wait_for_go(wait: float = BESIDE_WAIT) -> None:
    """In a child trained beside a run: say it is ready, and wait (idle) until the run lets it go,
    the run is gone, or ``wait`` seconds have passed (no-op when not a child beside a run)."""
    path = os.environ.get(BESIDE_SIGNAL)
    if not path:
        return
    parent, deadline = os.getppid(), time.time() + wait
    signal_beside("ready")
    while not go_file(path).exists() and os.getppid() == parent and time.time() < deadline:
        time.sleep(0.05)


def signal_beside(stage: str, **fields: Any) -> None:
    """In a child trained beside a run: write ``stage`` (and ``fields``) to the file the run reads (no-op otherwise)."""
    path = os.environ.get(BESIDE_SIGNAL)
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"stage": stage, **fields}, f)
    os.replace(tmp, path)  # the run never reads half a file


def two_phase(alone: float, slowdown: float, shared_for: float) -> float:
    """Seconds to do ``alone`` seconds of (alone-rate) work when it runs ``slowdown`` times slower
    for the first ``shared_for`` seconds (while the process beside it runs) and at its own rate after."""
    if slowdown < 1:
        raise ValueError(f"slowdown {slowdown} < 1")
    shared_for = max(0.0, shared_for)
    if alone * slowdown <= shared_for:  # done before the process beside it
        return alone * slowdown
    return shared_for + (alone - shared_for / slowdown)


def alone_seconds(costs: dict[str, Any], epochs: int, steps_per_epoch: int) -> float:
    """Seconds of ``epochs`` epochs and the final evaluation at the timed ``costs`` (:func:`estimate`'s), nothing beside."""
    return epochs * (steps_per_epoch * costs["step"] + costs["validation"] + costs["checkpoint"]) + costs["evaluation"]


def with_beside(alone: float, step: float, contended_step: float, elapsed: float, beside_left: float) -> tuple[float, float, float]:
    """``(this run's seconds, both processes' seconds, slowdown)``, counted from the run's start.

    ``alone``: the run's remaining seconds at its own rate (:func:`alone_seconds`); ``step`` and
    ``contended_step``: a step's seconds timed alone and while the process beside it ran;
    ``elapsed``: seconds since the run started; ``beside_left``: seconds until the process beside
    it expects to be done (its own estimate, timed beside the run).  Every part of an epoch is
    taken to slow down as its steps do (slowdown = contended / alone, at least 1).
    """
    slowdown = max(1.0, contended_step / step)
    total = elapsed + two_phase(alone, slowdown, beside_left)
    return total, max(total, elapsed + beside_left), slowdown


def announce(trainer: Epochs, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
              steps_per_epoch: int, epochs_left: int, dgen: torch.Generator, t0: float,
              beside: Beside | None = None) -> tuple[float | None, float | None]:
    """Log the run's split sizes, epochs and expected wall time (timed on this machine) before training.

    Returns the expected seconds of this invocation from ``t0`` (its start: what metrics.json's
    ``train_seconds`` measures), the set-up and the timing itself included, and with ``beside``
    the expected seconds until both it and the child beside it are done (else None).  ``beside``
    is let go (:meth:`Beside.go`) here, once the run's steps are timed alone (or at once when
    they are not timed).  In a child beside a run, it first waits for that (:func:`wait_for_go`).
    """
    wait_for_go()
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
    total_steps = epochs_left * steps_per_epoch
    if distributed.is_distributed() or total_steps < MIN_TIMED_RUN_STEPS:
        if not distributed.is_distributed():  # the timing (7 steps and a validation) would be a good part of the run
            trainer.log(f"  expected wall time: not timed ({total_steps} steps in all)")
        signal_beside("estimated", expected_end=None)
        if beside is not None:
            beside.go()
        return None, None
    signal_beside("timing")
    est = estimate(trainer, model, loss_fn, data, members, member_labels, external, seen, seen_host, policy,
                   steps_per_epoch, dgen, n_test, beside=beside)
    now = time.time()
    alone = alone_seconds(est, epochs_left, steps_per_epoch)
    extra = "".join([" (+ torch.compile's first compilation, not timed)" if cfg.compile else "",
                     f" (+ {cfg.head_epochs} head-only epochs, not timed)" if cfg.mint and cfg.head_epochs else ""])
    parts = (f"training {_duration(epochs_left * steps_per_epoch * est['step'])}, validation {_duration(epochs_left * est['validation'])}, "
             f"checkpoints {_duration(epochs_left * est['checkpoint'])}, final evaluation {_duration(est['evaluation'])}")
    side = est.get("beside")
    if side is None:
        total = (now - t0) + alone
        signal_beside("estimated", expected_end=t0 + total)
        trainer.log(f"  expected wall time about {_duration(total)}{extra}: {parts} ({1000 * est['step']:.1f} ms a step, timed over "
                    f"{est['timed_steps']} steps), set-up and this timing {_duration(now - t0)}")
        return round(total, 1), None
    end = side.get("expected_end")
    if side.get("contended_step") is None or end is None:  # the child did not time itself: this run's steps alone
        total = (now - t0) + alone
        trainer.log(f"  expected wall time about {_duration(total)}{extra}, not counting {beside.name} beside it "
                    f"({side['why']}): {parts} ({1000 * est['step']:.1f} ms a step alone, timed over {est['timed_steps']} steps), "
                    f"set-up and this timing {_duration(now - t0)}")
        return round(total, 1), None
    total, command, slowdown = with_beside(alone, est["step"], side["contended_step"], now - t0, end - now)
    where = f", in {beside.log_path}" if beside.log_path else ""
    trainer.log(f"  expected wall time about {_duration(total)}{extra}; with {beside.name} beside it, both done in about "
                f"{_duration(command)}\n"
                f"  timed: {1000 * est['step']:.1f} ms a step alone ({est['timed_steps']} steps), {1000 * side['contended_step']:.1f} ms "
                f"while {beside.name} trains beside it ({side['contended_steps']} steps): {slowdown:.2f}x slower until {beside.name} is done, "
                f"in {_duration(end - t0)} (its own estimate{where})\n"
                f"  this run alone would take: {parts}; set-up and this timing {_duration(now - t0)}")
    return round(total, 1), round(command, 1)

def estimate(trainer: Epochs, model, loss_fn, data: RunData, members, member_labels, external, seen, seen_host, policy,
              steps_per_epoch: int, dgen: torch.Generator, n_test: int, beside: Beside | None = None) -> dict[str, Any]:
    """Seconds per training step, per validation, per checkpoint and for the final evaluation, timed here.

    A copy of the model, optimiser and loss trains a few steps of the run's own epoch code
    (2 untimed, then up to 5 timed) on batches from a separate generator, and runs one
    validation (after a small warm-up batch); the run's model, generators and torch's global RNG are left as they were.
    With ``beside``: first waits until it is ready (so that the steps are timed alone), then
    lets it go and times the copy's steps while it times its own (:func:`time_beside`); the
    result is under ``"beside"``.
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
    lossf = build_loss(cfg).to(dev)
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

    ready = beside.wait_ready() if beside is not None else False  # then the steps below are timed alone
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
        side = None
        if beside is not None:
            beside.go()
            side = (time_beside(beside, run) if ready else
                    {"contended_step": None, "contended_steps": 0, "expected_end": None, "why": "it was not ready to time itself"})
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
            "timed_steps": timed, "probe": time.time() - t_start, "beside": side}


def time_beside(beside: Beside, run: Callable[[int], None], *, wait: float = BESIDE_WAIT) -> dict[str, Any]:
    """Once ``beside`` is let go: wait until it times its steps, and time ``run(1)`` steps while it does.

    Returns ``{"contended_step": seconds a step or None, "contended_steps": n, "expected_end":
    the child's own expected end (unix time) or None, "why": what went missing}``; steps are
    timed from the child's ``timing`` stage until its ``estimated`` one (at least
    :data:`BESIDE_MIN_STEPS`, at most :data:`BESIDE_MAX_STEPS`).
    """
    deadline = time.time() + wait
    while beside.read().get("stage") in (None, "ready"):  # it has not seen the go yet
        if not beside.alive():
            return {"contended_step": None, "contended_steps": 0, "expected_end": None, "why": "it ended before timing itself"}
        if time.time() > deadline:
            return {"contended_step": None, "contended_steps": 0, "expected_end": None, "why": f"it did not time itself within {wait:.0f} s"}
        time.sleep(0.05)
    n, t = 0, time.perf_counter()
    while n < BESIDE_MAX_STEPS and (n < BESIDE_MIN_STEPS or (beside.read().get("stage") != "estimated" and beside.alive())):
        run(1)
        n += 1
    step = (time.perf_counter() - t) / n
    while beside.read().get("stage") != "estimated" and beside.alive() and time.time() < deadline:
        time.sleep(0.05)  # (only after BESIDE_MAX_STEPS) its estimate is on its way
    doc = beside.read()
    end = doc.get("expected_end") if doc.get("stage") == "estimated" else None
    why = "" if end is not None else ("it was too short to time" if doc.get("stage") == "estimated" else "its estimate did not come")
    return {"contended_step": step, "contended_steps": n, "expected_end": end, "why": why}


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


def run_seconds(costs: dict[str, Any], epochs: int, steps_per_epoch: int) -> float:
    """A run's expected seconds from timed ``costs`` (:func:`activemint.training.cost.time_config`'s): set-up, epochs, final evaluation."""
    return costs["setup"] + alone_seconds(costs, epochs, steps_per_epoch)
