"""The one base class of user-facing errors.

Anything the user can fix (a bad argument, a missing or corrupt file, a run directory in the
wrong state) raises a subclass of :class:`UserError`. The command line prints its message on
one line and exits with status 2; library callers catch ``UserError`` to handle them all.
"""
from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix; the message says what was expected and where."""


def not_a_directory(path: str | os.PathLike, what: str = "directory") -> str:
    """Why ``path`` is not a usable directory: "... is a file, not a directory" or "... does not exist"."""
    p = Path(path)
    if p.is_dir():
        return f"{what} {p} is a directory"  # not an error; for completeness
    if p.exists():
        return f"{what} {p} is a file, not a directory"
    return f"{what} {p} does not exist"


class RunError(UserError):
    """A run directory is missing a file, is inconsistent or is in the wrong state."""


class RunLockedError(RunError):
    """Another process holds the run directory's lock."""


class RunWriteError(RunError):
    """A file of a run could not be written (read-only folder, disk full, ...)."""

