"""The aMINT paper's data splits and their manifest.

From the train split of a data set we carve four disjoint index sets:

* ``members``     - trains the classifier (the data the MINT head must recognise),
* ``external``    - never trained on; the MINT head's non-member examples,
* ``validation``  - model selection / early stopping,
* ``calibration`` - calibrating decision thresholds,

and from the test split ``eval_nonmembers`` - non-members used only in the final evaluation.

A manifest (CSV) records every sample's role, index, label and the SHA-256 of its uint8 CHW
pixel bytes, so a run can later prove exactly which samples it used.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from activemint.io import csv_cell
from activemint.rundir import MANIFEST

from .base import ArrayDataset, DatasetError
from .registry import dataset_info

ROLES = ("members", "external", "validation", "calibration", "eval_nonmembers")
TRAIN_ROLES = ROLES[:4]
#: The source split (of the data set) each role's samples come from: the one place this is written.
SOURCE_SPLIT = {role: "train" if role in TRAIN_ROLES else "test" for role in ROLES}
MANIFEST_COLUMNS = ["role", "source_split", "index", "label", "sha256"]
MANIFEST_NAME = MANIFEST  # the run directory's name for it (activemint.rundir)

#: Validation / calibration size for full-size data sets (capped for small ones).
DEFAULT_HOLDOUT = 2000


@dataclass
class SplitSizes:
    """How many samples each role gets.  All sizes must be ints >= 1."""

    members: int
    external: int
    validation: int
    calibration: int
    eval_nonmembers: int

    def __post_init__(self) -> None:
        bad = {f.name: getattr(self, f.name) for f in fields(self)
               if isinstance(getattr(self, f.name), bool) or not isinstance(getattr(self, f.name), (int, np.integer))
               or getattr(self, f.name) < 1}
        if bad:
            raise ValueError(f"split sizes must be integers >= 1, got {bad} (all sizes: {self.as_dict()})")
        for f in fields(self):
            setattr(self, f.name, int(getattr(self, f.name)))

    @property
    def train_total(self) -> int:
        """members + external + validation + calibration (all carved from the train split)."""
        return self.members + self.external + self.validation + self.calibration

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def validate(self, n_train: int, n_test: int) -> None:
        """Raise ``ValueError`` (with the numbers) unless the carves fit ``n_train`` / ``n_test``."""
        problems = []
        if self.train_total > n_train:
            problems.append(
                f"members {self.members} + external {self.external} + validation {self.validation} + "
                f"calibration {self.calibration} = {self.train_total} > {n_train} train samples"
            )
        if self.eval_nonmembers > n_test:
            problems.append(f"eval_nonmembers {self.eval_nonmembers} > {n_test} test samples")
        if problems:
            raise ValueError("split sizes do not fit the data: " + "; ".join(problems))

    @classmethod
    def paper(cls, name: str, validation: int | None = None, calibration: int | None = None) -> SplitSizes:
        """The paper's sizes for data set ``name``.

        ``external`` is the paper's external size minus ``validation + calibration`` (each
        ``min(2000, external // 6)`` by default, e.g. 2000 for Fashion-MNIST, 100 for digits),
        so the four train carves together take exactly the paper's members + external.
        """
        info = dataset_info(name)
        if not info.paper_sizes:
            raise ValueError(f"the paper gives no split sizes for '{info.name}'; use SplitSizes.for_counts(n_train, n_test) or give sizes")
        ps = info.paper_sizes
        hold = min(DEFAULT_HOLDOUT, max(1, ps["external"] // 6))
        val = hold if validation is None else validation
        cal = hold if calibration is None else calibration
        return cls(ps["members"], ps["external"] - val - cal, val, cal, ps["eval_nonmembers"])

    @classmethod
    def for_counts(cls, n_train: int, n_test: int, validation: int | None = None, calibration: int | None = None) -> SplitSizes:
        """Sizes for a data set without paper sizes: use all data.

        validation = calibration = ``min(2000, n_train // 20)`` by default (at least 1); the rest
        of the train split is halved between members and external; eval = the whole test split.
        """
        hold = min(DEFAULT_HOLDOUT, max(1, n_train // 20))
        val = hold if validation is None else validation
        cal = hold if calibration is None else calibration
        rest = n_train - val - cal
        return cls(rest // 2, rest - rest // 2, val, cal, n_test)


def _as_index_array(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1)


@dataclass
class Splits:
    """Index sets, each an int64 numpy array.

    ``members``, ``external``, ``validation`` and ``calibration`` index the train split and
    are pairwise disjoint; ``eval_nonmembers`` indexes the test split.
    """

    members: np.ndarray
    external: np.ndarray
    validation: np.ndarray
    calibration: np.ndarray
    eval_nonmembers: np.ndarray

    def __post_init__(self) -> None:
        for role in ROLES:
            setattr(self, role, _as_index_array(getattr(self, role)))

    def sizes(self) -> SplitSizes:
        return SplitSizes(*(len(getattr(self, r)) for r in ROLES))

    def items(self) -> list[tuple[str, np.ndarray]]:
        """``[(role, indices), ...]`` in :data:`ROLES` order."""
        return [(r, getattr(self, r)) for r in ROLES]

    def is_disjoint(self) -> bool:
        """True when no train index belongs to two roles (or appears twice)."""
        train = np.concatenate([getattr(self, r) for r in TRAIN_ROLES])
        return len(np.unique(train)) == len(train)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Splits):
            return NotImplemented
        return all(np.array_equal(getattr(self, r), getattr(other, r)) for r in ROLES)


def make_splits(n_train: int, n_test: int, sizes: SplitSizes, seed: int) -> Splits:
    """Draw the splits with ``numpy.random.default_rng(seed)``; deterministic for a seed.

    One permutation of ``range(n_train)`` is cut into members, external, validation and
    calibration (in that order); a permutation of ``range(n_test)`` gives eval_nonmembers.
    Each index array is returned sorted.

    Raises:
        ValueError: the sizes do not fit ``n_train`` / ``n_test``.
    """
    sizes.validate(n_train, n_test)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_train)
    cuts = np.cumsum([sizes.members, sizes.external, sizes.validation, sizes.calibration])
    parts = np.split(perm[: cuts[-1]], cuts[:-1])
    eval_idx = rng.permutation(n_test)[: sizes.eval_nonmembers]
    return Splits(*(np.sort(p).astype(np.int64) for p in parts), np.sort(eval_idx).astype(np.int64))


# --------------------------------------------------------------------------- hashing

def _pixel_array(images: torch.Tensor) -> np.ndarray:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    return np.ascontiguousarray(images.detach().cpu().numpy())


def _hashes(arr: np.ndarray, indices: np.ndarray) -> list[str]:
    return [hashlib.sha256(arr[i]).hexdigest() for i in indices]


def _sample_digests(ds: ArrayDataset, arrays: dict[int, np.ndarray], indices: np.ndarray) -> list[str]:
    """SHA-256 of samples ``indices`` of ``ds``: from its pixel array, or streamed once for a FileDataset."""
    if getattr(ds, "streamed", False):
        return ds.sha256(indices)  # type: ignore[attr-defined]
    if id(ds) not in arrays:
        arrays[id(ds)] = _pixel_array(ds.images)
    return _hashes(arrays[id(ds)], indices)


def pixel_sha256(images: torch.Tensor) -> list[str]:
    """SHA-256 hex digest of each sample's uint8 CHW pixel bytes.

    Args:
        images: uint8 tensor ``(N, C, H, W)``.

    Returns:
        ``N`` digests; ``pixel_sha256(x)[i] == hashlib.sha256(x[i].numpy().tobytes()).hexdigest()``.
    """
    arr = _pixel_array(images)
    return _hashes(arr, np.arange(len(arr)))


# --------------------------------------------------------------------------- manifest

def source_split(role: str) -> str:
    """``"train"`` or ``"test"``: the data set split a role's samples come from (:data:`SOURCE_SPLIT`)."""
    try:
        return SOURCE_SPLIT[role]
    except KeyError:
        raise ValueError(f"unknown split role {role!r}; choose from {', '.join(ROLES)}") from None


def _id_cell(sample_id: str) -> str:
    """An id as the manifest writes it: neutralised for spreadsheets (:func:`activemint.io.csv_cell`),
    reversibly: an id that starts with ``'`` gets one more, so reading strips exactly one (:func:`_id_value`)."""
    return "'" + sample_id if sample_id.startswith("'") else csv_cell(sample_id)


def _id_value(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def write_manifest(path: str | os.PathLike, splits: Splits, train: ArrayDataset, test: ArrayDataset) -> Path:
    """Write the manifest CSV: ``role,source_split,index,label,sha256[,id]``, one row per sample.

    ``path`` is the CSV file, or an existing folder (then ``<folder>/manifest.csv``).  The ``id``
    column is written when either data set has ``ids`` (an id a spreadsheet would run as a formula,
    ``=...``, gets a leading ``'`` that reading removes; an id with a line break is refused).
    Returns the file written.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    with_ids = train.ids is not None or test.ids is not None
    for ds in (train, test):  # the writer ends lines with \n and would not quote a lone \r: the row would split
        bad = next((i for i in ds.ids or () if "\r" in i or "\n" in i), None)
        if bad is not None:
            raise DatasetError(f"{ds.source or ds.name}: sample id {bad[:60]!r} contains a line break; it cannot be "
                               f"recorded in {MANIFEST}: rename the file")
    arrays: dict[int, np.ndarray] = {}
    data = {"train": train, "test": test}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS + (["id"] if with_ids else []))
        for role, idx in splits.items():
            src = source_split(role)
            ds = data[src]
            if len(idx) and (idx.min() < 0 or idx.max() >= len(ds)):
                raise ValueError(f"{role} indices span {idx.min()}..{idx.max()} but the {src} split has {len(ds)} samples")
            labels = ds.labels[torch.from_numpy(idx)].tolist()
            for i, label, h in zip(idx.tolist(), labels, _sample_digests(ds, arrays, idx)):
                row = [role, src, i, label, h]
                if with_ids:
                    row.append(_id_cell(ds.ids[i]) if ds.ids is not None else "")
                w.writerow(row)
    os.replace(tmp, path)
    return path


def _read_rows(path: str | os.PathLike) -> tuple[list[tuple[str, int, int, str, str | None]], bool]:
    """Parse and validate a manifest -> ([(role, index, label, sha256, id|None)], has_id)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    rows: list[tuple[str, int, int, str, str | None]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or header[:5] != MANIFEST_COLUMNS or header[5:] not in ([], ["id"]):
                raise DatasetError(f"manifest {path}: header is {header}, expected {','.join(MANIFEST_COLUMNS)}[,id]")
            has_id = len(header) == 6
            for line_no, rec in enumerate(reader, start=2):
                if len(rec) != len(header):
                    raise DatasetError(f"manifest {path} line {line_no}: {len(rec)} fields, expected {len(header)}")
                role, src, index, label, sha = rec[:5]
                if role not in ROLES:
                    raise DatasetError(f"manifest {path} line {line_no}: role {role!r}, expected one of {', '.join(ROLES)}")
                if src != source_split(role):
                    raise DatasetError(f"manifest {path} line {line_no}: {role} rows must have source_split {source_split(role)!r}, got {src!r}")
                try:
                    i, lab = int(index), int(label)
                except ValueError:
                    raise DatasetError(f"manifest {path} line {line_no}: index {index!r} / label {label!r} must be integers") from None
                if i < 0:
                    raise DatasetError(f"manifest {path} line {line_no}: negative index {i}")
                if i >= 2**62 or not -(2**62) < lab < 2**62:  # the index arrays are int64
                    raise DatasetError(f"manifest {path} line {line_no}: index {index[:30]!r} / label {label[:30]!r} "
                                       f"out of range (below 2^62)")
                if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                    raise DatasetError(f"manifest {path} line {line_no}: sha256 {sha!r} is not 64 lower-case hex digits")
                rows.append((role, i, lab, sha, _id_value(rec[5]) if has_id else None))
    except FileNotFoundError as e:
        raise DatasetError(f"manifest {path} does not exist; expected a {MANIFEST_NAME} written by write_manifest") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"manifest {path} cannot be read: {e}") from e
    return rows, has_id


def read_manifest(path: str | os.PathLike) -> Splits:
    """Read the index sets back from a manifest (a file, or a folder holding ``manifest.csv``).

    Raises:
        DatasetError: missing file, wrong header, unknown role, non-integer index or label,
            bad digest, or a train index used twice.
    """
    rows, _ = _read_rows(path)
    by_role: dict[str, list[int]] = {r: [] for r in ROLES}
    for role, i, *_ in rows:
        by_role[role].append(i)
    splits = Splits(*(by_role[r] for r in ROLES))
    if not splits.is_disjoint():
        raise DatasetError(f"manifest {path}: some train index appears in more than one role (or twice); expected disjoint roles")
    return splits


def verify_manifest(path: str | os.PathLike, train: ArrayDataset, test: ArrayDataset,
                    roles: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Check the data against a manifest: index in range, label, pixel SHA-256 and id.

    Args:
        roles: check only the rows of these roles (default: every row).

    Returns:
        One message per mismatching sample (``"<role> <split>[<index>]: ..."``); empty when
        everything matches.
    """
    rows, has_id = _read_rows(path)
    if roles is not None:
        rows = [r for r in rows if r[0] in roles]
    data = {"train": train, "test": test}
    labels = {"train": train.labels.tolist(), "test": test.labels.tolist()}
    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, dict[int, str]] = {}  # a streamed split: its digests at once (each file read once)
    for src, ds in data.items():
        if getattr(ds, "streamed", False):
            wanted = np.unique(np.asarray([i for r, i, *_ in rows if source_split(r) == src and i < len(ds)], dtype=np.int64))
            digests[src] = dict(zip(wanted.tolist(), ds.sha256(wanted)))  # type: ignore[attr-defined]
        else:
            arrays[src] = _pixel_array(ds.images)
    problems: list[str] = []
    for role, i, label, sha, sid in rows:
        src = source_split(role)
        ds = data[src]
        where = f"{role} {src}[{i}]"
        if i >= len(ds):
            problems.append(f"{where}: index out of range ({src} split has {len(ds)} samples)")
            continue
        found = []
        if labels[src][i] != label:
            found.append(f"label {labels[src][i]} != manifest {label}")
        digest = digests[src][i] if src in digests else hashlib.sha256(arrays[src][i]).hexdigest()
        if digest != sha:
            found.append(f"pixel sha256 {digest[:12]}... != manifest {sha[:12]}...")
        if has_id and sid and ds.ids is not None and ds.ids[i] != sid:
            found.append(f"id {ds.ids[i]!r} != manifest {sid!r}")
        if found:
            problems.append(f"{where}: " + "; ".join(found))
    return problems


def manifest_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of the manifest file's bytes."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise DatasetError(f"manifest {path} cannot be read: {e}") from e
