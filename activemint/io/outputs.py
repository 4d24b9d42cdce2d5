"""A command's outputs: one file, or a folder renamed into place whole; CSV cells."""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from activemint.errors import RunWriteError
from activemint.io.atomic import atomic_write, commit_dir, fsync_files, make_dir, write_error
from activemint.io.kill import kill_point
from activemint.io.lock import hold_lock

REPORT = "report.html"  # `activemint report` may write it into any command's output folder


# ------------------------------------------------------------------------ CSV cells
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula: text starting with ``= + - @``,
    tab or CR gets a leading ``'`` (numbers, including ``-1.5``, are left alone).  Every CSV
    the project writes passes its cells through here (:func:`csv_row`)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_row(row: Iterable[Any]) -> list[Any]:
    """:func:`csv_cell` of every cell of ``row``."""
    return [csv_cell(v) for v in row]


# -------------------------------------------------------------- outputs of commands
# A command's output (a file, or a folder of files) is built beside its final path and renamed
# into place: ``.NAME.PID-HEX.part`` (a file, see :func:`atomic_write`) or ``.NAME.tmp-PID-HEX``
# (a folder); the folder it replaces is first renamed to ``.NAME.old-PID-HEX``.  Whatever a killed
# writer leaves behind carries those names, so it is never confused with a result, and the next
# writer of NAME removes it (:func:`clean_stale`), putting a replaced folder back if the new one
# never arrived.
_STALE = re.compile(r"(?:(tmp|old)-)?(\d+)-[0-9a-f]+(\.part)?")
_OLD_AUDIT_TMP = re.compile(r"tmp-[a-z0-9_]{8}")  # tempfile.mkdtemp's folders of audits before run format 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but is not ours
    return True


def clean_stale(final: str | os.PathLike, *, locked: bool = False) -> None:
    """Remove the temporary files and folders a killed writer of ``final`` left beside it.

    ``locked``: the caller holds ``final``'s writer lock, so every leftover is stale; otherwise
    only those of processes that no longer exist are.  A replaced folder (``.NAME.old-*``) is
    put back when ``final`` is missing (the writer died between the two renames).
    """
    import shutil

    final = Path(final)
    prefix = f".{final.name}."
    try:
        entries = [p for p in final.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for p in sorted(entries):
        if locked and _OLD_AUDIT_TMP.fullmatch(p.name[len(prefix):]) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            continue
        m = _STALE.fullmatch(p.name[len(prefix):])
        if m is None or (m.group(1) is None) != (m.group(3) is not None):
            continue  # not ours: a file .NAME.PID-HEX.part or a folder .NAME.tmp-/old-PID-HEX
        pid = int(m.group(2))
        if not locked and (pid == os.getpid() or _alive(pid)):
            continue
        with contextlib.suppress(OSError):
            if m.group(1) == "old" and not final.exists() and not final.is_symlink():
                os.rename(p, final)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


def write_output(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], Any]) -> Path:
    """A command's one-file output (``score -o``, ``power --json``, ``report``): :func:`atomic_write`
    after removing what a killed earlier writer of it left (:func:`clean_stale`)."""
    path = Path(path)
    if path.is_dir():
        raise RunWriteError(f"cannot write {path}: it is a folder; give a file name")
    make_dir(path.parent)
    clean_stale(path)
    return atomic_write(path, data)


def check_output_dir(final: str | os.PathLike, names: Iterable[str], *, carry: Sequence[str] = ()) -> None:
    """Refuse (one line) an output folder that :func:`output_dir` would not replace: a file, a
    link, or a folder holding anything but ``names``, ``carry`` and a report.  Call it before the work."""
    final, allowed = Path(final), set(names) | set(carry) | {REPORT}
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise RunWriteError(f"cannot write {final}: it exists and is not a folder")
    if final.is_dir():
        foreign = sorted(p.name for p in final.iterdir() if p.name not in allowed)
        if foreign:
            raise RunWriteError(f"will not replace {final}: it holds files this command did not write "
                                f"({', '.join(foreign[:3])}); choose another output folder")


@contextlib.contextmanager
def output_dir(final: str | os.PathLike, names: Iterable[str], *, carry: Sequence[str] = (),
               what: str = "output") -> Iterator[Path]:
    """Build a command's folder of outputs: ``with output_dir(OUT, names) as tmp:`` write into ``tmp``.

    When the block ends without error, ``tmp`` is renamed into place as ``OUT`` (the old ``OUT``,
    if any, goes whole); a kill at any instant leaves ``OUT`` absent, as it was, or complete.
    ``names``: the files the command writes (an existing ``OUT`` holding anything else is
    refused, never deleted); ``carry``: entries of the old ``OUT`` moved into the new one (a
    cache).  Runs under a lock beside ``OUT`` (``.NAME.lock``).  Write errors name ``OUT``.
    """
    import shutil

    final = Path(final)
    allowed = set(names) | set(carry) | {REPORT}
    make_dir(final.parent)
    with hold_lock(final.parent / f".{final.name}.lock", f"{what} into {final}", target=final):
        clean_stale(final, locked=True)
        check_output_dir(final, allowed)
        tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        tmp, trash = final.with_name(f".{final.name}.tmp-{tag}"), final.with_name(f".{final.name}.old-{tag}")
        try:
            tmp.mkdir()
        except OSError as e:
            raise write_error(final, e) from e
        try:
            try:
                yield tmp
                for name in carry:
                    if (final / name).exists() and not (tmp / name).exists():
                        os.rename(final / name, tmp / name)
                fsync_files(tmp)  # before the old folder goes aside: the window without an output stays two renames wide
                kill_point("partial", final.name)  # the new folder is complete, not yet in place
                if final.exists():
                    os.rename(final, trash)
                    kill_point("write", f"{final.name}.old")  # the old folder set aside, the new one not yet in
                commit_dir(tmp, final, synced=True)
            except RunWriteError as e:
                raise RunWriteError(str(e).replace(str(tmp), str(final))) from e
            except OSError as e:
                name = Path(e.filename).name if isinstance(e.filename, str) and str(tmp) in e.filename else ""
                raise write_error(final / name if name else final, e) from e
        except BaseException:
            if trash.exists() and not final.exists():
                with contextlib.suppress(OSError):
                    os.rename(trash, final)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(trash, ignore_errors=True)

