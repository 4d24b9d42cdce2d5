"""Reader for the German Traffic Sign Recognition Benchmark (GTSRB), official layout.

Train: ``GTSRB/Final_Training/Images/<00000..00042>/GT-<class>.csv`` + ``*.ppm``
(torchvision's ``gtsrb/GTSRB/Training/<class>/`` is accepted too).
Test: ``GTSRB/Final_Test/Images/*.ppm`` with labels from ``GT-final_test.csv``, looked for in
``Final_Test/Images/``, ``GTSRB/`` and the root.  The CSVs are semicolon separated:
``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.

Images are resized (PIL bilinear) to ``image_size`` (default 64) and converted to RGB:
``(N, 3, 64, 64)`` uint8; 43 classes.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .base import ArrayDataset, DatasetError
from .images import ImageSize
from .streaming import FileDataset, dataset_from_files

GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)", "Speed limit (100km/h)",
    "Speed limit (120km/h)", "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right",
    "Road work", "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing",
    "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits", "Turn right ahead",
    "Turn left ahead", "Ahead only", "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing", "End of no passing by vehicles over 3.5 metric tons",
]
assert len(GTSRB_CLASSES) == 43

CSV_COLUMNS = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
_REQUIRED = ("Filename", "ClassId")
_TRAIN_DIRS = ("Final_Training/Images", "Training")
_EXPECTED = "GTSRB/Final_Training/Images/<class>/GT-<class>.csv and GTSRB/Final_Test/Images/ with GT-final_test.csv"


def _find_base(root: Path, name: str) -> Path:
    """The folder that holds ``Final_Training`` (or ``Training``) / ``Final_Test``."""
    if not root.is_dir():
        raise DatasetError(f"dataset '{name}': data root {root} does not exist; expected {_EXPECTED}; pass --data-root or --download")
    candidates = [root, root / "GTSRB", root / "gtsrb", root / "gtsrb" / "GTSRB"]
    for base in candidates:
        if any((base / d).is_dir() for d in (*_TRAIN_DIRS, "Final_Test")):
            return base
    raise DatasetError(
        f"dataset '{name}': no Final_Training/ or Final_Test/ folder in {', '.join(map(str, candidates))}; "
        f"expected {_EXPECTED}; pass --data-root or --download"
    )


def read_gt_csv(path: Path, name: str) -> list[tuple[str, int]]:
    """Read a GTSRB ground-truth CSV -> ``[(Filename, ClassId), ...]`` in file order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=";", skipinitialspace=True)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise DatasetError(
                    f"dataset '{name}': {path} lacks column(s) {', '.join(missing)}; header is {';'.join(header) or '(empty)'}, "
                    f"expected {';'.join(CSV_COLUMNS)}"
                )
            reader.fieldnames = header
            rows = []
            for line_no, row in enumerate(reader, start=2):
                fname, cid = (row.get("Filename") or "").strip(), (row.get("ClassId") or "").strip()
                try:
                    label = int(cid)
                except ValueError:
                    raise DatasetError(f"dataset '{name}': {path} line {line_no}: ClassId {cid!r} is not an integer") from None
                if not fname or not 0 <= label < len(GTSRB_CLASSES):
                    raise DatasetError(f"dataset '{name}': {path} line {line_no}: expected a file name and ClassId 0..42, got {fname!r};{cid!r}")
                rows.append((fname, label))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"dataset '{name}': cannot read {path}: expected a semicolon-separated GTSRB CSV ({e})") from e
    return rows


def read_gtsrb(root: Path, split: str, image_size: ImageSize | None = 64, channels: int = 3, name: str = "gtsrb",
               max_memory: int | None = None) -> ArrayDataset | FileDataset:
    """Read one GTSRB split -> images ``(N, channels, H, W)`` uint8, labels ``(N,)`` in 0..42."""
    base = _find_base(root, name)
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        train_dir = next((base / d for d in _TRAIN_DIRS if (base / d).is_dir()), None)
        if train_dir is None:
            raise DatasetError(f"dataset '{name}': expected {base / 'Final_Training' / 'Images'} with one folder per class; pass --data-root or --download")
        class_dirs = sorted(d for d in train_dir.iterdir() if d.is_dir())
        if not class_dirs:
            raise DatasetError(f"dataset '{name}': {train_dir} has no class folders; expected 00000..00042 with GT-<class>.csv")
        for d in class_dirs:
            gt = d / f"GT-{d.name}.csv"
            if gt.is_file():
                rows = read_gt_csv(gt, name)
            elif train_dir.name == "Training" and d.name.isdigit() and int(d.name) < len(GTSRB_CLASSES):
                # torchvision's download: label = folder name, every .ppm in it
                rows = [(p.name, int(d.name)) for p in sorted(d.glob("*.ppm"))]
            else:
                raise DatasetError(f"dataset '{name}': expected {gt.name} (Filename;...;ClassId) in {d}")
            for fname, label in rows:
                files.append(d / fname)
                labels.append(label)
    else:
        images_dir = base / "Final_Test" / "Images"
        if not images_dir.is_dir():
            raise DatasetError(f"dataset '{name}': expected test images in {images_dir}; pass --data-root or --download")
        places = list(dict.fromkeys([images_dir, base, base.parent, root]))
        gt = next((p / "GT-final_test.csv" for p in places if (p / "GT-final_test.csv").is_file()), None)
        if gt is None:
            raise DatasetError(
                f"dataset '{name}': expected GT-final_test.csv (test labels, from GTSRB_Final_Test_GT.zip) in "
                f"{', '.join(map(str, places))}"
            )
        for fname, label in read_gt_csv(gt, name):
            files.append(images_dir / fname)
            labels.append(label)
    if not files:
        raise DatasetError(f"dataset '{name}': the ground-truth CSVs under {base} list no images")
    return dataset_from_files(
        files, labels, list(GTSRB_CLASSES), name=name, split=split, source=str(base),
        ids=[p.relative_to(base).as_posix() for p in files], image_size=image_size, channels=channels, max_memory=max_memory,
    )
