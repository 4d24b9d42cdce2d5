"""Readers for the idx format of MNIST and Fashion-MNIST.

An idx file is a big-endian header ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` uint32
dimensions and the data.  Images are ``(N, 28, 28)`` uint8 (magic 2051), labels ``(N,)``
uint8 (magic 2049).  Files may be gzipped (``.gz``) or raw, and may sit in the root, in
``raw/`` or in torchvision's ``<Name>/raw/``.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset, DatasetError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path, expected_magic: int, dataset: str = "idx") -> np.ndarray:
    """Read one idx file (gzipped when its name ends in ``.gz``).

    Returns:
        uint8 array of shape given by the header: ``(N, H, W)`` for images (magic 2051),
        ``(N,)`` for labels (magic 2049).

    Raises:
        DatasetError: unreadable file, bad gzip stream, wrong magic number, or a byte count
            that does not match the header.
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"dataset '{dataset}': cannot read {path}: expected an idx file{' (gzip)' if path.name.endswith('.gz') else ''} ({e})") from e
    if len(raw) < 4:
        raise DatasetError(f"dataset '{dataset}': {path} is truncated ({len(raw)} bytes): expected an idx header with magic {expected_magic}")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"dataset '{dataset}': {path} has magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'} idx file, unsigned bytes)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"dataset '{dataset}': {path} is truncated: header needs {header} bytes, file has {len(raw)}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DatasetError(
            f"dataset '{dataset}': {path} has {len(raw)} bytes but its header {dims} needs {expected}; "
            "expected a complete idx file (truncated or corrupt download?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_file(root: Path, name: str, subdirs: list[str]) -> tuple[Path | None, list[Path]]:
    """Look for ``name`` or ``name + '.gz'`` in ``root`` and ``root/<subdir>`` for each subdir.

    Returns the first hit (raw preferred over gz in the same folder) and the folders searched.
    """
    folders = [root] + [root / s for s in subdirs]
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate, folders
    return None, folders


def read_idx_dataset(
    name: str,
    root: Path,
    split: str,
    classes: list[str],
    subdirs: list[str],
) -> ArrayDataset:
    """Read one split of an MNIST-style data set.

    Args:
        name: registry name, for messages and the result.
        root: folder holding the idx files (or ``raw/``, ``<Name>/raw/`` below it).
        split: ``"train"`` or ``"test"``.
        classes: class names (``len == 10``).
        subdirs: extra folders below ``root`` to search, e.g. ``["raw", "MNIST/raw"]``.

    Returns:
        :class:`ArrayDataset` with images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)``.
    """
    prefix = _PREFIX[split]
    files = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        fname = f"{prefix}-{kind}"
        path, searched = find_file(root, fname, subdirs)
        if path is None:
            raise DatasetError(
                f"dataset '{name}' ({split} split): expected {fname}.gz (or {fname}) in "
                f"{', '.join(str(f) for f in searched)}; pass --data-root or --download"
            )
        files[kind] = path
    images = read_idx(files["images-idx3-ubyte"], IMAGES_MAGIC, name)
    labels = read_idx(files["labels-idx1-ubyte"], LABELS_MAGIC, name)
    if images.ndim != 3:
        raise DatasetError(f"dataset '{name}': {files['images-idx3-ubyte']} has shape {images.shape}, expected (N, H, W)")
    if labels.ndim != 1:
        raise DatasetError(f"dataset '{name}': {files['labels-idx1-ubyte']} has shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DatasetError(
            f"dataset '{name}': {files['images-idx3-ubyte']} holds {len(images)} images but "
            f"{files['labels-idx1-ubyte']} holds {len(labels)} labels; expected equal counts"
        )
    if len(labels) and int(labels.max()) >= len(classes):
        raise DatasetError(f"dataset '{name}': {files['labels-idx1-ubyte']} has label {int(labels.max())}, expected 0..{len(classes) - 1}")
    return ArrayDataset(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(classes),
        name=name,
        split=split,
        source=str(files["images-idx3-ubyte"].parent),
    )
