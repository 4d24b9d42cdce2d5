"""The user's own data: any map-style ``Dataset`` of (image, label) as pixels, and the ``tensors`` data set.

:func:`collect` reads every sample of a map-style dataset (``len`` and ``[i]``), or of a data
set of the built-in readers (in memory or streamed from disk), into uint8
pixels: an image may be a uint8 tensor (C, H, W) or (H, W), a float tensor with values in
[0, 1] (``ToTensor()``'s output; stored as ``round(x * 255)``), a numpy array of either kind,
or a PIL image.  Normalised floats (outside [0, 1]) are refused: the pixels are what the
manifest hashes and what ``evaluate`` / ``audit`` feed the model again.

A run saved from the user's own loop (:func:`activemint.library.save_run`) keeps its data as
the registered data set ``tensors``: ``ROOT/train.safetensors`` and ``ROOT/test.safetensors``,
each with ``images`` (uint8 (N, C, H, W)) and ``labels`` (int64 (N,)) and the class names in
the file's metadata.  Safetensors: reading one never runs code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset, DatasetError

FORMAT = "activemint-tensors/1"
SPLIT_FILES = {"train": "train.safetensors", "test": "test.safetensors"}


def _pixels(image: object, where: str) -> torch.Tensor:
    """One image as uint8 (C, H, W)."""
    if not isinstance(image, (torch.Tensor, np.ndarray)):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            from torchvision.transforms.functional import pil_to_tensor

            image = pil_to_tensor(image)
        else:
            raise DatasetError(f"{where}: the image is a {type(image).__name__}; expected a tensor, numpy array or PIL image")
    x = torch.as_tensor(image)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise DatasetError(f"{where}: image of shape {tuple(x.shape)}; expected (C, H, W) or (H, W)")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not x.is_floating_point():
        raise DatasetError(f"{where}: image of dtype {x.dtype}; expected uint8 pixels or floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0 or not np.isfinite([lo, hi]).all():
        raise DatasetError(f"{where}: float image with values in [{lo:.3g}, {hi:.3g}]; give pixels in [0, 1] "
                           f"(ToTensor() without Normalize) or uint8 0..255")
    return x.mul(255.0).round().to(torch.uint8).contiguous()


def collect(dataset: object, what: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, label) of a map-style dataset as uint8 images (N, C, H, W) and int64 labels (N,).

    Raises a one-line :class:`DatasetError` naming ``what`` and the sample for anything else
    (an iterable-only dataset, a sample that is not a pair, images of different shapes).
    """
    if isinstance(dataset, ArrayDataset):
        return dataset.images, dataset.labels
    if getattr(dataset, "streamed", False):  # a FileDataset (built-in reader, streamed): decoded once, here
        return dataset.batch(np.arange(len(dataset))), dataset.labels  # type: ignore[attr-defined]
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DatasetError(f"{what}: a {type(dataset).__name__} is not a map-style dataset (len() and [i]); "
                           f"expected e.g. a torch.utils.data.Dataset of (image, label)")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DatasetError(f"{what} is empty")
    images, labels = [], []
    for i in range(n):
        item = dataset[i]  # type: ignore[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DatasetError(f"{what}[{i}] is a {type(item).__name__}; expected an (image, label) pair")
        x = _pixels(item[0], f"{what}[{i}]")
        if images and x.shape != images[0].shape:
            raise DatasetError(f"{what}[{i}]: image shape {tuple(x.shape)} differs from {what}[0]'s {tuple(images[0].shape)}")
        try:
            label = int(item[1])
        except (TypeError, ValueError):
            raise DatasetError(f"{what}[{i}]: label {item[1]!r} is not an integer class") from None
        if label < 0:
            raise DatasetError(f"{what}[{i}]: negative label {label}")
        images.append(x)
        labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def write_tensor_split(path: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Path:
    """Write one split of the ``tensors`` data set (not atomically: the caller writes into a new folder)."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({"images": images.contiguous(), "labels": labels.to(torch.int64).contiguous()}, str(path),
              metadata={"format": FORMAT, "classes": json.dumps(list(classes))})
    return path


def read_tensor_split(root: Path, split: str, name: str = "tensors") -> ArrayDataset:
    """Read ``root/<split>.safetensors`` as an :class:`ArrayDataset` (one-line :class:`DatasetError` otherwise)."""
    from safetensors import safe_open

    path = Path(root) / SPLIT_FILES[split]
    if not path.is_file():
        raise DatasetError(f"dataset '{name}': {path} does not exist; expected {', '.join(SPLIT_FILES.values())} "
                           f"in {root} (written by activemint.save_run)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if keys != {"images", "labels"}:
                raise DatasetError(f"dataset '{name}': {path} holds {sorted(keys)}; expected images and labels")
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        classes = json.loads(meta.get("classes", "null"))
    except DatasetError:
        raise
    except Exception as e:  # a truncated or foreign file: one line
        raise DatasetError(f"dataset '{name}': {path} is not a readable safetensors file ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:160]})") from None
    if meta.get("format") != FORMAT or not isinstance(classes, list):
        raise DatasetError(f"dataset '{name}': {path} is not an activemint tensors split (format {meta.get('format')!r})")
    if images.dtype != torch.uint8 or images.ndim != 4 or labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise DatasetError(f"dataset '{name}': {path}: expected uint8 images (N, C, H, W) and int64 labels (N,), got "
                           f"{images.dtype} {tuple(images.shape)} and {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise DatasetError(f"dataset '{name}': {path}: labels span {int(labels.min())}..{int(labels.max())} but "
                           f"{len(classes)} classes are named")
    return ArrayDataset(images, labels, [str(c) for c in classes], name, split, source=str(path))
