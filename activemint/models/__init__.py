"""Classifier architectures and the tap points a MINT head reads.

>>> from activemint.models import create_model, tap_points
>>> model = create_model("small_cnn", in_chans=1, num_classes=10, img_size=28)
>>> tap_points("small_cnn", "middle")
['block3', 'block4']
"""

from . import zoo  # noqa: F401,E402  (registers the built-in architectures)
from .registry import (
    SETUPS,
    ArchSpec,
    arch_spec,
    create_model,
    disable_inplace,
    list_archs,
    probe_taps,
    register_arch,
    resolve_taps,
    tap_points,
    unregister_arch,
)
from .small_cnn import SmallCNN

__all__ = [
    "SETUPS",
    "ArchSpec",
    "SmallCNN",
    "arch_spec",
    "create_model",
    "disable_inplace",
    "list_archs",
    "probe_taps",
    "register_arch",
    "resolve_taps",
    "tap_points",
    "unregister_arch",
]
