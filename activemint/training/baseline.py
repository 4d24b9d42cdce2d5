"""An aMINT run and, beside it, the same model trained without aMINT (the utility baseline)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from activemint.rundir import RunDir
from activemint.training.config import TrainConfig


def train_with_baseline(cfg: TrainConfig, out: str | Path, *, resume: bool = False, baseline: bool = True,
                        progress: bool = True, log: Callable[[str], None] | None = None):
    """Train ``cfg`` into ``out``; with ``baseline`` (and mint on), also the plain model into ``out/baseline``.

    The baseline is the same config with mint off, selected by validation accuracy (or the
    last epoch when ``cfg.select`` is ``last``).  Its test accuracy and training time are
    added to the aMINT run's metrics.json, which is rewritten last (still binding the run's
    files).  Returns ``(RunResult, the baseline's metrics or None)``.
    """
    from activemint.training.distributed import is_main
    from activemint.training.trainer import Trainer

    result = Trainer(cfg, out, progress=progress).run(resume=resume)
    if not (baseline and cfg.mint):
        return result, None
    bcfg = cfg.without_mint()
    bdir = RunDir(out).baseline
    bresume = resume and RunDir(bdir).config.exists()
    if log is not None:
        log(f"\ntraining the same model without aMINT (utility baseline) into {bdir}")
    base: dict[str, Any] = Trainer(bcfg, bdir, progress=progress).run(resume=bresume).metrics
    if not is_main():  # under torchrun every rank trains; rank 0 alone writes and reports
        return result, base
    result.metrics["baseline_test_accuracy"] = base["test_accuracy"]
    result.metrics["baseline_train_seconds"] = base.get("train_seconds")
    with RunDir(out).lock("train --baseline"):
        result.metrics = RunDir(out).write_metrics(result.metrics)  # still written last, still binding the files
    return result, base
