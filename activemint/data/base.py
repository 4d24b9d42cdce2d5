"""Types shared by every data-set reader."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from activemint.errors import UserError


class DatasetError(UserError):
    """A data set is missing or malformed.

    The message always says where we looked and what we expected to find there, so a user
    can fix the problem without reading a traceback.
    """


@dataclass
class ArrayDataset:
    """A whole split of a data set held in memory.

    Attributes:
        images: uint8 tensor of shape (N, C, H, W), pixel values 0..255.
        labels: int64 tensor of shape (N,), class indices 0..num_classes-1.
        classes: class names, ``len(classes) == num_classes``.
        name: registry name of the data set (e.g. ``"fashion-mnist"``).
        split: ``"train"`` or ``"test"``.
        source: where the data was read from (a path), for error messages and records.
        ids: optional per-sample identifiers (e.g. file paths relative to the root);
            ``None`` when samples are only identified by their index.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str
    source: str = ""
    ids: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.to(torch.int64)
        if self.ids is not None and len(self.ids) != len(self.images):
            raise ValueError("ids must have one entry per image")

    #: False: every sample is in memory (see :class:`activemint.data.streaming.FileDataset`).
    streamed = False

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices) -> torch.Tensor:
        """Samples ``indices`` as a uint8 ``(B, C, H, W)`` tensor (what a streamed set decodes on demand)."""
        return self.images[torch.as_tensor(indices)]

    def rows(self, index=None) -> torch.Tensor:
        """Samples ``index`` (None: all) as the tensor the trainer indexes; a streamed set gives a lazy view."""
        return self.images if index is None else self.images[torch.as_tensor(index)]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]
