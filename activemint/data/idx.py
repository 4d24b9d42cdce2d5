"""Readers for the idx format of MNIST and Fashion-MNIST.

An idx file is a big-endian header ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` uint32
dimensions and the data.  Images are ``(N, 28, 28)`` uint8 (magic 2051), labels ``(N,)``
uint8 (magic 2049).  Files may be gzipped (``.gz``) or raw, and may sit in the root, in
``raw/`` or in torchvision's ``<Name>/raw/``.
"""
from __future__ import annotations

import gzip
import math
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


#: Largest data section read (bytes): far above MNIST-style data sets (47 MB for the 60,000
#: train images), far below what would exhaust memory.  A header announcing more is refused
#: before anything is inflated.
MAX_IDX_BYTES = 1 << 31

_CHUNK = 1 << 20


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read_exact(f, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream), inflating no more than needed."""
    parts, left = [], n
    while left > 0:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_idx(path: Path, expected_magic: int, dataset: str = "idx", item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one idx file (gzipped when its name ends in ``.gz``), header first.

    The header is read and checked before any data: the magic number, the number of
    dimensions, ``item_shape`` (the registered shape of one item, e.g. ``(28, 28)`` for
    images and ``()`` for labels; ``None`` accepts any), and the announced size (exact
    integer arithmetic, at most :data:`MAX_IDX_BYTES`).  Then exactly the announced number of
    bytes is read (gzip inflates only that much), and one more byte must not exist: a
    stream that ends early is truncated, one that goes on is refused (a gzip bomb inflates
    no further than the header's size plus one byte).

    Returns:
        uint8 array of shape given by the header: ``(N, H, W)`` for images (magic 2051),
        ``(N,)`` for labels (magic 2049).

    Raises:
        DatasetError: unreadable file, bad gzip stream, wrong magic number, wrong dims,
            an oversized header, or a byte count that does not match the header.
    """
    gz = " (gzip)" if path.name.endswith(".gz") else ""
    what = "images" if expected_magic == IMAGES_MAGIC else "labels"
    where = f"dataset '{dataset}': {path}"
    try:
        with _open(path) as f:
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise DatasetError(f"{where} is truncated ({len(head)} bytes): expected an idx header with magic {expected_magic}")
            magic = int.from_bytes(head, "big")
            if magic != expected_magic:
                raise DatasetError(
                    f"{where} has magic number {magic}, expected {expected_magic} ({what} idx file, unsigned bytes)"
                )
            ndim = head[3]
            want_ndim = None if item_shape is None else 1 + len(item_shape)
            if want_ndim is not None and ndim != want_ndim:
                raise DatasetError(f"{where} has {ndim} dimensions, expected {want_ndim} ({what}: (N{', H, W' if want_ndim == 3 else ''}))")
            raw_dims = _read_exact(f, 4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DatasetError(f"{where} is truncated: its header needs {4 + 4 * ndim} bytes, the file has {4 + len(raw_dims)}")
            dims = tuple(int.from_bytes(raw_dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            if item_shape is not None and tuple(dims[1:]) != tuple(item_shape):
                raise DatasetError(
                    f"{where} holds {what} of shape {tuple(dims[1:])}, expected {tuple(item_shape)} "
                    f"(header dims {dims}); not the registered {dataset} format"
                )
            count = math.prod(dims)  # Python ints: no overflow
            if count > MAX_IDX_BYTES:
                raise DatasetError(f"{where}: its header {dims} announces {count} bytes, over the limit of {MAX_IDX_BYTES}; refused")
            data = _read_exact(f, count)
            extra = f.read(1) if len(data) == count else b""
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DatasetError(f"{where} cannot be read: expected an idx file{gz} ({' '.join(str(e).split())})") from e
    header = 4 + 4 * ndim
    if len(data) < count:
        raise DatasetError(
            f"{where} has {header + len(data)} bytes{' when inflated' if gz else ''} but its header {dims} needs "
            f"{header + count}; expected a complete idx file (truncated or corrupt download?)"
        )
    if extra:
        raise DatasetError(
            f"{where} has more than the {header + count} bytes its header {dims} announces"
            f"{' when inflated (a gzip bomb?)' if gz else ''}; expected a complete idx file"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy() if count else np.zeros(dims, dtype=np.uint8)


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
    image_shape: tuple[int, int] | None = (28, 28),
) -> ArrayDataset:
    """Read one split of an MNIST-style data set.

    Args:
        name: registry name, for messages and the result.
        root: folder holding the idx files (or ``raw/``, ``<Name>/raw/`` below it).
        split: ``"train"`` or ``"test"``.
        classes: class names (``len == 10``).
        subdirs: extra folders below ``root`` to search, e.g. ``["raw", "MNIST/raw"]``.
        image_shape: the registered ``(H, W)`` of one image; files with other dims are
            refused (``None`` accepts any).

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
    images = read_idx(files["images-idx3-ubyte"], IMAGES_MAGIC, name, None if image_shape is None else tuple(image_shape))
    labels = read_idx(files["labels-idx1-ubyte"], LABELS_MAGIC, name, ())
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
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(classes),
        name=name,
        split=split,
        source=str(files["images-idx3-ubyte"].parent),
    )
