"""Data sets read lazily from image files: for folders that do not fit a memory budget.

The folder-based readers (``imagefolder`` / ``casia-webface``, ``gtsrb``, ``tiny-imagenet``)
first list their files and labels, then hand them to :func:`dataset_from_files`, which
either decodes everything into an :class:`~activemint.data.base.ArrayDataset` (the default
for sets that fit) or returns a :class:`FileDataset` that decodes on demand.

A :class:`FileDataset` decodes each file with :func:`activemint.data.images.load_image`, the
function the in-memory readers use, so a streamed sample is byte-identical to the in-memory
one.  Batches are served by index: ``ds.batch(indices)`` decodes them now; a
:class:`StreamedRows` view (``ds.rows(index)``, what the trainer holds instead of a uint8
tensor) is told the epoch's batch order (:func:`plan_batches`) and a ``torch`` ``DataLoader``
with worker processes decodes the coming batches ahead, in exactly that order.

Memory budget (``max_memory``, :func:`activemint.data.memory.parse_memory`): a split whose decoded size
``N x C x H x W`` bytes exceeds it is streamed.  ``"auto"`` (the default) is half of the
memory available when the data set is loaded; ``"off"`` never streams; ``"0"`` always
streams.  Peak memory of a streamed split (main process): the file list and labels, plus at
most ``workers x prefetch + 2`` decoded batches in flight (see docs/scaling.md).
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset, DatasetError
from .images import ImageInputError, ImageSize, _hw, load_image, load_image_files

#: Worker processes decoding a streamed split (``ACTIVEMINT_STREAM_WORKERS`` overrides).
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
#: Batches each worker decodes ahead (``torch.utils.data.DataLoader``'s ``prefetch_factor``).
PREFETCH = 2
#: Batch size used when a streamed set is read in bulk (materialising a view, hashing).
CHUNK = 256

def _workers() -> int:
    v = os.environ.get("ACTIVEMINT_STREAM_WORKERS")
    return max(0, int(v)) if v and v.strip().isdigit() else DEFAULT_WORKERS


# --------------------------------------------------------------------------- decoding in workers
class _Failure:
    """A decode error carried out of a worker as a value, so the user sees one clear line."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Decoder(torch.utils.data.Dataset):
    """Map-style view ``i -> uint8 (C, H, W)`` of a file list, for a ``DataLoader``'s workers."""

    def __init__(self, files: Sequence[str], image_size: tuple[int, int], channels: int, name: str) -> None:
        self.files, self.image_size, self.channels, self.name = files, image_size, channels, name

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor | _Failure:
        try:
            img = load_image(self.files[i], self.image_size, self.channels, self.name)
        except (ImageInputError, DatasetError) as e:
            return _Failure(str(e))
        return img


def _collate(items: list) -> torch.Tensor | _Failure:
    for x in items:
        if isinstance(x, _Failure):
            return x
    return torch.stack(items)


def _raise_failure(x: object) -> torch.Tensor:
    if isinstance(x, _Failure):
        raise ImageInputError(x.message)
    return x  # type: ignore[return-value]


