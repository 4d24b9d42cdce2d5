"""The one base class of user-facing errors.

Anything the user can fix (a bad argument, a missing or corrupt file, a run directory in the
wrong state) raises a subclass of :class:`UserError`. The command line prints its message on
one line and exits with status 2; library callers catch ``UserError`` to handle them all.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message says what was expected and where."""
