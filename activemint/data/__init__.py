"""Data sets for aMINT: readers for the on-disk formats, a registry, and the paper's splits.

Every reader returns an :class:`ArrayDataset` holding a whole split in memory
(images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``), or, for a folder-based set whose
decoded images exceed ``max_memory``, a :class:`FileDataset` that lists the files and decodes
them on demand (:mod:`activemint.data.streaming`); every failure is one
:class:`DatasetError` saying where we looked and what we expected.
"""
from .base import ArrayDataset, DatasetError
from .images import (
    MAX_IMAGE_PIXELS,
    ImageInputError,
    convert_channels,
    load_image,
    load_image_checked,
    load_image_files,
    open_image,
    resize_images,
)
from .registry import DATASETS, DatasetInfo, clear_dataset_cache, dataset_info, list_datasets, load_dataset, register_dataset
from .splits import (
    ROLES,
    SOURCE_SPLIT,
    Splits,
    SplitSizes,
    make_splits,
    manifest_fingerprint,
    pixel_sha256,
    read_manifest,
    source_split,
    verify_manifest,
    write_manifest,
)
from .streaming import FileDataset

__all__ = [
    "DATASETS",
    "MAX_IMAGE_PIXELS",
    "ArrayDataset",
    "DatasetError",
    "DatasetInfo",
    "FileDataset",
    "ImageInputError",
    "ROLES",
    "SOURCE_SPLIT",
    "SplitSizes",
    "Splits",
    "clear_dataset_cache",
    "convert_channels",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "load_image",
    "load_image_checked",
    "register_dataset",
    "load_image_files",
    "make_splits",
    "manifest_fingerprint",
    "open_image",
    "pixel_sha256",
    "read_manifest",
    "resize_images",
    "source_split",
    "verify_manifest",
    "write_manifest",
]
