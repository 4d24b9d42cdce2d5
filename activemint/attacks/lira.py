"""LiRA, the Likelihood Ratio Attack (Carlini et al., "Membership Inference Attacks From
First Principles", IEEE S&P 2022): the scoring math, as pure functions of arrays.

The statistic of a model on a sample is the logit-scaled confidence
``phi = log(p_y / (1 - p_y))`` (:func:`activemint.attacks.output.logit_confidence`), which is
close to Gaussian over models trained with / without the sample.  From N reference models:

* ``ref``  (n, N): phi of every reference model on every sample,
* ``keep`` (n, N): True where the reference model trained on the sample ("IN"),

each sample gets a Gaussian fit of its IN statistics ``N(mu_in, s_in^2)`` and of its OUT
statistics ``N(mu_out, s_out^2)``.  Given the target model's ``phi`` (n,):

* **online**: ``score = log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)`` (log likelihood
  ratio; 0 is the point of equal likelihood),
* **offline**: one-sided test against the OUT Gaussian only; the paper's score is
  ``Phi((phi - mu_out) / s_out)``, a monotone map of the z-score we return,
  ``(phi - mu_out) / s_out`` (same ranking, no saturation at 1.0, so no ties at low FPR),
* **fixed variance**: one global spread for all samples, which the paper recommends with few
  reference models: online, a single ``s`` pooled over the within-sample IN and OUT deviations
  (the authors' code also uses one value for both); offline, the pooled OUT spread.

Means are per-sample averages (the paper's code takes medians; with 2 IN models they agree).
Per-sample spreads use ``ddof=1``; a sample with fewer than two IN (OUT) models falls back
to the pooled spread.  A floor ``min_std`` keeps degenerate fits finite.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from activemint.attacks.config import ScorerConfig


@dataclass
class LiraConfig(ScorerConfig):
    variant: str = "online"
    fixed_variance: bool = False
    min_std: float = field(default=1e-3, metadata={"help": "LiRA's floor on the per-sample standard deviations"})

    name: ClassVar[str] = "LiRA"
    description: ClassVar[str] = ("Likelihood ratio of the target model's logit-scaled confidence under per-sample Gaussians "
                                  "fitted on reference models trained with (IN) / without (OUT) the sample (Carlini et al., 2022)")
    needs: ClassVar[tuple[str, ...]] = ("black-box outputs", "labels", "reference models", "population data")
    bounds: ClassVar[dict] = {"min_std": (1e-12, 1e3)}
    choices: ClassVar[dict] = {"variant": ("online", "offline")}

    @property
    def display_name(self) -> str:
        return f"LiRA {self.variant}" + (" (fixed variance)" if self.fixed_variance else "")

    def describe(self) -> dict:
        d = super().describe()
        d["name"] = self.display_name
        how = ("online: log likelihood ratio of the IN and OUT fits" if self.variant == "online"
               else "offline: one-sided test against the OUT fit only, (phi - mu_out) / sigma_out")
        if self.fixed_variance:
            how += "; one global variance instead of per-sample variances"
        d["description"] = f"{self.description}; {how}"
        return d


@dataclass
class GaussianFits:
    """Per-sample Gaussian fits, each (n,); IN fields are NaN where a sample has no IN model."""

    mu_in: np.ndarray
    std_in: np.ndarray
    mu_out: np.ndarray
    std_out: np.ndarray
    pooled_std_in: float
    pooled_std_out: float
    pooled_std: float  # over IN and OUT deviations together


def _masked_fit(ref: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-row mean and spread (ddof=1) over the masked entries; pooled sum of squares and its dof."""
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(count > 0, (ref * np.where(mask, 1.0, 0.0)).sum(axis=1) / np.maximum(count, 1), np.nan)
        sq = np.where(mask, (ref - np.nan_to_num(mu)[:, None]) ** 2, 0.0).sum(axis=1)
        var = np.where(count > 1, sq / np.maximum(count - 1, 1), np.nan)
    dof = float(np.maximum(count - 1, 0).sum())
    return mu, np.sqrt(var), float(np.where(count > 1, sq, 0.0).sum()), dof


