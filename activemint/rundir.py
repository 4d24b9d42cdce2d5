"""The one owner of a run directory's files: their names, how they are written, the lock, the state.

A run directory (``activemint train --out RUN``)::

    RUN/
      .activemint.lock   flock held by the process writing RUN (train / --resume); it holds
                         that process's pid, host and command, so a second writer can name it
      config.yaml        the resolved TrainConfig
      provenance.yaml    activemint version, git commit, torch version, machine
      manifest.csv       every sample of the run's splits and a SHA-256 of its pixels
      metrics.jsonl      exactly one line per finished epoch
      checkpoints/       epoch-NNNN/ directories (see activemint.training.checkpoint), each
                         written complete into a staging folder and renamed into place
      model.safetensors  the final model (+ model.json metadata)
      scores.npz         the final model's membership scores (records the model's SHA-256)
      metrics.json       the final evaluation, written LAST; it records the SHA-256 of
                         model.safetensors, model.json and scores.npz
      data/              only in a run saved from the user's own loop (activemint.save_run):
                         its data set ``tensors``, train.safetensors and test.safetensors

Every file is written atomically: a temporary file in the same folder, fsync, ``os.replace``,
fsync of the folder; files get ordinary modes (0644 under the usual umask).  A reader sees a
file's old content or its new content, never a mix, and after a crash at any instant the
directory is in one of the states of :meth:`RunDir.state`:

* ``in progress``: another process holds the lock (it is training or resuming);
* ``incomplete``: training stopped before the final save finished (resume it with
  ``activemint train --resume --out RUN``);
* ``complete``: metrics.json is there and every file it names has the recorded SHA-256;
* ``inconsistent``: metrics.json is there but a file it names was changed or truncated.

Kill points (for tests): ``ACTIVEMINT_KILL_AT=NAME:N`` makes the process SIGKILL itself the
N-th time it passes the point NAME (``NAME:N:stop`` sends SIGSTOP instead, so a test can
resume it with SIGCONT).  Points: ``write`` (after every file or checkpoint-directory write),
``partial`` (a file's new content is on disk but not yet renamed into place), ``step`` (after
every optimisation step), ``epoch`` (after an epoch's checkpoint is committed and older ones
pruned).  ``write@NAME`` / ``partial@NAME`` count only the passings for the file (or
checkpoint directory) NAME, e.g. ``ACTIVEMINT_KILL_AT=write@train_state.pt:2``.  Unset, a
kill point costs one comparison.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from activemint.errors import UserError

# ----------------------------------------------------------------------------- names
CONFIG = "config.yaml"
PROVENANCE = "provenance.yaml"
MANIFEST = "manifest.csv"
LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MODEL = "model.safetensors"
MODEL_META = "model.json"  # save_weights writes the metadata beside the weights with suffix .json
METRICS = "metrics.json"
SCORES = "scores.npz"
REPORT = "report.html"
AUDITS = "audits"
BASELINE = "baseline"
LOCK = ".activemint.lock"
DATA = "data"  # a run saved from the user's own loop (activemint.save_run): its data as train/test .safetensors
# inside one checkpoint directory (checkpoints/epoch-NNNN/)
CKPT_WEIGHTS = "weights.safetensors"
CKPT_META = "weights.json"
CKPT_STATE = "train_state.pt"
CKPT_MANIFEST = "checkpoint.json"
# an audit output folder's marker (written by `activemint audit`, required by --force)
AUDIT_MARKER = ".activemint-audit"

TRAIN_LOG = "train.log"  # a grid cell's log (the grid appends every message of the cell)
POSTHOC_HEADS = "posthoc-heads"  # robustness: post-hoc heads cached beside the plain model they read
WEIGHTS_SUFFIX = ".safetensors"

# Files of the caches and outputs beside run directories (every file name lives in this module).
CACHE_RUNS, CACHE_REFERENCE, CACHE_SCORERS = "runs", "reference-models", "scorers"  # folders of ``compare``'s cache
CACHE_KEY = "config.json"  # a cache entry's full key (reference models, trained scorers)
LOGITS = "logits.npz"  # a reference model's class logits of every scored sample
PLAN = "plan.npz"  # the reference models' pool and IN mask
FEATURES = "features.npz"  # robustness: D's penultimate features
COMPARE_FILES = {"markdown": "compare.md", "csv": "compare.csv", "json": "compare.json",
                 "roc_linear": "roc_linear.png", "roc_loglog": "roc_loglog.png", "scores": "scores.npz"}
GRID_FILES = {"markdown": "results.md", "csv": "results.csv"}
ROBUSTNESS_FILES = {"json": "robustness.json", "csv": "robustness.csv", "markdown": "robustness.md",
                    "plot": "robustness.png", "html": "robustness.html"}
AUDIT_FILES = {"json": "audit.json", "samples": "samples.csv", "markdown": "summary.md", "html": REPORT}
CALIBRATION_JSON, CALIBRATION_NPZ = "calibration.json", "calibration.npz"  # an audit's calibration cache
META_SUFFIX = ".json"  # save_weights writes a weights file's metadata beside it with this suffix

RUN_FORMAT = "activemint-run/3"  # 3: metrics.json binds its own figures (FIGURES_KEY)
FIGURES_KEY = "figures_sha256"  # metrics.json entry: SHA-256 of its other entries (all but "files" and itself)
SCORE_ARRAYS_KEY = "score_arrays"  # metrics.json: the names of scores.npz's arrays (under the figures digest)
SCORES_MODEL_KEY = "model_sha256"  # scores.npz entry naming the SHA-256 of the model that made it
#: files that metrics.json binds by SHA-256
BOUND_FILES = (MODEL, MODEL_META, SCORES)


# ---------------------------------------------------------------------------- errors
class RunError(UserError):
    """A run directory is missing a file, is inconsistent or is in the wrong state."""


class RunLockedError(RunError):
    """Another process holds the run directory's lock."""


