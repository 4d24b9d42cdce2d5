"""Progress bars that suit where the output goes.

On a terminal :func:`progress` is an ordinary tqdm bar.  When the output is a file or a pipe
(a redirected log, a batch job) it prints a plain line at most every :data:`LOG_INTERVAL`
seconds instead of redrawing the bar with carriage returns, which floods logs.
"""
from __future__ import annotations

import os
import sys
from typing import Any

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
        if msg:
            self.fp.write(msg + "\n")
            self.fp.flush()
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