def _pooled(ss: float, dof: float) -> float:
    return float(np.sqrt(ss / dof)) if dof > 0 else float("nan")


def fit_gaussians(ref, keep) -> GaussianFits:
    """IN / OUT Gaussian fits per sample from reference statistics ``ref`` (n, N) and ``keep`` (n, N)."""
    ref = np.asarray(ref, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if ref.ndim != 2 or ref.shape != keep.shape:
        raise ValueError(f"ref and keep must both be (n_samples, n_models); got {ref.shape} and {keep.shape}")
    if not np.all(np.isfinite(ref)):
        raise ValueError("reference statistics contain NaN or inf")
    mu_in, sd_in, ss_in, dof_in = _masked_fit(ref, keep)
    mu_out, sd_out, ss_out, dof_out = _masked_fit(ref, ~keep)
    return GaussianFits(mu_in, sd_in, mu_out, sd_out, _pooled(ss_in, dof_in), _pooled(ss_out, dof_out),
                        _pooled(ss_in + ss_out, dof_in + dof_out))


def _spread(per_sample: np.ndarray, pooled: float, fixed: bool, min_std: float, what: str) -> np.ndarray:
    if not np.isfinite(pooled):
        raise ValueError(f"cannot estimate the {what} spread: every sample has fewer than two {what} reference models")
    s = np.full_like(per_sample, pooled) if fixed else np.where(np.isfinite(per_sample), per_sample, pooled)
    return np.maximum(s, min_std)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)


def lira_online(target, ref, keep, *, fixed_variance: bool = False, min_std: float = LiraConfig.min_std) -> np.ndarray:
    """Online LiRA scores (n,): log N(target; IN fit) - log N(target; OUT fit).

    Args:
        target: (n,) the target model's statistic (phi) per sample.
        ref: (n, N) the reference models' statistic per sample.
        keep: (n, N) bool, True where reference model j trained on sample i.
    Every sample needs at least one IN and one OUT reference model.
    """
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    f = fit_gaussians(ref, keep)
    if len(t) != len(f.mu_in):
        raise ValueError(f"{len(t)} target statistics but {len(f.mu_in)} reference rows")
    if np.isnan(f.mu_in).any() or np.isnan(f.mu_out).any():
        raise ValueError("online LiRA needs at least one IN and one OUT reference model for every sample")
    if fixed_variance:
        s_in = s_out = _spread(f.std_in, f.pooled_std, True, min_std, "IN or OUT")
    else:
        s_in = _spread(f.std_in, f.pooled_std_in, False, min_std, "IN")
        s_out = _spread(f.std_out, f.pooled_std_out, False, min_std, "OUT")
    return _log_normal(t, f.mu_in, s_in) - _log_normal(t, f.mu_out, s_out)


def lira_offline(target, ref, keep, *, fixed_variance: bool = False, min_std: float = LiraConfig.min_std) -> np.ndarray:
    """Offline LiRA scores (n,): ``(target - mu_out) / s_out`` from the OUT models only.

    ``keep`` may be all False (reference models never trained on the targets).
    """
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    f = fit_gaussians(ref, keep)
    if len(t) != len(f.mu_out):
        raise ValueError(f"{len(t)} target statistics but {len(f.mu_out)} reference rows")
    if np.isnan(f.mu_out).any():
        raise ValueError("offline LiRA needs at least one OUT reference model for every sample")
    s_out = _spread(f.std_out, f.pooled_std_out, fixed_variance, min_std, "OUT")
    return (t - f.mu_out) / s_out


def lira_scores(target, ref, keep, config: LiraConfig) -> np.ndarray:
    fn = lira_online if config.variant == "online" else lira_offline
    return fn(target, ref, keep, fixed_variance=config.fixed_variance, min_std=config.min_std)
