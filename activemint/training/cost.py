"""What a run would cost on this machine, timed without training it (``grid``'s estimate)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from activemint.rundir import RunDir
from activemint.training.config import TrainConfig
from activemint.training.data import load_run_data
from activemint.training.timing import estimate, run_seconds
from activemint.training.trainer import Trainer


def time_config(cfg: TrainConfig, *, threads: int | None = None) -> dict[str, Any]:
    """What a run of ``cfg`` would cost on this machine, timed without training it.

    The run is prepared in a temporary folder (data loaded, model built), timed by
    :func:`~activemint.training.timing.estimate` (its steps with ``threads`` torch threads, default this process's), and
    discarded.  Returns :func:`~activemint.training.timing.estimate`'s costs plus ``setup`` (seconds to load and prepare,
    counted once per run), ``steps_per_epoch`` and ``seconds``: the expected wall time of the
    whole run as ``train`` counts it (set-up + epochs x (steps x step + validation + checkpoint)
    + final evaluation; the timing itself not counted).
    """
    import tempfile

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="activemint-timing-") as tmp:
            t0 = time.time()
            trainer = Trainer(cfg, Path(tmp) / "run", progress=False, log=lambda m: None)
            trainer.data = load_run_data(cfg)
            st = trainer._prepare(RunDir(trainer.run_dir), False)
            trainer._batches(st)
            setup = time.time() - t0
            n_test = len(st.data.test) if cfg.test_samples is None else min(cfg.test_samples, len(st.data.test))
            est = estimate(trainer, st.model, st.loss_fn, st.data, st.members, st.member_labels, st.external, st.seen,
                           st.seen_host, st.policy, st.steps_per_epoch, st.dgen, n_test)
    finally:
        torch.set_num_threads(old)
    est.update(setup=setup, steps_per_epoch=st.steps_per_epoch)
    est["seconds"] = run_seconds(est, cfg.epochs, st.steps_per_epoch)
    return est

