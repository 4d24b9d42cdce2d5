"""Calibrated per-sample decisions: a threshold with a stated false-positive rate.

Let ``cal`` be the membership scores of ``n`` known non-members that played no part in
training the model or its MINT head (the run's ``calibration`` split).  A sample is flagged
a member when its score exceeds the threshold of :func:`activemint.metrics.calibrate_threshold`,
the one calibration rule of activemint (the run summary, the reports, ``compare`` and the
audit all use it): the ``(n - k)``-th smallest calibration score, ``k`` the largest integer
with ``P(Binomial(n, target_fpr) <= k) <= delta``.  Its guarantee: over the draw of the
calibration set, the FPR on fresh non-members exchangeable with it exceeds ``target_fpr``
with probability at most ``delta`` (default 0.05); on average it is ``(k + 1) / (n + 1)``.
A calibration set too small for that (fewer than 299 non-members at 1% FPR) is refused.

The set-level tests use conformal p-values against the same calibration scores,

    p(s) = (1 + #{cal >= s}) / (n + 1),

``P(p(s) <= a) <= a`` for a fresh non-member; flagging is the same as
``p(s) <= (k + 1) / (n + 1)``.

The calibration scores, the thresholds and the SHA-256 of the weights they were computed
with are saved in the run directory (``calibration.npz`` + ``calibration.json``) so that
later audits of the same run use the same rule.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import activemint
from activemint.io import file_sha256
from activemint.metrics import (
    CALIBRATION_DELTA,
    CalibrationError,
    as_scores,
    calibrate_threshold,
    calibration_rank,
    min_calibration_size,
)
from activemint.rundir import CALIBRATION_JSON, CALIBRATION_NPZ, MODEL, SCORES
from activemint.scores import EVAL_ROLES, Scores

FORMAT = "activemint-calibration/2"  # /1: the earlier conformal-mean rule (recomputed when met)


class OutdatedCalibration(CalibrationError):
    """A saved calibration made with an earlier rule (recomputed, never reused)."""


# ----------------------------------------------------------------------------- rules
def _scores(x, name: str) -> np.ndarray:
    return as_scores(x, name, CalibrationError)


def conformal_pvalues(scores, calibration_scores) -> np.ndarray:
    """(N,) conformal p-values ``(1 + #{cal >= s_i}) / (n_cal + 1)`` (small = member-like).

    Under H0 "sample i is a non-member exchangeable with the calibration set",
    ``P(p_i <= a) <= a``.
    """
    s = _scores(scores, "scores")
    cal = np.sort(_scores(calibration_scores, "calibration scores"))
    n_ge = len(cal) - np.searchsorted(cal, s, side="left")
    return (1.0 + n_ge) / (len(cal) + 1.0)


def n_allowed_above(n_calibration: int, target_fpr: float, delta: float = CALIBRATION_DELTA) -> int:
    """``k``: how many calibration scores lie above the calibrated threshold (:func:`calibration_rank`)."""
    return calibration_rank(n_calibration, target_fpr, delta)


# ------------------------------------------------------------------ the saved rule
@dataclass
class Calibration:
    """Calibration non-member scores of one model and the decision rule they fix.

    Attributes:
        scores: (n,) membership logits of the calibration non-members.
        target_fpr: the false-positive rate the threshold is set for.
        threshold: flag "member" when a logit is ``> threshold``
            (:func:`activemint.metrics.calibrate_threshold`).
        n_above: ``k``, calibration scores above the threshold.
        expected_fpr: ``(k + 1) / (n + 1)``, the FPR on fresh non-members averaged over
            calibration sets (``< target_fpr``).
        delta: ``P(FPR > target_fpr) <= delta`` over the calibration draw.
        model_sha256: SHA-256 of the weights file the scores came from.
        source: where the scores came from (e.g. ``"scores.npz:calibration"``).
        index: (n,) indices of the calibration samples in the training split, if known.
        eval_nonmember_scores: (m,) scores of the run's evaluation non-members (test split),
            kept for reference (observed FPR, ROC); ``None`` when unknown.
        member_scores: (d,) scores of the run's members D (for the mixture model and ROC).
    """

    scores: np.ndarray
    target_fpr: float
    threshold: float
    n_above: int
    expected_fpr: float
    model_sha256: str
    source: str
    index: np.ndarray | None = None
    eval_nonmember_scores: np.ndarray | None = None
    member_scores: np.ndarray | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    delta: float = CALIBRATION_DELTA

    @property
    def n(self) -> int:
        return len(self.scores)

    def pvalues(self, scores) -> np.ndarray:
        """Conformal p-values of ``scores`` against this calibration set."""
        return conformal_pvalues(scores, self.scores)

    def decide(self, scores) -> np.ndarray:
        """(N,) bool: flagged as member at the calibrated threshold."""
        return np.asarray(scores, dtype=np.float64) > self.threshold

    def observed_fpr(self) -> float | None:
        """Share of the run's evaluation non-members flagged (fresh non-members), if known."""
        if self.eval_nonmember_scores is None:
            return None
        return float(self.decide(self.eval_nonmember_scores).mean())

    def tpr(self) -> float | None:
        """Share of the run's members flagged, if known."""
        if self.member_scores is None:
            return None
        return float(self.decide(self.member_scores).mean())

    def with_target(self, target_fpr: float) -> Calibration:
        """The same calibration scores, re-thresholded for another target FPR."""
        return make_calibration(
            self.scores, target_fpr, model_sha256=self.model_sha256, source=self.source, index=self.index,
            eval_nonmember_scores=self.eval_nonmember_scores, member_scores=self.member_scores,
            thresholds=self.thresholds, delta=self.delta,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the rule (no score arrays)."""
        return {
            "rule": ("member iff logit > threshold; threshold = the (n - k)-th smallest calibration score, k the largest "
                     "with P(Binomial(n, target_fpr) <= k) <= delta: P(FPR > target_fpr) <= delta over the calibration draw"),
            "target_fpr": self.target_fpr, "delta": self.delta, "threshold_logit": self.threshold,
            "threshold_probability": float(1 / (1 + np.exp(-self.threshold))),
            "n_calibration": self.n, "n_calibration_above_threshold": self.n_above,
            "expected_fpr_on_fresh_nonmembers": self.expected_fpr,
            "observed_fpr_eval_nonmembers": self.observed_fpr(),
            "n_eval_nonmembers": None if self.eval_nonmember_scores is None else len(self.eval_nonmember_scores),
            "tpr_members": self.tpr(),
            "n_members": None if self.member_scores is None else len(self.member_scores),
            "model_sha256": self.model_sha256, "source": self.source,
        }


def make_calibration(
    calibration_scores,
    target_fpr: float,
    *,
    model_sha256: str = "",
    source: str = "",
    index=None,
    eval_nonmember_scores=None,
    member_scores=None,
    thresholds: dict[str, float] | None = None,
    delta: float = CALIBRATION_DELTA,
) -> Calibration:
    """Fix the calibrated threshold for ``target_fpr`` (:func:`activemint.metrics.calibrate_threshold`)."""
    cal = _scores(calibration_scores, "calibration scores")
    k = calibration_rank(len(cal), target_fpr, delta)
    t = calibrate_threshold(cal, target_fpr, delta)
    thr = dict(thresholds or {})
    thr[f"{target_fpr:g}"] = t
    return Calibration(
        scores=cal, target_fpr=float(target_fpr), threshold=t, n_above=k, expected_fpr=(k + 1) / (len(cal) + 1),
        model_sha256=model_sha256, source=source, index=None if index is None else np.asarray(index),
        eval_nonmember_scores=None if eval_nonmember_scores is None else _scores(eval_nonmember_scores, "eval non-member scores"),
        member_scores=None if member_scores is None else _scores(member_scores, "member scores"),
        thresholds=thr, delta=float(delta),
    )


def _atomic_write_bytes(path: Path, write) -> None:
    from activemint.io import atomic_write_via

    atomic_write_via(path, write)  # same folder, fsync, rename; an ordinary 0644 file, not mkstemp's 0600


def save_calibration(run_dir: str | os.PathLike, cal: Calibration) -> None:
    """Write ``calibration.npz`` (score arrays) and ``calibration.json`` (the rule) atomically."""
    run_dir = Path(run_dir)
    arrays = {"calibration": cal.scores}
    if cal.index is not None:
        arrays["calibration_index"] = cal.index
    if cal.eval_nonmember_scores is not None:
        arrays["eval_nonmembers"] = cal.eval_nonmember_scores
    if cal.member_scores is not None:
        arrays["members"] = cal.member_scores

    def write_npz(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write_bytes(run_dir / CALIBRATION_NPZ, write_npz)
    doc = {
        "format": FORMAT, "activemint": activemint.__version__, **cal.summary(),
        "thresholds_by_target_fpr": cal.thresholds,
        "scores_sha256": hashlib.sha256(np.ascontiguousarray(cal.scores).tobytes()).hexdigest(),
    }
    _atomic_write_bytes(run_dir / CALIBRATION_JSON, lambda p: p.write_text(json.dumps(doc, indent=2)))


#: Every key ``calibration.json`` holds, and every array of ``calibration.npz``: anything else is refused.
CALIBRATION_KEYS = frozenset({
    "format", "activemint", "rule", "target_fpr", "delta", "threshold_logit", "threshold_probability", "n_calibration",
    "n_calibration_above_threshold", "expected_fpr_on_fresh_nonmembers", "observed_fpr_eval_nonmembers",
    "n_eval_nonmembers", "tpr_members", "n_members", "model_sha256", "source", "thresholds_by_target_fpr", "scores_sha256"})
CALIBRATION_ARRAYS = frozenset({"calibration", "calibration_index", "eval_nonmembers", "members"})


def load_calibration(run_dir: str | os.PathLike, target_fpr: float | None = None) -> Calibration:
    """Read a saved calibration; ``target_fpr`` re-thresholds the saved scores if it differs."""
    run_dir = Path(run_dir)
    jpath, npath = run_dir / CALIBRATION_JSON, run_dir / CALIBRATION_NPZ
    if not (jpath.is_file() and npath.is_file()):
        raise FileNotFoundError(f"{run_dir} has no saved calibration ({CALIBRATION_JSON} + {CALIBRATION_NPZ})")
    try:
        doc = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{jpath} is not readable JSON ({e}); delete it and {CALIBRATION_NPZ} to recalibrate") from e
    if not isinstance(doc, dict):
        raise CalibrationError(f"{jpath} is not a JSON object; delete it and {CALIBRATION_NPZ} to recalibrate")
    if doc.get("format") == "activemint-calibration/1":
        raise OutdatedCalibration(f"{jpath} was made with the earlier calibration rule; it is recomputed")
    if doc.get("format") != FORMAT:
        raise CalibrationError(f"{jpath}: unknown format {doc.get('format')!r}, expected {FORMAT}")
    odd = sorted(str(k)[:40] for k in set(doc) - CALIBRATION_KEYS)
    if odd:
        raise CalibrationError(f"{jpath}: unknown entries {odd[:3]}; delete it and {CALIBRATION_NPZ} to recalibrate")
    bad = [k for k in ("target_fpr", "delta") if not isinstance(doc.get(k), (int, float)) or isinstance(doc.get(k), bool)
           or not 0 < doc[k] < 1]
    if bad or not isinstance(doc.get("thresholds_by_target_fpr", {}), dict):
        what = f"'{bad[0]}' is not a number in (0, 1)" if bad else "'thresholds_by_target_fpr' is not an object"
        raise CalibrationError(f"{jpath}: {what}; delete it and {CALIBRATION_NPZ} to recalibrate")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CalibrationError(f"{npath} is not a readable .npz file ({type(e).__name__}: {e}); delete it and "
                               f"{CALIBRATION_JSON} to recalibrate") from e
    odd = sorted(set(arrays) - CALIBRATION_ARRAYS)
    if odd:
        raise CalibrationError(f"{npath}: unknown arrays {odd[:3]}; delete it and {CALIBRATION_JSON} to recalibrate")
    if "calibration" not in arrays:
        raise CalibrationError(f"{npath} has no 'calibration' array; delete it and {CALIBRATION_JSON} to recalibrate")
    check_finite_scores(arrays, npath)
    scores = arrays["calibration"]
    if hashlib.sha256(np.ascontiguousarray(scores).tobytes()).hexdigest() != doc.get("scores_sha256"):
        raise CalibrationError(f"{npath} does not match {jpath} (scores hash differs); delete both to recalibrate")
    target = doc["target_fpr"] if target_fpr is None else target_fpr
    cal = make_calibration(
        scores, target, model_sha256=doc.get("model_sha256", ""), source=doc.get("source", ""),
        index=arrays.get("calibration_index"), eval_nonmember_scores=arrays.get("eval_nonmembers"),
        member_scores=arrays.get("members"), thresholds=doc.get("thresholds_by_target_fpr"),
        delta=float(doc["delta"]),
    )
    saved = cal.thresholds.get(f"{target:g}")
    if saved is not None and saved != cal.threshold:
        raise CalibrationError(f"{jpath}: saved threshold {saved} for target {target:g} differs from the rule's {cal.threshold}")
    return cal


def check_finite_scores(arrays: dict[str, np.ndarray], where: object) -> None:
    """Raise a :class:`CalibrationError` naming ``where`` (a file) and the array if any float score is NaN or inf."""
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int((~np.isfinite(a)).sum())
            raise CalibrationError(f"{where}: scores contain NaN or inf ({bad} of {a.size} values of '{name}'); "
                                   "expected finite membership logits")


def run_scores(run) -> tuple[Scores, str]:
    """Membership logits of a loaded run's members, eval non-members and calibration split.

    Reads ``scores.npz`` when the trainer wrote it (the final model's scores); otherwise
    scores the manifest's samples with the model.  Returns ``(scores, source)``.
    """

    saved = run.dir.read_scores()  # refuses a truncated file or another model's scores
    if saved is not None and set(EVAL_ROLES) <= set(saved):
        return Scores.from_arrays(saved), f"{SCORES}:calibration"

    from activemint.progress import counted

    data = run.data
    out = Scores()
    with counted(run.membership_logits, sum(len(data.indices(r)) for r in EVAL_ROLES),
                 "scoring the run's members and non-members") as score:
        for role in EVAL_ROLES:
            got = data.split(role)
            out.scores[role] = score(got.images)
            out.indices[role] = got.indices
    return out, "model on the manifest's calibration split"


def calibrate_run(run, target_fpr: float = 0.01, *, save: bool = True, weights: str = MODEL) -> Calibration:
    """The calibration of a loaded run for ``target_fpr``, reusing the saved one when it fits.

    A saved calibration is reused when it was made with the same weights (SHA-256 of the
    weights file); otherwise the run's calibration split is scored and the result saved
    (``save=False`` leaves the run directory untouched).
    """
    run_dir = Path(run.run_dir)
    model_sha = file_sha256(run_dir / weights)
    try:
        cal = load_calibration(run_dir, target_fpr)
        if cal.model_sha256 == model_sha:
            if save and f"{target_fpr:g}" not in json.loads((run_dir / CALIBRATION_JSON).read_text())["thresholds_by_target_fpr"]:
                try:
                    save_calibration(run_dir, cal)
                except OSError as e:
                    warnings.warn(f"could not record the threshold in {run_dir} ({e})", stacklevel=2)
            return cal
    except (FileNotFoundError, OutdatedCalibration):
        pass
    scores, source = run_scores(run)
    check_finite_scores(scores.scores, run_dir / SCORES if source.startswith(SCORES) else f"the scores of {run_dir}'s model")
    if len(scores["calibration"]) == 0:
        raise CalibrationError(f"{run_dir} has no calibration split: train with --calibration N (N >= {min_calibration_size(target_fpr)})")
    cal = make_calibration(
        scores["calibration"], target_fpr, model_sha256=model_sha, source=source,
        index=scores.indices.get("calibration"), eval_nonmember_scores=scores.scores.get("eval_nonmembers"),
        member_scores=scores.scores.get("members"),
    )
    if save:
        try:
            save_calibration(run_dir, cal)
        except OSError as e:  # e.g. a read-only run directory: audit anyway, the JSON records the rule
            warnings.warn(f"could not save the calibration in {run_dir} ({e}); later audits will recompute it", stacklevel=2)
    return cal


def neighbourhood_calibration(run, target_fpr: float, views, aggregate, *, weights: str = MODEL) -> Calibration:
    """The calibration of a loaded run with every sample scored over a neighbourhood of views.

    The run's calibration split, members and evaluation non-members are each scored over the
    views of ``views`` and aggregated by ``aggregate`` (:mod:`activemint.neighbourhood`), the
    same way as the suspect images, so the threshold and the conformal p-values keep their
    guarantee.  Never saved: the run's saved calibration is that of the plain score.  Costs
    ``len(views)`` scorings per sample of the three splits.
    """

    from activemint.neighbourhood import neighbourhood_scores

    run_dir = Path(run.run_dir)
    data, s = run.data, run.data.splits
    if len(s.calibration) == 0:
        raise CalibrationError(f"{run_dir} has no calibration split: train with --calibration N (N >= {min_calibration_size(target_fpr)})")
    from activemint.progress import counted

    got = {}
    total = sum(len(data.indices(r)) for r in EVAL_ROLES) * len(views)
    with counted(run.membership_logits, total, f"calibrating: the run's members and non-members, {len(views)} views",
                 unit="view") as score:
        for role in EVAL_ROLES:
            got[role] = neighbourhood_scores(score, data.split(role).images, views, aggregate)
    check_finite_scores(got, f"the neighbourhood scores of {run_dir}'s model")
    return make_calibration(
        got["calibration"], target_fpr, model_sha256=file_sha256(run_dir / weights),
        source=f"model on the manifest's calibration split, neighbourhood {views.name} ({len(views)} views), {aggregate.name}",
        index=np.asarray(s.calibration), eval_nonmember_scores=got["eval_nonmembers"], member_scores=got["members"],
    )
