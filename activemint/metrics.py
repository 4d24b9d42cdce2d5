"""One metrics engine for every membership scorer.

Every method (active MINT, passive MINT, gradient MINT, loss / entropy attacks, LiRA, RMIA)
produces one score per sample, higher = more likely member.  This module turns member and
non-member scores into the same figures for all of them:

* ``auc`` (with a bootstrap 95% interval),
* ``tpr_at_1pct_fpr`` and ``tpr_at_0_1pct_fpr`` (the field's low-FPR figures since LiRA),
* ``accuracy_at_0_5``: the paper's metric, accuracy on a *balanced* member / non-member set
  at P(member) = 0.5 (only for scorers whose score has a natural 0.5 point),
* ``accuracy_at_calibrated``: accuracy on the balanced set at a threshold fixed on a
  *separate* set of known non-members for a target FPR (never tuned on the test scores) by
  :func:`calibrate_threshold`, the one calibration rule (also the audit's): FPR <= target
  with probability >= 1 - delta over the calibration draw,
* ``oracle_best_accuracy``: the best accuracy over all thresholds on the test scores
  themselves; optimistic by construction and labelled as such.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from activemint.errors import UserError


def as_scores(x, name: str, error: type[Exception] = ValueError) -> np.ndarray:
    """``x`` as a flat float64 array of finite scores; ``error(...)`` naming ``name`` if empty or not finite."""
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise error(f"{name}: no scores")
    if not np.all(np.isfinite(a)):
        raise error(f"{name}: scores contain NaN or inf")
    return a


def sigmoid(logits) -> np.ndarray:
    """P(member) from membership logits: ``1 / (1 + exp(-logit))``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits)))


def roc(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: (fpr, tpr, thresholds), member = positive class."""
    m = as_scores(member_scores, "member_scores")
    n = as_scores(nonmember_scores, "nonmember_scores")
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    fpr, tpr, thr = roc_curve(y, np.r_[m, n])
    return fpr, tpr, thr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR reached at an FPR no larger than ``target`` (0 if none)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


# ------------------------------------------------------------------ the one calibration rule
#: Default probability, over the draw of the calibration set, that a calibrated threshold's
#: true FPR exceeds its target (the "delta" of the guarantee below).
CALIBRATION_DELTA = 0.05


class CalibrationError(UserError, ValueError):
    """The calibration set cannot support the requested threshold (too few non-members, bad target)."""


def min_calibration_size(target_fpr: float, delta: float = CALIBRATION_DELTA) -> int:
    """Fewest calibration non-members for which :func:`calibrate_threshold` exists.

    Even the largest calibration score (``k = 0``) exceeds the target with probability
    ``(1 - target_fpr) ** n``; that must be ``<= delta``.
    E.g. 299 for a 1% target at ``delta = 0.05``; 2995 for 0.1%.
    """
    _check_rule(target_fpr, delta)
    return int(np.ceil(np.log(delta) / np.log1p(-target_fpr) - 1e-9))


def _check_rule(target_fpr: float, delta: float) -> None:
    if not 0 < target_fpr < 1:
        raise CalibrationError(f"target FPR must be in (0, 1), got {target_fpr}")
    if not 0 < delta < 1:
        raise CalibrationError(f"delta must be in (0, 1), got {delta}")


@functools.lru_cache(maxsize=256)
def _rank(n: int, target_fpr: float, delta: float) -> int:
    from scipy import stats

    ok = np.nonzero(stats.binom.cdf(np.arange(n + 1), n, target_fpr) <= delta)[0]
    return int(ok[-1]) if ok.size else -1


def calibration_rank(n_calibration: int, target_fpr: float, delta: float = CALIBRATION_DELTA) -> int:
    """``k``: how many of ``n`` calibration scores lie above the calibrated threshold.

    The largest ``k`` with ``P(Binomial(n, target_fpr) <= k) <= delta`` (see
    :func:`calibrate_threshold` for why).  Raises :class:`CalibrationError` when no ``k``
    qualifies, i.e. when ``n < min_calibration_size(target_fpr, delta)``.
    """
    _check_rule(target_fpr, delta)
    n = int(n_calibration)
    k = _rank(n, float(target_fpr), float(delta))
    if k < 0:
        raise CalibrationError(
            f"a threshold with FPR <= {target_fpr:g} (at confidence {1 - delta:g}) needs at least "
            f"{min_calibration_size(target_fpr, delta)} calibration non-members; got {n}"
        )
    return k


def calibrate_threshold(nonmember_scores, target_fpr: float, delta: float = CALIBRATION_DELTA) -> float:
    """The calibrated threshold: decide "member" when ``score > t``.  The one rule of activemint.

    ``nonmember_scores`` are scores of ``n`` known non-members that played no part in
    training the model or its MINT head (a run's calibration split).  ``t`` is the
    ``(n - k)``-th smallest of them (``k`` scores lie above it), with ``k`` the largest
    integer such that ``P(Binomial(n, target_fpr) <= k) <= delta``
    (:func:`calibration_rank`).

    Guarantee.  If the calibration scores and a fresh non-member's score are i.i.d. from one
    continuous distribution ``F``, the true FPR of ``t``, ``1 - F(t)``, is distributed as
    ``Beta(k + 1, n - k)`` over the calibration draw, and

        P(FPR(t) > target_fpr) = P(Binomial(n, target_fpr) <= k) <= delta;

    on average over calibration draws the FPR is ``(k + 1) / (n + 1)`` (below the target).
    Ties only lower the FPR (a score equal to ``t`` is not flagged).  The guarantee is about
    non-members exchangeable with the calibration set; non-members from another
    distribution (e.g. another split or a shifted source) can have another FPR.

    Too small a calibration set cannot support the target at all (the largest score already
    exceeds it with probability ``(1 - target_fpr) ** n > delta``): raises
    :class:`CalibrationError`, e.g. for fewer than 299 scores at 1% FPR and ``delta = 0.05``.
    """
    s = np.sort(as_scores(nonmember_scores, "calibration scores", CalibrationError))
    k = calibration_rank(len(s), target_fpr, delta)
    return float(s[len(s) - k - 1])


def _balanced(m: np.ndarray, n: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = min(len(m), len(n))
    if len(m) > k:
        m = rng.choice(m, k, replace=False)
    if len(n) > k:
        n = rng.choice(n, k, replace=False)
    return m, n


def _accuracy(m: np.ndarray, n: np.ndarray, threshold: float) -> float:
    return float(((m > threshold).sum() + (n <= threshold).sum()) / (len(m) + len(n)))


#: A TPR at a target FPR needs at least this many non-members per unit of 1 / FPR (10 / FPR
#: in all: about 10 non-members above the threshold) to be more than a few order statistics.
NONMEMBERS_PER_FPR = 10


def tpr_interval(tpr: float, n_members: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a TPR measured on ``n_members`` members (threshold held fixed).

    It covers the sampling of the members only; the threshold's own uncertainty (set by the
    few highest non-member scores) is flagged by :func:`fpr_supported`, not included here.
    """
    from scipy.stats import beta

    if n_members <= 0:
        return (0.0, 1.0)
    k = int(round(float(tpr) * n_members))
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n_members - k + 1))
    hi = 1.0 if k == n_members else float(beta.ppf(1 - a, k + 1, n_members - k))
    return lo, hi


