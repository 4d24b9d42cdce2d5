"""A run from outside: a model trained in the user's own loop, saved as an ``activemint train`` run.

>>> save_run(amint, "runs/mine", members=train_ds, external=external_ds, nonmembers=test_ds,
...          arch="torchvision:resnet18")

writes the run directory format of :mod:`activemint.rundir` (config.yaml, provenance.yaml,
manifest.csv with every sample's SHA-256, model.safetensors + model.json, scores.npz and
metrics.json last), so ``activemint evaluate``, ``score``, ``audit``, ``report`` and
``compare`` read it like a run they trained.  The user's data sets are kept in the run as the
``tensors`` data set (``RUN/data/train.safetensors``, ``RUN/data/test.safetensors``: uint8 pixels,
see :mod:`activemint.data.tensors`), so the run is complete without the user's code.

``arch`` says how :func:`activemint.runs.load_run` (and with it the CLI) rebuilds the model:
a registry name, ``timm:NAME`` or ``torchvision:NAME`` (checked here: the rebuilt model must have
exactly the saved model's tensors).  Without it the run records ``user:<class name>``, and only
``load_run(path, model=<the same module, freshly built>)`` loads it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from activemint import rundir
from activemint.data import ArrayDataset, Splits, clear_dataset_cache, write_manifest
from activemint.data.tensors import SPLIT_FILES, collect, write_tensor_split
from activemint.errors import UserError
from activemint.io import atomic_write_via, make_dir
from activemint.mint import EnhancedAuditedModel, PlainModel
from activemint.models import create_model
from activemint.models.external import USER_PREFIX, is_user_arch
from activemint.rundir import RunDir, RunExistsError
from activemint.training.build import checkpoint_metadata, provenance
from activemint.training.checkpoint import save_weights
from activemint.training.config import TrainConfig
from activemint.training.data import RunData
from activemint.training.evaluation import evaluate, write_evaluation

__all__ = ["check_rebuild", "save_run"]


def _num_classes(model: nn.Module, input_shape: Sequence[int]) -> int:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            out = model.classify(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was)
    if out.ndim != 2:
        raise ValueError(f"the model's class output has shape {tuple(out.shape)}; expected (B, num_classes)")
    return int(out.shape[1])


def check_rebuild(backbone: nn.Module, arch: str, input_shape: Sequence[int], num_classes: int) -> None:
    """Raise a one-line ``ValueError`` unless ``create_model(arch, ...)`` has exactly ``backbone``'s tensors (names and shapes)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        rebuilt = create_model(arch, in_chans=int(input_shape[0]), num_classes=num_classes, img_size=int(input_shape[1]))
    want = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have.get(k))
        detail = ", ".join(f"{k} {have.get(k, 'missing')} vs {want.get(k, 'missing')}" for k in diff[:3])
        raise ValueError(f"the model is not what arch {arch!r} builds for inputs {tuple(input_shape)} and {num_classes} classes "
                         f"({len(diff)} tensors differ, e.g. {detail}); build it with activemint.create_model({arch!r}, ...) "
                         f"or save it without arch= (then load_run needs model=)")


#: What ``activemint report`` plots from metrics.jsonl (activemint.report.plots.learning_curves).
LOG_KEYS = ("task_loss", "mint_loss", "val_accuracy", "val_membership_auc")


def _check_log(log: Sequence[dict[str, Any]] | None) -> None:
    """One-line ``ValueError`` unless every record has an ``epoch`` >= 1 and a number under one of :data:`LOG_KEYS`."""
    for i, rec in enumerate(log or ()):
        epoch = rec.get("epoch") if isinstance(rec, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"log[{i}] must be a dict with an integer 'epoch' >= 1, got {rec!r}"[:300])
        if not any(isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool) for k in LOG_KEYS):
            raise ValueError(f"log[{i}] has none of {', '.join(LOG_KEYS)} (what the report plots): {rec!r}"[:300])


