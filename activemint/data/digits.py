"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download), for quick runs.

Pixel values 0..16 are scaled to 0..255 uint8 and the images upscaled (bilinear) to 16x16 by
default, since most conv nets need more than 8x8.  A fixed stratified split (seed 0) gives
1437 train and 360 test images.  Images ``(N, 1, 16, 16)`` uint8; 10 classes.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import ArrayDataset
from .images import ImageSize, resize_images

DIGITS_CLASSES = [str(i) for i in range(10)]
N_TEST = 360
SPLIT_SEED = 0


def read_digits(split: str, image_size: ImageSize | None = 16, name: str = "digits") -> ArrayDataset:
    """One split of the digits set -> images ``(N, 1, H, W)`` uint8 (N = 1437 train, 360 test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=N_TEST, stratify=y, random_state=SPLIT_SEED)
    idx = np.sort(idx_train if split == "train" else idx_test)
    images = torch.from_numpy(np.ascontiguousarray(x[idx])).unsqueeze(1)
    if image_size is not None:
        images = resize_images(images, image_size)
    return ArrayDataset(
        images=images,
        labels=torch.from_numpy(y[idx]),
        classes=list(DIGITS_CLASSES),
        name=name,
        split=split,
        source="sklearn.datasets.load_digits",
        ids=[f"digit-{i}" for i in idx],
    )
