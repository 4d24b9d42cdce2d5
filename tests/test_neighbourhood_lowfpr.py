"""benchmarks/neighbourhood_lowfpr.py: the extra non-members are the training images no role of the run used."""
from __future__ import annotations

import numpy as np
from conftest import load_benchmark

from activemint.data.splits import Splits


def _module():
    return load_benchmark("neighbourhood_lowfpr")


def test_unused_train_indices_are_exactly_the_untouched_ones():
    rng = np.random.default_rng(0)
    perm = rng.permutation(1000)
    splits = Splits(members=perm[:100], external=perm[100:400], validation=perm[400:500], calibration=perm[500:600],
                    eval_nonmembers=np.arange(50))  # eval non-members index the *test* split: no effect here
    unused = _module().unused_train_indices(splits, 1000)
    assert np.array_equal(unused, np.sort(perm[600:]))
    used = np.concatenate([splits.members, splits.external, splits.validation, splits.calibration])
    assert not np.isin(unused, used).any() and len(unused) + len(used) == 1000
