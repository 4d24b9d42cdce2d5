"""Reader for Tiny ImageNet (``tiny-imagenet-200``).

Layout: ``wnids.txt`` (one WordNet id per line), optional ``words.txt`` (``wnid<TAB>names``),
``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with ``val/val_annotations.txt``
(``filename<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1``).  Split ``"test"`` is the official
validation set (the official test set has no labels).

Class index = position of the wnid in sorted order (as torchvision's ImageFolder would give).
Images: ``(N, 3, 64, 64)`` uint8 (greyscale JPEGs converted to RGB); 200 classes.
"""
from __future__ import annotations

from pathlib import Path

from .base import ArrayDataset, DatasetError
from .images import ImageSize, is_image_file
from .streaming import FileDataset, dataset_from_files

_EXPECTED = "tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/ and val/val_annotations.txt"


def _find_base(root: Path, name: str) -> Path:
    if not root.is_dir():
        raise DatasetError(f"dataset '{name}': data root {root} does not exist; expected {_EXPECTED}; pass --data-root")
    for base in (root / "tiny-imagenet-200", root):
        if (base / "wnids.txt").is_file():
            return base
    raise DatasetError(f"dataset '{name}': expected wnids.txt in {root / 'tiny-imagenet-200'} or {root} ({_EXPECTED}); pass --data-root")


def _read_lines(path: Path, name: str) -> list[str]:
    try:
        return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"dataset '{name}': cannot read {path} ({e})") from e


def _class_names(base: Path, wnids: list[str], name: str) -> list[str]:
    """First synonym from ``words.txt`` for each wnid, else the wnid itself."""
    words: dict[str, str] = {}
    path = base / "words.txt"
    if path.is_file():
        for line in _read_lines(path, name):
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    return [words.get(w) or w for w in wnids]


def read_tiny_imagenet(root: Path, split: str, image_size: ImageSize | None = 64, channels: int = 3, name: str = "tiny-imagenet",
                       max_memory: int | None = None) -> ArrayDataset | FileDataset:
    """Read one Tiny ImageNet split -> images ``(N, channels, H, W)`` uint8, labels ``(N,)`` in 0..199."""
    base = _find_base(root, name)
    wnids = sorted({w.strip() for w in _read_lines(base / "wnids.txt", name)})
    if not wnids:
        raise DatasetError(f"dataset '{name}': {base / 'wnids.txt'} lists no classes")
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            folder = base / "train" / wnid / "images"
            if not folder.is_dir():
                raise DatasetError(f"dataset '{name}': expected training images for class {wnid} in {folder}")
            for p in sorted(folder.iterdir()):
                if is_image_file(p.name):
                    files.append(p)
                    labels.append(index[wnid])
    else:
        ann = base / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DatasetError(f"dataset '{name}': expected {ann.name} (filename<TAB>wnid<TAB>bbox) in {ann.parent}")
        for line_no, line in enumerate(_read_lines(ann, name), start=1):
            parts = line.split("\t")
            if len(parts) < 2 or parts[1].strip() not in index:
                raise DatasetError(
                    f"dataset '{name}': {ann} line {line_no}: expected filename<TAB>wnid with a wnid from wnids.txt, got {line!r}"
                )
            files.append(base / "val" / "images" / parts[0].strip())
            labels.append(index[parts[1].strip()])
    if not files:
        raise DatasetError(f"dataset '{name}': no {split} images found under {base} ({_EXPECTED})")
    return dataset_from_files(
        files, labels, _class_names(base, wnids, name), name=name, split=split, source=str(base),
        ids=[p.relative_to(base).as_posix() for p in files], image_size=image_size, channels=channels, max_memory=max_memory,
    )
