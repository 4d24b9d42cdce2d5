"""Reading a run directory back: its config, splits, model, and scores for new inputs.

Everything the CLI's ``evaluate`` and ``score`` do goes through here, so it is all
available from Python::

    run = load_run("runs/fmnist")
    probs = run.membership_probability(images_uint8)   # (N,) P(member)
    metrics = run.evaluate()                            # recomputes metrics.json's figures
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activemint.data import read_manifest
from activemint.errors import not_a_directory
from activemint.metrics import sigmoid
from activemint.rundir import CONFIG, META_SUFFIX, MODEL, RunDir, RunError
from activemint.training.build import build_model, resolve_device
from activemint.training.checkpoint import CheckpointError, load_weights, read_metadata
from activemint.training.config import TrainConfig
from activemint.training.data import RunData, load_run_data
from activemint.training.evaluation import evaluate, membership_scores, predict_classes
from activemint.training.trainer import Trainer


@dataclass
class Run:
    """A finished training run loaded from disk."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    metadata: dict[str, Any]
    device: torch.device

    @property
    def is_audited(self) -> bool:
        return bool(getattr(self.model, "audited", False))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata["input_shape"])  # type: ignore[return-value]

    @cached_property
    def data(self) -> RunData:
        """The source data with the splits read from the run's manifest (not re-drawn)."""
        data = load_run_data(self.config)
        data.splits = read_manifest(RunDir(self.run_dir).manifest)
        return data

    def membership_logits(self, images: torch.Tensor) -> np.ndarray:
        """(N,) membership logits for uint8 images (N, C, H, W) of the run's input shape."""
        if not self.is_audited:
            raise RunError(f"{self.run_dir} is a plain run (mint off): it has no membership head")
        self._check_shape(images)
        return membership_scores(self.model, images, self.device)

    def membership_probability(self, images: torch.Tensor) -> np.ndarray:
        """(N,) P(member) = sigmoid(logit)."""
        return sigmoid(self.membership_logits(images))

    def class_logits(self, images: torch.Tensor) -> torch.Tensor:
        self._check_shape(images)
        return predict_classes(self.model, images, self.device)

    def evaluate(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Recompute the run's final figures from the saved model and manifest."""
        return evaluate(self.model, self.config, self.data, self.device)

    def _check_shape(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"this model takes uint8 images of shape (N, {', '.join(map(str, self.input_shape))}); "
                f"got {images.dtype} {tuple(images.shape)}"
            )


def load_run(run_dir: str | Path, *, device: str = "auto", weights: str = MODEL, data_root: str | None = None) -> Run:
    """Load a run directory written by :class:`activemint.training.Trainer`.

    ``data_root`` reads the run's data set from another folder than its config names
    (``--data-root``); the data found there is checked against the manifest when used.

    Refuses, with a one-line :class:`RunError`, a run that is in progress (another process
    holds its lock), incomplete (training or its final save was interrupted) or inconsistent
    (a file that metrics.json binds by SHA-256 was changed or truncated).
    """
    if not Path(run_dir).is_dir():
        raise RunError(not_a_directory(run_dir, "run directory"))
    rd = RunDir(run_dir)
    run_dir = rd.path
    rd.require()
    cfg = TrainConfig.from_yaml(rd.config)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=str(data_root))
    wpath = run_dir / weights
    if not wpath.is_file():
        raise RunError(f"{run_dir} has no checkpoint {weights}: the run did not finish (try `activemint train --resume`)")
    try:
        meta = read_metadata(wpath)
    except CheckpointError as e:
        raise RunError(str(e)) from e
    for key in ("input_shape", "num_classes", "arch"):
        if key not in meta:
            raise RunError(f"{wpath.with_suffix(META_SUFFIX)} lacks {key!r}")
    if meta["arch"] != cfg.arch or bool(meta.get("mint")) != cfg.mint:
        raise RunError(f"{wpath} metadata ({meta['arch']}, mint={meta.get('mint')}) does not match {CONFIG}")
    if cfg.mint and "head_norm" not in meta:
        # Saved before the head_norm option (whose default is now "mlp"): the head had none.
        cfg = dataclasses.replace(cfg, head_norm="none")
    dev = resolve_device(device)
    model = build_model(cfg, tuple(meta["input_shape"]), int(meta["num_classes"]))
    try:
        load_weights(model, wpath)
    except CheckpointError as e:
        raise RunError(str(e)) from e
    model.to(dev).eval()
    return Run(run_dir, cfg, model, meta, dev)


