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

from activemint.data import read_manifest, verify_manifest
from activemint.errors import not_a_directory
from activemint.metrics import sigmoid
from activemint.mint import EnhancedAuditedModel, PlainModel
from activemint.model_runtime import apply_runtime
from activemint.models.external import is_user_arch
from activemint.rundir import CONFIG, DATA, META_SUFFIX, MODEL, RunDir, RunError
from activemint.training.build import build_model, config_taps, resolve_device
from activemint.training.checkpoint import CheckpointError, load_weights, read_metadata
from activemint.training.config import TrainConfig
from activemint.training.data import RunData, load_run_data
from activemint.training.evaluation import evaluate, membership_scores, predict_classes
from activemint.training.trainer import Trainer


@dataclass
class Run:
    """A finished training run loaded from disk: the one handle on it.

    ``dir``: its :class:`~activemint.rundir.RunDir` (the path of every file in it);
    ``data``: its data with the splits of its manifest (``run.data.split(role)``);
    ``taps``: the layers its membership head reads, as recorded.
    """

    dir: RunDir
    config: TrainConfig
    model: nn.Module
    metadata: dict[str, Any]
    device: torch.device

    @property
    def run_dir(self) -> Path:
        """The run directory's path (``run.dir.path``)."""
        return self.dir.path

    @property
    def taps(self) -> list[str]:
        """The layers the membership head reads, as model.json records them (a plain run: its setup's)."""
        recorded = self.metadata.get("taps")
        return [str(t) for t in recorded] if recorded else config_taps(self.config)

    @property
    def is_audited(self) -> bool:
        return bool(getattr(self.model, "audited", False))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata["input_shape"])  # type: ignore[return-value]

    @cached_property
    def data(self) -> RunData:
        """The source data with the splits read from the run's manifest (not re-drawn)."""
        return load_run_data(self.config, read_manifest(self.dir.manifest))

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


