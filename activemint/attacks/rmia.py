"""RMIA, the Robust Membership Inference Attack (Zarifzadeh et al., "Low-Cost High-Power
Membership Inference Attacks", ICML 2024): the scoring math, as pure functions of arrays.

The signal is ``Pr(x | theta)``, the softmax probability of the true class
(:func:`activemint.attacks.output.true_label_prob`).  With reference models ``theta'``:

* ``Pr(x)`` is the probability of x averaged over reference models.  **Offline** (only models
  that did not train on x): ``Pr(x) = ((1 + a) * Pr_OUT(x) + (1 - a)) / 2``, where ``a`` in
  [0, 1] linearly approximates the missing IN models from the OUT average
  (``Pr_IN ~ a * Pr_OUT + (1 - a)``; ``a = 1``: no correction).  **Online**:
  ``Pr(x) = (Pr_IN(x) + Pr_OUT(x)) / 2`` (balanced IN / OUT average); samples that no
  reference model trained on (the population z here) fall back to the offline formula.
* Likelihood ratios ``LR(x) = Pr(x | theta) / Pr(x)`` and ``LR(z)`` for population samples z
  (non-members drawn from the same distribution, here the run's external set E).
* ``score(x) = fraction of z with LR(x) / LR(z) > gamma``.

For a fixed target model and population the score is a non-decreasing function of ``LR(x)``;
the population turns it into a calibrated, p-value-like number in [0, 1] (ties at 0 and 1
are possible when |Z| is small).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from activemint.attacks.config import ScorerConfig


@dataclass
class RmiaConfig(ScorerConfig):
    variant: str = "offline"
    a: float = field(default=0.3, metadata={"help": "RMIA offline parameter a in [0, 1]: Pr(x) from the OUT models' mean"})
    gamma: float = 1.0

    name: ClassVar[str] = "RMIA"
    description: ClassVar[str] = ("Fraction of population samples z whose likelihood ratio Pr(x|θ)/Pr(x) the sample beats "
                                  "by more than gamma, with Pr(·) from reference models (Zarifzadeh et al., 2024)")
    needs: ClassVar[tuple[str, ...]] = ("black-box outputs", "labels", "reference models", "population data")
    bounds: ClassVar[dict] = {"a": (0.0, 1.0), "gamma": (1e-6, 1e6)}
    choices: ClassVar[dict] = {"variant": ("offline", "online")}

    @property
    def display_name(self) -> str:
        return f"RMIA {self.variant}" + (f" (a={self.a:g})" if self.variant == "offline" else "")

    def describe(self) -> dict:
        d = super().describe()
        d["name"] = self.display_name
        how = (f"offline: Pr(x) = ((1+a) Pr_OUT(x) + (1-a)) / 2 with a = {self.a:g}" if self.variant == "offline"
               else "online: Pr(x) = (Pr_IN(x) + Pr_OUT(x)) / 2")
        d["description"] = f"{self.description}; {how}; gamma = {self.gamma:g}"
        return d


def _masked_mean(p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (p * mask).sum(axis=1) / np.maximum(count, 1), np.nan)


def reference_probability(ref_p, keep, *, variant: str = "offline", a: float = RmiaConfig.a) -> np.ndarray:
    """``Pr(x)`` (n,) from reference probabilities ``ref_p`` (n, N) and IN mask ``keep`` (n, N)."""
    p = np.asarray(ref_p, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if p.ndim != 2 or p.shape != keep.shape:
        raise ValueError(f"ref_p and keep must both be (n_samples, n_models); got {p.shape} and {keep.shape}")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must be in [0, 1], got {a}")
    p_out = _masked_mean(p, ~keep)
    if variant == "offline":
        if np.isnan(p_out).any():
            raise ValueError("offline RMIA needs at least one OUT reference model for every sample")
        return ((1.0 + a) * p_out + (1.0 - a)) / 2.0
    if variant == "online":
        p_in = _masked_mean(p, keep)
        if np.isnan(p_out).any():
            raise ValueError("online RMIA needs at least one OUT reference model for every sample")
        # Samples no reference model trained on (e.g. the population z) get the offline
        # approximation of the same balanced average: Pr_IN ~ a * Pr_OUT + (1 - a).
        offline = ((1.0 + a) * p_out + (1.0 - a)) / 2.0
        return np.where(np.isnan(p_in), offline, 0.5 * (np.nan_to_num(p_in) + p_out))
    raise ValueError(f"variant must be 'offline' or 'online', got {variant!r}")


def rmia_scores(
    target_x, ref_x, keep_x, target_z, ref_z, keep_z, *, variant: str = "offline", a: float = RmiaConfig.a, gamma: float = RmiaConfig.gamma,
) -> np.ndarray:
    """RMIA scores (n,) in [0, 1].

    Args:
        target_x: (n,) ``Pr(x | theta)`` of the target model on the samples to score.
        ref_x, keep_x: (n, N) reference models' ``Pr(x | theta')`` and IN mask on them.
        target_z: (m,) ``Pr(z | theta)`` of the target model on population samples.
        ref_z, keep_z: (m, N) the same for the population.
        gamma: how much larger ``LR(x)`` must be than ``LR(z)`` to count.
    """
    tx = np.asarray(target_x, dtype=np.float64).reshape(-1)
    tz = np.asarray(target_z, dtype=np.float64).reshape(-1)
    if len(tz) == 0:
        raise ValueError("RMIA needs population samples z")
    px = reference_probability(ref_x, keep_x, variant=variant, a=a)
    pz = reference_probability(ref_z, keep_z, variant=variant, a=a)
    if len(tx) != len(px) or len(tz) != len(pz):
        raise ValueError("target and reference arrays disagree in length")
    tiny = np.finfo(np.float64).tiny
    lr_x = tx / np.maximum(px, tiny)
    lr_z = np.sort(tz / np.maximum(pz, tiny))
    # #{z : lr_x / lr_z > gamma} = #{z : lr_z < lr_x / gamma}
    return np.searchsorted(lr_z, lr_x / gamma, side="left") / len(lr_z)


def rmia_from_config(target_x, ref_x, keep_x, target_z, ref_z, keep_z, config: RmiaConfig) -> np.ndarray:
    return rmia_scores(target_x, ref_x, keep_x, target_z, ref_z, keep_z, variant=config.variant, a=config.a, gamma=config.gamma)
