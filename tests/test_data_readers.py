"""Readers: tiny files in the exact on-disk formats, read back through load_dataset."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import activemint.data as data
from activemint.data import DatasetError, clear_dataset_cache, dataset_info, list_datasets, load_dataset, load_image_files

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- idx

def write_idx(path: Path, arr: np.ndarray, magic: int, gz: bool) -> Path:
    """Write an idx file exactly as the MNIST authors do: big-endian magic, dims, bytes."""
    payload = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def make_idx_set(folder: Path, n_train=12, n_test=5, gz=True, seed=0):
    r = rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = r.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = r.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, 2051, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, 2049, gz)
        out["train" if prefix == "train" else "test"] = (x, y)
    return out


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("sub", ["", "raw", "MNIST/raw"])
def test_mnist_idx_roundtrip(tmp_path, gz, sub):
    truth = make_idx_set(tmp_path / sub if sub else tmp_path, gz=gz)
    for split in ("train", "test"):
        ds = load_dataset("mnist", split, root=tmp_path)
        x, y = truth[split]
        assert ds.images.shape == (len(x), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
        assert torch.equal(ds.labels, torch.from_numpy(y.astype(np.int64)))
        assert ds.classes == [str(i) for i in range(10)] and ds.split == split and ds.name == "mnist"


def test_fashion_mnist_torchvision_layout_and_resize(tmp_path):
    truth = make_idx_set(tmp_path / "FashionMNIST" / "raw", gz=False)
    ds = load_dataset("fashion-mnist", "train", root=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(truth["train"][0]))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    big = load_dataset("fmnist", "train", root=tmp_path, image_size=32, channels=3)
    assert big.images.shape == (12, 3, 32, 32)
    assert torch.equal(big.images[:, 0], big.images[:, 2])


def test_idx_missing_file_names_file_and_folder(tmp_path):
    make_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "test", root=tmp_path)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg and "mnist" in msg
    assert "--data-root" in msg


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("mnist", "cifar10", "gtsrb", "tiny-imagenet", "imagefolder"):
        with pytest.raises(DatasetError) as e:
            load_dataset(name, "train", root=missing)
        assert str(missing) in str(e.value) and name in str(e.value)


def test_idx_bad_magic(tmp_path):
    make_idx_set(tmp_path, gz=False)
    x = np.zeros((12, 28, 28), np.uint8)
    bad = write_idx(tmp_path / "train-images-idx3-ubyte", x, 2049, gz=False)  # labels magic on an images file
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "train", root=tmp_path)
    assert str(bad) in str(e.value) and "2051" in str(e.value)


def test_idx_truncated(tmp_path):
    make_idx_set(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "train", root=tmp_path)
    assert str(path) in str(e.value) and "bytes" in str(e.value)


def test_idx_corrupt_gzip(tmp_path):
    make_idx_set(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage-not-a-gzip-stream")
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "train", root=tmp_path)
    assert str(path) in str(e.value)


def test_idx_count_mismatch(tmp_path):
    make_idx_set(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8), 2049, gz=False)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", "train", root=tmp_path)
    assert "12 images" in str(e.value) and "7 labels" in str(e.value)


# --------------------------------------------------------------------------- cifar

class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING), as cPickle did for the official files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def dumps(obj, protocol) -> bytes:
    """``protocol="py2"``: a pickle as Python 2 + numpy 1 wrote it; else ``pickle.dumps``."""
    if protocol != "py2":
        return pickle.dumps(obj, protocol=protocol)
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar10(folder: Path, n=4, protocol="py2", seed=0):
    """Official layout: data_batch_1..5, test_batch, batches.meta with bytes keys."""
    r = rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = r.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in r.integers(0, 10, size=n)]
        d = {b"batch_label": fname.encode(), b"labels": y, b"data": x, b"filenames": [f"f{i}.png".encode() for i in range(n)]}
        (folder / fname).write_bytes(dumps(d, protocol))
        truth[fname] = (x, y)
    meta = {b"num_cases_per_batch": n, b"label_names": [c.encode() for c in data.cifar.CIFAR10_CLASSES[::-1]], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(dumps(meta, protocol))
    return truth


@pytest.mark.parametrize("protocol", ["py2", 2, 4])
def test_cifar10_roundtrip(tmp_path, protocol):
    truth = write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    if protocol == "py2":  # numpy 1 global name, Python 2 strings, as in the official files
        raw = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"U\x04data" in raw
    train = load_dataset("cifar10", "train", root=tmp_path)
    xs = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    ys = sum((truth[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.images.shape == (20, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(xs.reshape(-1, 3, 32, 32)))
    # channel layout: first 1024 values are the red plane, row-major
    assert train.images[0, 0, 0, 1].item() == xs[0, 1] and train.images[0, 1, 0, 0].item() == xs[0, 1024]
    assert train.labels.tolist() == ys
    assert train.classes == data.cifar.CIFAR10_CLASSES[::-1]  # names come from batches.meta
    test = load_dataset("cifar-10", "test", root=tmp_path / "cifar-10-batches-py")
    assert torch.equal(test.images, torch.from_numpy(truth["test_batch"][0].reshape(-1, 3, 32, 32)))


def test_cifar100_roundtrip(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    r = rng(1)
    truth = {}
    for split, n in (("train", 6), ("test", 3)):
        x = r.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in r.integers(0, 100, size=n)]
        d = {b"filenames": [b"a"] * n, b"batch_label": b"x", b"fine_labels": y, b"coarse_labels": [v // 5 for v in y], b"data": x}
        (folder / split).write_bytes(dumps(d, "py2"))
        truth[split] = (x, y)
    names = [f"c{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(dumps({b"fine_label_names": names, b"coarse_label_names": [b"k"] * 20}, "py2"))
    for split in ("train", "test"):
        ds = load_dataset("cifar100", split, root=tmp_path)
        assert torch.equal(ds.images, torch.from_numpy(truth[split][0].reshape(-1, 3, 32, 32)))
        assert ds.labels.tolist() == truth[split][1]
        assert ds.num_classes == 100 and ds.classes[3] == "c3"


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_malicious_pickle_is_refused_not_run(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": _Evil(marker), b"labels": [0]}
    bad = tmp_path / "data_batch_3"
    bad.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", "train", root=tmp_path)
    assert str(bad) in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    from activemint.data.cifar import load_pickle_dict

    for obj in ({b"x": print}, {b"x": np.ma.masked_array([1, 2])}, {b"x": torch.zeros(2)}):
        path = tmp_path / "p"
        path.write_bytes(pickle.dumps(obj, protocol=2))
        with pytest.raises(DatasetError, match="refusing"):
            load_pickle_dict(path, "cifar10")


@pytest.mark.parametrize(
    "content, expect",
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "(N, 3072)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "'labels'"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "list of ints"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_cifar_bad_content(tmp_path, content, expect):
    write_cifar10(tmp_path)
    bad = tmp_path / "test_batch"
    bad.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(bad) in str(e.value) and expect in str(e.value)


def test_cifar_truncated_pickle(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "test_batch"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", "test", root=tmp_path)
    assert str(bad) in str(e.value)


# --------------------------------------------------------------------------- gtsrb

GT_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


def write_gtsrb(root: Path, gt_place: str = "root", size=64, seed=0):
    """GTSRB/Final_Training/Images/<class>/GT-<class>.csv + ppm; GTSRB/Final_Test/Images + GT-final_test.csv."""
    r = rng(seed)
    base = root / "GTSRB"
    train = []
    for cls in (0, 2, 42):
        folder = base / "Final_Training" / "Images" / f"{cls:05d}"
        folder.mkdir(parents=True)
        lines = [GT_HEADER]
        for k in range(2):
            arr = r.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            fname = f"{k:05d}_00000.ppm"
            Image.fromarray(arr).save(folder / fname)
            lines.append(f"{fname};{size};{size};5;5;{size - 5};{size - 5};{cls}")
            train.append((arr, cls))
        (folder / f"GT-{cls:05d}.csv").write_text("\n".join(lines) + "\n")
    test_dir = base / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    lines = [GT_HEADER]
    test = []
    for k, cls in enumerate((42, 0, 2)):
        arr = r.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        fname = f"{k:05d}.ppm"
        Image.fromarray(arr).save(test_dir / fname)
        lines.append(f"{fname};{size};{size};5;5;{size - 5};{size - 5};{cls}")
        test.append((arr, cls))
    # the unlabeled CSV shipped with the test images must not be mistaken for the labels
    (test_dir / "GT-final_test.test.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n")
    gt_dir = {"root": root, "GTSRB": base, "Images": test_dir}[gt_place]
    (gt_dir / "GT-final_test.csv").write_text("\n".join(lines) + "\n")
    return train, test


@pytest.mark.parametrize("gt_place", ["root", "GTSRB", "Images"])
def test_gtsrb_roundtrip(tmp_path, gt_place):
    train, test = write_gtsrb(tmp_path, gt_place)
    for split, truth in (("train", train), ("test", test)):
        ds = load_dataset("gtsrb", split, root=tmp_path)
        assert ds.images.shape == (len(truth), 3, 64, 64)
        assert torch.equal(ds.images, torch.from_numpy(np.stack([a for a, _ in truth]).transpose(0, 3, 1, 2).copy()))
        assert ds.labels.tolist() == [c for _, c in truth]
        assert ds.num_classes == 43
    assert ds.ids[0] == "Final_Test/Images/00000.ppm"


def test_gtsrb_root_at_gtsrb_folder_and_resize(tmp_path):
    write_gtsrb(tmp_path, "GTSRB", size=40)
    ds = load_dataset("gtsrb", "train", root=tmp_path / "GTSRB", image_size=24)
    assert ds.images.shape == (6, 3, 24, 24)
    assert ds.labels.tolist() == [0, 0, 2, 2, 42, 42]
    assert load_dataset("gtsrb", "test", root=tmp_path).images.shape == (3, 3, 64, 64)  # default 64x64


def test_gtsrb_csv_missing_column(tmp_path):
    write_gtsrb(tmp_path)
    csv_path = tmp_path / "GTSRB" / "Final_Training" / "Images" / "00002" / "GT-00002.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(";".join(line.split(";")[:-1]) for line in lines) + "\n")
    with pytest.raises(DatasetError) as e:
        load_dataset("gtsrb", "train", root=tmp_path)
    assert str(csv_path) in str(e.value) and "ClassId" in str(e.value)


def test_gtsrb_missing_test_labels(tmp_path):
    write_gtsrb(tmp_path)
    (tmp_path / "GT-final_test.csv").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset("gtsrb", "test", root=tmp_path)
    assert "GT-final_test.csv" in str(e.value) and str(tmp_path) in str(e.value)


def test_gtsrb_unreadable_image(tmp_path):
    write_gtsrb(tmp_path)
    bad = tmp_path / "GTSRB" / "Final_Training" / "Images" / "00042" / "00001_00000.ppm"
    bad.write_bytes(b"P6 not really an image")
    with pytest.raises(DatasetError) as e:
        load_dataset("gtsrb", "train", root=tmp_path)
    assert str(bad) in str(e.value)


# --------------------------------------------------------------------------- tiny imagenet

WNIDS = ["n02124075", "n01443537", "n09999999"]


def write_tiny_imagenet(root: Path):
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (base / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\nn00000001\tother\n")
    colours = {w: (40 * (i + 1), 200 - 50 * i, 30 + 60 * i) for i, w in enumerate(WNIDS)}
    for w in WNIDS:
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(2):
            Image.new("RGB", (64, 64), colours[w]).save(folder / f"{w}_{k}.JPEG", quality=95)
    # one greyscale JPEG, as in the real set
    Image.new("L", (64, 64), 128).save(base / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_9.JPEG")
    val = base / "val" / "images"
    val.mkdir(parents=True)
    ann = []
    for k, w in enumerate([WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[2]]):
        Image.new("RGB", (64, 64), colours[w]).save(val / f"val_{k}.JPEG", quality=95)
        ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return colours


def test_tiny_imagenet_roundtrip(tmp_path):
    colours = write_tiny_imagenet(tmp_path)
    order = sorted(WNIDS)
    train = load_dataset("tiny-imagenet", "train", root=tmp_path)
    assert train.images.shape == (7, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.classes == ["goldfish", "Egyptian cat", "n09999999"]
    assert train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    grey = train.ids.index(f"train/{WNIDS[0]}/images/{WNIDS[0]}_9.JPEG")
    assert torch.equal(train.images[grey, 0], train.images[grey, 2])  # grey -> RGB
    test = load_dataset("tiny-imagenet", "test", root=tmp_path / "tiny-imagenet-200")
    assert test.images.shape == (4, 3, 64, 64)
    assert test.labels.tolist() == [order.index(w) for w in [WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[2]]]
    # JPEG is lossy: solid colours come back within a few levels
    expect = torch.tensor(colours[WNIDS[2]], dtype=torch.float32)
    # JPEG of a solid colour (PIL's default quality 75): DC quantiser steps 8 (luma) and 9 (chroma), so an 8x8 block's mean
    # is off by <= 0.6 level per YCbCr channel; YCbCr -> RGB (coefficients <= 1.8) and two roundings: < 3 levels; 4 holds.
    assert (test.images[0].float().mean((1, 2)) - expect).abs().max() < 4


def test_tiny_imagenet_bad_annotation(tmp_path):
    write_tiny_imagenet(tmp_path)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError) as e:
        load_dataset("tiny-imagenet", "test", root=tmp_path)
    assert str(ann) in str(e.value)


# --------------------------------------------------------------------------- image folder

def write_png_classes(folder: Path, classes, per_class, size=(8, 10), seed=0, mode="RGB"):
    r = rng(seed)
    truth = {}
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            arr = r.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(arr, mode).save(folder / c / f"img{k:02d}.png")
            truth[f"{c}/img{k:02d}.png"] = arr
    return truth


def test_imagefolder_train_test_roundtrip(tmp_path):
    tr = write_png_classes(tmp_path / "train", ["cat", "dog"], 3)
    te = write_png_classes(tmp_path / "val", ["dog"], 2, seed=1)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset("imagefolder", "train", root=tmp_path, image_size=(8, 10))
    assert ds.classes == ["cat", "dog"] and ds.images.shape == (6, 3, 8, 10)
    for i, rel in enumerate(ds.ids):
        assert rel.startswith("train/")
        assert torch.equal(ds.images[i], torch.from_numpy(tr[rel[6:]].transpose(2, 0, 1).copy()))
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    test = load_dataset("imagefolder", "test", root=tmp_path, image_size=(8, 10))
    assert test.labels.tolist() == [1, 1] and test.classes == ["cat", "dog"]
    assert torch.equal(test.images[0], torch.from_numpy(te["dog/img00.png"].transpose(2, 0, 1).copy()))
    small = load_dataset("imagefolder", "train", root=tmp_path)  # default 64x64 RGB
    assert small.images.shape == (6, 3, 64, 64)
    grey = load_dataset("imagefolder", "train", root=tmp_path, image_size=16, channels=1)
    assert grey.images.shape == (6, 1, 16, 16)


def test_imagefolder_single_folder_split(tmp_path):
    write_png_classes(tmp_path, ["a", "b", "c"], 10)
    write_png_classes(tmp_path, ["d"], 1)  # a lone image stays in train
    train = load_dataset("casia-webface", "train", root=tmp_path, image_size=8)
    test = load_dataset("casia-webface", "test", root=tmp_path, image_size=8)
    assert len(train) == 28 and len(test) == 3
    assert sorted(test.labels.tolist()) == [0, 1, 2]  # stratified: one per class
    assert set(train.ids).isdisjoint(test.ids) and len(set(train.ids) | set(test.ids)) == 31
    clear_dataset_cache()
    again = load_dataset("imagefolder", "test", root=tmp_path, image_size=8)
    assert again.ids == test.ids  # deterministic


def test_imagefolder_unreadable_image(tmp_path):
    write_png_classes(tmp_path / "train", ["a"], 2)
    write_png_classes(tmp_path / "test", ["a"], 1)
    bad = tmp_path / "train" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError) as e:
        load_dataset("imagefolder", "train", root=tmp_path)
    assert str(bad) in str(e.value)


def test_imagefolder_test_class_unknown(tmp_path):
    write_png_classes(tmp_path / "train", ["a"], 1)
    write_png_classes(tmp_path / "test", ["zebra"], 1)
    with pytest.raises(DatasetError) as e:
        load_dataset("imagefolder", "test", root=tmp_path)
    assert "zebra" in str(e.value)


def test_load_image_files_mixed_sizes_and_modes(tmp_path):
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (5, 7), 100).save(tmp_path / "b.jpg")
    x = load_image_files([tmp_path / "a.png", tmp_path / "b.jpg"], image_size=12, channels=3)
    assert x.shape == (2, 3, 12, 12) and x.dtype == torch.uint8
    assert x[0, 0].min() == 255 and x[0, 1].max() == 0
    assert load_image_files([tmp_path / "b.jpg"], image_size=12, channels=1).shape == (1, 1, 12, 12)
    with pytest.raises(DatasetError) as e:
        load_image_files([tmp_path / "a.png", tmp_path / "missing.png"], image_size=12)
    assert "missing.png" in str(e.value)
    with pytest.raises(DatasetError):
        load_image_files([tmp_path / "a.png", tmp_path / "b.jpg"], image_size=None)  # sizes differ


# --------------------------------------------------------------------------- registry

def test_registry_and_unknown_name():
    names = list_datasets()
    for n in ("fashion-mnist", "mnist", "cifar10", "cifar100", "gtsrb", "tiny-imagenet", "imagefolder", "casia-webface", "digits"):
        assert n in names
    info = dataset_info("fashion-mnist")
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10
    assert info.default_root == "/usr/share/datasets/fashion-mnist"
    assert info.paper_sizes == {"members": 25000, "external": 35000, "eval_nonmembers": 10000}
    assert dataset_info("gtsrb").paper_sizes["eval_nonmembers"] == 12630
    with pytest.raises(DatasetError) as e:
        dataset_info("imagenet-1k")
    assert "imagenet-1k" in str(e.value) and "fashion-mnist" in str(e.value)
    with pytest.raises(ValueError):
        load_dataset("digits", "validation")


def test_cache_returns_same_data(tmp_path):
    make_idx_set(tmp_path)
    a = load_dataset("mnist", "train", root=tmp_path)
    b = load_dataset("mnist", "train", root=tmp_path)
    assert a is not b and a.images.data_ptr() == b.images.data_ptr()
    c = load_dataset("mnist", "train", root=tmp_path, image_size=14)
    assert c.images.shape[-1] == 14


def test_download_uses_torchvision_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:
        def __init__(self, root, download=False, **kw):
            calls.append(root)
            make_idx_set(Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    root = tmp_path / "dl"
    with pytest.raises(DatasetError):
        load_dataset("mnist", "train", root=root)
    assert calls == []
    ds = load_dataset("mnist", "train", root=root, download=True)
    assert len(ds) == 12 and calls == [str(root)]

    class Offline:
        def __init__(self, *a, **kw):
            raise RuntimeError("Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", "train", root=tmp_path / "c", download=True)
    assert "download" in str(e.value) and str(tmp_path / "c") in str(e.value)


# --------------------------------------------------------------------------- real data

@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason=f"{FASHION_ROOT} not present (Debian package dataset-fashion-mnist)")
def test_real_fashion_mnist():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10 and train.input_shape == (1, 28, 28)
    assert torch.bincount(train.labels, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [1000] * 10
    # Fashion-MNIST's published train-set mean pixel is 72.94 (0.2860 x 255); a float32 mean of 47M uint8 values errs by
    # < 1e-3: 0.5 only tolerates a differently-rounded published figure, any wrong decoding moves it by far more.
    assert train.images.float().mean().item() == pytest.approx(72.94, abs=0.5)


def test_gtsrb_torchvision_layout(tmp_path):
    """torchvision's download: gtsrb/GTSRB/Training/<class>/*.ppm, gtsrb/GT-final_test.csv."""
    train, test = write_gtsrb(tmp_path / "gtsrb", "root")
    base = tmp_path / "gtsrb" / "GTSRB"
    (base / "Final_Training" / "Images").rename(base / "Training")
    (base / "Final_Training").rmdir()
    (base / "Training" / "00000" / "GT-00000.csv").unlink()  # label from the folder name then
    ds = load_dataset("gtsrb", "train", root=tmp_path)
    assert ds.labels.tolist() == [c for _, c in train]
    assert torch.equal(ds.images[0], torch.from_numpy(train[0][0].transpose(2, 0, 1).copy()))
    assert load_dataset("gtsrb", "test", root=tmp_path).labels.tolist() == [c for _, c in test]


def test_progress_bar_path_many_files(tmp_path):
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "a.png")
    x = load_image_files([tmp_path / "a.png"] * 1001, image_size=4)
    assert x.shape == (1001, 3, 4, 4) and x[:, :, 0, 0].unique().tolist() == [1, 2, 3]