class RunWriteError(RunError):
    """A file of a run could not be written (read-only folder, disk full, ...)."""


class RunExistsError(RunError, FileExistsError):
    """``train`` without ``--resume`` into a folder that already holds a run."""


# ------------------------------------------------------------------------ kill points
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


# ---------------------------------------------------------------------- atomic writes
def _fsync_dir(path: Path) -> None:
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


def _write_error(path: Path, e: OSError) -> RunWriteError:
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
        _fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _write_error(path, e) from e
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


def _fsync_files(folder: Path) -> None:
    """fsync every file of ``folder`` and the folder itself (OSError propagates)."""
    for p in folder.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def commit_dir(staging: Path, final: Path, *, synced: bool = False) -> None:
    """Rename a completely written folder into place (atomic), then fsync the parent.
    ``synced``: the caller already fsynced the folder's files (:func:`_fsync_files`)."""
    try:
        if not synced:
            _fsync_files(staging)
        os.rename(staging, final)
        _fsync_dir(final.parent)
    except OSError as e:
        raise _write_error(final, e) from e
    kill_point("write", final.name)


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
            raise _write_error(final, e) from e
        try:
            try:
                yield tmp
                for name in carry:
                    if (final / name).exists() and not (tmp / name).exists():
                        os.rename(final / name, tmp / name)
                _fsync_files(tmp)  # before the old folder goes aside: the window without an output stays two renames wide
                kill_point("partial", final.name)  # the new folder is complete, not yet in place
                if final.exists():
                    os.rename(final, trash)
                    kill_point("write", f"{final.name}.old")  # the old folder set aside, the new one not yet in
                commit_dir(tmp, final, synced=True)
            except RunWriteError as e:
                raise RunWriteError(str(e).replace(str(tmp), str(final))) from e
            except OSError as e:
                name = Path(e.filename).name if isinstance(e.filename, str) and str(tmp) in e.filename else ""
                raise _write_error(final / name if name else final, e) from e
        except BaseException:
            if trash.exists() and not final.exists():
                with contextlib.suppress(OSError):
                    os.rename(trash, final)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(trash, ignore_errors=True)


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise RunError(f"{path} exists and is not a folder") from e
    except OSError as e:
        raise _write_error(path, e) from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_json(obj: Any) -> str:
    """SHA-256 (hex) of ``obj`` as compact JSON with sorted keys (cache keys; non-JSON values as ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- lock
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
            raise _write_error(lock_path, e) from e
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


# -------------------------------------------------------------------------- run state
@dataclass(frozen=True)
class RunState:
    kind: str  # "missing", "not a run", "in progress", "incomplete", "inconsistent", "complete", "model only"
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class RunDir:
    """A run directory: the path of each of its files, atomic writers, the lock and the state."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # the files
    config = property(lambda self: self.path / CONFIG)
    provenance = property(lambda self: self.path / PROVENANCE)
    manifest = property(lambda self: self.path / MANIFEST)
    log = property(lambda self: self.path / LOG)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    model = property(lambda self: self.path / MODEL)
    model_meta = property(lambda self: self.path / MODEL_META)
    metrics = property(lambda self: self.path / METRICS)
    scores = property(lambda self: self.path / SCORES)
    report = property(lambda self: self.path / REPORT)
    audits = property(lambda self: self.path / AUDITS)
    baseline = property(lambda self: self.path / BASELINE)
    lock_file = property(lambda self: self.path / LOCK)
    train_log = property(lambda self: self.path / TRAIN_LOG)
    logits = property(lambda self: self.path / LOGITS)

    def has_checkpoint(self) -> bool:
        """Whether ``checkpoints/`` holds a committed epoch directory (``train --resume`` continues from it)."""
        d = self.checkpoints
        return d.is_dir() and any(p.name.startswith("epoch-") and p.is_dir() for p in d.iterdir())

    def is_complete(self) -> bool:
        return self.state().kind == "complete"

    def is_done(self, mint: bool) -> bool:
        """A finished run: complete (metrics.json binds its files) and, for aMINT, with its scores."""
        return self.is_complete() and (not mint or self.scores.is_file())

    # ---------------------------------------------------------------- lock
    def lock(self, what: str = "train") -> contextlib.AbstractContextManager[None]:
        """Exclusive lock of this run directory (created if needed) for a writer.

        The lock file goes when the last holder releases it on a finished run (metrics.json
        written): a completed run leaves no lock behind; an interrupted one keeps it.
        """
        make_dir(self.path)
        return hold_lock(self.lock_file, what, target=self.path, remove=self.metrics.is_file)

    def holder(self) -> str | None:
        return lock_holder(self.lock_file)

    # -------------------------------------------------------------- writers
    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.path / name, text)

    def write_log(self, records: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl with exactly these records (one line each), atomically."""
        atomic_write(self.log, "".join(json.dumps(r) + "\n" for r in records))

    def read_log(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        out = []
        for i, line in enumerate(self.log.read_text().splitlines()):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise RunError(f"{self.log}: line {i + 1} is not JSON ({e})") from e
        return out

    def clean_partials(self) -> None:
        """Remove temporary files of a writer that was killed mid-write (call under the lock)."""
        for p in self.path.glob(".*.part"):
            with contextlib.suppress(OSError):
                p.unlink()

    def discard_evaluation(self) -> None:
        """Remove metrics.json (first, so the run reads as incomplete) before the final files change."""
        try:
            self.metrics.unlink(missing_ok=True)
            _fsync_dir(self.path)
        except OSError as e:
            raise _write_error(self.metrics, e) from e

    def write_scores(self, scores: Any, model_sha256: str) -> None:
        """scores.npz: a :class:`activemint.scores.Scores` (or its arrays) and the model's SHA-256."""
        import numpy as np

        arrays = {**(scores.arrays() if hasattr(scores, "arrays") else scores), SCORES_MODEL_KEY: np.asarray(model_sha256)}
        atomic_write(self.scores, lambda f: np.savez(f, **arrays))

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write metrics.json LAST, binding the final files by SHA-256 and its own figures by
        :func:`figures_digest`; returns what was written."""
        files = {name: file_sha256(self.path / name) for name in BOUND_FILES if (self.path / name).is_file()}
        doc = {**{k: v for k, v in metrics.items() if k not in ("run_format", "files", FIGURES_KEY, SCORE_ARRAYS_KEY)},
               "run_format": RUN_FORMAT}
        if self.scores.is_file():  # scores.npz's arrays, each by a digest, under the figures digest: a renamed,
            import numpy as np  # retyped or changed array cannot pass even when the file digests are re-signed

            with np.load(self.scores, allow_pickle=False) as z:
                doc[SCORE_ARRAYS_KEY] = {k: array_digest(z[k]) for k in sorted(z.files)}
        doc = json.loads(json.dumps(doc, default=str))  # the digest is of what a reader will load
        doc.update({FIGURES_KEY: figures_digest(doc), "files": files})
        atomic_json(self.metrics, doc)
        return doc

    # ----------------------------------------------------------------- state
    def state(self) -> RunState:
        p = self.path
        if not p.exists():
            return RunState("missing", f"run directory {p} does not exist")
        if not p.is_dir():
            return RunState("not a run", f"{p} is not a folder")
        holder = self.holder()
        if holder is not None:
            return RunState("in progress", f"{p} is being written by {holder}; wait for it to finish")
        if not self.config.is_file():
            return RunState("not a run", f"{p} has no {CONFIG}: not an activemint run directory")
        resume = f"continue it with `activemint train --resume --out {p}`"
        if not self.metrics.is_file():
            if not self.model.is_file():
                return RunState("incomplete", f"{p} has no checkpoint {MODEL}: the run did not finish ({resume})")
            if self.checkpoints.is_dir():
                return RunState("incomplete", f"{p} has no {METRICS}: the run stopped during its final save ({resume})")
            return RunState("model only", f"{p} has a model but no {METRICS}")
        try:
            doc = json.loads(self.metrics.read_text())
        except (OSError, ValueError) as e:
            return RunState("inconsistent", f"{self.metrics} is not readable JSON ({e})")
        if not isinstance(doc, dict):
            return RunState("inconsistent", f"{self.metrics} is not a JSON object")
        if not self.model.is_file():
            return RunState("inconsistent", f"{p} has {METRICS} but no checkpoint {MODEL}")
        why = binding_problem(doc, self.metrics)
        if why is not None:
            return RunState("inconsistent", why)
        files = doc["files"]
        for name in BOUND_FILES:
            f = p / name
            if name not in files:
                if f.is_file():
                    return RunState("inconsistent", f"{METRICS} does not bind {f} (no SHA-256 of it in its 'files')")
                continue
            if not f.is_file():
                return RunState("inconsistent", f"{f} is missing although {METRICS} names it")
            if file_sha256(f) != files[name]:
                return RunState("inconsistent", f"{f} does not match {METRICS} (SHA-256 differs): it was changed or "
                                                f"truncated after the run finished")
        return RunState("complete", f"{p} is a finished run")

    def require(self, *ok: str) -> RunState:
        """The state, or a one-line :class:`RunError` unless it is one of ``ok`` (default: complete, model only)."""
        st = self.state()
        if st.kind not in (ok or ("complete", "model only")):
            raise RunError(f"run {st.kind}: {st.detail}" if st.kind in ("in progress", "incomplete", "inconsistent")
                           else st.detail)
        return st

    # ---------------------------------------------------------------- readers
    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json (None if absent), as a dict; a one-line RunError when unreadable."""
        if not self.metrics.is_file():
            return None
        try:
            doc = json.loads(self.metrics.read_text())
        except (OSError, ValueError) as e:
            raise RunError(f"{self.metrics} is not readable JSON ({e})") from e
        if not isinstance(doc, dict):
            raise RunError(f"{self.metrics} is not a JSON object")
        check_metrics_fields(doc, self.metrics)
        return doc

    def read_scores(self, *, model_sha256: str | None = None) -> dict[str, Any] | None:
        """scores.npz as {name: array} (None if absent), checked against metrics.json and the model.

        A truncated or foreign file (another model's scores) raises a one-line RunError.
        """
        import zipfile

        import numpy as np

        if not self.scores.is_file():
            return None
        m = self.read_metrics()
        files = (m or {}).get("files") if isinstance((m or {}).get("files"), dict) else None
        if files is not None and SCORES in files and file_sha256(self.scores) != files[SCORES]:
            raise RunError(f"{self.scores} does not match {METRICS} (SHA-256 differs): it was changed or truncated "
                           f"after the run finished")
        try:
            with np.load(self.scores, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
            raise RunError(f"{self.scores} is not a readable .npz file ({type(e).__name__}: {e}); the run's final save "
                           f"may have been interrupted") from e
        _check_score_arrays(out, self.scores)
        own = out.pop(SCORES_MODEL_KEY, None)
        if model_sha256 is None and self.model.is_file() and own is not None:
            model_sha256 = file_sha256(self.model)
        if own is not None and model_sha256 is not None and str(own) != model_sha256:
            raise RunError(f"{self.scores} was made by another model (SHA-256 {str(own)[:12]}...), not by {self.model} "
                           f"({model_sha256[:12]}...)")
        listed = (m or {}).get(SCORE_ARRAYS_KEY)
        if listed is not None and (not isinstance(listed, dict) or sorted(listed) != sorted([*out, *([SCORES_MODEL_KEY] if own is not None else [])])
                                   or any(listed[k] != array_digest(v) for k, v in out.items())):
            raise RunError(f"{self.scores} does not hold the arrays {METRICS} lists by digest ({SCORE_ARRAYS_KEY}): "
                           f"it was changed after the run finished")
        return out


_SHA256 = re.compile(r"[0-9a-f]{64}")
#: metrics.json fields that are numbers (or null), at the top level and in "membership"
METRICS_NUMBERS = ("test_accuracy", "n_test", "epochs_trained", "selected_epoch", "train_seconds",
                   "baseline_test_accuracy", "baseline_train_seconds")
METRICS_TEXT = ("calibration_note",)  # the one non-numeric field of "membership"


def check_metrics_fields(doc: dict[str, Any], where: Path) -> None:
    """A one-line :class:`RunError` naming ``where`` and the field when a figure is not a number."""
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    for k in METRICS_NUMBERS:
        if not number(doc.get(k)):
            raise RunError(f"{where}: field {k!r} is {str(doc[k])[:40]!r}, expected a number")
    m = doc.get("membership")
    if m is None:
        return
    if not isinstance(m, dict):
        raise RunError(f"{where}: field 'membership' is not an object")
    for k, v in m.items():
        if k not in METRICS_TEXT and not number(v):
            raise RunError(f"{where}: field 'membership.{str(k)[:40]}' is {str(v)[:40]!r}, expected a number")


def array_digest(a: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode() + a.tobytes()).hexdigest()


def figures_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of metrics.json's entries but ``files`` and :data:`FIGURES_KEY` (:func:`sha256_json`)."""
    return sha256_json({k: v for k, v in doc.items() if k not in ("files", FIGURES_KEY)})


def binding_problem(doc: dict[str, Any], where: Path) -> str | None:
    """Why metrics.json ``doc`` (read from ``where``) does not bind the run: a missing or malformed
    ``files`` entry, an unknown file name, a malformed SHA-256, or figures that do not match their
    digest.  None when the bindings are well formed (the files' hashes are checked by the caller)."""
    files = doc.get("files")
    if not isinstance(files, dict):
        return (f"{where} has no well-formed 'files' entry binding the run's files by SHA-256 "
                f"({'missing' if files is None else type(files).__name__}); the run cannot be checked")
    for name, digest in files.items():
        if name not in BOUND_FILES:
            return f"{where} 'files' names an unknown file {str(name)[:60]!r} (expected {', '.join(BOUND_FILES)})"
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return f"{where} 'files' {name!r} is not a SHA-256 (64 hex digits)"
    if MODEL not in files:
        return f"{where} 'files' does not bind {MODEL}"
    got = doc.get(FIGURES_KEY)
    if got is None:
        return (f"{where} has no {FIGURES_KEY!r} (written by an activemint older than run format {RUN_FORMAT}, or "
                f"edited): its figures cannot be checked; retrain or re-evaluate the run")
    if got != figures_digest(doc):
        return f"{where}: its figures do not match their {FIGURES_KEY!r} (the file was edited or corrupted)"
    return None


#: scores.npz of a run: a float64 score per sample of each role, its int64 indices, the extras
SCORE_ROLES = ("members", "eval_nonmembers", "calibration")
SCORE_EXTRAS = {"members_mint_seen": ("b", "members")}  # name -> (dtype kind, role it is per-sample of)


def _check_score_arrays(arrays: dict[str, Any], where: Path) -> None:
    """One line naming ``where`` and the entry unless ``arrays`` is exactly what a run's final
    evaluation writes: per role a finite float64 (n,) score array and its int64 (n,) ``_index``,
    the known extras, the model's SHA-256.  (A member that is no .npy comes back as raw bytes.)"""
    import numpy as np

    def bad(k: str, why: str) -> RunError:
        v = arrays[k]
        what = type(v).__name__ if not isinstance(v, np.ndarray) else f"{v.dtype} array of shape {v.shape}"
        return RunError(f"{where}: entry {str(k)[:60]!r} {why} (got {what})")

    known = {*SCORE_ROLES, *(r + "_index" for r in SCORE_ROLES), *SCORE_EXTRAS, SCORES_MODEL_KEY}
    unknown = sorted(str(k)[:60] for k in arrays if k not in known)
    if unknown:
        raise RunError(f"{where} has unknown entries {unknown[:3]} (a run's scores.npz holds {', '.join(SCORE_ROLES)}, "
                       f"their _index arrays and {', '.join(SCORE_EXTRAS)})")
    missing = [r for r in SCORE_ROLES if r not in arrays or r + "_index" not in arrays]
    if missing:
        raise RunError(f"{where} lacks the scores or indices of {', '.join(missing)}")
    for k in sorted(arrays, key=lambda k: k not in SCORE_ROLES):  # the scores first: the others are checked against them
        v = arrays[k]
        if not isinstance(v, np.ndarray):
            raise bad(k, "is not an array")
        if k == SCORES_MODEL_KEY:
            if v.shape != () or v.dtype.kind != "U":
                raise bad(k, "is not a SHA-256 string")
        elif k in SCORE_ROLES:
            if v.dtype != np.float64 or v.ndim != 1 or not bool(np.isfinite(v).all()):
                raise bad(k, "is not a finite float64 score per sample")
        elif k.endswith("_index"):
            if v.dtype != np.int64 or v.shape != arrays[k[:-len("_index")]].shape or (v.size and int(v.min()) < 0):
                raise bad(k, "is not one int64 index >= 0 per score")
        else:
            kind, role = SCORE_EXTRAS[k]
            if v.dtype.kind != kind or v.shape != arrays[role].shape:
                raise bad(k, f"is not one {'bool' if kind == 'b' else kind} per sample of {role}")


# ----------------------------------------------------------------------- audit folders
def audit_dir_replaceable(out: Path, run_dir: Path | None = None) -> str | None:
    """Why ``out`` may NOT be replaced by ``audit --force`` (None: it may).

    Only a folder that holds a previous audit's own files (listed in its marker) is replaced;
    never the audited run directory, a folder holding it, or any other folder.
    """
    if out.is_symlink() or not out.is_dir():
        return f"{out} is not a folder"
    real = Path(os.path.realpath(out))
    if run_dir is not None:
        run_real = Path(os.path.realpath(run_dir))
        if real == run_real or real in run_real.parents:
            return f"{out} is (or holds) the run directory being audited"
    if (out / CONFIG).exists():
        return f"{out} is a run directory"
    marker = out / AUDIT_MARKER
    try:
        doc = json.loads(marker.read_text())
        listed = set(doc["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{out} was not written by `activemint audit` (no {AUDIT_MARKER} marker)"
    odd = [str(k) for k in doc if k not in ("format", "files")]  # doc is a dict with "files" here
    odd += [str(n) for n in doc["files"] if n not in AUDIT_FILES.values()] if isinstance(doc["files"], list) \
        else ["'files' (not a list)"]
    if odd:  # unknown keys, or names no audit writes (../run/model.safetensors, /etc/passwd)
        return f"{marker} has unknown entries {[n[:60] for n in odd[:3]]} (an audit lists only {', '.join(AUDIT_FILES.values())})"
    others = sorted(p.name for p in out.iterdir() if p.name not in listed and p.name != AUDIT_MARKER)
    if others:
        return f"{out} holds files that are not the previous audit's ({', '.join(others[:3])})"
    return None
