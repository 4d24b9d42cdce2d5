"""Audit policies: random transformed views for training the MINT head (robust Active MINT)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from activemint.transforms.batched import BATCH_OPS
from activemint.transforms.images import TRANSFORMS, TransformError, _check_images, get_transform


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
            y = BATCH_OPS[name](x, value, a, a2, generator, lo, hi)
            out = torch.where((apply & (pick == k))[:, None, None, None], y.round().clamp(0, 255), out)
        return out.to(torch.uint8)


# Everything an auditor is likely to meet on a near-copy, at up to the measured severities.
_NEAR_COPY_RANGES: dict[str, tuple[float, float]] = {
    "translate": (1, 2), "crop": (0.85, 1.0), "resize": (0.65, 1.0), "jpeg": (40, 95), "noise": (0.0, 10 / 255),
}
_GEOMETRIC = ("translate", "crop", "resize")

#: The registered audit policies; ``TrainConfig.audit_policy`` picks one.
POLICIES: dict[str, AuditPolicy] = {}


def register_policy(name: str, policy: AuditPolicy) -> AuditPolicy:
    """Register ``policy`` as the audit policy ``name`` (``train --audit-policy NAME``)."""
    if name in POLICIES:
        raise ValueError(f"audit policy {name!r} is already registered")
    POLICIES[name] = policy
    return policy


register_policy("robust", AuditPolicy(_NEAR_COPY_RANGES, p=0.5))
# The same ranges, a transformed view 80% of the time.
register_policy("robust-strong", AuditPolicy(_NEAR_COPY_RANGES, p=0.8))
# Geometry only (shift, crop, resize).
register_policy("geometric", AuditPolicy({k: _NEAR_COPY_RANGES[k] for k in _GEOMETRIC}, p=0.5))


def get_policy(name: str) -> AuditPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise TransformError(f"unknown audit policy {name!r}; known: {', '.join(POLICIES)}") from None
