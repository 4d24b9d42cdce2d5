"""A small timm-like registry of classifier architectures with named MINT tap points.

Every architecture is registered with a *builder* (``in_chans, num_classes, img_size -> nn.Module``)
and three tap-point *setups* (see :data:`SETUPS`):

``entry``
    early layers (the first stage(s) of the network),
``middle``
    a block in the middle of the network,
``output``
    the last block(s) before the classifier.

A tap point is a dotted module name valid for ``model.get_submodule(name)``.  A forward hook on a
tap point sees a tensor of shape ``(B, C, H, W)`` (``(B, N, D)`` token maps for transformers).
Each tap is a module of the top-level sequential flow, so that the hooked output is exactly the
tensor passed on to the next stage (never a branch of a residual block whose output is mutated or
consumed elsewhere).  The taps of a setup are listed in forward-execution order: the *last* tap
listed is the point where a truncated forward may stop.

Models built here never load pretrained weights, and every ``inplace=True`` activation is switched
off (:func:`disable_inplace`) so that tapped activations are never overwritten after the hook has
read them (which would also break autograd through the MINT head).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from activemint.setups import SETUPS

from . import external
from .taps import disable_inplace, probe_taps, resolve_taps

__all__ = [
    "SETUPS",
    "ArchSpec",
    "arch_spec",
    "create_model",
    "disable_inplace",
    "list_archs",
    "probe_taps",
    "register_arch",
    "resolve_taps",
    "tap_points",
]


Builder = Callable[[int, int, int], nn.Module]


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture.

    Attributes:
        name: registry name, e.g. ``"resnet50"``.
        description: one line for listings.
        taps: setup name (``entry``/``middle``/``output``) -> dotted module names, in forward order.
        builder: ``builder(in_chans, num_classes, img_size) -> nn.Module`` (no pretrained weights).
    """

    name: str
    description: str
    taps: Mapping[str, tuple[str, ...]] = field(hash=False)
    builder: Builder = field(compare=False)

    def tap_points(self, setup: str) -> list[str]:
        """The tap points of ``setup`` (a new list, forward-execution order)."""
        _check_setup(setup)
        return list(self.taps[setup])


#: name -> spec.  The built-in architectures register themselves when :mod:`activemint.models`
#: imports :mod:`.zoo` (this module never imports the files that register into it).
_REGISTRY: dict[str, ArchSpec] = {}


def _check_setup(setup: str) -> None:
    if setup not in SETUPS:
        raise ValueError(f"unknown tap setup {setup!r}; expected one of {list(SETUPS)}")


def register_arch(
    name: str, taps: Mapping[str, Sequence[str]], description: str = ""
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(in_chans, num_classes, img_size) -> nn.Module`` as ``name``.

    ``taps`` must map each of :data:`SETUPS` to a non-empty sequence of dotted module names listed
    in forward-execution order.  The decorated function is returned unchanged.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("architecture name must be a non-empty string")
    missing = [s for s in SETUPS if s not in taps]
    extra = [s for s in taps if s not in SETUPS]
    if missing or extra:
        raise ValueError(
            f"taps of {name!r} must have exactly the keys {list(SETUPS)}"
            f" (missing: {missing}, unexpected: {extra})"
        )
    frozen: dict[str, tuple[str, ...]] = {}
    for setup in SETUPS:
        names = tuple(taps[setup])
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ValueError(f"taps[{setup!r}] of {name!r} must be non-empty dotted names")
        if len(set(names)) != len(names):
            raise ValueError(f"taps[{setup!r}] of {name!r} has duplicates: {names}")
        frozen[setup] = names

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = ArchSpec(
            name=name,
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            taps=MappingProxyType(frozen),  # read-only view
            builder=builder,
        )
        return builder

    return decorator


def unregister_arch(name: str) -> None:
    """Remove a registered architecture (a no-op when ``name`` is not registered), e.g. one a test added."""
    _REGISTRY.pop(name, None)


def list_archs() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


@functools.lru_cache(maxsize=32)
def _external_spec(name: str) -> ArchSpec:
    """``timm:NAME`` / ``torchvision:NAME`` as an ArchSpec: taps discovered on one build for
    3-channel inputs of :data:`external.PROBE_SIZES` (the global RNG is left as it was)."""
    import torch

    for size in external.PROBE_SIZES:  # 64 px first; 224 px for the models that need large inputs (Inception)
        shape = (3, size, size)
        with torch.random.fork_rng(devices=[]):
            model = external.build_external(name, in_chans=3, num_classes=10, img_size=size)
        try:
            candidates = external.tap_candidates(model, shape)
            break
        except ValueError as e:
            error = e
    else:
        raise ValueError(f"arch {name!r} cannot be tapped: {error}") from None
    taps = {s: tuple(external.setup_taps(candidates, s)) for s in SETUPS}

    def builder(in_chans: int, num_classes: int, img_size: int) -> nn.Module:
        return external.build_external(name, in_chans=in_chans, num_classes=num_classes, img_size=img_size)

    return ArchSpec(name=name, description=f"{name} (random weights; taps from {', '.join(candidates[:6])}"
                    f"{' ...' if len(candidates) > 6 else ''})", taps=MappingProxyType(taps), builder=builder)


def arch_spec(name: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``name``; ``ValueError`` listing the known names if unknown.

    ``timm:NAME`` and ``torchvision:NAME`` (any model of those libraries) are specs too, their
    taps found by :func:`activemint.models.external.tap_candidates`.
    """
    if external.is_external(name):
        return _external_spec(name)
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"unknown architecture {name!r}; known: {sorted(_REGISTRY)}, or timm:NAME / torchvision:NAME.{hint}"
        ) from None


def tap_points(name: str, setup: str) -> list[str]:
    """Dotted module names tapped by ``setup`` on architecture ``name``, in forward order."""
    return arch_spec(name).tap_points(setup)


def create_model(name: str, *, in_chans: int, num_classes: int, img_size: int) -> nn.Module:
    """Build architecture ``name`` for ``in_chans``-channel, ``img_size`` px inputs.

    The network is adapted to the input (first conv takes ``in_chans`` channels, classifier has
    ``num_classes`` outputs; for small inputs, <= 64 px, the stem downsamples only ~2x), randomly
    initialised (never pretrained), and has every in-place activation disabled.
    """
    spec = arch_spec(name)
    for arg, val, lo in (("in_chans", in_chans, 1), ("num_classes", num_classes, 1), ("img_size", img_size, 16)):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ValueError(f"{arg} must be an int >= {lo}, got {val!r}")
    model = spec.builder(in_chans, num_classes, img_size)
    disable_inplace(model)
    # Guard against a registry entry whose taps do not exist on the built model.
    for setup in SETUPS:
        resolve_taps(model, list(spec.taps[setup]))
    return model
