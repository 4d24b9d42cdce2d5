"""The exclusive writer lock of a folder or file (filelock), naming its holder."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from activemint.errors import RunLockedError
from activemint.io.atomic import write_error

_HELD: dict[str, tuple[Any, int]] = {}  # canonical lock path -> (FileLock, depth): reentrant per process


def _holder_info(what: str) -> bytes:
    return (json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "what": what,
        "command": " ".join(sys.argv[:12])[:300],
        "since": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }) + "\n").encode()


def describe_holder(lock_path: Path) -> str:
    """``"train (pid 123 on host h, since ...)"`` from a lock file's content, or a fallback."""
    for _ in range(20):  # the holder writes its info right after taking the lock
        try:
            info = json.loads(lock_path.read_text() or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            return (f"{info.get('what', 'a writer')} (pid {info.get('pid')} on host {info.get('host')}, "
                    f"since {info.get('since')})")
        time.sleep(0.05)
    return "another process (no holder information in the lock file)"


@contextlib.contextmanager
def hold_lock(lock_path: str | os.PathLike, what: str, *, target: str | os.PathLike | None = None,
              remove: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold the exclusive flock ``lock_path`` (filelock) or raise :class:`RunLockedError` at once.

    Re-entrant within a process.  The lock file records pid, host and ``what`` of the holder.
    ``remove``: asked when the outermost holder releases; True deletes the lock file (while it
    is still held), so that a finished job leaves no stale lock with a dead pid behind.  An
    acquirer that locked a file deleted meanwhile (its inode is no longer at the path) retries.
    """
    from filelock import FileLock, Timeout

    lock_path = Path(lock_path)
    key = os.path.realpath(lock_path)
    if key in _HELD:
        lock, depth = _HELD[key]
        _HELD[key] = (lock, depth + 1)
        try:
            yield
        finally:
            lock, depth = _HELD[key]
            _HELD[key] = (lock, depth - 1)
        return

    for _attempt in range(20):
        unlinked: list[bool] = []

        def on_acquired(fd: int, unlinked: list[bool] = unlinked) -> None:
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except OSError:
                same = False
            if not same:  # the previous holder removed the file after we opened it: lock the new one
                unlinked.append(True)
                return
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, _holder_info(what))

        lock = FileLock(lock_path, timeout=0, on_acquired=on_acquired, preserve_lock_file=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLockedError(
                f"{target or lock_path.parent} is locked by {describe_holder(lock_path)}: another process is writing it; "
                f"wait for it to finish (or stop it) and try again"
            ) from None
        except OSError as e:
            raise write_error(lock_path, e) from e
        if not unlinked:
            break
        lock.release()
    _HELD[key] = (lock, 1)
    try:
        yield
    finally:
        del _HELD[key]
        try:
            if remove is not None and remove():
                lock_path.unlink(missing_ok=True)
        except OSError:
            pass  # a lock file left behind is harmless: the next writer takes it over
        lock.release()


def lock_holder(lock_path: Path) -> str | None:
    """Who holds ``lock_path`` now (another process), or None when nobody does (or we cannot tell)."""
    from filelock import FileLock, Timeout

    if not lock_path.is_file() or os.path.realpath(lock_path) in _HELD:
        return None
    try:
        probe = FileLock(lock_path, timeout=0, preserve_lock_file=True)
        probe.acquire(timeout=0)
    except Timeout:
        return describe_holder(lock_path)
    except OSError:
        return None  # e.g. a read-only copy: nobody can be writing it through this lock
    probe.release()
    return None

