"""Atomic writes of files and folders (see :mod:`activemint.io`)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from activemint.errors import RunError, RunWriteError
from activemint.io.kill import kill_point


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def write_error(path: Path, e: OSError) -> RunWriteError:
    why = e.strerror or str(e)
    hint = {errno.ENOSPC: " (disk full)", errno.EDQUOT: " (disk quota exceeded)", errno.EROFS: " (read-only file system)",
            errno.EACCES: " (no write permission)", errno.EPERM: " (no write permission)"}.get(e.errno or 0, "")
    return RunWriteError(f"cannot write {path}: {why}{hint}")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")


def _commit(path: Path, fill: Callable[[Path], Any]) -> Path:
    """``fill(tmp)`` writes and fsyncs a temp file beside ``path``; then rename it into place and fsync the folder.

    Any OSError becomes a one-line :class:`RunWriteError`; on any error the temp file is removed.
    """
    tmp = _temp_name(path)
    try:
        fill(tmp)
        kill_point("partial", path.name)  # the new content is on disk, not yet in place
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(path, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    kill_point("write", path.name)
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` atomically: temp file in the same folder, fsync, rename, fsync the folder.

    ``data`` is the content (bytes, or str as UTF-8) or a function writing to a binary file.
    The file gets mode 0666 minus the umask (0644 usually).  Any OSError (read-only folder,
    disk full) becomes a one-line :class:`RunWriteError` and leaves no temporary file.
    """
    def fill(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                f.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())

    return _commit(Path(path), fill)


def atomic_write_via(path: str | os.PathLike, write_to: Callable[[Path], Any]) -> Path:
    """Like :func:`atomic_write` for writers that want a file name (``write_to(tmp_path)``)."""
    def fill(tmp: Path) -> None:
        write_to(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    return _commit(Path(path), fill)


def atomic_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


def fsync_files(folder: Path) -> None:
    """fsync every file of ``folder`` and the folder itself (OSError propagates)."""
    for p in folder.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def commit_dir(staging: Path, final: Path, *, synced: bool = False) -> None:
    """Rename a completely written folder into place (atomic), then fsync the parent.
    ``synced``: the caller already fsynced the folder's files (:func:`fsync_files`)."""
    try:
        if not synced:
            fsync_files(staging)
        os.rename(staging, final)
        fsync_dir(final.parent)
    except OSError as e:
        raise write_error(final, e) from e
    kill_point("write", final.name)


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise RunError(f"{path} exists and is not a folder") from e
    except OSError as e:
        raise write_error(path, e) from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
