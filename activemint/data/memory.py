"""The memory budget of decoded images (``max_memory``): parsing it, and the memory available now.

A split whose decoded size ``N x C x H x W`` bytes exceeds the budget is streamed from disk
(:mod:`activemint.data.streaming`).  ``"auto"`` (the default) is half of the memory available
when the data set is loaded; ``"off"`` never streams; ``"0"`` always streams.
"""
from __future__ import annotations

import os
import re

import numpy as np

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(spec: str | int | None) -> int | None | str:
    """``max_memory`` -> bytes (int), ``None`` (no limit: never stream) or ``"auto"``.

    Accepted: ``"auto"`` / ``None`` (auto), ``"off"`` / ``"none"`` / ``"inf"`` (never stream),
    an int of bytes, or a number with a unit: ``"2GB"``, ``"1.5 GiB"``, ``"500M"`` (k, M, G, T
    powers of 1000; KiB, MiB, GiB, TiB powers of 1024).  ``"0"`` streams every folder set.

    Raises:
        ValueError: anything else (the message shows the accepted forms).
    """
    if spec is None:
        return "auto"
    if isinstance(spec, bool):
        raise TypeError(f"max_memory must be a size such as 2GB, 'auto' or 'off', got {spec!r}")
    if isinstance(spec, (int, np.integer)):
        if spec < 0:
            raise ValueError(f"max_memory must be >= 0 bytes, got {spec}")
        return int(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("off", "none", "inf", "unlimited"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", text)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"max_memory must be a size such as 2GB, 512MiB or 1500000000, or 'auto' or 'off'; got {spec!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def available_memory() -> int:
    """Bytes of memory available to new allocations now (``MemAvailable``; psutil or sysconf elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def resolve_budget(spec: str | int | None) -> int | None:
    """The byte budget of ``spec`` (:func:`parse_memory`); ``"auto"`` = half the available memory now."""
    v = parse_memory(spec)
    return available_memory() // 2 if v == "auto" else v  # type: ignore[return-value]
