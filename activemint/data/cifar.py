"""Readers for the CIFAR-10 / CIFAR-100 "python version" pickle batches.

The batches are pickled dicts written by the data-set authors (Python 2 cPickle).  We never
let a pickle import arbitrary code: :class:`RestrictedUnpickler` resolves only the three
numpy names needed to rebuild a plain ``ndarray`` (plus a latin-1 shim for ``bytes`` written
by Python 3 at protocol <= 2) and refuses everything else.

Layout: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}``.  Each batch holds ``data``: uint8 ``(N, 3072)``
(1024 R, 1024 G, 1024 B values, rows of 32) and ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100): N ints.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ArrayDataset, DatasetError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm"
).split()
assert len(CIFAR100_CLASSES) == 100

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild array of type {subtype!r}")
    return _np_reconstruct(subtype, shape, dtype)


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """What ``_codecs.encode`` does for ``bytes`` pickled by Python 3 at protocol <= 2, and nothing more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild dicts, lists, str, bytes, numbers and plain numpy arrays only.

    ``find_class`` resolves exactly ``numpy.core.multiarray._reconstruct`` /
    ``numpy._core.multiarray._reconstruct`` (only for ``ndarray``), ``numpy.ndarray``,
    ``numpy.dtype`` and a latin-1-only ``_codecs.encode``; any other global raises
    :class:`pickle.UnpicklingError`.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise pickle.UnpicklingError("refusing persistent ids")


def load_pickle_dict(path: Path, dataset: str) -> dict[str, Any]:
    """Load one CIFAR pickle with :class:`RestrictedUnpickler` (``encoding="bytes"``).

    Returns the dict with keys decoded to ``str``.

    Raises:
        DatasetError: missing file, refused or corrupt pickle, or not a dict.
    """
    if not path.is_file():
        raise DatasetError(f"dataset '{dataset}': expected file {path.name} in {path.parent}; pass --data-root or --download")
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, UnicodeDecodeError) as e:
        raise DatasetError(f"dataset '{dataset}': cannot read {path}: expected a CIFAR python pickle batch ({e})") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"dataset '{dataset}': {path} holds a {type(obj).__name__}, expected a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _batch(path: Path, label_key: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    d = load_pickle_dict(path, dataset)
    for key in ("data", label_key):
        if key not in d:
            raise DatasetError(f"dataset '{dataset}': {path} has keys {sorted(d)}, expected '{key}'")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"dataset '{dataset}': {path} 'data' is {desc}, expected a uint8 array (N, 3072)")
    raw_labels = d[label_key]
    if isinstance(raw_labels, np.ndarray):
        raw_labels = raw_labels.tolist()
    if not isinstance(raw_labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw_labels):
        raise DatasetError(f"dataset '{dataset}': {path} '{label_key}' is not a list of ints")
    if len(raw_labels) != len(data):
        raise DatasetError(f"dataset '{dataset}': {path} has {len(data)} images but {len(raw_labels)} labels; expected equal counts")
    return data.reshape(-1, 3, 32, 32), np.asarray(raw_labels, dtype=np.int64)


def _names(meta_path: Path, key: str, default: list[str], dataset: str) -> list[str]:
    """Class names from the meta pickle when present (else the built-in list)."""
    if not meta_path.is_file():
        return list(default)
    d = load_pickle_dict(meta_path, dataset)
    names = d.get(key)
    if not isinstance(names, list) or len(names) != len(default):
        raise DatasetError(f"dataset '{dataset}': {meta_path} '{key}' should list {len(default)} class names")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _find_folder(root: Path, folder: str, markers: tuple[str, ...], dataset: str, expected: str) -> Path:
    """``root/folder`` or ``root`` itself, whichever holds one of ``markers``."""
    if not root.is_dir():
        raise DatasetError(f"dataset '{dataset}': data root {root} does not exist; expected {folder}/ with {expected} there; pass --data-root or --download")
    for base in (root / folder, root):
        if base.is_dir() and any((base / f).is_file() for f in markers):
            return base
    raise DatasetError(f"dataset '{dataset}': expected {folder}/ with {expected} in {root}; pass --data-root or --download")


def read_cifar10(root: Path, split: str, name: str = "cifar10") -> ArrayDataset:
    """CIFAR-10 split -> images ``(N, 3, 32, 32)`` uint8 (N = 50000 train, 10000 test), 10 classes."""
    folder = _find_folder(root, "cifar-10-batches-py", ("data_batch_1", "test_batch"), name, "data_batch_1..5, test_batch, batches.meta")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [_batch(folder / f, "labels", name) for f in files]
    classes = _names(folder / "batches.meta", "label_names", CIFAR10_CLASSES, name)
    return _assemble(parts, classes, name, split, folder)


def read_cifar100(root: Path, split: str, name: str = "cifar100") -> ArrayDataset:
    """CIFAR-100 split (fine labels) -> images ``(N, 3, 32, 32)`` uint8, 100 classes."""
    folder = _find_folder(root, "cifar-100-python", ("train", "test"), name, "train, test, meta")
    parts = [_batch(folder / split, "fine_labels", name)]
    classes = _names(folder / "meta", "fine_label_names", CIFAR100_CLASSES, name)
    return _assemble(parts, classes, name, split, folder)


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], classes: list[str], name: str, split: str, folder: Path) -> ArrayDataset:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"dataset '{name}': labels in {folder} span {labels.min()}..{labels.max()}, expected 0..{len(classes) - 1}")
    return ArrayDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels),
        classes=classes,
        name=name,
        split=split,
        source=str(folder),
    )
