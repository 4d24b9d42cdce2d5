"""Range checks of the commands' numeric options, as argparse ``type=`` functions.

Every numeric option of every command is parsed by one of these (or is a TrainConfig field,
which :meth:`activemint.training.TrainConfig.validate` checks by name), so a value out of range
stops the command before any work, with one line naming the option::

    activemint robustness: error: argument --bootstrap: must be an integer >= 0, got '-1'

Each checker carries ``bad`` (a value it refuses), which the tests feed to every option.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def _checker(parse: Callable[[str], Any], bad: str, what: str) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        return parse(text)

    check.__name__ = what  # argparse names the type in some messages
    check.bad = bad  # type: ignore[attr-defined]
    check.what = what  # type: ignore[attr-defined]
    return check


def integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (hi: no upper bound when None)."""
    what = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text[:40]!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text[:40]!r}")
        return v

    return _checker(parse, str(lo - 1), what)


def real(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """A finite number in the interval lo..hi (``lo_open`` / ``hi_open``: the bound itself excluded)."""
    what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text[:40]!r}") from None
        if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text[:40]!r}")
        return v

    bad = repr(float(lo)) if lo_open else repr(lo - 1.0) if math.isfinite(lo) else "nan"
    return _checker(parse, bad, what)


def real_list(lo: float, hi: float) -> Callable[[str], tuple[float, ...]]:
    """Comma-separated numbers, each in [lo, hi]."""
    what = f"comma-separated numbers in [{lo:g}, {hi:g}]"

    def parse(text: str) -> tuple[float, ...]:
        out = []
        for item in text.split(","):
            try:
                v = float(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {what}, got {item.strip()[:40]!r} in {text[:60]!r}") from None
            if not math.isfinite(v) or not lo <= v <= hi:
                raise argparse.ArgumentTypeError(f"must be {what}, got {item.strip()[:40]!r} in {text[:60]!r}")
            out.append(v)
        return tuple(out)

    return _checker(parse, f"{lo:g},{hi + 1:g}", what)


#: the usual ones
POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SEED = integer(0, 2**63 - 1)
PROBABILITY = real(0.0, 1.0, lo_open=True, hi_open=True)  # alpha, target FPR


def add_image_args(p) -> None:
    """``--follow-symlinks`` and ``--max-pixels`` of the commands that read user images (score, audit)."""
    p.add_argument("--follow-symlinks", action="store_true",
                   help="read images that a symbolic link in an input folder points to outside that folder (refused by default)")
    p.add_argument("--max-pixels", type=POSITIVE, metavar="N",
                   help="largest image (width x height) decoded, checked before decoding (default 4096 x 4096 = 16777216)")
