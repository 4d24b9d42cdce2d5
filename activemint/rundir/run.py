"""A run directory: the path of each of its files, its writers, the lock, the state; audit folders."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activemint.errors import RunError
from activemint.io import (
    array_digest,
    atomic_json,
    atomic_write,
    file_sha256,
    fsync_dir,
    hold_lock,
    lock_holder,
    make_dir,
    write_error,
)
from activemint.rundir.layout import (
    AUDIT_FILES,
    AUDIT_MARKER,
    AUDITS,
    BASELINE,
    BOUND_FILES,
    CALIBRATION_JSON,
    CALIBRATION_NPZ,
    CHECKPOINTS,
    CONFIG,
    FIGURES_KEY,
    LOCK,
    LOG,
    LOGITS,
    MANIFEST,
    METRICS,
    MODEL,
    MODEL_EDITS,
    MODEL_META,
    PROVENANCE,
    REPORT,
    ROBUSTNESS,
    ROBUSTNESS_CACHE,
    RUN_FORMAT,
    SCORE_ARRAYS_KEY,
    SCORES,
    SCORES_MODEL_KEY,
    TRAIN_LOG,
)
from activemint.rundir.records import _check_score_arrays, binding_problem, check_metrics_fields, figures_digest


class RunExistsError(RunError, FileExistsError):
    """``train`` without ``--resume`` into a folder that already holds a run."""


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
    # what later commands write into the run (the layout: activemint.rundir)
    calibration_json = property(lambda self: self.path / CALIBRATION_JSON)
    calibration_npz = property(lambda self: self.path / CALIBRATION_NPZ)
    robustness = property(lambda self: self.path / ROBUSTNESS)
    robustness_cache = property(lambda self: self.path / ROBUSTNESS / ROBUSTNESS_CACHE)
    model_edits = property(lambda self: self.path / MODEL_EDITS)

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
            fsync_dir(self.path)
        except OSError as e:
            raise write_error(self.metrics, e) from e

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
