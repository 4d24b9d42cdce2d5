"""Progress bars that suit where the output goes.

On a terminal :func:`progress` is an ordinary tqdm bar.  When the output is a file or a pipe
(a redirected log, a batch job) it prints a plain line at most every :data:`LOG_INTERVAL`
seconds instead of redrawing the bar with carriage returns, which floods logs.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from tqdm import tqdm as std_tqdm
from tqdm.auto import tqdm

#: Seconds between two progress lines when the output is not a terminal.
LOG_INTERVAL = float(os.environ.get("ACTIVEMINT_PROGRESS_INTERVAL", "30"))


class LineProgress(std_tqdm):
    """tqdm writing whole lines (``desc: 40% 120/300 [00:31<00:47]``) instead of redrawing one."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:  # noqa: ARG002 (tqdm's signature)
        if msg is None:
            msg = self.__str__()
        msg = msg.strip("\r\n ")
        if not msg:  # a closing bar with leave=False clears its line on a terminal; a log has nothing to clear
            return False
        self.fp.write(msg + "\n")
        self.fp.flush()
        self.shown = True
        return True


def is_terminal(stream: Any = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Any = None, *, disable: bool | None = False, file: Any = None, **kw: Any) -> std_tqdm:
    """A tqdm bar on a terminal, periodic lines elsewhere (same arguments as tqdm)."""
    if disable:
        return tqdm(iterable, disable=True, **kw)
    if is_terminal(file):
        return tqdm(iterable, file=file, **kw)
    kw.setdefault("mininterval", LOG_INTERVAL)
    kw["maxinterval"] = max(kw.get("maxinterval", LOG_INTERVAL), kw["mininterval"])
    kw.pop("dynamic_ncols", None)
    return LineProgress(iterable, file=file, ascii=True, ncols=100, **kw)


#: Seconds a step runs before its bar shows: steps shorter than this print nothing.
DELAY = float(os.environ.get("ACTIVEMINT_PROGRESS_DELAY", "2"))


@contextmanager
def counted(score: Callable[[Any], Any], total: int, desc: str, *, unit: str = "image", batch: int = 512,
            disable: bool = False) -> Iterator[Callable[[Any], np.ndarray]]:
    """``score`` (images -> per-image scores) run in batches of ``batch`` under one bar of ``total`` images.

    Yields a function with ``score``'s signature that may be called several times (e.g. once per
    split or view); each call advances the same bar.  The bar shows once the step has run
    :data:`DELAY` seconds (:func:`progress`: tqdm on a terminal, periodic lines elsewhere).
    """
    bar = progress(total=total, desc=desc, unit=unit, leave=False, delay=DELAY, disable=disable)

    def run(images: Any) -> np.ndarray:
        parts = []
        for i in range(0, len(images), batch):
            chunk = images[i:i + batch]
            parts.append(np.asarray(score(chunk), dtype=np.float64).reshape(-1))
            bar.update(len(chunk))
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

    try:
        yield run
    finally:
        if getattr(bar, "shown", False) and bar.n != bar.last_print_n:  # a log that showed the step ends on its last line
            bar.refresh()
        bar.close()
