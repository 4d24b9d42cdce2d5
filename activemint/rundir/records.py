"""The checks of metrics.json's figures and of scores.npz's arrays (what a final evaluation writes)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from activemint.errors import RunError
from activemint.io.digest import sha256_json
from activemint.rundir.layout import BOUND_FILES, FIGURES_KEY, MODEL, RUN_FORMAT, SCORES_MODEL_KEY

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