def fpr_supported(n_nonmembers: int | None, fpr: float) -> bool:
    """Whether ``n_nonmembers`` can support a TPR at ``fpr``: at least ``NONMEMBERS_PER_FPR / fpr`` of them."""
    return n_nonmembers is not None and n_nonmembers >= NONMEMBERS_PER_FPR / fpr - 1e-9


def fmt_rate(rate: float, n: int, digits: int = 3) -> str:
    """``0.420 [0.398, 0.442]``: a rate over ``n`` samples with its 95% Clopper-Pearson interval."""
    lo, hi = tpr_interval(rate, n)
    return f"{rate:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_tpr(tpr: float, n_members: int | None, n_nonmembers: int | None, fpr: float, digits: int = 3) -> str:
    """``0.420 [0.398, 0.442] (n = 2000 / 2000)``: a TPR at ``fpr`` with its 95% interval and its n.

    A trailing ``*`` marks a figure the non-members cannot support (fewer than 10 / fpr).
    """
    if n_members is None:
        return f"{tpr:.{digits}f}"
    mark = "" if fpr_supported(n_nonmembers, fpr) else " *"
    return f"{fmt_rate(tpr, n_members, digits)} (n = {n_members} / {n_nonmembers}){mark}"


def unsupported_note(fpr: float) -> str:
    return (f"* fewer than {NONMEMBERS_PER_FPR / fpr:.0f} non-members: the TPR at {100 * fpr:g}% FPR rests on the few "
            f"highest non-member scores and is a rough figure. Intervals: 95% Clopper-Pearson over the members "
            f"(n = members / non-members), threshold held fixed.")


