"""Reference models for LiRA and RMIA: the plan (pure: which samples, which model trains on which).

**What they train on.**  The standard recipe (LiRA's online setting) trains each reference
model on a random half of a pool that holds the targets, so that every target is IN for half
of the models and OUT for the other half.  Here the pool is

    members D  +  eval_nonmembers  +  calibration  +  fill (from the external set E)

where ``fill`` takes just enough samples of E that the pool holds ``2 |D|`` samples: each
reference model then trains on about as many samples as the audited model did (LiRA assumes
reference models trained like the target).  When the targets alone exceed ``2 |D|`` there is
no fill and reference models train on ``|pool| / 2 > |D|`` samples (the plan says so).  The IN
mask is balanced: every pool sample is IN for exactly ``floor(N / 2)`` of the N models
(Carlini et al.'s ``keep`` matrix).  Offline LiRA and RMIA use, for each sample, only the
models that did not train on it.  RMIA's population ``z`` is the rest of E (never in any
reference model's training data).  Calibration samples are in the pool, so every method's
calibrated threshold comes from scores computed exactly like the test scores.

Reference models are trained by the project's :class:`~activemint.training.Trainer` with
``mint=False`` and the audited run's recipe (optionally fewer epochs); their test accuracy is
measured on :data:`REFERENCE_TEST_SAMPLES` test images outside the pool.

Training the models and caching their logits: :mod:`activemint.attacks.reference`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from activemint.attacks.config import ScorerConfig
from activemint.data.splits import Splits, source_split
from activemint.training.config import TrainConfig

#: The samples every reference model is evaluated on (class logits saved per role).
SCORED_ROLES = ("members", "eval_nonmembers", "calibration", "population")
#: The pool the reference models train on, in this order.
POOL_ROLES = ("members", "eval_nonmembers", "calibration", "fill")
#: Reference models report their test accuracy on this many held-out test images (not in the pool).
REFERENCE_TEST_SAMPLES = 2000


@dataclass
class ReferenceConfig(ScorerConfig):
    n_models: int = 4
    epochs: int | None = None
    seed: int = 0
    population: int | None = None

    name: ClassVar[str] = "reference models"
    description: ClassVar[str] = ("N models of the audited architecture trained plainly (mint off) by the project's Trainer "
                                  "on random halves of members + evaluation non-members + calibration + external fill; "
                                  "every target is IN for half of them")
    bounds: ClassVar[dict] = {"n_models": (4, 4096), "epochs": (1, 100_000), "seed": (0, 2**31 - 1),
                              "population": (1, 1 << 40)}


def sha256_indices(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(idx, dtype=np.int64)).tobytes()).hexdigest()


@dataclass
class ReferencePlan:
    """Which samples exist for the reference models and which model trains on which.

    ``samples[role] = (source split, indices)`` for ``members``, ``eval_nonmembers``,
    ``calibration``, ``fill`` (pool) and ``population``; ``keep`` (N, n_pool) is the IN mask
    over the pool in :data:`POOL_ROLES` order.
    """

    samples: dict[str, tuple[str, np.ndarray]]
    validation: np.ndarray
    keep: np.ndarray

    @property
    def n_models(self) -> int:
        return self.keep.shape[0]

    def pool_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for role in POOL_ROLES:
            n = len(self.samples[role][1])
            out[role] = slice(start, start + n)
            start += n
        return out

    def keep_for(self, role: str) -> np.ndarray:
        """(n_role, N) IN mask of ``role``'s samples; all False for the population."""
        if role == "population":
            return np.zeros((len(self.samples[role][1]), self.n_models), dtype=bool)
        return self.keep[:, self.pool_slices()[role]].T.copy()

    def training_sizes(self) -> list[int]:
        return [int(k) for k in self.keep.sum(axis=1)]

    def fingerprint(self) -> dict[str, Any]:
        """What decides the models' training data (the population is not part of it)."""
        d = {role: {"split": self.samples[role][0], "n": len(self.samples[role][1]), "sha256": sha256_indices(self.samples[role][1])}
             for role in POOL_ROLES}
        d["validation"] = {"split": source_split("validation"), "n": len(self.validation), "sha256": sha256_indices(self.validation)}
        d["keep_sha256"] = hashlib.sha256(np.packbits(self.keep).tobytes()).hexdigest()
        return d


def make_plan(splits: Splits, config: ReferenceConfig) -> ReferencePlan:
    """The pool, the balanced IN mask and the population, from a run's splits (seeded)."""
    rng = np.random.default_rng(config.seed)
    targets = len(splits.members) + len(splits.eval_nonmembers) + len(splits.calibration)
    n_fill = max(0, 2 * len(splits.members) - targets)
    external = rng.permutation(splits.external)
    if n_fill > len(external):
        raise ValueError(f"the reference pool needs {n_fill} external samples to reach 2 x {len(splits.members)} members; "
                         f"the run has {len(external)}")
    fill = np.sort(external[:n_fill])
    rest = external[n_fill:]
    if len(rest) == 0:
        raise ValueError("no external samples are left for RMIA's population after filling the reference pool")
    population = np.sort(rest if config.population is None else rest[: config.population])
    ext = source_split("external")  # fill and population are drawn from E
    samples = {
        **{r: (source_split(r), getattr(splits, r)) for r in ("members", "eval_nonmembers", "calibration")},
        "fill": (ext, fill), "population": (ext, population),
    }
    n_pool = sum(len(samples[r][1]) for r in POOL_ROLES)
    n = config.n_models
    order = rng.random((n, n_pool)).argsort(axis=0)
    keep = order < n // 2
    return ReferencePlan(samples, np.asarray(splits.validation, dtype=np.int64), keep)


def reference_test_indices(plan: ReferencePlan, n_test: int, limit: int = REFERENCE_TEST_SAMPLES) -> np.ndarray:
    """Test-split images no reference model trained on (not in the pool), at most ``limit`` (seeded)."""
    held = np.setdiff1d(np.arange(n_test), plan.samples["eval_nonmembers"][1])
    return np.sort(np.random.default_rng(0).permutation(held)[:limit])


def reference_train_config(base: TrainConfig, config: ReferenceConfig) -> TrainConfig:
    """The training config shared by all reference models (seed and size set per model).

    They train on the device of the machine that scores (``auto``), not on the one that trained
    the audited run: a run trained on a GPU is often attacked on a CPU.
    """
    return dataclasses.replace(base.without_mint(), taps=None, epochs=config.epochs or base.epochs, external=None,
                               calibration=None, eval_nonmembers=None, members=None, validation=None, device="auto")
