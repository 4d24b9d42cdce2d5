"""Image helpers shared by every reader that decodes image files.

One place opens image files (:func:`open_image`: a decompression-bomb limit, 16-bit
greyscale scaled to 8 bits), one place decodes a file into a uint8 ``(C, H, W)`` tensor for
data-set readers (:func:`load_image`), one place reads a user's file for a model of a given
input shape under the one policy of ``score`` and ``audit`` (:func:`load_image_checked`:
refuse another size or channel count unless asked to resize / convert), one place loads
many files into a ``(N, C, H, W)`` stack (:func:`load_image_files`), and one place resizes /
re-channels in-memory stacks (:func:`resize_images`, :func:`convert_channels`).

16-bit images: PIL opens 16-bit greyscale PNG / TIFF as mode ``I;16`` (or ``I``);
``Image.convert("L")`` would clip every value above 255 to white.  They are scaled instead:
``v8 = round(v16 * 255 / 65535)`` (0 -> 0, 65535 -> 255, 257·k -> k).  Mode ``I`` images
with values outside 0..65535 and float (``F``) images are refused.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .base import DatasetError

#: File name endings (lower case) taken as images when scanning folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Largest image (width x height) opened; above it a file is refused before decoding
#: (a decompression bomb: a small file that inflates to gigabytes).  Pillow's own default
#: limit, applied as an error rather than Pillow's warning.
MAX_IMAGE_PIXELS = 89_478_485

#: Largest user image (``score`` / ``audit`` inputs) opened unless ``--max-pixels`` raises it:
#: 4096 x 4096, far above any model input here, and a bounded decode (~50 MB for RGB).
USER_MAX_PIXELS = 4096 * 4096

#: What a PIL mode holds, for messages.
MODE_NAMES = {"1": "1-bit black and white", "L": "greyscale", "P": "palette (indexed colour)", "PA": "palette + alpha",
              "LA": "greyscale + alpha", "RGB": "RGB", "RGBA": "RGB + alpha", "CMYK": "CMYK", "YCbCr": "YCbCr",
              "HSV": "HSV", "LAB": "Lab", "I": "32-bit integer greyscale", "F": "32-bit float greyscale"}

#: PIL modes holding 16-bit (or wider integer) greyscale.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

#: PIL modes taken as 1 or 3 channels as they are (anything else needs ``convert_channels``).
NATIVE_MODES = {1: ("L", "1", *SIXTEEN_BIT_MODES), 3: ("RGB",)}


class ImageInputError(DatasetError):
    """An image file is missing, unreadable, too large, or does not fit the model's input."""


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


