"""Reading a suspect set: folders, file lists and splits, checked against the model's input.

Image files must already have the model's input size and channel count: an audit scores
exactly the pixels it was given, and a silent resize or colour conversion would audit
different data.  ``resize=True`` (CLI ``--resize``) resizes with PIL bilinear and
``convert_channels=True`` (CLI ``--convert-channels``) converts greyscale / colour; both
are recorded in the audit's JSON.  ``score`` applies the same policy
(:func:`activemint.data.load_image_checked`).  ``split:ROLE`` inputs are checked against
the run's manifest (pixel SHA-256 and label) first.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from activemint.data import DatasetError, ImageInputError, load_image_checked, pixel_sha256
from activemint.inputs import IMAGE_SUFFIXES, image_paths, resolve_inputs


class AuditInputError(DatasetError):
    """A suspect input is missing, unreadable, or does not fit the model."""


@dataclass
class SuspectSet:
    """The images of a suspect set and their identity.

    Attributes:
        ids: one id per image: the file path, or ``role:split:index`` for splits.
        images: uint8 ``(N, C, H, W)``.
        pixel_sha256: SHA-256 of each image's uint8 CHW pixel bytes.
        inputs: what the user named (folders, lists, ``split:ROLE``).
        resized: ids of images that were resized (only with ``resize=True``).
        converted: ids of images whose channels were converted.
    """

    ids: list[str]
    images: torch.Tensor
    pixel_sha256: list[str]
    inputs: list[str]
    resized: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def data_sha256(self) -> str:
        """SHA-256 over the sorted per-image pixel hashes (one per line): the set's identity.

        Independent of file names and order; equal for equal multisets of pixel arrays.
        """
        return hashlib.sha256("\n".join(sorted(self.pixel_sha256)).encode()).hexdigest()

    def unique_mask(self) -> np.ndarray:
        """(N,) bool: True for the first occurrence of each distinct image."""
        seen: set[str] = set()
        mask = np.zeros(len(self), dtype=bool)
        for i, h in enumerate(self.pixel_sha256):
            if h not in seen:
                seen.add(h)
                mask[i] = True
        return mask


def read_file_list(path: Path) -> list[Path]:
    """Paths listed in a text file, one per line; relative paths are relative to the list's folder.

    Blank lines and lines starting with ``#`` are skipped.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AuditInputError(f"cannot read file list {path}: {e}") from e
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    if not out:
        raise AuditInputError(f"file list {path} names no files")
    return out


def load_checked_image(path: Path, shape: tuple[int, int, int], *, resize: bool, convert_channels: bool,
                       max_pixels: int | None = None) -> tuple[torch.Tensor, bool, bool]:
    """(uint8 (C, H, W) image, resized?, converted?) of one file, checked against ``shape``.

    The one image policy of ``score`` and ``audit``: :func:`activemint.data.load_image_checked`.
    """
    try:
        return load_image_checked(path, shape, resize=resize, convert_channels=convert_channels, max_pixels=max_pixels)
    except ImageInputError as e:
        raise AuditInputError(str(e)) from e


def load_suspect(run, inputs: list[str], *, resize: bool = False, convert_channels: bool = False,
                 follow_symlinks: bool = False, max_pixels: int | None = None) -> SuspectSet:
    """Read the suspect set named by ``inputs`` for a loaded run.

    Each input is a folder of images (recursive), an image file, a ``.txt`` file list (one
    path per line), ``split:ROLE`` (a role of the run's manifest) or ``dataset:NAME:SPLIT``.

    Raises:
        AuditInputError: a missing or empty folder, an unreadable image, an image of another
            size or channel count than the model's input (unless ``resize`` /
            ``convert_channels``).
    """
    if not inputs:
        raise AuditInputError("no suspect inputs given")
    shape = tuple(run.input_shape)
    ids: list[str] = []
    chunks: list[torch.Tensor] = []
    resized: list[str] = []
    converted: list[str] = []
    for item in inputs:
        if item.startswith(("split:", "dataset:")):
            try:
                sids, imgs = resolve_inputs(run, [item])
            except ValueError as e:
                raise AuditInputError(str(e)) from e
            if tuple(imgs.shape[1:]) != shape:
                raise AuditInputError(f"{item} holds images of shape {tuple(imgs.shape[1:])}; the model takes {shape}")
            ids.extend(sids)
            chunks.append(imgs)
            continue
        p = Path(item).expanduser()
        if p.is_file() and p.suffix.lower() == ".txt":
            paths = read_file_list(p)
        elif p.is_dir() or (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                paths = image_paths([str(p)], follow_symlinks=follow_symlinks)
            except DatasetError as e:
                raise AuditInputError(str(e)) from e
        elif p.exists():
            raise AuditInputError(f"{item} is neither a folder, an image file ({', '.join(sorted(IMAGE_SUFFIXES))}) nor a .txt file list")
        else:
            raise AuditInputError(f"suspect input {item} does not exist (expected a folder of images, a .txt file list or split:ROLE)")
        imgs = []
        for q in paths:
            img, r, c = load_checked_image(q, shape, resize=resize, convert_channels=convert_channels, max_pixels=max_pixels)
            imgs.append(img)
            if r:
                resized.append(str(q))
            if c:
                converted.append(str(q))
        ids.extend(str(q) for q in paths)
        chunks.append(torch.stack(imgs))
    images = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    if len(images) == 0:
        raise AuditInputError("the suspect set is empty")
    return SuspectSet(ids, images, pixel_sha256(images), list(inputs), resized, converted)
