"""The transformations of single images (Pillow / torchvision), their severity levels, and applying them (see :mod:`activemint.transforms`)."""
from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from activemint.errors import UserError


class TransformError(UserError):
    """An unknown transformation or severity level, or images it cannot take."""


@dataclass(frozen=True)
class Transform:
    """One transformation: what its severity value means and its named levels."""

    name: str
    parameter: str
    levels: dict[str, float]
    op: Callable[[torch.Tensor, float, np.random.Generator], torch.Tensor] = field(repr=False)
    bounds: tuple[float, float] = (0.0, 1.0)  # the values a policy may draw
    rgb_only: bool = False

    def value(self, level: str | float) -> float:
        """The severity value of a named level (or a number within ``bounds``)."""
        if isinstance(level, str):
            if level in self.levels:
                return self.levels[level]
            try:
                level = float(level)
            except ValueError:
                raise TransformError(
                    f"{self.name}: unknown severity {level!r}; levels: {', '.join(self.levels)}"
                ) from None
        lo, hi = self.bounds
        if not lo <= float(level) <= hi:
            raise TransformError(f"{self.name}: severity {level} ({self.parameter}) out of range [{lo:g}, {hi:g}]")
        return float(level)


#: The registered transformations, in registration order (``activemint robustness --transforms all``).
TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, parameter: str, levels: dict[str, float], bounds: tuple[float, float] = (0.0, 1.0), *,
                       rgb_only: bool = False) -> Callable[[Callable], Callable]:
    """Register the decorated op ``(image uint8 (C, H, W), value, rng) -> uint8 (C, H, W)`` as transformation ``name``."""
    def add(op: Callable[[torch.Tensor, float, np.random.Generator], torch.Tensor]) -> Callable:
        if name in TRANSFORMS:
            raise ValueError(f"transformation {name!r} is already registered")
        TRANSFORMS[name] = Transform(name, parameter, levels, op, bounds, rgb_only)
        return op
    return add


# ----------------------------------------------------------------- single images
# Each op: (image uint8 (C, H, W), severity value, numpy Generator) -> uint8 (C, H, W).

def _to_pil(img: torch.Tensor) -> Image.Image:
    a = img.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def _from_pil(im: Image.Image, channels: int) -> torch.Tensor:
    a = np.array(im)  # a writable copy
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[:channels].contiguous()


