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
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
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

RUN_FORMAT = "activemint-run/2"
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


def commit_dir(staging: Path, final: Path) -> None:
    """Rename a completely written folder into place (atomic), then fsync the parent."""
    try:
        for p in staging.iterdir():
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(staging)
        os.rename(staging, final)
        _fsync_dir(final.parent)
    except OSError as e:
        raise _write_error(final, e) from e
    kill_point("write", final.name)


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
        """Write metrics.json LAST, binding the final files by SHA-256; returns what was written."""
        files = {name: file_sha256(self.path / name) for name in BOUND_FILES if (self.path / name).is_file()}
        doc = {**{k: v for k, v in metrics.items() if k not in ("run_format", "files")}, "run_format": RUN_FORMAT,
               "files": files}
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
        files = doc.get("files")
        if isinstance(files, dict):
            for name, digest in files.items():
                if name not in BOUND_FILES:
                    continue
                f = p / name
                if not f.is_file():
                    return RunState("inconsistent", f"{f} is missing although {METRICS} names it")
                if file_sha256(f) != digest:
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
        own = out.pop(SCORES_MODEL_KEY, None)
        if model_sha256 is None and self.model.is_file() and own is not None:
            model_sha256 = file_sha256(self.model)
        if own is not None and model_sha256 is not None and str(own) != model_sha256:
            raise RunError(f"{self.scores} was made by another model (SHA-256 {str(own)[:12]}...), not by {self.model} "
                           f"({model_sha256[:12]}...)")
        return out


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
    others = sorted(p.name for p in out.iterdir() if p.name not in listed and p.name != AUDIT_MARKER)
    if others:
        return f"{out} holds files that are not the previous audit's ({', '.join(others[:3])})"
    return None
