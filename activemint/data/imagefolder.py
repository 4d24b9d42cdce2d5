"""Reader for a folder of images with one sub-folder per class (how CASIA-WebFace is read).

Two layouts:

* ``root/train/<class>/...`` and ``root/test/<class>/...`` (or ``root/val/``): used as is.
  Class names come from ``train/``; every test class must also be a train class.
* ``root/<class>/...`` only: split per class into train/test (default 90/10) with a seeded,
  stratified, deterministic draw; at least one image of each class stays in train.

Files are found recursively below each class folder and sorted by path.  Images are resized
(PIL bilinear) to ``image_size`` (default 64) with 1 or 3 channels: ``(N, C, H, W)`` uint8.
``ids`` are the file paths relative to ``root`` (POSIX separators).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ArrayDataset, DatasetError
from .images import ImageSize, is_image_file
from .streaming import FileDataset, dataset_from_files

_EXPECTED = "train/<class>/*.png|jpg and test/<class>/ (or val/), or one folder per class"


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p.name) and not p.name.startswith("."))


def _scan(folder: Path, classes: list[str] | None, name: str) -> tuple[list[str], list[Path], list[int]]:
    """All images below ``folder``'s class folders -> (classes, files, labels)."""
    dirs = _class_dirs(folder)
    if not dirs:
        raise DatasetError(f"dataset '{name}': {folder} has no class folders; expected {_EXPECTED}")
    if classes is None:
        classes = [d.name for d in dirs]
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        if d.name not in index:
            raise DatasetError(f"dataset '{name}': class folder {d} has no counterpart in the train folder; expected the same classes in both")
        imgs = _images_in(d)
        files += imgs
        labels += [index[d.name]] * len(imgs)
    if not files:
        raise DatasetError(f"dataset '{name}': no image files below {folder}; expected {_EXPECTED}")
    return classes, files, labels


def stratified_holdout(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True = test, holding out ``round(n_c * test_fraction)`` of each class.

    At least one sample of each class stays in train.  Deterministic for ``seed``.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = min(int(len(idx) * test_fraction + 0.5), len(idx) - 1)
        if n_test > 0:
            mask[rng.permutation(idx)[:n_test]] = True
    return mask


def read_imagefolder(
    root: Path,
    split: str,
    image_size: ImageSize | None = 64,
    channels: int = 3,
    name: str = "imagefolder",
    test_fraction: float = 0.1,
    seed: int = 0,
    max_memory: int | None = None,
) -> ArrayDataset | FileDataset:
    """Read one split of an image folder -> images ``(N, channels, H, W)`` uint8, labels ``(N,)``.

    ``max_memory``: a split whose decoded images exceed this many bytes is streamed
    (:class:`~activemint.data.streaming.FileDataset`); None = always in memory.
    """
    if not root.is_dir():
        raise DatasetError(f"dataset '{name}': data root {root} does not exist; expected {_EXPECTED}; pass --data-root")
    train_dir = root / "train"
    if train_dir.is_dir():
        classes, files, labels = _scan(train_dir, None, name)
        if split == "test":
            test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
            if test_dir is None:
                raise DatasetError(f"dataset '{name}': {root} has train/ but no test/ or val/ folder; expected {_EXPECTED}")
            _, files, labels = _scan(test_dir, classes, name)
    else:
        classes, files, labels = _scan(root, None, name)
        mask = stratified_holdout(np.asarray(labels), test_fraction, seed)
        keep = mask if split == "test" else ~mask
        files = [f for f, k in zip(files, keep) if k]
        labels = [lab for lab, k in zip(labels, keep) if k]
        if not files:
            raise DatasetError(f"dataset '{name}': the {split} part of {root} is empty (too few images per class for a {test_fraction:.0%} hold-out)")
    return dataset_from_files(
        files, labels, classes, name=name, split=split, source=str(root),
        ids=[p.relative_to(root).as_posix() for p in files], image_size=image_size, channels=channels, max_memory=max_memory,
    )
