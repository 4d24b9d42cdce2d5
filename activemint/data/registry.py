"""The data-set registry: names, facts from the paper, and one entry point to load a split.

>>> ds = load_dataset("digits", "train")
>>> ds.images.shape, ds.labels.shape
(torch.Size([1437, 1, 16, 16]), torch.Size([1437]))

Nothing is fetched unless ``download=True`` (torchvision's downloaders, for mnist,
fashion-mnist, cifar10, cifar100 and gtsrb).  Loaded splits are kept in a small in-process LRU
cache, since one run loads the same split several times.
"""
from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from activemint.errors import not_a_directory

from .base import ArrayDataset, DatasetError
from .cifar import read_cifar10, read_cifar100
from .digits import read_digits
from .gtsrb import read_gtsrb
from .idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, read_idx_dataset
from .imagefolder import read_imagefolder
from .images import ImageSize, convert_channels, resize_images
from .memory import resolve_budget
from .streaming import FileDataset
from .tensors import read_tensor_split
from .tiny_imagenet import read_tiny_imagenet

SPLITS = ("train", "test")

#: Where ``download=True`` puts data when no root is given (and where we look next).
CACHE_DIR = Path(os.environ.get("ACTIVEMINT_DATA_CACHE", "~/.cache/activemint/datasets")).expanduser()

