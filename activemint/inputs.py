"""Turning user-given inputs (files, folders, splits) into images a run's model can score.

One policy for ``score`` and ``audit``: image files must have the model's input size and
channels unless ``resize`` / ``convert_channels`` is asked for
(:func:`activemint.data.load_image_checked`); ``split:ROLE`` inputs are checked against the
run's manifest (every sample's pixel SHA-256 and label) and refused when the data changed.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from activemint.data import DatasetError, load_dataset, load_image_checked, verify_manifest
from activemint.io import csv_row
from activemint.metrics import sigmoid
from activemint.rundir import CONFIG

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
ROLES = ("members", "external", "validation", "calibration", "eval_nonmembers")


class InputError(DatasetError):
    """A scoring input is missing, malformed, or not the data the run's manifest recorded."""


class ManifestMismatchError(InputError):
    """The data under the run's data root no longer matches the run's manifest."""


def image_paths(inputs: list[str], *, follow_symlinks: bool = False) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths.

    A file in a folder that is (or lies under) a symbolic link leading out of the folder is
    refused unless ``follow_symlinks`` (CLI ``--follow-symlinks``): a folder of images is read
    as the images in it, not whatever its links point to.
    """
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not follow_symlinks:
                base = Path(os.path.realpath(p))
                for q in found:
                    real = Path(os.path.realpath(q))
                    if base not in real.parents:
                        raise InputError(f"{q} in image folder {p} is a symbolic link to {real}, outside the folder; "
                                         f"pass --follow-symlinks to read it")
            if not found:
                raise InputError(f"folder {p} holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif p.exists():
            raise InputError(f"input {item} is neither a file nor a folder")
        else:
            raise InputError(f"input {item} does not exist (expected an image file, a folder, 'split:ROLE' or 'dataset:NAME:SPLIT')")
    return paths


def verify_split(run, role: str) -> None:
    """Refuse ``split:ROLE`` when the run's data no longer matches its manifest for ``role``.

    Every sample of the role is checked (index in range, label, SHA-256 of its uint8 pixels);
    the check costs one hash per image (well under a second for 10,000 images).

    Raises:
        ManifestMismatchError: how many of how many samples differ, the manifest file and
            the data root, and the first difference.
    """
    manifest = run.dir.manifest
    data = run.data
    problems = verify_manifest(manifest, data.train, data.test, roles=[role])
    if problems:
        total = len(getattr(data.splits, role))
        src = data.source(role)
        raise ManifestMismatchError(
            f"split:{role}: {len(problems)} of {total} samples differ from {manifest} "
            f"(data read from {src.source or run.config.data_root or run.config.dataset}); first: {problems[0]}. "
            f"The data set changed since the run was trained: pass the original data (data_root in {CONFIG})"
        )


def resolve_inputs(run, inputs: list[str], *, resize: bool = False, convert_channels: bool = False) -> tuple[list[str], torch.Tensor]:
    """(ids, uint8 images (N, C, H, W)) for a list of CLI inputs (see :func:`resolve_input_groups`)."""
    ids, images, _ = resolve_input_groups(run, inputs, resize=resize, convert_channels=convert_channels)
    return ids, images


def resolve_input_groups(run, inputs: list[str], *, resize: bool = False, convert_channels: bool = False,
                         follow_symlinks: bool = False, max_pixels: int | None = None,
                         ) -> tuple[list[str], torch.Tensor, list[tuple[str, slice]]]:
    """(ids, uint8 images (N, C, H, W), groups) for a list of CLI inputs.

    ``split:ROLE`` takes a role of the run's manifest (verified against the data, see
    :func:`verify_split`); ``dataset:NAME:SPLIT`` a whole split; anything else is an image
    file or a folder of images, which must have the run's input size and channels unless
    ``resize`` / ``convert_channels``. ``groups`` holds one ``(input, rows)`` per input, in
    the order given: the rows of ``ids`` / ``images`` that input produced.

    Raises:
        InputError / ImageInputError / DatasetError: a bad input, with the file named.
    """
    ids: list[str] = []
    chunks: list[torch.Tensor] = []
    files: list[str] = []
    spans: dict[int, slice] = {}
    shape = tuple(run.input_shape)
    for pos, item in enumerate(inputs):
        start = len(ids)
        if item.startswith("split:"):
            role = item.split(":", 1)[1]
            if role not in ROLES:
                raise InputError(f"unknown split role {role!r} in {item!r}; choose from {', '.join(ROLES)}")
            verify_split(run, role)
            got, src = run.data.split(role), run.data.source(role)
            chunks.append(got.images)
            ids.extend(f"{role}:{src.split}:{i}" for i in got.indices)
        elif item.startswith("dataset:"):
            parts = item.split(":")
            if len(parts) != 3:
                raise InputError(f"expected dataset:NAME:SPLIT, got {item!r}")
            ds = _load_named_split(run, item, parts[1], parts[2])
            if tuple(ds.images.shape[1:]) != shape:
                raise InputError(f"{item} holds images of shape {tuple(ds.images.shape[1:])}; the model takes {shape}")
            chunks.append(ds.images[:])  # a streamed set (FileDataset) decodes here
            ids.extend(f"{parts[1]}:{parts[2]}:{i}" for i in range(len(ds)))
        else:
            files.append(item)
            continue
        spans[pos] = slice(start, len(ids))
    if files:
        paths: list[Path] = []
        file_pos = [pos for pos, item in enumerate(inputs) if not item.startswith(("split:", "dataset:"))]
        for pos, item in zip(file_pos, files):
            found = image_paths([item], follow_symlinks=follow_symlinks)
            spans[pos] = slice(len(ids) + len(paths), len(ids) + len(paths) + len(found))
            paths.extend(found)
        imgs = [load_image_checked(p, shape, resize=resize, convert_channels=convert_channels, max_pixels=max_pixels)[0]
                for p in paths]
        chunks.append(torch.stack(imgs))
        ids.extend(str(p) for p in paths)
    if not chunks:
        raise InputError("no inputs given")
    images = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return ids, images, [(inputs[pos], spans[pos]) for pos in sorted(spans)]


def _load_named_split(run, item: str, name: str, split: str):
    """``dataset:NAME:SPLIT``: the run's data set from the run's data root, another from its default location."""
    from activemint.data import dataset_info

    same = dataset_info(name).name == dataset_info(run.config.dataset).name
    try:
        return load_dataset(name, split, root=run.config.data_root if same else None)
    except DatasetError as e:
        if same:
            raise
        # --data-root names the run's data set; another one is read from its default location only,
        # so the data layer's advice (--data-root, --download) does not apply here
        import re

        why = re.sub(r";? *pass --data-root(?: \(root=\.\.\.\))?(?: or --download)?", "", str(e))
        raise InputError(f"{item}: {why} ({name} is not the run's data set: score reads it from its default location "
                         "only; or pass its images as a folder)") from e


@dataclass
class InputScores:
    """Membership scores of user inputs: one row per sample, grouped by the input that gave it.

    ``logits`` are the MINT head's scores: higher is more member-like, comparable only with
    other scores of the same model; ``probabilities`` is their sigmoid, not a calibrated
    probability of membership.  The decisions come from a calibration (:meth:`decide`).
    """

    ids: list[str]
    logits: np.ndarray
    probabilities: np.ndarray
    groups: list[tuple[str, slice]]
    flagged: np.ndarray | None = None
    pvalues: np.ndarray | None = None
    target_fpr: float | None = None
    threshold: float | None = None

    def decide(self, calibration) -> InputScores:
        """Add the decisions of a calibration (:class:`activemint.audit.calibration.Calibration`).

        ``flagged``: the score is above the threshold calibrated for the calibration's target
        FPR on the run's calibration non-members; ``pvalues``: the conformal p-value
        ``(1 + #calibration scores >= s) / (n + 1)`` (small = member-like).
        """
        self.flagged = calibration.decide(self.logits)
        self.pvalues = calibration.pvalues(self.logits)
        self.target_fpr, self.threshold = float(calibration.target_fpr), float(calibration.threshold)
        return self

    def write_csv(self, out: IO[str]) -> None:
        """``id,membership_logit,flagged,conformal_p_value,sigmoid_of_logit`` rows (6 decimals).

        Without decisions (:meth:`decide` not called) ``flagged`` and ``conformal_p_value`` are empty.
        """
        w = csv.writer(out)
        w.writerow(["id", "membership_logit", "flagged", "conformal_p_value", "membership_probability"])
        for k, (i, p, z) in enumerate(zip(self.ids, self.probabilities, self.logits)):
            flag = "" if self.flagged is None else ("yes" if self.flagged[k] else "no")
            pv = "" if self.pvalues is None else f"{self.pvalues[k]:.6g}"
            w.writerow(csv_row([i, f"{z:.6f}", flag, pv, f"{p:.6f}"]))

    def group_lines(self) -> list[str]:
        """One line per input: its sample count, median score and how many were flagged (never pooled)."""
        width = max(len(spec) for spec, _ in self.groups)
        lines = []
        for spec, rows in self.groups:
            n = rows.stop - rows.start
            med = f"{np.median(self.logits[rows]):.3f}" if n else "-"
            line = f"  {spec:<{width}}  {n:>6} samples  median score {med}"
            if self.flagged is not None and n:
                line += f"  flagged {int(self.flagged[rows].sum())} of {n} at FPR {self.target_fpr:g}"
            lines.append(line)
        return lines


def score_inputs(run, inputs: list[str], *, resize: bool = False, convert_channels: bool = False,
                 follow_symlinks: bool = False, max_pixels: int | None = None) -> InputScores:
    """Score files, folders, ``split:ROLE`` and ``dataset:NAME:SPLIT`` inputs with a run's MINT head."""
    ids, images, groups = resolve_input_groups(run, inputs, resize=resize, convert_channels=convert_channels,
                                               follow_symlinks=follow_symlinks, max_pixels=max_pixels)
    from activemint.progress import counted

    with counted(run.membership_logits, len(images), "scoring the inputs") as score:  # a bar once it runs 2 s
        logits = score(images)
    return InputScores(ids, logits, sigmoid(logits), groups)
