"""One metrics engine for every membership scorer.

Every method (active MINT, passive MINT, gradient MINT, loss / entropy attacks, LiRA, RMIA)
produces one score per sample, higher = more likely member.  This module turns member and
non-member scores into the same figures for all of them:

* ``auc`` (with a bootstrap 95% interval),
* ``tpr_at_1pct_fpr`` and ``tpr_at_0_1pct_fpr`` (the field's low-FPR figures since LiRA),
* ``accuracy_at_0_5``: the paper's metric, accuracy on a *balanced* member / non-member set
  at P(member) = 0.5 (only for scorers whose score has a natural 0.5 point),
* ``accuracy_at_calibrated``: accuracy on the balanced set at a threshold fixed on a
  *separate* set of known non-members for a target FPR (never tuned on the test scores),
* ``oracle_best_accuracy``: the best accuracy over all thresholds on the test scores
  themselves; optimistic by construction and labelled as such.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def as_scores(x, name: str, error: type[Exception] = ValueError) -> np.ndarray:
    """``x`` as a flat float64 array of finite scores; ``error(...)`` naming ``name`` if empty or not finite."""
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise error(f"{name}: no scores")
    if not np.all(np.isfinite(a)):
        raise error(f"{name}: scores contain NaN or inf")
    return a


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


def calibrate_threshold(nonmember_scores, target_fpr: float) -> float:
    """Threshold ``t`` such that at most ``target_fpr`` of these non-members score ``> t``.

    Decide "member" when ``score > t``.  Use scores of known non-members that played no part
    in training (the run's calibration split).
    """
    if not 0 < target_fpr < 1:
        raise ValueError("target_fpr must be in (0, 1)")
    s = np.sort(as_scores(nonmember_scores, "calibration scores"))
    k = int(np.floor(target_fpr * len(s)))  # number allowed above the threshold
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

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"AUC {self.auc:.3f} [{self.auc_ci_low:.3f}, {self.auc_ci_high:.3f}]",
                 f"TPR@1%FPR {self.tpr_at_1pct_fpr:.3f}", f"TPR@0.1%FPR {self.tpr_at_0_1pct_fpr:.3f}"]
        if self.accuracy_at_0_5 is not None:
            parts.append(f"acc@0.5 {self.accuracy_at_0_5:.3f} (TPR {self.tpr_at_0_5:.2f}, FPR {self.fpr_at_0_5:.2f})")
        if self.accuracy_at_calibrated is not None:
            parts.append(f"acc@calibrated({self.calibration_target_fpr:g} FPR) {self.accuracy_at_calibrated:.3f}")
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
) -> MembershipMetrics:
    """Compute all membership figures.

    Args:
        member_scores: (Nm,) scores of members, higher = more likely member.
        nonmember_scores: (Nn,) scores of evaluation non-members.
        calibration_scores: (Nc,) scores of *other* known non-members, used only to fix
            the calibrated threshold; ``None`` skips the calibrated figures.
        target_fpr: the FPR the calibrated threshold aims at.
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
    cal_thr = acc_cal = tpr_cal = fpr_cal = None
    if calibration_scores is not None:
        cal_thr = calibrate_threshold(calibration_scores, target_fpr)
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
    )
