"""Batched tensor versions of the transformations, for the trainer's device data path; JPEG in tensor arithmetic."""
from __future__ import annotations

import torch

# ------------------------------------------------- batched tensor versions of the ops
# Each: (x float (B, C, H, W) in 0..255, value (B,), a (B,), a2 (B,) uniform, generator, lo, hi)
# -> float (B, C, H, W), one independent draw per image.

def _b_translate(x, value, a, a2, generator, lo, hi):
    b, c, h, w = x.shape
    px = (lo + (a2 * (int(hi) - int(lo) + 1)).floor().clamp_max(int(hi) - int(lo))).long()  # integer in [lo, hi]
    d = (a * 4).long().clamp_max(3)  # DIRECTIONS: +x, -x, +y, -y (arithmetic: no host-to-device copy)
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


#: The batched op of each transformation, by name (:meth:`AuditPolicy.on_device`).
BATCH_OPS = {"translate": _b_translate, "crop": _b_crop, "resize": _b_resize, "jpeg": _b_jpeg, "noise": _b_noise,
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
