"""Neighbourhood scoring: score a query over views that could undo its change, then aggregate.

A near-copy (shifted, cropped, re-encoded) reaches the model as a different image, and a
membership score computed on it once, as it is, loses most of the signal.  Range membership
inference (RaMIA, Tao & Shokri, SaTML 2025) and augmentation-aware membership inference (Yu et
al., AAAI 2021) score a query over a *neighbourhood* of it instead and aggregate the scores:
if one view lands close to the member that was copied, its score is high.

A **view set** is a fixed, ordered list of views (the exact image first).  Every query --
member, non-member, calibration sample -- goes through the very same views, so the threshold
calibrated on non-members scored the same way keeps its false-positive guarantee.  The named
sets are deterministic; ``random:N`` draws ``N - 1`` affine views from
``numpy.random.default_rng(seed)`` (the same views for every image, identical on a rerun).

    from activemint.neighbourhood import get_view_set, neighbourhood_scores
    vs = get_view_set("geometric")
    s = neighbourhood_scores(run.membership_logits, images, vs, "max")   # (N,)

The cost of one query is ``len(vs)`` scorings of one image (plus the views' own image ops,
small against a forward pass): :func:`ViewSet.cost`.

Aggregations of the ``V`` view scores of a query (:func:`parse_aggregate`): ``max``,
``mean``, ``topk:K`` (mean of the K highest), ``trimmed:F`` (mean after dropping the F
fraction lowest and the F fraction highest scores), and ``zmax``: the largest view score after
standardising each view by the mean and standard deviation of that view's scores on reference
non-members (:meth:`Aggregate.fit`; the callers fit it on the run's external data E only, a
seeded subset of :data:`REFERENCE_SIZE`, never on the calibration or evaluation samples).
Without it every extra view raises the maximum of a non-member's scores as much as a
member's: a view that shifts an image tends to score higher (or lower) for every image.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from activemint.errors import UserError


class NeighbourhoodError(UserError):
    """An unknown view set or aggregation, or one given with bad parameters."""


# ------------------------------------------------------------------------ views
@dataclass(frozen=True)
class View:
    """One view: an affine map (shift in pixels, scale about the centre, rotation in degrees) or a
    filter (``blur`` sigma, ``median`` 3x3, ``jpeg`` quality, ``sharpen`` factor, ``hflip``)."""

    kind: str = "affine"
    dx: int = 0
    dy: int = 0
    scale: float = 1.0
    angle: float = 0.0
    value: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.kind == "affine" and self.dx == 0 and self.dy == 0 and self.scale == 1.0 and self.angle == 0.0

    def label(self) -> str:
        if self.kind != "affine":
            return self.kind if self.kind in ("median", "hflip") else f"{self.kind}:{self.value:g}"
        if self.is_identity:
            return "exact"
        parts = []
        if self.dx or self.dy:
            parts.append(f"shift({self.dx:+d},{self.dy:+d})")
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:.3g}")
        if self.angle:
            parts.append(f"rot {self.angle:+.3g}")
        return " ".join(parts)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """The view of uint8 images (N, C, H, W), uint8."""
        if self.kind == "affine":
            if self.is_identity:
                return images
            exact_grid = self.scale == 1.0 and self.angle == 0.0  # an integer shift: copy pixels, no interpolation
            mode = TF.InterpolationMode.NEAREST if exact_grid else TF.InterpolationMode.BILINEAR
            return TF.affine(images, angle=float(self.angle), translate=[int(self.dx), int(self.dy)],
                             scale=float(self.scale), shear=[0.0, 0.0], interpolation=mode, fill=0)
        if self.kind == "blur":
            return TF.gaussian_blur(images, [3, 3], [self.value, self.value])
        if self.kind == "sharpen":
            return TF.adjust_sharpness(images, self.value)
        if self.kind == "hflip":
            return TF.horizontal_flip(images)
        if self.kind == "median":
            n, c, h, w = images.shape
            pad = torch.nn.functional.pad(images.float(), (1, 1, 1, 1), mode="replicate")
            patches = torch.nn.functional.unfold(pad, 3).view(n, c, 9, h * w)
            return patches.median(dim=2).values.view(n, c, h, w).round().to(torch.uint8)
        if self.kind == "jpeg":
            return _jpeg_all(images, int(round(self.value)))
        raise NeighbourhoodError(f"unknown view kind {self.kind!r}")  # pragma: no cover - views are built here


def _jpeg_all(images: torch.Tensor, quality: float) -> torch.Tensor:
    out = torch.empty_like(images)
    for i, img in enumerate(images):
        a = img.permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            b = np.array(im.convert("L" if img.shape[0] == 1 else "RGB"))
        out[i] = torch.from_numpy(b[:, :, None] if b.ndim == 2 else b).permute(2, 0, 1)
    return out


@dataclass(frozen=True)
class ViewSet:
    """A named, ordered list of views (the exact image first)."""

    name: str
    description: str
    views: tuple[View, ...]

    def __len__(self) -> int:
        return len(self.views)

    def labels(self) -> list[str]:
        return [v.label() for v in self.views]

    def cost(self) -> str:
        """The cost of one query, in words."""
        return f"{len(self)} views x one scoring each ({len(self)} scorings per query)"

    def describe(self) -> dict:
        return {"name": self.name, "description": self.description, "n_views": len(self), "views": self.labels()}


def _grid(r: int, scale: float = 1.0) -> list[View]:
    return [View(dx=dx, dy=dy, scale=scale) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def _dedup(views: Sequence[View]) -> tuple[View, ...]:
    out = [View()]  # the exact image first
    for v in views:
        if v not in out:
            out.append(v)
    return tuple(out)


_ROTATIONS = [View(angle=a) for a in (-10.0, -5.0, 5.0, 10.0)]
_ZOOM = [v for s in (0.9, 0.95) for v in _grid(1, s)]  # undo a crop that was resized back: zoom out, re-centre
_FILTERS = [View("blur", value=0.6), View("median"), View("sharpen", value=2.0), View("jpeg", value=90)]

VIEW_SETS: dict[str, ViewSet] = {vs.name: vs for vs in (
    ViewSet("exact", "the query as it is (the ordinary score; for comparison)", _dedup([])),
    ViewSet("shift1", "shifts on a 3x3 grid of +-1 px", _dedup(_grid(1))),
    ViewSet("shift2", "shifts on a 5x5 grid of +-2 px", _dedup(_grid(2))),
    ViewSet("axis", "shifts by 1 and 2 px along each axis; a sharpening (factor 2)",
            _dedup([View(dx=d) for d in (1, -1, 2, -2)] + [View(dy=d) for d in (1, -1, 2, -2)] + [View("sharpen", value=2.0)])),
    ViewSet("compact", "shifts on a 3x3 grid of +-1 px and by 2 px along each axis; zoom-outs 0.9 and 0.95 about the "
                       "centre; a sharpening (factor 2); a 3x3 median",
            _dedup(_grid(1) + [View(dx=2), View(dx=-2), View(dy=2), View(dy=-2), View(scale=0.9), View(scale=0.95),
                                View("sharpen", value=2.0), View("median")])),
    ViewSet("geometric", "shifts on a 5x5 grid of +-2 px; zoom-outs 0.9 and 0.95 about the centre, each on a 3x3 shift "
                         "grid (undo a crop resized back); rotations +-5, +-10 degrees",
            _dedup(_grid(2) + _ZOOM + _ROTATIONS)),
    ViewSet("photometric", "a 3x3 Gaussian blur (sigma 0.6), a 3x3 median (denoise), a sharpening (factor 2), "
                           "a JPEG q90 re-encode", _dedup(_FILTERS)),
    ViewSet("all", "geometric + photometric", _dedup(_grid(2) + _ZOOM + _ROTATIONS + _FILTERS)),
)}

RANDOM_RANGES = {"shift": 2, "scale": (0.88, 1.0), "angle": 10.0}


def random_view_set(n: int, seed: int = 0) -> ViewSet:
    """``n`` views: the exact image and ``n - 1`` affine views drawn from ``default_rng(seed)``
    (integer shift in [-2, 2] px per axis, scale in [0.88, 1], rotation in [-10, 10] degrees)."""
    rng = np.random.default_rng(seed)
    views = [View()]
    while len(views) < n:
        r = RANDOM_RANGES
        v = View(dx=int(rng.integers(-r["shift"], r["shift"] + 1)), dy=int(rng.integers(-r["shift"], r["shift"] + 1)),
                 scale=round(float(rng.uniform(*r["scale"])), 4), angle=round(float(rng.uniform(-r["angle"], r["angle"])), 3))
        if v not in views:
            views.append(v)
    return ViewSet(f"random:{n}", f"the exact image and {n - 1} random affine views (seed {seed}): shift <= 2 px, "
                                  "scale 0.88-1, rotation <= 10 degrees", tuple(views))


def get_view_set(name: str, seed: int = 0) -> ViewSet:
    """A view set by name (``exact``, ``shift1``, ``shift2``, ``geometric``, ``photometric``, ``all``, ``random:N``)."""
    if isinstance(name, ViewSet):
        return name
    if name.startswith("random:"):
        try:
            n = int(name.partition(":")[2])
        except ValueError:
            n = 0
        if not 2 <= n <= 1000:
            raise NeighbourhoodError(f"view set {name!r}: random:N needs an integer N in [2, 1000]")
        return random_view_set(n, seed)
    try:
        return VIEW_SETS[name]
    except KeyError:
        raise NeighbourhoodError(f"unknown view set {name!r}; known: {', '.join(VIEW_SETS)}, random:N") from None


# ---------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class Aggregate:
    """How the V view scores of a query become one score."""

    kind: str
    param: float = 0.0
    mu: tuple[float, ...] | None = None  # zmax: per-view reference mean and standard deviation (fit)
    sd: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        return self.kind if self.kind in ("max", "mean", "zmax") else f"{self.kind}:{self.param:g}"

    @property
    def needs_fit(self) -> bool:
        return self.kind == "zmax"

    def fit(self, reference_view_scores: np.ndarray) -> Aggregate:
        """This aggregation with its per-view statistics taken from (V, M) reference non-member scores."""
        r = np.asarray(reference_view_scores, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] < 2:
            raise NeighbourhoodError(f"{self.name}: needs (views, >= 2 samples) reference scores, got shape {r.shape}")
        sd = np.maximum(r.std(axis=1), 1e-12)
        return Aggregate(self.kind, self.param, tuple(map(float, r.mean(axis=1))), tuple(map(float, sd)))

    def __call__(self, view_scores: np.ndarray) -> np.ndarray:
        """(V, N) scores -> (N,) float64."""
        s = np.asarray(view_scores, dtype=np.float64)
        if s.ndim != 2:
            raise NeighbourhoodError(f"expected (views, samples) scores, got shape {s.shape}")
        if self.kind == "zmax":
            if self.mu is None or len(self.mu) != len(s):
                raise NeighbourhoodError("zmax: fit it on reference non-member scores of the same views first")
            return ((s - np.asarray(self.mu)[:, None]) / np.asarray(self.sd)[:, None]).max(axis=0)
        if self.kind == "max":
            return s.max(axis=0)
        if self.kind == "mean":
            return s.mean(axis=0)
        srt = np.sort(s, axis=0)
        v = len(s)
        if self.kind == "topk":
            k = min(int(self.param), v)
            return srt[v - k:].mean(axis=0)
        cut = int(math.floor(self.param * v))  # trimmed
        return srt[cut:v - cut].mean(axis=0)


AGGREGATES = ("max", "mean", "topk:K", "trimmed:F", "zmax")
REFERENCE_SIZE = 2000  # reference non-members (external data) that fit zmax's per-view statistics


def parse_aggregate(spec: str) -> Aggregate:
    """``max``, ``mean``, ``topk:K`` (K >= 1), ``trimmed:F`` (0 <= F < 0.5), ``zmax``."""
    kind, _, p = spec.strip().partition(":")
    if kind in ("max", "mean", "zmax") and not p:
        return Aggregate(kind)
    try:
        if kind == "topk":
            k = int(p or 3)
            if k >= 1:
                return Aggregate("topk", k)
        elif kind == "trimmed":
            f = float(p or 0.1)
            if 0.0 <= f < 0.5:
                return Aggregate("trimmed", f)
    except ValueError:
        pass
    raise NeighbourhoodError(f"unknown aggregation {spec!r}; known: max, mean, topk:K (K >= 1), trimmed:F (0 <= F < 0.5), zmax")


def parse_aggregates(spec: str) -> list[Aggregate]:
    """A comma-separated list of aggregations (duplicates dropped)."""
    out = list(dict.fromkeys(parse_aggregate(a) for a in spec.split(",") if a.strip()))
    if not out:
        raise NeighbourhoodError("no aggregation given (--aggregate max, mean, topk:K, trimmed:F, zmax)")
    return out


# ------------------------------------------------------------------- scoring
def view_scores(score_images: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor, views: ViewSet,
                batch: int = 4096) -> np.ndarray:
    """(V, N) float64: ``score_images`` on every view of ``images`` (uint8 (N, C, H, W))."""
    views = get_view_set(views)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise NeighbourhoodError("neighbourhood scoring takes uint8 images (N, C, H, W)")
    out = np.empty((len(views), len(images)), dtype=np.float64)
    images = images.cpu()
    for j, v in enumerate(views.views):
        for i in range(0, len(images), batch):
            out[j, i:i + batch] = np.asarray(score_images(v.apply(images[i:i + batch])), dtype=np.float64)
    return out


def reference_subset(n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of the seeded subset of ``n`` reference samples that fits zmax (at most REFERENCE_SIZE)."""
    if n <= REFERENCE_SIZE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, REFERENCE_SIZE, replace=False))


def fit_aggregate(aggregate: Aggregate | str, score_images: Callable[[torch.Tensor], np.ndarray], views: ViewSet | str,
                  reference: torch.Tensor | None) -> Aggregate:
    """``aggregate``, fitted on ``reference`` non-member images (a seeded subset) when it needs it."""
    agg = parse_aggregate(aggregate) if isinstance(aggregate, str) else aggregate
    if not agg.needs_fit or agg.mu is not None:
        return agg
    if reference is None or len(reference) < 2:
        raise NeighbourhoodError(f"{agg.name} needs reference non-members (the run's external data)")
    ref = reference[torch.as_tensor(reference_subset(len(reference)))]
    return agg.fit(view_scores(score_images, ref, get_view_set(views)))


def neighbourhood_scores(score_images: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor, views: ViewSet | str,
                         aggregate: Aggregate | str = "max", reference: torch.Tensor | None = None) -> np.ndarray:
    """(N,) aggregated scores of ``images`` over the views of ``views`` (``reference``: what fits zmax)."""
    agg = fit_aggregate(aggregate, score_images, views, reference)
    return agg(view_scores(score_images, images, get_view_set(views)))
