"""Turning user-given inputs (files, folders, splits) into images a run's model can score."""
from __future__ import annotations

from pathlib import Path

import torch

from activemint.data import DatasetError, load_dataset, load_image_files

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
ROLES = ("members", "external", "validation", "calibration", "eval_nonmembers")


def image_paths(inputs: list[str]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DatasetError(f"folder {p} holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DatasetError(f"input {item} does not exist (expected an image file, a folder, 'split:ROLE' or 'dataset:NAME:SPLIT')")
    return paths


def resolve_inputs(run, inputs: list[str]) -> tuple[list[str], torch.Tensor]:
    """(ids, uint8 images (N, C, H, W)) for a list of CLI inputs (see :func:`resolve_input_groups`)."""
    ids, images, _ = resolve_input_groups(run, inputs)
    return ids, images


def resolve_input_groups(run, inputs: list[str]) -> tuple[list[str], torch.Tensor, list[tuple[str, slice]]]:
    """(ids, uint8 images (N, C, H, W), groups) for a list of CLI inputs.

    ``split:ROLE`` takes a role of the run's manifest; ``dataset:NAME:SPLIT`` a whole split;
    anything else is an image file or a folder of images, resized to the run's input size.
    ``groups`` holds one ``(input, rows)`` per input, in the order given: the rows of
    ``ids`` / ``images`` that input produced.
    """
    ids: list[str] = []
    chunks: list[torch.Tensor] = []
    files: list[str] = []
    spans: dict[int, slice] = {}
    c, h, w = run.input_shape
    for pos, item in enumerate(inputs):
        start = len(ids)
        if item.startswith("split:"):
            role = item.split(":", 1)[1]
            if role not in ROLES:
                raise ValueError(f"unknown split role {role!r}; choose from {ROLES}")
            idx = getattr(run.data.splits, role)
            src = run.data.test if role == "eval_nonmembers" else run.data.train
            chunks.append(src.images[torch.as_tensor(idx)])
            ids.extend(f"{role}:{src.split}:{i}" for i in idx)
        elif item.startswith("dataset:"):
            parts = item.split(":")
            if len(parts) != 3:
                raise ValueError(f"expected dataset:NAME:SPLIT, got {item!r}")
            ds = load_dataset(parts[1], parts[2], root=run.config.data_root if parts[1] == run.config.dataset else None)
            chunks.append(ds.images)
            ids.extend(f"{parts[1]}:{parts[2]}:{i}" for i in range(len(ds)))
        else:
            files.append(item)
            continue
        spans[pos] = slice(start, len(ids))
    if files:
        paths: list[Path] = []
        file_pos = [pos for pos, item in enumerate(inputs) if not item.startswith(("split:", "dataset:"))]
        for pos, item in zip(file_pos, files):
            found = image_paths([item])
            spans[pos] = slice(len(ids) + len(paths), len(ids) + len(paths) + len(found))
            paths.extend(found)
        imgs = load_image_files([str(p) for p in paths], image_size=(h, w), channels=c)
        chunks.append(imgs)
        ids.extend(str(p) for p in paths)
    images = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return ids, images, [(inputs[pos], spans[pos]) for pos in sorted(spans)]