def _carve(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded draw of ``k`` of ``range(n)`` and the rest, each sorted."""
    perm = np.random.default_rng([seed, 22]).permutation(n)
    return np.sort(perm[:k]), np.sort(perm[k:])


def save_run(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    members: Any,
    external: Any | None = None,
    nonmembers: Any,
    calibration: Any | None = None,
    validation: Any | None = None,
    test: Any | None = None,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    log: Sequence[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    target_fpr: float = 0.01,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the run directory ``out`` for ``model`` trained in the user's own code; return its metrics.

    Args:
        model: an :class:`~activemint.mint.EnhancedAuditedModel` (``make_auditable``'s result),
            or a plain classifier (then the run has no membership head: mint off).
        members: the data the model trained on (D); external: the externals that trained the
            MINT head (E); nonmembers: samples neither saw (the evaluation's non-members);
            calibration: held-out samples that fix the calibrated threshold (default: a seeded
            half of ``nonmembers``); validation: optional held-out samples; test: more held-out
            labelled images for the test accuracy, beside the evaluation non-members (as the
            trainer's test split holds its evaluation non-members and more; ``compare``'s
            reference models measure their accuracy on these).  Each is any
            map-style dataset of (image, label): uint8 pixels or floats in [0, 1]
            (:func:`activemint.data.tensors.collect`), or an :class:`ArrayDataset`.
        arch: how to rebuild the backbone (registry name, ``timm:NAME``, ``torchvision:NAME``);
            None: ``user:<class name>``.
        seed: recorded in the config; seeds the calibration carve and the metrics' bootstrap.
        epochs, log: recorded: config ``epochs``, and ``log``'s per-epoch records as metrics.jsonl
            lines (each ``{"epoch": 1, "task_loss": ..., "mint_loss": ...}``, any of
            :data:`LOG_KEYS`; ``activemint report`` draws them as learning curves).
        config: further TrainConfig fields to record (e.g. ``{"lr": 1e-3, "batch_size": 32}``).

    Raises ``RunExistsError`` when ``out`` already holds a run, a one-line ``ValueError`` /
    ``DatasetError`` for data or an ``arch`` that do not fit the model.  Nothing is left half
    written as a complete run: metrics.json, written last, binds the model and scores.
    """
    t0 = time.time()
    say = progress or (lambda m: None)
    _check_log(log)
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_run needs a torch.nn.Module, got {type(model).__name__}")
    audited = isinstance(model, EnhancedAuditedModel)
    if not audited and isinstance(model, PlainModel):
        model = model.backbone
    wrapped = model if audited else PlainModel(model)
    if audited and external is None:
        raise ValueError("an audited model needs external= (the non-members that trained its MINT head)")
    backbone = wrapped.backbone
    say("reading the data sets")
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {"members": collect(members, "members")}
    if external is not None:  # a plain model's externals are recorded only (a plain twin of an audited run: same splits)
        parts["external"] = collect(external, "external")
    parts["nonmembers"] = collect(nonmembers, "nonmembers")
    if validation is not None:
        parts["validation"] = collect(validation, "validation")
    if calibration is not None:
        parts["calibration"] = collect(calibration, "calibration")
    if test is not None:
        parts["test"] = collect(test, "test")
    shapes = {k: tuple(v[0].shape[1:]) for k, v in parts.items()}
    input_shape = tuple(model.input_shape) if audited else shapes["members"]
    bad = {k: s for k, s in shapes.items() if s != input_shape}
    if bad:
        raise ValueError(f"images of shape {bad} differ from the model's input shape {input_shape}")
    num_classes = _num_classes(wrapped, input_shape)
    top = max(int(v[1].max()) for v in parts.values())
    if top >= num_classes:
        raise ValueError(f"a label is {top} but the model has {num_classes} classes")
    classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(num_classes)]
    if len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names for a model of {num_classes} classes")
    if arch is None:
        arch = f"{USER_PREFIX}{type(backbone).__module__}.{type(backbone).__qualname__}"
    elif not is_user_arch(arch):
        check_rebuild(backbone, arch, input_shape, num_classes)

    # The two splits of the run's own data set: train = members, external, validation,
    # calibration (in that order, contiguous); test = the evaluation non-members.
    ev_x, ev_y = parts["nonmembers"]
    if calibration is None:
        cal_i, ev_i = _carve(len(ev_x), len(ev_x) // 2, seed)
        if len(cal_i) == 0 or len(ev_i) == 0:
            raise ValueError(f"nonmembers has {len(ev_x)} samples: too few to carve calibration from (give calibration=)")
        parts["calibration"] = (ev_x[cal_i], ev_y[cal_i])
        ev_x, ev_y = ev_x[ev_i], ev_y[ev_i]
    order = [r for r in ("members", "external", "validation", "calibration") if r in parts]
    spans, start = {}, 0
    for role in order:
        spans[role] = np.arange(start, start + len(parts[role][0]), dtype=np.int64)
        start += len(parts[role][0])
    train_x = torch.cat([parts[r][0] for r in order])
    train_y = torch.cat([parts[r][1] for r in order])
    empty = np.zeros(0, dtype=np.int64)
    splits = Splits(spans["members"], spans.get("external", empty), spans.get("validation", empty),
                    spans["calibration"], np.arange(len(ev_x), dtype=np.int64))

    rd = RunDir(out)
    out_path = rd.path.resolve()
    data_root = out_path / rundir.DATA
    sizes = {r: len(getattr(splits, r)) or None for r in ("members", "external", "validation", "calibration", "eval_nonmembers")}
    fields: dict[str, Any] = {
        "dataset": "tensors", "data_root": str(data_root), "arch": arch, "mint": audited, "seed": seed,
        "target_fpr": target_fpr, "epochs": epochs or max(1, len(log or ())), "select": "last", "device": "cpu", **sizes,
    }
    if audited:
        head = model.head
        fields.update({"taps": list(model.taps), "setup": getattr(model, "setup", None) or "entry",
                       "head_width": head.width, "head_hidden": head.hidden, "head_stride": head.stride,
                       "head_norm": head.norm, "head_conv": head.conv, "head_pool": head.pool,
                       "external_grad": bool(model.external_grad)})
        loss = getattr(model, "multitask", None)
        if loss is not None:
            fields.update({"lambda_task": loss.lambda_task, "lambda_mint": loss.lambda_mint,
                           "loss_norm": "first" if loss.normalize else "none"})
    fields.update(config or {})
    fields["extra"] = {**fields.get("extra", {}), "saved_by": "activemint.save_run (trained in the user's own loop)"}
    try:
        cfg = TrainConfig.from_dict(fields)  # validates: unknown keys and bad values in config= are one line
    except ValueError as e:
        raise UserError(f"save_run: {e}") from None

    if "test" in parts:  # the test split: the evaluation non-members first, then the other test images
        ev_x, ev_y = torch.cat([ev_x, parts["test"][0]]), torch.cat([ev_y, parts["test"][1]])
    train = ArrayDataset(train_x, train_y, classes, "tensors", "train", source=str(data_root / SPLIT_FILES["train"]))
    test_ds = ArrayDataset(ev_x, ev_y, classes, "tensors", "test", source=str(data_root / SPLIT_FILES["test"]))
    data = RunData(train, test_ds, splits)
    was_training = wrapped.training
    with rd.lock("save_run"):
        if rd.config.exists():
            raise RunExistsError(f"{rd.path} already holds a run; choose another folder")
        say(f"writing the run into {rd.path}")
        make_dir(data_root)
        for split, ds in (("train", train), ("test", test_ds)):
            atomic_write_via(data_root / SPLIT_FILES[split],
                                    lambda p, ds=ds: write_tensor_split(p, ds.images, ds.labels, ds.classes))
        clear_dataset_cache()  # a previous run saved at this path in this process must not be read back
        rd.write_text(rundir.CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        rd.write_text(rundir.PROVENANCE, yaml.safe_dump(provenance(), sort_keys=False))
        atomic_write_via(rd.manifest, lambda p: write_manifest(p, splits, train, test_ds))
        if log:
            rd.write_log([dict(r) for r in log])
        meta = checkpoint_metadata(cfg, input_shape, num_classes, cfg.epochs)
        meta.update({"selected_by": "user", "saved_by": "save_run"})
        save_weights(wrapped, rd.model, meta)
        device = next(wrapped.parameters()).device
        say("evaluating")
        try:
            metrics, scores = evaluate(wrapped, cfg, data, device)
        finally:
            wrapped.train(was_training)
        metrics.update({"run_dir": str(rd.path), "epochs_trained": cfg.epochs, "selected_epoch": cfg.epochs,
                        "selection": {"rule": "last", "epoch": cfg.epochs, "epochs": cfg.epochs,
                                      "criterion": "the model as saved from the user's loop"}, "train_seconds": None, "mint": audited,
                        "arch": arch, "setup": cfg.setup if audited else None, "dataset": "tensors",
                        "save_seconds": round(time.time() - t0, 1)})
        return write_evaluation(rd.path, metrics, scores)
