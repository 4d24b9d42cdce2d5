"""Auditor-side image transformations with named severity levels.

An auditor rarely holds a bit-exact copy of a training image: it was re-encoded, cropped,
resized, shifted.  This module applies such changes to uint8 image tensors (N, C, H, W) with
Pillow and torchvision's functional ops, so that detection can be measured on near-copies
(``activemint robustness``) and the MINT head can be trained on them (robust Active MINT).

Every transformation has named severity levels (``TRANSFORMS["jpeg"].levels["q50"] == 50``).
The random part of a transformation (the direction of a shift, the position of a crop, the
noise) is drawn from a generator seeded by ``(seed, transformation, SHA-256 of the image's
pixels)``: the same image gets the same transformed copy whether it is passed as a member or
as a non-member, in any order and in any batch, and members and non-members go through the
very same code.

    from activemint.transforms import apply_transform
    shifted = apply_transform(images, "translate", "2px", seed=0)
"""
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


def _jpeg(img: torch.Tensor, quality: float, rng: np.random.Generator) -> torch.Tensor:
    buf = io.BytesIO()
    _to_pil(img).save(buf, format="JPEG", quality=round(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return _from_pil(im.convert("L" if img.shape[0] == 1 else "RGB"), img.shape[0])


_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _translate(img: torch.Tensor, px: float, rng: np.random.Generator) -> torch.Tensor:
    """Shift by ``px`` pixels in one of the four axis directions (drawn), zero fill."""
    if px == 0:
        return img.clone()
    dx, dy = _DIRECTIONS[int(rng.integers(4))]
    return TF.affine(img, angle=0.0, translate=[round(dx * px), round(dy * px)], scale=1.0, shear=[0.0, 0.0], fill=0)


def _crop_resize(img: torch.Tensor, keep: float, rng: np.random.Generator) -> torch.Tensor:
    """Keep a ``keep`` fraction of each side at a drawn position, resize back (bilinear)."""
    _, h, w = img.shape
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)


def _resize(img: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    """Resize down by ``factor`` and back to the original size (bilinear, antialiased)."""
    _, h, w = img.shape
    small = TF.resize(img, [max(1, round(h * factor)), max(1, round(w * factor))], antialias=True)
    return TF.resize(small, [h, w], antialias=True)


def _hflip(img: torch.Tensor, value: float, rng: np.random.Generator) -> torch.Tensor:
    return TF.horizontal_flip(img)


def _rotate(img: torch.Tensor, degrees: float, rng: np.random.Generator) -> torch.Tensor:
    """Rotate by ``±degrees`` (sign drawn), bilinear, zero fill."""
    sign = 1.0 if rng.integers(2) else -1.0
    return TF.rotate(img, sign * degrees, interpolation=TF.InterpolationMode.BILINEAR, fill=0)


def _noise(img: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` (in units of the 0..1 range), round, clip."""
    x = img.numpy().astype(np.float64) + rng.normal(0.0, sigma * 255.0, size=img.shape)
    return torch.from_numpy(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def _brightness_contrast(img: torch.Tensor, delta: float, rng: np.random.Generator) -> torch.Tensor:
    """Brightness and contrast factors ``1 ± delta`` (signs drawn)."""
    b = 1.0 + delta * (1.0 if rng.integers(2) else -1.0)
    c = 1.0 + delta * (1.0 if rng.integers(2) else -1.0)
    return TF.adjust_contrast(TF.adjust_brightness(img, b), c)


def _blur(img: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel 2 * ceil(2 sigma) + 1)."""
    if sigma <= 0:
        return img.clone()
    k = 2 * int(np.ceil(2 * sigma)) + 1
    return TF.gaussian_blur(img, [k, k], [sigma, sigma])


def _grayscale(img: torch.Tensor, value: float, rng: np.random.Generator) -> torch.Tensor:
    return TF.rgb_to_grayscale(img, num_output_channels=3)


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


TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transform("jpeg", "JPEG quality", {"q90": 90, "q70": 70, "q50": 50, "q30": 30}, _jpeg, (1, 100)),
    Transform("translate", "shift in pixels", {"1px": 1, "2px": 2, "4px": 4}, _translate, (0, 16)),
    Transform("crop", "kept fraction of each side, resized back", {"0.95": 0.95, "0.9": 0.9, "0.8": 0.8}, _crop_resize, (0.3, 1.0)),
    Transform("resize", "down-and-back factor", {"0.9": 0.9, "0.75": 0.75, "0.5": 0.5}, _resize, (0.2, 1.0)),
    Transform("hflip", "horizontal flip", {"on": 1.0}, _hflip, (0.0, 1.0)),
    Transform("rotate", "degrees", {"5deg": 5, "10deg": 10, "15deg": 15}, _rotate, (0, 45)),
    Transform("noise", "Gaussian sigma (0..1 scale)", {"4/255": 4 / 255, "8/255": 8 / 255, "16/255": 16 / 255}, _noise, (0.0, 0.5)),
    Transform("brightness_contrast", "factor change ±", {"0.1": 0.1, "0.2": 0.2, "0.3": 0.3}, _brightness_contrast, (0.0, 0.9)),
    Transform("gaussian_blur", "Gaussian blur sigma in pixels", {"0.5": 0.5, "1.0": 1.0, "1.5": 1.5}, _blur, (0.0, 5.0)),
    Transform("grayscale", "RGB to gray", {"on": 1.0}, _grayscale, (0.0, 1.0), rgb_only=True),
)}


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


# ------------------------------------------------------------- training policy
@dataclass(frozen=True)
class AuditPolicy:
    """Random transformed views for training the MINT head (robust Active MINT).

    Each image of a batch is, with probability ``p``, replaced by one transformation drawn
    uniformly from ``ranges`` with a severity drawn uniformly in its range.
    """

    ranges: dict[str, tuple[float, float]]
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise TransformError(f"audit policy probability must be in [0, 1], got {self.p}")
        for name, (lo, hi) in self.ranges.items():
            t = get_transform(name)
            t.value(lo), t.value(hi)

    def __call__(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Transformed views of uint8 images (B, C, H, W), on their device."""
        device, x = images.device, images.cpu()
        names = list(self.ranges)
        out = x.clone()
        for i in np.flatnonzero(rng.random(len(x)) < self.p):
            name = names[int(rng.integers(len(names)))]
            t = TRANSFORMS[name]
            if t.rgb_only and x.shape[1] != 3:
                continue
            lo, hi = self.ranges[name]
            value = float(rng.uniform(lo, hi))
            if name == "translate":
                value = float(rng.integers(int(lo), int(hi) + 1))
            out[i] = t.op(x[i], value, rng)
        return out.to(device)


    def on_device(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The same kind of views as :meth:`__call__`, for a whole batch on its device.

        For the trainer's device data path: every draw comes from ``generator`` (on the
        images' device) in a fixed number of calls per batch, every transformation runs on
        the whole batch as tensor ops and is kept where drawn (``torch.where``), so nothing is
        read back to the host.  Same transformations, ranges and probability as the host
        policy; the ops are tensor versions of its Pillow / torchvision ones: shifts and
        noise are the same arithmetic, crop and resize the same bilinear interpolation
        (per-image crops by gathering), JPEG is :func:`jpeg_tensor`
        (libjpeg's quantisation in float arithmetic, not its integer DCT; the test bounds the
        difference).  The draws differ from the host policy's (another generator), so a run
        on this path is another sample of the same training, not the host's bits.
        """
        _check_images(images)
        b, c, h, w = images.shape
        gd = generator.device
        names = [n for n in self.ranges if not (TRANSFORMS[n].rgb_only and c != 3)]
        if not names or b == 0:
            return images
        dev = images.device

        def draw(fn, *shape):  # on the generator's device, then to the images'
            return fn(*shape, generator=generator, device=gd).to(dev)

        apply = draw(torch.rand, b) < self.p
        pick = (draw(torch.rand, b) * len(self.ranges)).long().clamp_max(len(self.ranges) - 1)
        u = draw(torch.rand, b)  # the severity, uniform in its range
        a = draw(torch.rand, b)  # direction, sign, crop row
        a2 = draw(torch.rand, b)  # crop column
        x = images.float()
        out = x
        for k, name in enumerate(self.ranges):
            if name not in names:
                continue
            lo, hi = self.ranges[name]
            value = lo + (hi - lo) * u
            y = _BATCH_OPS[name](x, value, a, a2, generator, lo, hi)
            out = torch.where((apply & (pick == k))[:, None, None, None], y.round().clamp(0, 255), out)
        return out.to(torch.uint8)


# ------------------------------------------------- batched tensor versions of the ops
# Each: (x float (B, C, H, W) in 0..255, value (B,), a (B,), a2 (B,) uniform, generator, lo, hi)
# -> float (B, C, H, W), one independent draw per image.

def _b_translate(x, value, a, a2, generator, lo, hi):
    b, c, h, w = x.shape
    px = (lo + (a2 * (int(hi) - int(lo) + 1)).floor().clamp_max(int(hi) - int(lo))).long()  # integer in [lo, hi]
    d = (a * 4).long().clamp_max(3)  # _DIRECTIONS: +x, -x, +y, -y (arithmetic: no host-to-device copy)
    dx = ((d == 0).long() - (d == 1).long()) * px
    dy = ((d == 2).long() - (d == 3).long()) * px
    pad = int(hi)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (pad - dy)[:, None] + torch.arange(h, device=x.device)[None]
    cols = (pad - dx)[:, None] + torch.arange(w, device=x.device)[None]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def _b_crop(x, keep, a, a2, generator, lo, hi):
    b, c, h, w = x.shape
    ch, cw = (h * keep).round().clamp_min(1), (w * keep).round().clamp_min(1)
    top, left = (a * (h - ch + 1)).floor().clamp_max(h - ch), (a2 * (w - cw + 1)).floor().clamp_max(w - cw)

    def axis(n, size, start):  # bilinear source positions of n outputs in a crop of ``size`` (align_corners=False)
        src = ((torch.arange(n, device=x.device, dtype=x.dtype)[None] + 0.5) * (size / n)[:, None] - 0.5)
        src = torch.minimum(src.clamp_min(0), (size - 1)[:, None])
        i0 = src.floor()
        i1 = torch.minimum(i0 + 1, (size - 1)[:, None])
        return (i0 + start[:, None]).long(), (i1 + start[:, None]).long(), src - i0

    r0, r1, wr = axis(h, ch, top)
    c0, c1, wc = axis(w, cw, left)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]

    def at(r, col):
        return x[bi, ci, r[:, None, :, None], col[:, None, None, :]]

    wr, wc = wr[:, None, :, None], wc[:, None, None, :]
    top_row = at(r0, c0) * (1 - wc) + at(r0, c1) * wc
    bottom_row = at(r1, c0) * (1 - wc) + at(r1, c1) * wc
    return top_row * (1 - wr) + bottom_row * wr  # the crop resized back, as TF.resized_crop (upsampling: no antialias)


def _b_resize(x, factor, a, a2, generator, lo, hi):
    import torch.nn.functional as F

    b, c, h, w = x.shape
    sh = (h * factor).round().clamp_min(1)
    out = x
    # every size the range allows, each applied to the whole batch and kept where drawn (no read-back);
    # the width follows the height's factor (the host op rounds each side: the same on square images)
    for s in range(max(1, round(h * lo)), max(1, round(h * hi)) + 1):
        small = F.interpolate(x, size=(s, max(1, round(w * s / h))), mode="bilinear", align_corners=False, antialias=True)
        back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out = torch.where((sh == s)[:, None, None, None], back, out)
    return out


def _b_jpeg(x, quality, a, a2, generator, lo, hi):
    return jpeg_tensor(x, quality.round())


def _b_noise(x, sigma, a, a2, generator, lo, hi):
    n = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
    return x + n * (sigma * 255.0)[:, None, None, None]


def _b_hflip(x, value, a, a2, generator, lo, hi):
    return x.flip(3)


def _b_rotate(x, degrees, a, a2, generator, lo, hi):
    import torch.nn.functional as F

    b = len(x)
    theta = torch.deg2rad(degrees * torch.where(a < 0.5, 1.0, -1.0))
    cos, sin = torch.cos(theta), torch.sin(theta)
    z = torch.zeros_like(cos)
    mat = torch.stack([torch.stack([cos, -sin, z], 1), torch.stack([sin, cos, z], 1)], 1)
    grid = F.affine_grid(mat, [b, *x.shape[1:]], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _b_brightness_contrast(x, delta, a, a2, generator, lo, hi):
    bf = (1.0 + delta * torch.where(a < 0.5, 1.0, -1.0))[:, None, None, None]
    cf = (1.0 + delta * torch.where(a2 < 0.5, 1.0, -1.0))[:, None, None, None]
    y = (x * bf).clamp(0, 255)
    gray = y.mean(1, keepdim=True) if y.shape[1] == 1 else (0.2989 * y[:, :1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
    mean = gray.mean((1, 2, 3), keepdim=True)
    return (cf * y + (1 - cf) * mean).clamp(0, 255)


def _b_grayscale(x, value, a, a2, generator, lo, hi):
    g = 0.2989 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return g.expand_as(x)


_BATCH_OPS = {"translate": _b_translate, "crop": _b_crop, "resize": _b_resize, "jpeg": _b_jpeg, "noise": _b_noise,
              "hflip": _b_hflip, "rotate": _b_rotate, "brightness_contrast": _b_brightness_contrast, "grayscale": _b_grayscale}

# libjpeg's standard quantisation tables (ITU-T T.81, Annex K), luminance and chrominance.
_JPEG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
              14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_JPEG_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32))


_CONSTS: dict[tuple, torch.Tensor] = {}


def _const(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A constant table on ``device``, copied there once (a copy per batch would make the host wait)."""
    key = (values, str(device), dtype)
    if key not in _CONSTS:
        _CONSTS[key] = torch.tensor(values, device=device, dtype=dtype)
    return _CONSTS[key]


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=torch.float32)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * torch.pi / 16) * 0.5
    m[0] /= 2 ** 0.5
    return m  # orthonormal 8-point DCT-II: coefficients = M @ block @ M.T


def _jpeg_plane(p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One plane (B, H, W) (level-shifted, H, W multiples of 8) through DCT, quantisation with
    per-image tables (B, 8, 8), dequantisation and inverse DCT."""
    b, h, w = p.shape
    m = _dct_matrix(p.device)
    blocks = p.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (B, by, bx, 8, 8)
    coef = m @ blocks @ m.T
    q = table[:, None, None]
    coef = torch.round(coef / q) * q
    back = m.T @ coef @ m
    return back.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg_tensor(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG compression and decompression of float images (B, C, H, W) in 0..255 at per-image
    ``quality`` (B,) 1..100, as tensor ops on any device.

    libjpeg's baseline coding: its quality scaling of the standard tables, 8x8 blocks (edges
    replicated to a multiple of 8), level shift, DCT, quantisation; RGB in JFIF YCbCr with 4:2:0
    chroma (2x2 means, upsampled bilinearly, as libjpeg's "fancy" upsampling).  Float DCT where
    libjpeg uses an integer one: a coefficient on a rounding boundary can land on the other
    side, so pixels differ from Pillow's by a little (``tests/test_device_path.py`` bounds it).
    """
    import torch.nn.functional as F

    b, c, h, w = x.shape
    q = quality.clamp(1, 100).to(x.dtype)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)

    def table(base):
        t = _const(base, x.device, x.dtype).reshape(1, 8, 8)
        return ((t * scale[:, None, None] + 50) / 100).floor().clamp(1, 255)

    def code(plane, tab, sub=1):  # plane (B, H, W): edges replicated to a multiple of 8 * sub
        ph, pw = plane.shape[1:]
        mh, mw = -(-ph // (8 * sub)) * 8 * sub, -(-pw // (8 * sub)) * 8 * sub
        padded = F.pad(plane[:, None], (0, mw - pw, 0, mh - ph), mode="replicate")[:, 0]
        if sub == 2:
            padded = F.avg_pool2d(padded[:, None], 2)[:, 0]
        out = _jpeg_plane(padded - 128.0, tab) + 128.0
        if sub == 2:
            out = F.interpolate(out[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0]
        return out[:, :ph, :pw]

    if c == 1:
        return code(x[:, 0], table(_JPEG_LUMA)).clamp(0, 255).round()[:, None]
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl + 128
    y = code(y, table(_JPEG_LUMA)).clamp(0, 255).round()
    ct = table(_JPEG_CHROMA)
    cb, cr = code(cb, ct, 2).clamp(0, 255) - 128, code(cr, ct, 2).clamp(0, 255) - 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return rgb.clamp(0, 255).round()


# Everything an auditor is likely to meet on a near-copy, at up to the measured severities.
_NEAR_COPY_RANGES: dict[str, tuple[float, float]] = {
    "translate": (1, 2), "crop": (0.85, 1.0), "resize": (0.65, 1.0), "jpeg": (40, 95), "noise": (0.0, 10 / 255),
}
_GEOMETRIC = ("translate", "crop", "resize")

# Named policies; ``TrainConfig.audit_policy`` picks one.
POLICIES: dict[str, AuditPolicy] = {
    "robust": AuditPolicy(_NEAR_COPY_RANGES, p=0.5),
    # The same ranges, a transformed view 80% of the time.
    "robust-strong": AuditPolicy(_NEAR_COPY_RANGES, p=0.8),
    # Geometry only (shift, crop, resize).
    "geometric": AuditPolicy({k: _NEAR_COPY_RANGES[k] for k in _GEOMETRIC}, p=0.5),
}


def get_policy(name: str) -> AuditPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise TransformError(f"unknown audit policy {name!r}; known: {', '.join(POLICIES)}") from None