#: A reader: (root, split, image_size, channels) -> ArrayDataset.  ``image_size`` and
#: ``channels`` may be None (= the data set's own).
Loader = Callable[[Path, str, ImageSize | None, int | None], ArrayDataset]


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one registered data set.

    Attributes:
        name: registry name.
        description: one line for humans.
        input_shape: ``(C, H, W)`` of the images as loaded by default.
        num_classes: number of classes; 0 when it depends on the data (``imagefolder``).
        default_root: where the data is looked for when no root is given (None: no default).
        paper_sizes: sizes used in the aMINT paper: ``{"members", "external", "eval_nonmembers"}``
            (empty when the paper has none).
        loader: the reader, ``(root, split, image_size, channels) -> ArrayDataset``.
        downloader: ``(root) -> None`` fetching the data into ``root``, or None.
        needs_root: False when the data ships with a package (``digits``).
        layout: what the root must hold, for error messages.
    """

    name: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    default_root: str | None
    paper_sizes: dict[str, int]
    loader: Loader = field(repr=False, compare=False)
    downloader: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)
    needs_root: bool = True
    layout: str = ""


# --------------------------------------------------------------------------- readers

def _array_loader(read: Callable[[Path, str], ArrayDataset]) -> Loader:
    """Wrap a reader of fixed-size arrays so that ``image_size`` / ``channels`` are applied after."""

    def load(root: Path, split: str, image_size: ImageSize | None, channels: int | None) -> ArrayDataset:
        ds = read(root, split)
        images = ds.images
        if channels is not None:
            images = convert_channels(images, channels)
        if image_size is not None:
            images = resize_images(images, image_size)
        return ds if images is ds.images else dataclasses.replace(ds, images=images)

    return load


def _idx_loader(name: str, classes: list[str], folder: str, image_shape: tuple[int, int] = (28, 28)) -> Loader:
    return _array_loader(lambda root, split: read_idx_dataset(name, root, split, classes, ["raw", f"{folder}/raw", folder],
                                                              image_shape=image_shape))


def _file_loader(read: Callable[..., ArrayDataset], name: str, default_size: int) -> Loader:
    def load(root: Path, split: str, image_size: ImageSize | None, channels: int | None,
             max_memory: int | None = None) -> ArrayDataset:
        return read(root, split, image_size=image_size or default_size, channels=channels or 3, name=name,
                    max_memory=max_memory)

    load.streamable = True  # type: ignore[attr-defined]  # takes max_memory: may return a FileDataset

    return load


def _digits_loader(root: Path, split: str, image_size: ImageSize | None, channels: int | None) -> ArrayDataset:
    ds = read_digits(split, image_size=image_size or 16)
    if channels is not None and channels != 1:
        ds = dataclasses.replace(ds, images=convert_channels(ds.images, channels))
    return ds


def _torchvision_downloader(cls_name: str, **kwargs: object) -> Callable[[Path], None]:
    def download(root: Path) -> None:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        cls = getattr(tvd, cls_name)
        if cls_name == "GTSRB":
            for split in SPLITS:
                cls(str(root), split=split, download=True)
        else:
            cls(str(root), download=True, **kwargs)

    return download


# --------------------------------------------------------------------------- registry

def _sizes(members: int, external: int, eval_nonmembers: int) -> dict[str, int]:
    return {"members": members, "external": external, "eval_nonmembers": eval_nonmembers}


#: The registered data sets, in registration order (``activemint datasets``).
DATASETS: dict[str, DatasetInfo] = {}
#: Other spellings of registered names (``fmnist``): accepted, not listed.
ALIASES: dict[str, str] = {}


def register_dataset(info: DatasetInfo, *, aliases: tuple[str, ...] = ()) -> DatasetInfo:
    """Register a data set under ``info.name`` (and ``aliases``); a name already taken is an error."""
    for key in (info.name, *aliases):
        if key in DATASETS or key in ALIASES:
            raise ValueError(f"data set name {key!r} is already registered")
    DATASETS[info.name] = info
    ALIASES.update({a: info.name for a in aliases})
    return info


register_dataset(DatasetInfo(
    "fashion-mnist", "Fashion-MNIST: 70k 28x28 greyscale clothing images, 10 classes (idx files)",
    (1, 28, 28), 10, "/usr/share/datasets/fashion-mnist", _sizes(25000, 35000, 10000),
    _idx_loader("fashion-mnist", FASHION_MNIST_CLASSES, "FashionMNIST"),
    _torchvision_downloader("FashionMNIST"),
    layout="train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or raw, or under raw/ or FashionMNIST/raw/)",
), aliases=("fashionmnist", "fmnist"))

register_dataset(DatasetInfo(
    "mnist", "MNIST: 70k 28x28 greyscale handwritten digits, 10 classes (idx files)",
    (1, 28, 28), 10, None, _sizes(25000, 35000, 10000),
    _idx_loader("mnist", MNIST_CLASSES, "MNIST"), _torchvision_downloader("MNIST"),
    layout="train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or raw, or under raw/ or MNIST/raw/)",
))

register_dataset(DatasetInfo(
    "cifar10", "CIFAR-10: 60k 32x32 colour images, 10 classes (python pickle batches)",
    (3, 32, 32), 10, None, _sizes(20000, 30000, 10000),
    _array_loader(lambda root, split: read_cifar10(root, split)), _torchvision_downloader("CIFAR10"),
    layout="cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta",
), aliases=("cifar-10",))

register_dataset(DatasetInfo(
    "cifar100", "CIFAR-100: 60k 32x32 colour images, 100 fine classes (python pickle batches)",
    (3, 32, 32), 100, None, _sizes(20000, 30000, 10000),
    _array_loader(lambda root, split: read_cifar100(root, split)), _torchvision_downloader("CIFAR100"),
    layout="cifar-100-python/ with train, test, meta",
), aliases=("cifar-100",))

register_dataset(DatasetInfo(
    "gtsrb", "GTSRB: German traffic signs, 43 classes, .ppm + GT CSVs, resized to 64x64 RGB",
    (3, 64, 64), 43, None, _sizes(11000, 15640, 12630),
    _file_loader(read_gtsrb, "gtsrb", 64), _torchvision_downloader("GTSRB"),
    layout="GTSRB/Final_Training/Images/<class>/GT-<class>.csv + .ppm, GTSRB/Final_Test/Images/ + GT-final_test.csv",
))

register_dataset(DatasetInfo(
    "tiny-imagenet", "Tiny ImageNet: 64x64 RGB, 200 classes; 'test' = the official val set",
    (3, 64, 64), 200, None, _sizes(40000, 60000, 10000),
    _file_loader(read_tiny_imagenet, "tiny-imagenet", 64),
    layout="tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/, val/val_annotations.txt",
), aliases=("tinyimagenet", "tiny-imagenet-200"))

register_dataset(DatasetInfo(
    "imagefolder", "Any folder of class sub-folders (train/ + test/ or one folder split 90/10), resized RGB",
    (3, 64, 64), 0, None, {},
    _file_loader(read_imagefolder, "imagefolder", 64),
    layout="train/<class>/* and test/<class>/* (or val/), or one folder per class",
), aliases=("image-folder",))

register_dataset(DatasetInfo(
    "casia-webface", "CASIA-WebFace read as an image folder (one folder per identity), 64x64 RGB",
    (3, 64, 64), 10575, None, _sizes(200000, 250000, 44406),
    _file_loader(read_imagefolder, "casia-webface", 64),
    layout="one folder per identity (or train/ and test/ folders of identities)",
), aliases=("casia", "casiawebface"))

register_dataset(DatasetInfo(
    "tensors", "A run's own data saved from the user's Dataset (activemint.save_run): train/test .safetensors",
    (3, 32, 32), 0, None, {}, lambda root, split, image_size, channels: read_tensor_split(root, split),
    layout="train.safetensors and test.safetensors (images uint8 N,C,H,W; labels int64), as save_run writes them",
))

register_dataset(DatasetInfo(
    "digits", "scikit-learn's bundled 8x8 digits upscaled to 16x16, 1437/360 split, 10 classes",
    (1, 16, 16), 10, None, _sizes(600, 600, 360), _digits_loader, needs_root=False,
))


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    return key


def list_datasets() -> list[str]:
    """Registered data-set names (aliases such as ``fmnist`` are accepted too but not listed)."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; unknown names raise :class:`DatasetError` listing the known ones."""
    return DATASETS[_canonical(name)]