@register_transform("jpeg", "JPEG quality", {"q90": 90, "q70": 70, "q50": 50, "q30": 30}, (1, 100))
def _jpeg(img: torch.Tensor, quality: float, rng: np.random.Generator) -> torch.Tensor:
    buf = io.BytesIO()
    _to_pil(img).save(buf, format="JPEG", quality=round(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return _from_pil(im.convert("L" if img.shape[0] == 1 else "RGB"), img.shape[0])


#: The four directions of a shift (dx, dy), drawn per image by ``translate``.
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


@register_transform("translate", "shift in pixels", {"1px": 1, "2px": 2, "4px": 4}, (0, 16))
def _translate(img: torch.Tensor, px: float, rng: np.random.Generator) -> torch.Tensor:
    """Shift by ``px`` pixels in one of the four axis directions (drawn), zero fill."""
    if px == 0:
        return img.clone()
    dx, dy = DIRECTIONS[int(rng.integers(4))]
    return TF.affine(img, angle=0.0, translate=[round(dx * px), round(dy * px)], scale=1.0, shear=[0.0, 0.0], fill=0)


@register_transform("crop", "kept fraction of each side, resized back", {"0.95": 0.95, "0.9": 0.9, "0.8": 0.8}, (0.3, 1.0))
def _crop_resize(img: torch.Tensor, keep: float, rng: np.random.Generator) -> torch.Tensor:
    """Keep a ``keep`` fraction of each side at a drawn position, resize back (bilinear)."""
    _, h, w = img.shape
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)


@register_transform("resize", "down-and-back factor", {"0.9": 0.9, "0.75": 0.75, "0.5": 0.5}, (0.2, 1.0))
def _resize(img: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    """Resize down by ``factor`` and back to the original size (bilinear, antialiased)."""
    _, h, w = img.shape
    small = TF.resize(img, [max(1, round(h * factor)), max(1, round(w * factor))], antialias=True)
    return TF.resize(small, [h, w], antialias=True)


@register_transform("hflip", "horizontal flip", {"on": 1.0}, (0.0, 1.0))
def _hflip(img: torch.Tensor, value: float, rng: np.random.Generator) -> torch.Tensor:
    return TF.horizontal_flip(img)


@register_transform("rotate", "degrees", {"5deg": 5, "10deg": 10, "15deg": 15}, (0, 45))
def _rotate(img: torch.Tensor, degrees: float, rng: np.random.Generator) -> torch.Tensor:
    """Rotate by ``±degrees`` (sign drawn), bilinear, zero fill."""
    sign = 1.0 if rng.integers(2) else -1.0
    return TF.rotate(img, sign * degrees, interpolation=TF.InterpolationMode.BILINEAR, fill=0)


@register_transform("noise", "Gaussian sigma (0..1 scale)", {"4/255": 4 / 255, "8/255": 8 / 255, "16/255": 16 / 255}, (0.0, 0.5))
def _noise(img: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` (in units of the 0..1 range), round, clip."""
    x = img.numpy().astype(np.float64) + rng.normal(0.0, sigma * 255.0, size=img.shape)
    return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8))


@register_transform("brightness_contrast", "factor change ±", {"0.1": 0.1, "0.2": 0.2, "0.3": 0.3}, (0.0, 0.9))
def _brightness_contrast(img: torch.Tensor, delta: float, rng: np.random.Generator) -> torch.Tensor:
    """Brightness and contrast factors ``1 ± delta`` (signs drawn)."""
    b = 1.0 + delta * (1.0 if rng.integers(2) else -1.0)
    c = 1.0 + delta * (1.0 if rng.integers(2) else -1.0)
    return TF.adjust_contrast(TF.adjust_brightness(img, b), c)


@register_transform("gaussian_blur", "Gaussian blur sigma in pixels", {"0.5": 0.5, "1.0": 1.0, "1.5": 1.5}, (0.0, 5.0))
def _blur(img: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel 2 * ceil(2 sigma) + 1)."""
    if sigma <= 0:
        return img.clone()
    k = 2 * int(np.ceil(2 * sigma)) + 1
    return TF.gaussian_blur(img, [k, k], [sigma, sigma])


@register_transform("grayscale", "RGB to gray", {"on": 1.0}, (0.0, 1.0), rgb_only=True)
def _grayscale(img: torch.Tensor, value: float, rng: np.random.Generator) -> torch.Tensor:
    return TF.rgb_to_grayscale(img, num_output_channels=3)


@register_transform("perspective", "largest corner displacement, fraction of the side", {"0.05": 0.05, "0.1": 0.1, "0.15": 0.15},
                    (0.0, 0.4))
def _perspective(img: torch.Tensor, d: float, rng: np.random.Generator) -> torch.Tensor:
    """A keystone warp (a photo of a print or a screen): each corner moves inward by a drawn ``[0, d]`` of each side.

    Bilinear, zero fill; the corners' displacements are drawn per image.
    """
    _, h, w = img.shape
    if d <= 0:
        return img.clone()
    corners = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    inward = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
    u = rng.uniform(0.0, d, size=(4, 2))
    ends = [[x + sx * float(u[i, 0]) * w, y + sy * float(u[i, 1]) * h]
            for i, ((x, y), (sx, sy)) in enumerate(zip(corners, inward))]
    return TF.perspective(img, corners, ends, interpolation=TF.InterpolationMode.BILINEAR, fill=0)


def get_transform(name: str) -> Transform:
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise TransformError(f"unknown transformation {name!r}; known: {', '.join(TRANSFORMS)}") from None


def available(channels: int) -> list[Transform]:
    """The transformations that apply to images with this many channels."""
    return [t for t in TRANSFORMS.values() if channels == 3 or not t.rgb_only]


def image_rng(img: torch.Tensor, seed: int, name: str) -> np.random.Generator:
    """The generator of one image's random choices: a function of seed, transform and pixels only."""
    digest = hashlib.sha256(name.encode() + b"\0" + img.numpy().tobytes()).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "little")])


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TransformError(f"expected uint8 images (N, 1 or 3, H, W), got {got}")


def apply_transform(images: torch.Tensor, name: str, level: str | float, *, seed: int = 0) -> torch.Tensor:
    """Apply transformation ``name`` at severity ``level`` to uint8 images (N, C, H, W).

    A composition ``"crop+jpeg"`` at ``"0.9+q50"`` applies each stage in turn (each seeded by
    its own name and the pixels it receives).
    """
    _check_images(images)
    if "+" in name:
        names, levels = name.split("+"), str(level).split("+")
        if len(names) != len(levels):
            raise TransformError(f"composition {name!r} needs one level per stage, got {level!r}")
        for n, lv in zip(names, levels):
            images = apply_transform(images, n, lv, seed=seed)
        return images
    t = get_transform(name)
    if t.rgb_only and images.shape[1] != 3:
        raise TransformError(f"{name} applies to RGB images only; these have {images.shape[1]} channel(s)")
    value = t.value(level)
    images = images.cpu()
    out = torch.empty_like(images)
    for i in range(len(images)):
        img = images[i]
        out[i] = t.op(img, value, image_rng(img, seed, name))
    return out


def parse_spec(spec: str, channels: int = 1) -> list[tuple[str, str]]:
    """``"jpeg:q50,translate"`` -> [("jpeg", "q50"), ("translate", "1px"), ...]; "all" = every level.

    A name without levels means all of its levels.  ``crop:0.9+jpeg:q50`` is a composition
    (``("crop+jpeg", "0.9+q50")``), every stage with its level.  Errors name the bad part.
    """
    pairs: list[tuple[str, str]] = []
    parts = [p.strip() for p in spec.split(",") if p.strip()] if spec != "all" else [t.name for t in available(channels)]
    if not parts:
        raise TransformError("no transformation given")
    for part in parts:
        if "+" in part:
            stages = [parse_spec(p, channels) if ":" in p else None for p in part.split("+")]
            if any(st is None or len(st) != 1 for st in stages):
                raise TransformError(f"composition {part!r}: give every stage as NAME:LEVEL, e.g. crop:0.9+jpeg:q50")
            pairs.append(("+".join(st[0][0] for st in stages), "+".join(st[0][1] for st in stages)))
            continue
        name, _, level = part.partition(":")
        t = get_transform(name)
        if t.rgb_only and channels != 3:
            raise TransformError(f"{name} applies to RGB images only; this data has {channels} channel(s)")
        if level:
            t.value(level)
            pairs.append((name, level))
        else:
            pairs.extend((name, lv) for lv in t.levels)
    return pairs
