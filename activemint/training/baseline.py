"""An aMINT run and, beside it, the same model trained without aMINT (the utility baseline).

On a CPU with at least two threads the baseline trains *beside* the aMINT run, in a second
process (``parallel=True``, what ``activemint train --baseline`` does) with half the threads,
while the aMINT run keeps all of its own.  Small models use two cores poorly in one process
(small_cnn: a step is only 1.2-1.5x faster on two threads than on one), so the two runs
together finish sooner than one after the other (README's main job:
``benchmarks/results/main-job-cpu.md``).  Each run keeps one thread count from start to end,
so its figures do not depend on which finishes first (a thread count changes float sums).
The baseline's own messages go to ``OUT/baseline/train.log``.

The child waits, once it has loaded its data, until the aMINT run has timed its steps alone,
and the run's time estimate counts the two phases (both running, then the run alone):
:mod:`activemint.training.timing`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activemint.rundir import TRAIN_LOG, RunDir, RunError
from activemint.training.config import TrainConfig


def can_train_beside(cfg: TrainConfig) -> bool:
    """Whether the baseline can train beside the aMINT run: CPU, one process (no torchrun), >= 2 threads."""
    import torch

    from activemint.training import distributed
    from activemint.training.build import resolve_device

    return (not distributed.is_distributed() and torch.get_num_threads() >= 2
            and resolve_device(cfg.device).type == "cpu")


def train_with_baseline(cfg: TrainConfig, out: str | Path, *, resume: bool = False, baseline: bool = True,
                        progress: bool = True, log: Callable[[str], None] | None = None, parallel: bool = False):
    """Train ``cfg`` into ``out``; with ``baseline`` (and mint on), also the plain model into ``out/baseline``.

    The baseline is the same config with mint off, selected by validation accuracy (or the
    last epoch when ``cfg.select`` is ``last``).  Its test accuracy and training time are
    added to the aMINT run's metrics.json, which is rewritten last (still binding the run's
    files).  ``parallel`` (when :func:`can_train_beside`): the baseline trains in a second
    process at the same time.  Returns ``(RunResult, the baseline's metrics or None)``.
    """
    from activemint.training.distributed import is_main
    from activemint.training.trainer import Trainer

    if not (baseline and cfg.mint):
        return Trainer(cfg, out, progress=progress).run(resume=resume), None
    bcfg = cfg.without_mint()
    bdir = RunDir(out).baseline
    beside = parallel and can_train_beside(cfg)
    if beside:
        result, base = _train_beside(cfg, bcfg, Path(out), Path(bdir), resume=resume, progress=progress, log=log)
    else:
        result = Trainer(cfg, out, progress=progress).run(resume=resume)
        bresume = resume and RunDir(bdir).config.exists()
        if log is not None:
            log(f"\ntraining the same model without aMINT (utility baseline) into {bdir}")
        base = Trainer(bcfg, bdir, progress=progress).run(resume=bresume).metrics
    if not is_main():  # under torchrun every rank trains; rank 0 alone writes and reports
        return result, base
    result.metrics["baseline_test_accuracy"] = base["test_accuracy"]
    result.metrics["baseline_train_seconds"] = base.get("train_seconds")
    result.metrics["baseline_beside"] = beside
    with RunDir(out).lock("train --baseline"):
        result.metrics = RunDir(out).write_metrics(result.metrics)  # still written last, still binding the files
    return result, base


def _train_beside(cfg: TrainConfig, bcfg: TrainConfig, out: Path, bdir: Path, *, resume: bool, progress: bool,
                  log: Callable[[str], None] | None) -> tuple[Any, dict[str, Any]]:
    """The aMINT run here (all its threads) and the baseline in a child process (``activemint train``, half as many)."""
    import time

    import torch

    from activemint.training.timing import BESIDE_SIGNAL, Beside, go_file
    from activemint.training.trainer import Trainer

    trainer = Trainer(cfg, out, progress=progress)  # config errors surface before the child starts
    total = torch.get_num_threads()
    side = total // 2
    bresume = resume and RunDir(bdir).config.exists()
    bdir.mkdir(parents=True, exist_ok=True)
    fd, cfg_path = tempfile.mkstemp(prefix="activemint-baseline-", suffix=".yaml")
    os.close(fd)
    Path(cfg_path).write_text(bcfg.to_yaml())
    fd, signal_path = tempfile.mkstemp(prefix="activemint-baseline-", suffix=".json")  # its stages (timing.BESIDE_SIGNAL)
    os.close(fd)
    cmd = [sys.executable, "-m", "activemint", "train", "--config", cfg_path, "--out", str(bdir),
           "--threads", str(side), "--no-progress", *(["--resume"] if bresume else [])]
    log_path = bdir / TRAIN_LOG
    if log is not None:
        log(f"training the same model without aMINT (utility baseline) beside it, on {side} thread{'s' if side > 1 else ''}, "
            f"into {bdir} (its log: {log_path})")
    with open(log_path, "ab") as logf:
        child = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env={**os.environ, BESIDE_SIGNAL: signal_path})
    trainer.beside = Beside(alive=lambda: child.poll() is None, signal=Path(signal_path), log_path=log_path)
    try:
        result = trainer.run(resume=resume)
        trainer.beside.go()  # (the run let it go already; never leave it waiting)
        if child.poll() is None and log is not None:
            log(f"waiting for the baseline ({bdir})")
        code = child.wait()
        # The run and the baseline beside it, from the run's start: expected before training, and as it went.
        result.metrics["expected_seconds_with_baseline"] = trainer.expected_with_beside
        result.metrics["seconds_with_baseline"] = round(time.time() - trainer.t0, 1)
    except BaseException:
        child.terminate()
        child.wait()
        raise
    finally:
        Path(cfg_path).unlink(missing_ok=True)
        Path(signal_path).unlink(missing_ok=True)
        go_file(signal_path).unlink(missing_ok=True)
    base = RunDir(bdir).read_metrics() if code == 0 else None
    if base is None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise RunError(f"the baseline run in {bdir} failed (exit {code}); the end of {log_path}:\n  " + "\n  ".join(tail))
    return result, base
