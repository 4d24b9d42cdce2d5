"""A run's data: both source splits of its data set, the run's carve-up of them, and which members the MINT loss sees."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from activemint.data import ArrayDataset, Splits, SplitSizes, load_dataset, make_splits, source_split
from activemint.data.memory import resolve_budget
from activemint.data.streaming import FileDataset
from activemint.training.config import TrainConfig


def mint_seen_mask(cfg: TrainConfig, n_members: int) -> np.ndarray:
    """(n_members,) bool: the members whose membership the MINT loss sees (``cfg.mint_members``).

    A seeded draw from ``cfg.seed`` alone, so evaluation re-derives it from the config.
    """
    mask = np.ones(n_members, dtype=bool)
    if cfg.mint_members < 1.0:
        k = int(round(cfg.mint_members * n_members))
        mask[:] = False
        mask[np.random.default_rng([cfg.seed, 8]).permutation(n_members)[:k]] = True
    return mask


# --------------------------------------------------------------------------- data
@dataclass
class RunData:
    """The two source splits of a data set and the run's carve-up of them.

    ``split(role)`` gives a role's samples; ``source(role)`` the split they come from
    (:func:`activemint.data.source_split`).
    """

    train: ArrayDataset | FileDataset
    test: ArrayDataset | FileDataset
    splits: Splits

    def source(self, role: str) -> ArrayDataset | FileDataset:
        """The data set split (``train`` or ``test``) that ``role``'s samples come from."""
        return self.test if source_split(role) == "test" else self.train

    def indices(self, role: str) -> np.ndarray:
        """``role``'s sample indices into :meth:`source`, in the manifest's order."""
        return np.asarray(getattr(self.splits, role))

    def split(self, role: str, at: np.ndarray | None = None) -> RoleSamples:
        """``role``'s samples (``at``: these indices into its source split instead of all of the role's)."""
        idx = self.indices(role) if at is None else np.asarray(at)
        src, rows = self.source(role), torch.as_tensor(idx)
        return RoleSamples(src.images[rows], src.labels[rows], idx)


@dataclass(frozen=True)
class RoleSamples:
    """One role's samples: uint8 images (N, C, H, W), int64 labels (N,), indices into the source split (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: np.ndarray


def split_sizes(cfg: TrainConfig, n_train: int | None = None, n_test: int | None = None) -> SplitSizes:
    """The paper's sizes overridden by the config's; a set without paper sizes (imagefolder) uses all data."""
    from activemint.data import dataset_info

    if not dataset_info(cfg.dataset).paper_sizes and n_train is not None and n_test is not None:
        sizes = SplitSizes.for_counts(n_train, n_test)
    else:
        sizes = SplitSizes.paper(cfg.dataset)
    overrides = {k: getattr(cfg, k) for k in ("members", "external", "validation", "calibration", "eval_nonmembers")}
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def load_run_data(cfg: TrainConfig, splits: Splits | None = None) -> RunData:
    """Load both splits of ``cfg.dataset`` and carve the run's splits with ``cfg.seed`` (or use ``splits``:
    a saved run's, read from its manifest).

    ``cfg.max_memory`` bounds both splits' decoded images together: a folder-based split
    that does not fit what is left of it is streamed (:mod:`activemint.data.streaming`).
    """
    budget = resolve_budget(cfg.max_memory)
    train = load_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download, max_memory=budget)
    if budget is not None and not train.streamed:
        budget = max(0, budget - train.images.numel())
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download, max_memory=budget)
    if splits is None:
        splits = make_splits(len(train), len(test), split_sizes(cfg, len(train), len(test)), cfg.seed)
    return RunData(train, test, splits)
