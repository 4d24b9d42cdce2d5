"""Image helpers shared by every reader that decodes image files.

One place decodes a file into a uint8 ``(C, H, W)`` tensor (:func:`load_image`), one place
loads many files into a ``(N, C, H, W)`` stack (:func:`load_image_files`), and one place
resizes / re-channels in-memory stacks (:func:`resize_images`, :func:`convert_channels`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .base import DatasetError

#: File name endings (lower case) taken as images when scanning folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Show a progress bar when reading more than this many files.
PROGRESS_THRESHOLD = 1000

ImageSize = int | tuple[int, int]


def _hw(image_size: ImageSize) -> tuple[int, int]:
    """``image_size`` (an int or ``(H, W)``) -> ``(H, W)``; raises ``ValueError`` when not positive."""
    if isinstance(image_size, int):
        h = w = image_size
    else:
        h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _pil_mode(channels: int) -> str:
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path`` ends in one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def load_image(
    path: str | os.PathLike,
    image_size: ImageSize | None = None,
    channels: int = 3,
    dataset: str = "images",
) -> torch.Tensor:
    """Decode one image file.

    Args:
        path: image file (anything PIL reads).
        image_size: output ``H = W`` (int) or ``(H, W)``; ``None`` keeps the file's size.
            Resizing uses PIL bilinear.
        channels: 1 (greyscale, PIL mode ``L``) or 3 (``RGB``); greyscale files are
            converted to RGB and vice versa.
        dataset: name used in error messages.

    Returns:
        uint8 tensor of shape ``(channels, H, W)``.

    Raises:
        DatasetError: the file is missing or cannot be decoded.
    """
    mode = _pil_mode(channels)
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if image_size is not None:
                h, w = _hw(image_size)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.BILINEAR)
            arr = np.array(img, dtype=np.uint8)  # a writable copy
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"dataset '{dataset}': cannot read image {path}: expected an image file PIL can decode ({e})") from e
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image_files(
    paths: Sequence[str | os.PathLike],
    image_size: ImageSize | None = 64,
    channels: int = 3,
    dataset: str = "images",
    desc: str | None = None,
) -> torch.Tensor:
    """Decode many image files into one stack.

    Args:
        paths: image files, in the order wanted.
        image_size: output ``H = W`` (int) or ``(H, W)``; ``None`` keeps each file's size, in
            which case all files must have the same size.
        channels: 1 or 3.
        dataset: name used in error messages and the progress bar.
        desc: progress-bar label (default: ``dataset``).

    Returns:
        uint8 tensor of shape ``(len(paths), channels, H, W)``; ``(0, channels, H, W)`` (or
        ``(0, channels, 0, 0)`` without ``image_size``) for no paths.

    Raises:
        DatasetError: a file is missing or unreadable, or sizes differ without ``image_size``.
    """
    _pil_mode(channels)
    n = len(paths)
    if n == 0:
        h, w = _hw(image_size) if image_size is not None else (0, 0)
        return torch.zeros((0, channels, h, w), dtype=torch.uint8)
    iterator: Sequence = paths
    if n > PROGRESS_THRESHOLD:
        from tqdm.auto import tqdm

        iterator = tqdm(paths, desc=f"reading {desc or dataset}", unit="img", leave=False, disable=None)
    out: torch.Tensor | None = None
    for i, p in enumerate(iterator):
        img = load_image(p, image_size, channels, dataset)
        if out is None:
            out = torch.empty((n, *img.shape), dtype=torch.uint8)
        elif img.shape != out.shape[1:]:
            raise DatasetError(
                f"dataset '{dataset}': image {p} has shape {tuple(img.shape)} but {paths[0]} has "
                f"{tuple(out.shape[1:])}; expected equal sizes (pass image_size to resize)"
            )
        out[i] = img
    assert out is not None
    return out


def resize_images(images: torch.Tensor, image_size: ImageSize, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 ``(N, C, H, W)`` stack to ``(N, C, H', W')`` (bilinear, antialiased when shrinking).

    Returns ``images`` itself when the size already matches.
    """
    h, w = _hw(image_size)
    if tuple(images.shape[-2:]) == (h, w):
        return images
    out = torch.empty((images.shape[0], images.shape[1], h, w), dtype=torch.uint8)
    shrink = h < images.shape[-2] or w < images.shape[-1]
    for s in range(0, images.shape[0], chunk):
        x = images[s : s + chunk].float()
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        out[s : s + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a uint8 ``(N, C, H, W)`` stack to 1 or 3 channels.

    1 -> 3 repeats the grey channel; 3 -> 1 uses PIL's ITU-R 601-2 luma
    (``L = R*299/1000 + G*587/1000 + B*114/1000``). Returns ``images`` when ``C`` already matches.
    """
    _pil_mode(channels)
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if c == 3 and channels == 1:
        w = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
        return ((images.to(torch.int32) * w).sum(1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (not recursive)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))