@dataclass
class MembershipMetrics:
    """Figures of one scorer on one member / non-member set."""

    n_members: int
    n_nonmembers: int
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    accuracy_at_0_5: float | None
    tpr_at_0_5: float | None
    fpr_at_0_5: float | None
    calibration_target_fpr: float | None
    calibrated_threshold: float | None
    accuracy_at_calibrated: float | None
    tpr_at_calibrated: float | None
    fpr_at_calibrated: float | None
    oracle_best_accuracy: float
    # The calibration behind the calibrated figures: n non-members, and delta of the
    # guarantee P(FPR > target) <= delta; a note says why the figures are missing, if they are.
    n_calibration: int | None = None
    calibration_delta: float | None = None
    calibration_note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"AUC {self.auc:.3f} [{self.auc_ci_low:.3f}, {self.auc_ci_high:.3f}]",
                 f"TPR@1%FPR {self.tpr_at_1pct_fpr:.3f}", f"TPR@0.1%FPR {self.tpr_at_0_1pct_fpr:.3f}"]
        if self.accuracy_at_0_5 is not None:
            parts.append(f"acc@0.5 {self.accuracy_at_0_5:.3f} (TPR {self.tpr_at_0_5:.2f}, FPR {self.fpr_at_0_5:.2f})")
        if self.accuracy_at_calibrated is not None:
            parts.append(f"acc@calibrated({self.calibration_target_fpr:g} FPR) {self.accuracy_at_calibrated:.3f}")
        elif self.calibration_note:
            parts.append(self.calibration_note)
        return ", ".join(parts)


def membership_metrics(
    member_scores,
    nonmember_scores,
    *,
    calibration_scores=None,
    target_fpr: float = 0.01,
    half_threshold: float | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    delta: float = CALIBRATION_DELTA,
) -> MembershipMetrics:
    """Compute all membership figures.

    Args:
        member_scores: (Nm,) scores of members, higher = more likely member.
        nonmember_scores: (Nn,) scores of evaluation non-members.
        calibration_scores: (Nc,) scores of *other* known non-members, used only to fix
            the calibrated threshold; ``None`` skips the calibrated figures.
        target_fpr: the FPR the calibrated threshold aims at (:func:`calibrate_threshold`:
            FPR <= target_fpr with probability >= 1 - ``delta``).  A calibration set too
            small for that leaves the calibrated figures ``None`` (with a warning and a
            ``calibration_note``) instead of reporting a threshold that does not hold.
        half_threshold: the score that corresponds to P(member) = 0.5 (``0.0`` for logits);
            ``None`` for scorers without such a point.
        bootstrap: resamples for the AUC interval (0 to skip).
    """
    m = as_scores(member_scores, "member_scores")
    n = as_scores(nonmember_scores, "nonmember_scores")
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    s = np.r_[m, n]
    auc = float(roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(y, s)
    lo = hi = auc
    if bootstrap:
        rng = np.random.default_rng(seed)
        aucs = []
        for _ in range(bootstrap):
            bm = m[rng.integers(0, len(m), len(m))]
            bn = n[rng.integers(0, len(n), len(n))]
            aucs.append(roc_auc_score(y, np.r_[bm, bn]))
        lo, hi = (float(v) for v in np.quantile(aucs, [0.025, 0.975]))
    bm, bn = _balanced(m, n, seed)
    acc05 = tpr05 = fpr05 = None
    if half_threshold is not None:
        acc05 = _accuracy(bm, bn, half_threshold)
        tpr05, fpr05 = float((m > half_threshold).mean()), float((n > half_threshold).mean())
    cal_thr = acc_cal = tpr_cal = fpr_cal = n_cal = note = None
    if calibration_scores is not None:
        cal = as_scores(calibration_scores, "calibration scores", CalibrationError)
        n_cal = len(cal)
        _check_rule(target_fpr, delta)
        try:
            cal_thr = calibrate_threshold(cal, target_fpr, delta)
        except CalibrationError as e:
            note = f"no calibrated figures: {e}"
            warnings.warn(note, stacklevel=2)
        else:
            acc_cal = _accuracy(bm, bn, cal_thr)
            tpr_cal, fpr_cal = float((m > cal_thr).mean()), float((n > cal_thr).mean())
    # Oracle: best balanced accuracy over thresholds on these very scores (optimistic).
    oracle = float(np.max(0.5 * (tpr + 1 - fpr)))
    return MembershipMetrics(
        n_members=len(m), n_nonmembers=len(n), auc=auc, auc_ci_low=lo, auc_ci_high=hi,
        tpr_at_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.01), tpr_at_0_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.001),
        accuracy_at_0_5=acc05, tpr_at_0_5=tpr05, fpr_at_0_5=fpr05,
        calibration_target_fpr=target_fpr if calibration_scores is not None else None,
        calibrated_threshold=cal_thr, accuracy_at_calibrated=acc_cal, tpr_at_calibrated=tpr_cal,
        fpr_at_calibrated=fpr_cal, oracle_best_accuracy=oracle,
        n_calibration=n_cal, calibration_delta=delta if calibration_scores is not None else None,
        calibration_note=note,
    )
