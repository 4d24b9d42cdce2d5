"""The one score container: per role, one float64 score per sample and the samples' indices.

Every membership method returns :class:`Scores` (:mod:`activemint.scorers`); the trainer's
final evaluation is one too, and a run's ``scores.npz`` is its :meth:`Scores.arrays`:
``<role>`` (scores), ``<role>_index`` (indices into the role's source split, as in the
manifest) and any per-sample extras (e.g. ``members_mint_seen``).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

#: The roles every method scores: members D, evaluation non-members, calibration non-members.
EVAL_ROLES = ("members", "eval_nonmembers", "calibration")
INDEX_SUFFIX = "_index"


@dataclass
class Scores:
    """``scores[role]``: (n,) float64, higher = member; ``indices[role]``: (n,) int64 sample indices;
    ``extra``: other per-sample arrays stored with them (not scores)."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = {r: np.asarray(v, dtype=np.float64) for r, v in self.scores.items()}
        self.indices = {r: np.asarray(v, dtype=np.int64) for r, v in self.indices.items()}
        for r, idx in self.indices.items():
            if r in self.scores and len(idx) != len(self.scores[r]):
                raise ValueError(f"{len(self.scores[r])} scores but {len(idx)} indices for {r}")

    def __getitem__(self, role: str) -> np.ndarray:
        return self.scores[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, role: object) -> bool:
        return role in self.scores

    @property
    def roles(self) -> list[str]:
        return list(self.scores)

    def arrays(self) -> dict[str, np.ndarray]:
        """``{role: scores, role + "_index": indices, ..., extras}`` (what ``np.savez`` stores)."""
        out: dict[str, np.ndarray] = {}
        for r, s in self.scores.items():
            out[r] = s
            if r in self.indices:
                out[r + INDEX_SUFFIX] = self.indices[r]
        return {**out, **self.extra}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], roles: tuple[str, ...] = EVAL_ROLES) -> Scores:
        """The inverse of :meth:`arrays` for ``roles`` (keys that are neither go to ``extra``)."""
        index_keys = {r + INDEX_SUFFIX for r in roles}
        return cls({r: arrays[r] for r in roles if r in arrays},
                   {r: arrays[r + INDEX_SUFFIX] for r in roles if r + INDEX_SUFFIX in arrays},
                   {k: np.asarray(v) for k, v in arrays.items() if k not in roles and k not in index_keys})