# --------------------------------------------------------------------------- the data set
class FileDataset:
    """A split of image files decoded on demand; the lazy counterpart of :class:`ArrayDataset`.

    Holds the file list and labels; decodes with :func:`load_image` (resized to
    ``image_size``, ``channels`` 1 or 3), so ``ds.batch(i)`` equals the in-memory reader's
    ``images[i]`` byte for byte.  ``images`` is a :class:`StreamedRows` view of every sample
    (indexing it decodes), so code written for in-memory sets keeps working; the trainer
    reads through :meth:`rows` and :func:`plan_batches` so that workers decode ahead.
    """

    streamed = True

    def __init__(self, files: Sequence[str | os.PathLike], labels: torch.Tensor | Sequence[int], classes: list[str],
                 name: str, split: str, image_size: ImageSize, channels: int = 3, source: str = "",
                 ids: list[str] | None = None, workers: int | None = None, prefetch: int = PREFETCH) -> None:
        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if self.labels.ndim != 1 or len(self.labels) != len(self.files):
            raise ValueError(f"labels must have shape ({len(self.files)},), got {tuple(self.labels.shape)}")
        if ids is not None and len(ids) != len(self.files):
            raise ValueError("ids must have one entry per file")
        self.classes, self.name, self.split, self.source, self.ids = list(classes), name, split, source, ids
        self.image_size = _hw(image_size)
        self.channels = channels
        self.workers = _workers() if workers is None else workers
        self.prefetch = prefetch
        self._digests: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"FileDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.input_shape}, source={self.source!r})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.image_size)

    @property
    def nbytes(self) -> int:
        """Bytes the whole split would take decoded in memory."""
        return len(self) * int(np.prod(self.input_shape))

    @property
    def images(self) -> StreamedRows:
        """Every sample as a lazy view: ``ds.images[idx]`` decodes those samples into a uint8 tensor."""
        return StreamedRows(self)

    def rows(self, index: np.ndarray | torch.Tensor | Sequence[int] | None = None) -> StreamedRows:
        """The samples ``index`` (None: all) as a lazy :class:`StreamedRows` view."""
        return StreamedRows(self, index)

    def _decoder(self) -> _Decoder:
        return _Decoder(self.files, self.image_size, self.channels, self.name)

    def batch(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Decode samples ``indices`` now -> uint8 ``(len(indices), C, H, W)``; large requests use the workers."""
        idx = _as_indices(indices, len(self))
        if len(idx) > 2 * CHUNK and self.workers > 0:
            chunks = [idx[s : s + CHUNK] for s in range(0, len(idx), CHUNK)]
            return torch.cat(list(self.iter_batches(chunks)))
        dec = self._decoder()
        out = torch.empty((len(idx), *self.input_shape), dtype=torch.uint8)
        for k, i in enumerate(idx.tolist()):
            out[k] = _raise_failure(dec[i])
        return out

    def iter_batches(self, batches: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """Decode ``batches`` (index arrays), in that order, with worker processes decoding ahead."""
        batches = [np.asarray(b, dtype=np.int64) for b in batches]
        if self.workers == 0 or not batches:
            return (self.batch(b) for b in batches)
        loader = torch.utils.data.DataLoader(
            self._decoder(), batch_sampler=[b.tolist() for b in batches], collate_fn=_collate,
            num_workers=min(self.workers, len(batches)), prefetch_factor=self.prefetch,
        )
        return (_raise_failure(x) for x in loader)

    def sha256(self, indices: np.ndarray | Sequence[int]) -> list[str]:
        """SHA-256 of each sample's uint8 CHW pixel bytes (as :func:`activemint.data.pixel_sha256`).

        Computed once per sample, streamed through the workers, and kept (64 bytes a sample).
        """
        idx = _as_indices(indices, len(self))
        todo = np.unique(np.asarray([i for i in idx.tolist() if i not in self._digests], dtype=np.int64))
        if len(todo):
            chunks = [todo[s : s + CHUNK] for s in range(0, len(todo), CHUNK)]
            for rows, imgs in zip(chunks, self.iter_batches(chunks)):
                arr = np.ascontiguousarray(imgs.numpy())
                for i, a in zip(rows.tolist(), arr):
                    self._digests[i] = hashlib.sha256(a).hexdigest()
        return [self._digests[i] for i in idx.tolist()]


def _as_indices(indices: object, n: int) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean mask of shape {idx.shape} for {n} samples")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64).reshape(-1)
    if len(idx) and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index out of range: {idx.min()}..{idx.max()} for {n} samples")
    return np.where(idx < 0, idx + n, idx)


class StreamedRows:
    """Samples ``index`` of a :class:`FileDataset`, decoded when indexed: stands in for a uint8 tensor.

    ``view[key]`` (an int, a slice, an index tensor / array, a boolean mask; positions within
    the view) returns a uint8 tensor on the view's device.  After :meth:`plan` (the coming
    batches, in order), a request for the next planned batch, or for part of it (a rank's
    shard of a global batch), is served from a ``DataLoader`` whose workers decode ahead; any
    other request is decoded on the spot (same bytes, just not prefetched).
    Reading the view front to back in equal slices (``view[0:b]``, ``view[b:2b]``, ...; the
    evaluation's pattern) plans itself.
    """

    dtype = torch.uint8

    def __init__(self, ds: FileDataset, index: object = None, device: torch.device | str | None = None) -> None:
        self.ds = ds
        self.index = None if index is None else _as_indices(index, len(ds))
        self.device = None if device is None else torch.device(device)
        self._expected: deque[np.ndarray] = deque()
        self._it: Iterator[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.ds) if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.ds.input_shape))

    @property
    def ndim(self) -> int:
        return 4

    def to(self, device: torch.device | str | None = None, *args: object, **kwargs: object) -> StreamedRows:
        """The same view, returning its batches on ``device``."""
        return StreamedRows(self.ds, self.index, device)

    def cpu(self) -> StreamedRows:
        return self.to("cpu")

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.index is None else self.index[positions]

    def plan(self, order: torch.Tensor | np.ndarray | Sequence[int], batch_size: int) -> None:
        """The coming requests: ``order`` (positions in the view) cut into batches of ``batch_size``."""
        pos = _as_indices(order, len(self))
        self._start([pos[s : s + batch_size] for s in range(0, len(pos), batch_size)])

    def _start(self, batches: list[np.ndarray]) -> None:
        rows = [self._rows(b) for b in batches]
        self._expected = deque(rows)
        self._it = self.ds.iter_batches(rows) if rows else None

    def _planned(self, rows: np.ndarray) -> torch.Tensor | None:
        if self._expected and (np.array_equal(self._expected[0], rows) or np.isin(rows, self._expected[0]).all()):
            planned = self._expected.popleft()
            assert self._it is not None
            out = next(self._it)
            if not self._expected:
                self._it = None  # lets the DataLoader's workers exit
            if len(rows) != len(planned) or not np.array_equal(planned, rows):
                # a part of the planned batch (e.g. this rank's shard of a global batch)
                order = np.argsort(planned, kind="stable")
                out = out[torch.from_numpy(order[np.searchsorted(planned, rows, sorter=order)])]
            return out
        if self._expected:  # the reader left the plan: stop prefetching, decode on the spot
            self._expected.clear()
            self._it = None
        return None

    def __getitem__(self, key: object) -> torch.Tensor:
        n = len(self)
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.ndim == 0):
            return self[[int(key)]][0]
        if isinstance(key, slice):
            pos = np.arange(n, dtype=np.int64)[key]
            step = key.step or 1
            if not self._expected and step == 1 and len(pos) and pos[0] == 0 and len(pos) < n:
                self._start([np.arange(s, min(s + len(pos), n)) for s in range(0, n, len(pos))])  # front-to-back reading
        else:
            pos = _as_indices(key, n)
        rows = self._rows(pos)
        out = self._planned(rows)
        if out is None:
            out = self.ds.batch(rows)
        return out if self.device is None else out.to(self.device)

    def materialize(self) -> torch.Tensor:
        """Every sample of the view as one uint8 tensor (decoded now, with the workers)."""
        return self.ds.batch(self._rows(np.arange(len(self))))


def plan_batches(x: object, order: torch.Tensor, batch_size: int) -> None:
    """Tell a :class:`StreamedRows` the coming batches (``order`` cut by ``batch_size``); no-op for a tensor."""
    if isinstance(x, StreamedRows):
        x.plan(order, batch_size)


# --------------------------------------------------------------------------- readers' entry point
def dataset_from_files(files: Sequence[Path], labels: Sequence[int], classes: list[str], *, name: str, split: str,
                       source: str, ids: list[str] | None, image_size: ImageSize | None, channels: int,
                       max_memory: int | None = None) -> ArrayDataset | FileDataset:
    """The reader's last step: decode the listed files into memory, or stream them.

    Args:
        max_memory: byte budget for this split's decoded images; ``None`` = no limit (in
            memory).  A split above it becomes a :class:`FileDataset`.
    """
    if max_memory is not None and len(files):
        size = image_size
        if size is None:  # the files' own size: the first file tells it (every file must match)
            size = tuple(load_image(files[0], None, channels, name).shape[1:])
        ds = FileDataset(files, labels, classes, name, split, size, channels, source=source, ids=ids)
        if ds.nbytes > max_memory:
            return ds
    images = load_image_files(files, image_size, channels, dataset=name, desc=f"{name} {split}")
    return ArrayDataset(images=images, labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)), classes=classes,
                        name=name, split=split, source=source, ids=ids)