def load_run(run_dir: str | Path, *, device: str = "auto", weights: str = MODEL, model: nn.Module | None = None,
             data_root: str | None = None) -> Run:
    """Load a run directory written by :class:`activemint.training.Trainer` or :func:`activemint.save_run`.

    The model is rebuilt from what the run recorded: the architecture (a registry name,
    ``timm:NAME`` or ``torchvision:NAME``) with the taps and head of model.json
    (:data:`MODEL_FIELDS`), not today's registry taps or defaults.  ``model``: the backbone, freshly built by the caller's code (for a
    run whose architecture only the user's code builds, ``user:...``); its weights are replaced
    by the run's.

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
    _check_metadata(meta, wpath.with_suffix(META_SUFFIX))
    if meta["arch"] != cfg.arch or bool(meta.get("mint")) != cfg.mint:
        raise RunError(f"{wpath} metadata ({meta['arch']}, mint={meta.get('mint')}) does not match {CONFIG}")
    cfg = _recorded_model(cfg, meta, wpath.with_suffix(META_SUFFIX))
    if cfg.arch_weights:  # initial weights of the training; the run's own weights replace them
        cfg = dataclasses.replace(cfg, arch_weights=None)
    own_data = run_dir / DATA
    if cfg.dataset == "tensors" and own_data.is_dir() and not (cfg.data_root and Path(cfg.data_root).is_dir()):
        cfg = dataclasses.replace(cfg, data_root=str(own_data))  # a save_run run that was moved: its data moved with it
    dev = resolve_device(device)
    shape, n_classes = tuple(meta["input_shape"]), int(meta["num_classes"])
    if model is not None:
        model = _wrap(cfg, model, shape)
    elif is_user_arch(cfg.arch):
        raise RunError(f"{run_dir}: its model ({cfg.arch}) is built by your own code, not by an architecture activemint "
                       f"knows; load it with activemint.load_run(path, model=<the same nn.Module, freshly built>), or save it "
                       f"with save_run(..., arch='timm:NAME' / 'torchvision:NAME')")
    else:
        try:
            model = build_model(cfg, shape, n_classes)
        except (ValueError, TypeError) as e:
            raise RunError(f"{run_dir}: its model ({cfg.arch}) does not build here: {' '.join(str(e).split())[:300]}") from e
    try:
        load_weights(model, wpath)
    except CheckpointError as e:
        raise RunError(str(e)) from e
    model.to(dev).eval()
    edit = cfg.extra.get("model_edit") if isinstance(cfg.extra, dict) else None
    if isinstance(edit, dict) and edit.get("runtime"):  # a quantised / reduced-precision edit: run it as deployed
        apply_runtime(model, edit["runtime"], where=str(rd.config))
    return Run(rd, cfg, model, meta, dev)


#: model.json's fields that describe an audited model's head and taps: the model is rebuilt from them.
MODEL_FIELDS = ("taps", "head_width", "head_hidden", "head_stride", "head_norm", "head_conv", "head_pool")


def _recorded_model(cfg: TrainConfig, meta: dict[str, Any], where: Path) -> TrainConfig:
    """``cfg`` with the model as model.json records it (the weights were saved from that model), not as
    today's defaults and registry would make it; a field model.json lacks keeps the config's value.

    A model.json without ``head_norm`` predates that option, whose default is now ``"mlp"``: the
    head then had no normalisation.
    """
    if not cfg.mint:
        return cfg
    recorded = {k: meta[k] for k in MODEL_FIELDS if meta.get(k) not in (None, [])}
    if "head_norm" not in meta:
        recorded["head_norm"] = "none"
    if "taps" in recorded:
        taps = recorded["taps"]
        if not (isinstance(taps, list) and taps and all(isinstance(t, str) for t in taps)):
            raise RunError(f"{where}: field 'taps' is {str(taps)[:60]}, expected a list of module names")
    try:
        return dataclasses.replace(cfg, **recorded)
    except (ValueError, TypeError) as e:
        raise RunError(f"{where}: {' '.join(str(e).split())[:300]}") from e


def _check_metadata(meta: dict[str, Any], where: Path) -> None:
    """One line naming ``where`` and the field when model.json's fields have the wrong type or range."""
    def is_int(v: Any, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    shape = meta["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(v, 1, 1 << 16) for v in shape)):
        raise RunError(f"{where}: field 'input_shape' is {str(shape)[:60]}, expected [channels, height, width] of positive integers")
    if not is_int(meta["num_classes"], 2, 1 << 20):
        raise RunError(f"{where}: field 'num_classes' is {str(meta['num_classes'])[:60]!r}, expected an integer >= 2")
    if not isinstance(meta["arch"], str):
        raise RunError(f"{where}: field 'arch' is {str(meta['arch'])[:60]!r}, expected an architecture name")


def _wrap(cfg: TrainConfig, backbone: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """The caller's backbone wrapped as the run's model was (plain, or audited with the run's taps and head)."""
    if not isinstance(backbone, nn.Module) or isinstance(backbone, (EnhancedAuditedModel, PlainModel)):
        raise TypeError("model= must be the plain backbone (an nn.Module), not an audited or wrapped model")
    if not cfg.mint:
        return PlainModel(backbone)
    model = EnhancedAuditedModel(backbone, cfg.taps, input_shape=input_shape, head_width=cfg.head_width,
                                 head_hidden=cfg.head_hidden, head_stride=cfg.head_stride, head_norm=cfg.head_norm,
                                 head_conv=cfg.head_conv, head_pool=cfg.head_pool)
    model.external_grad = cfg.external_grad
    model.set_tap_noise(cfg.tap_noise, cfg.seed)
    return model


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


def _verify_data(run: Run, roles: tuple[str, ...]) -> None:
    """Refuse figures computed on other images: the data must match the manifest's pixel SHA-256 (as ``split:ROLE``)."""
    manifest = run.dir.manifest
    problems = verify_manifest(manifest, run.data.train, run.data.test, roles=list(roles))
    if problems:
        raise RunError(f"{len(problems)} samples of {', '.join(roles)} differ from {manifest} (data read from "
                       f"{run.data.train.source or run.config.data_root or run.config.dataset}); first: {problems[0]}. "
                       f"The data set changed since the run was trained: pass the original data (--data-root, or data_root in {CONFIG})")


def verify_run(run_dir: str | Path, *, device: str = "auto", data_root: str | None = None) -> Verification:
    """Recompute a run's final figures and compare them with its metrics.json."""
    run = load_run(run_dir, device=device, data_root=data_root)
    _verify_data(run, ("members", "eval_nonmembers", "calibration"))
    metrics, _ = run.evaluate()
    saved = run.dir.read_metrics() or {}
    for k, v in saved.items():
        metrics.setdefault(k, v)
    metrics["run_dir"] = str(run_dir)  # the directory evaluated here, not the one stored at training time
    base = None
    if "baseline_test_accuracy" in saved:
        base = {"test_accuracy": saved["baseline_test_accuracy"], "train_seconds": saved.get("baseline_train_seconds")}
    return Verification(metrics, saved, base, same_figures(saved, metrics) if saved else None)