@contextmanager
def open_image(path: str | os.PathLike, dataset: str | None = None, *, max_pixels: int | None = None,
               flag: str = "") -> Iterator[Image.Image]:
    """Open and decode an image file, refusing decompression bombs; 16-bit greyscale -> 8-bit ``L``.

    Yields a loaded PIL image.  Raises :class:`ImageInputError` (naming the file) when the file
    is missing, not an image PIL can decode, larger than :data:`MAX_IMAGE_PIXELS`, or of a
    pixel type without a defined 8-bit scaling (float, or integers outside 0..65535).
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) is checked on the header, before decoding;
    ``flag`` names the option that raises it, for the message.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    where = f"dataset '{dataset}': " if dataset else ""
    if os.path.isdir(path):
        raise ImageInputError(f"{where}image {path} is a directory, expected an image file")
    if not os.path.exists(path):
        raise ImageInputError(f"{where}image {path} does not exist")
    try:
        with warnings.catch_warnings():  # the explicit limit below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as img:
            w, h = img.size
            if w * h > limit:
                raise ImageInputError(
                    f"{where}image {path} is {w}x{h} = {w * h} pixels, over the limit of {limit} "
                    f"(a decompression bomb?); expected an image of ordinary size{f' (or raise it with {flag})' if flag else ''}"
                )
            img.load()
            yield _to_8bit(img, path, where)
    except ImageInputError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        msg = " ".join(str(e).split())
        raise ImageInputError(f"{where}cannot read image {path}: not an image file PIL can decode ({msg})") from e


def _to_8bit(img: Image.Image, path: object, where: str = "") -> Image.Image:
    """16-bit greyscale scaled to 8-bit ``L`` (rounded); other modes unchanged; float refused."""
    if img.mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(img).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageInputError(
                f"{where}image {path} has integer pixels in {arr.min()}..{arr.max()} (PIL mode {img.mode}); "
                "expected 8-bit or 16-bit (0..65535) pixels"
            )
        return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    if img.mode in ("F", "I;32", "I;32B", "I;32L"):
        raise ImageInputError(f"{where}image {path} has 32-bit pixels (PIL mode {img.mode}); expected 8- or 16-bit pixels")
    return img


def _chw(img: Image.Image) -> torch.Tensor:
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image(
    path: str | os.PathLike,
    image_size: ImageSize | None = None,
    channels: int = 3,
    dataset: str = "images",
) -> torch.Tensor:
    """Decode one image file of a data set (resized and re-channelled as the reader asks).

    Args:
        path: image file (anything PIL reads).
        image_size: output ``H = W`` (int) or ``(H, W)``; ``None`` keeps the file's size.
            Resizing uses PIL bilinear.
        channels: 1 (greyscale, PIL mode ``L``) or 3 (``RGB``); greyscale files are
            converted to RGB and vice versa (16-bit greyscale scaled to 8 bits first).
        dataset: name used in error messages.

    Returns:
        uint8 tensor of shape ``(channels, H, W)``.

    Raises:
        DatasetError: the file is missing, cannot be decoded, or is too large
            (:class:`ImageInputError`).
    """
    mode = _pil_mode(channels)
    with open_image(path, dataset) as img:
        img = img.convert(mode)
        if image_size is not None:
            h, w = _hw(image_size)
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
        return _chw(img)


def load_image_checked(
    path: str | os.PathLike,
    shape: Sequence[int],
    *,
    resize: bool = False,
    convert_channels: bool = False,
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, bool, bool]:
    """Read a user's image for a model taking ``shape = (C, H, W)``: the policy of ``score`` and ``audit``.

    An image of another size or channel count is refused (the model would see different
    pixels than the user gave) unless ``resize`` (PIL bilinear) / ``convert_channels`` is set.
    16-bit greyscale counts as one channel and is scaled to 8 bits.

    Returns:
        (uint8 ``(C, H, W)`` tensor, resized?, channels converted?)

    Raises:
        ImageInputError: missing, unreadable or too large file, or a size / channel mismatch
            not allowed by the flags; the message names the file and the flag to pass.
    """
    c, h, w = (int(v) for v in shape)
    target = _pil_mode(c)
    limit = min(MAX_IMAGE_PIXELS, USER_MAX_PIXELS) if max_pixels is None else max_pixels
    with open_image(path, max_pixels=limit, flag="--max-pixels") as img:
        resized = converted = False
        if img.mode not in NATIVE_MODES[c]:
            if not convert_channels:
                bands, kind = len(img.getbands()), "greyscale" if c == 1 else "RGB"
                what = (f"has {bands} channel{'s' if bands != 1 else ''} (PIL mode {img.mode})" if bands != c else
                        f"is a {MODE_NAMES.get(img.mode, 'PIL mode ' + img.mode)} image (PIL mode {img.mode}), not plain {kind}")
                raise ImageInputError(f"image {path} {what}; the model takes {c}-channel {kind} images "
                                      "(pass --convert-channels to convert)")
            converted = True
        img = img.convert(target)
        if img.size != (w, h):
            if not resize:
                raise ImageInputError(
                    f"image {path} is {img.size[0]}x{img.size[1]} pixels; the model takes {w}x{h} "
                    "(pass --resize to resize)"
                )
            img = img.resize((w, h), Image.BILINEAR)
            resized = True
        return _chw(img), resized, converted


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