@dataclass
class Ensured:
    """What :func:`ensure_run` did: ``trained`` (now, ``resumed`` from a checkpoint) or reused."""

    path: Path
    trained: bool
    resumed: bool = False
    metrics: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:  # ``run_dir, trained = ensure_run(...)``
        return iter((self.path, self.trained))


def ensure_run(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    data: RunData | Callable[[], RunData] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Ensured:
    """The one run lifecycle: reuse ``run_dir`` if it is done, resume it from its last checkpoint,
    or train it from scratch (a folder that died before its first checkpoint is cleared first).

    A run another process is writing raises a one-line :class:`RunError` (``RunLockedError``
    when the race is lost inside the trainer); ``data`` (or a function that makes it, called
    only when training) replaces the data set the config names (reference models train on a pool).
    """
    run_dir = Path(run_dir)
    log = log or (lambda m: None)
    rd = RunDir(run_dir)
    if rd.is_done(cfg.mint):
        return Ensured(run_dir, False)
    rd.require("incomplete", "missing", "not a run", "model only", "inconsistent", "complete")  # not in progress
    resume = rd.has_checkpoint()
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    log(f"{'resuming' if resume else 'training'} the {'aMINT' if cfg.mint else 'plain'} run in {run_dir}")
    result = Trainer(cfg, run_dir, progress=progress, log=log, data=data() if callable(data) else data).run(resume=resume)
    return Ensured(run_dir, True, resume, result.metrics)


@dataclass
class Verification:
    """A run's figures recomputed from its saved model and manifest, beside the saved ones.

    ``metrics``: the recomputed figures, completed by the saved metrics.json's other keys;
    ``baseline``: the utility baseline's figures saved with the run (``train --baseline``);
    ``matches``: whether accuracy and every membership figure equal the saved ones
    (within ``tol``); None when the run has no saved metrics.
    """

    metrics: dict[str, Any]
    saved: dict[str, Any]
    baseline: dict[str, Any] | None
    matches: bool | None


def same_figures(a: dict, b: dict, tol: float = 1e-6) -> bool:
    """Whether test accuracy and each numeric membership figure of ``a`` equal ``b``'s within ``tol``."""
    keys = ["test_accuracy"]
    ok = all(abs(a[k] - b[k]) <= tol for k in keys if k in a)
    if "membership" in a:
        for k, v in a["membership"].items():
            w = b["membership"].get(k)
            if isinstance(v, (int, float)) and isinstance(w, (int, float)):
                ok &= abs(v - w) <= tol
    return ok


def verify_run(run_dir: str | Path, *, device: str = "auto", data_root: str | None = None) -> Verification:
    """Recompute a run's final figures and compare them with its metrics.json."""
    run = load_run(run_dir, device=device, data_root=data_root)
    metrics, _ = run.evaluate()
    saved = RunDir(run_dir).read_metrics() or {}
    for k, v in saved.items():
        metrics.setdefault(k, v)
    metrics["run_dir"] = str(run_dir)  # the directory evaluated here, not the one stored at training time
    base = None
    if "baseline_test_accuracy" in saved:
        base = {"test_accuracy": saved["baseline_test_accuracy"], "train_seconds": saved.get("baseline_train_seconds")}
    return Verification(metrics, saved, base, same_figures(saved, metrics) if saved else None)
