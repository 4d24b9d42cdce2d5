"""Kill points for tests: ``ACTIVEMINT_KILL_AT=NAME:N`` (see :mod:`activemint.io`)."""
from __future__ import annotations

import os
import signal
import sys

from activemint.errors import UserError

_KILL: tuple[str, int, str] | None | bool = False  # False: not parsed yet
_PASSES: dict[str, int] = {}


def _parse_kill() -> tuple[str, int, str] | None:
    spec = os.environ.get("ACTIVEMINT_KILL_AT", "").strip()
    if not spec:
        return None
    parts = spec.split(":")
    try:
        return parts[0], int(parts[1]), (parts[2] if len(parts) > 2 else "kill")
    except (IndexError, ValueError):
        raise UserError(f"ACTIVEMINT_KILL_AT must be NAME:N or NAME:N:stop, got {spec!r}") from None


def kill_point(name: str, label: str | None = None) -> None:
    """Die (SIGKILL) or stop (SIGSTOP) here on the N-th passing when ACTIVEMINT_KILL_AT=NAME:N says so.

    NAME is a point's name (``write``) or a name and label (``write@train_state.pt``: only
    passings of that point with that label count).
    """
    global _KILL
    if _KILL is False:
        _KILL = _parse_kill()
    if _KILL is None:
        return
    want, n, action = _KILL  # type: ignore[misc]
    if want != name and want != f"{name}@{label}":
        return
    _PASSES[want] = k = _PASSES.get(want, 0) + 1
    if k == n:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)



def reset_kill_points() -> None:
    """Forget the parsed ``ACTIVEMINT_KILL_AT`` and the passings counted: the next kill point reads it afresh."""
    global _KILL
    _KILL = False
    _PASSES.clear()


def kill_passes(point: str) -> int:
    """How often the kill point ``point`` (``NAME`` or ``NAME@LABEL``, as in ``ACTIVEMINT_KILL_AT``) was counted."""
    return _PASSES.get(point, 0)