# --------------------------------------------------------------------------- loading

_CACHE: OrderedDict[tuple, ArrayDataset | FileDataset] = OrderedDict()
CACHE_SIZE = 6


def clear_dataset_cache() -> None:
    """Forget every split held by :func:`load_dataset`'s cache."""
    _CACHE.clear()


def _resolve_root(info: DatasetInfo, root: str | os.PathLike | None, download: bool) -> Path:
    if root is not None:
        return Path(root).expanduser().resolve()
    candidates = [Path(info.default_root)] if info.default_root else []
    candidates.append(CACHE_DIR / info.name)
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if download:
        return candidates[-1]
    raise DatasetError(
        f"dataset '{info.name}': no data root given and none of {', '.join(map(str, candidates))} exists; "
        "pass --data-root (root=...) or --download"
        + (f" (or install the Debian package that provides {info.default_root})" if info.default_root else "")
    )


def _copy(ds: ArrayDataset | FileDataset) -> ArrayDataset | FileDataset:
    """A new ArrayDataset sharing the tensors (so reassigning attributes leaves the cache alone)."""
    if isinstance(ds, FileDataset):
        return ds  # holds file names only; its digest cache is meant to be shared
    return dataclasses.replace(ds, classes=list(ds.classes), ids=None if ds.ids is None else list(ds.ids))


def _fits_choice(ds: ArrayDataset | FileDataset, budget: int | None) -> bool:
    """True when ``budget`` would make the same in-memory / streamed choice as the cached ``ds``."""
    nbytes = ds.nbytes if isinstance(ds, FileDataset) else ds.images.numel()
    return ds.streamed == (budget is not None and nbytes > budget)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: ImageSize | None = None,
    channels: int | None = None,
    max_memory: str | int | None = "auto",
) -> ArrayDataset | FileDataset:
    """Load a whole split of a registered data set into memory, or stream it when it is too large.

    Args:
        name: a name from :func:`list_datasets` (or an alias such as ``fmnist``).
        split: ``"train"`` or ``"test"``.
        root: folder holding the data in its usual on-disk layout; default: the data set's
            ``default_root``, else ``~/.cache/activemint/datasets/<name>``.
        download: fetch the data with torchvision when it is not there (mnist, fashion-mnist,
            cifar10, cifar100, gtsrb).  Without it nothing is ever fetched.
        image_size: output ``H = W`` (int) or ``(H, W)``; default: the data set's own
            (``dataset_info(name).input_shape``).
        channels: 1 or 3 to convert; default: the data set's own.
        max_memory: byte budget of the decoded split (``"2GB"``, an int, ``"auto"`` = half the
            available memory, ``"off"`` = no limit; see :func:`~activemint.data.memory.parse_memory`).
            A folder-based set (imagefolder, casia-webface, gtsrb, tiny-imagenet) above it is
            returned as a :class:`~activemint.data.streaming.FileDataset` that decodes on demand;
            the array formats (idx, CIFAR, digits) are always in memory.

    Returns:
        :class:`ArrayDataset` with images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64, or a
        :class:`~activemint.data.streaming.FileDataset` (same labels, ids and pixels, read lazily).

    Raises:
        DatasetError: unknown name, or data missing / malformed (the message says where we
            looked and what we expected).
        ValueError: bad ``split``, ``image_size``, ``channels`` or ``max_memory``.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(image_size, list):
        image_size = tuple(image_size)
    path = _resolve_root(info, root, download) if info.needs_root else Path(".")
    if info.needs_root and not download and not path.is_dir():
        raise DatasetError(
            f"dataset '{info.name}': {not_a_directory(path, 'data root')}; expected {info.layout} there; "
            "pass --data-root or --download"
        )
    streamable = getattr(info.loader, "streamable", False)
    budget = resolve_budget(max_memory) if streamable else None
    key = (info.name, split, str(path), bool(download), image_size, channels)
    if key in _CACHE and _fits_choice(_CACHE[key], budget):
        _CACHE.move_to_end(key)
        return _copy(_CACHE[key])
    extra = {"max_memory": budget} if streamable else {}
    try:
        ds = info.loader(path, split, image_size, channels, **extra)
    except DatasetError as first:
        if not (download and info.downloader):
            raise
        try:
            info.downloader(path)
        except Exception as e:  # network, disk, checksum: all end as one readable error
            raise DatasetError(
                f"dataset '{info.name}': download into {path} failed ({type(e).__name__}: {e}); "
                f"reading it first said: {first}. Download it by hand and pass --data-root"
            ) from e
        ds = info.loader(path, split, image_size, channels, **extra)
    _CACHE[key] = ds
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _copy(ds)
