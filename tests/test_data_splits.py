"""Paper splits, manifests and the bundled digits set."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from activemint.data import (
    ArrayDataset,
    DatasetError,
    SplitSizes,
    dataset_info,
    load_dataset,
    make_splits,
    manifest_fingerprint,
    pixel_sha256,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from activemint.data.splits import ROLES, TRAIN_ROLES

# (n_train, n_test) of the real data sets
REAL_COUNTS = {
    "fashion-mnist": (60000, 10000),
    "mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "gtsrb": (39209, 12630),
    "tiny-imagenet": (100000, 10000),
    "digits": (1437, 360),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_digits_loads(digits):
    train, test = digits
    assert train.images.shape == (1437, 1, 16, 16) and test.images.shape == (360, 1, 16, 16)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert train.num_classes == 10
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified
    assert set(train.ids).isdisjoint(test.ids)
    raw = load_dataset("digits", "train", image_size=8)
    assert raw.images.shape == (1437, 1, 8, 8)
    assert load_dataset("digits", "test").ids == test.ids  # deterministic


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_paper_sizes_fit(name):
    sizes = SplitSizes.paper(name)
    ps = dataset_info(name).paper_sizes
    assert sizes.members == ps["members"] and sizes.eval_nonmembers == ps["eval_nonmembers"]
    assert sizes.train_total == ps["members"] + ps["external"]
    assert min(sizes.as_dict().values()) >= 1
    sizes.validate(*REAL_COUNTS[name])


def test_paper_sizes_values():
    assert SplitSizes.paper("fashion-mnist") == SplitSizes(25000, 31000, 2000, 2000, 10000)
    assert SplitSizes.paper("digits") == SplitSizes(600, 400, 100, 100, 360)
    assert SplitSizes.paper("cifar10", validation=1000, calibration=500).external == 28500
    with pytest.raises(ValueError, match="no split sizes"):
        SplitSizes.paper("imagefolder")


def test_sizes_invalid():
    with pytest.raises(ValueError, match="validation"):
        SplitSizes(10, 10, 0, 1, 5)
    with pytest.raises(ValueError):
        SplitSizes(-1, 10, 1, 1, 5)
    with pytest.raises(ValueError) as e:
        SplitSizes(50, 50, 5, 5, 10).validate(100, 20)
    assert "110 > 100" in str(e.value)
    with pytest.raises(ValueError, match="eval_nonmembers 10 > 9"):
        make_splits(200, 9, SplitSizes(50, 50, 5, 5, 10), seed=0)


def test_for_counts():
    s = SplitSizes.for_counts(1000, 77)
    assert s.validation == s.calibration == 50 and s.train_total == 1000 and s.eval_nonmembers == 77


def test_make_splits_disjoint_and_deterministic():
    sizes = SplitSizes(300, 200, 50, 40, 100)
    a = make_splits(1000, 150, sizes, seed=7)
    b = make_splits(1000, 150, sizes, seed=7)
    c = make_splits(1000, 150, sizes, seed=8)
    assert a == b and a != c
    assert a.sizes() == sizes and a.is_disjoint()
    train_sets = [set(getattr(a, r).tolist()) for r in TRAIN_ROLES]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not train_sets[i] & train_sets[j]
    for role in ROLES:
        arr = getattr(a, role)
        assert arr.dtype == np.int64 and arr.min() >= 0
    assert max(a.members.max(), a.external.max(), a.validation.max(), a.calibration.max()) < 1000
    assert a.eval_nonmembers.max() < 150 and len(set(a.eval_nonmembers.tolist())) == 100
    assert not np.array_equal(a.members, c.members)


def test_pixel_sha256(digits):
    train, _ = digits
    h = pixel_sha256(train.images[:5])
    assert h == [hashlib.sha256(train.images[i].numpy().tobytes()).hexdigest() for i in range(5)]
    # non-contiguous input hashes the same pixels
    assert pixel_sha256(train.images.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)[:5]) == h


def test_manifest_roundtrip_and_verify(tmp_path, digits):
    train, test = digits
    splits = make_splits(len(train), len(test), SplitSizes.paper("digits"), seed=3)
    path = write_manifest(tmp_path / "manifest.csv", splits, train, test)
    header = path.read_text().splitlines()[0]
    assert header == "role,source_split,index,label,sha256,id"
    assert read_manifest(path) == splits
    assert read_manifest(tmp_path) == splits  # a folder holding manifest.csv
    assert verify_manifest(path, train, test) == []
    fp = manifest_fingerprint(path)
    assert fp == hashlib.sha256(path.read_bytes()).hexdigest()
    assert write_manifest(tmp_path / "again.csv", splits, train, test).read_bytes() == path.read_bytes()

    # one changed pixel in a member and one in an eval non-member are both caught
    m, e = int(splits.members[4]), int(splits.eval_nonmembers[0])
    images, test_images = train.images.clone(), test.images.clone()
    images[m, 0, 3, 3] ^= 1
    test_images[e, 0, 0, 0] ^= 1
    bad_train = ArrayDataset(images, train.labels, train.classes, "digits", "train", ids=train.ids)
    bad_test = ArrayDataset(test_images, test.labels, test.classes, "digits", "test", ids=test.ids)
    problems = verify_manifest(path, bad_train, bad_test)
    assert len(problems) == 2
    assert f"members train[{m}]" in problems[0] and "sha256" in problems[0]
    assert f"eval_nonmembers test[{e}]" in problems[1]

    labels = train.labels.clone()
    labels[m] = (labels[m] + 1) % 10
    relabeled = ArrayDataset(train.images, labels, train.classes, "digits", "train")
    problems = verify_manifest(path, relabeled, test)
    assert len(problems) == 1 and "label" in problems[0]

    short = ArrayDataset(train.images[:10], train.labels[:10], train.classes, "digits", "train")
    assert any("out of range" in p for p in verify_manifest(path, short, test))


def test_manifest_without_ids(tmp_path):
    g = torch.Generator().manual_seed(0)
    tr = ArrayDataset(torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=g), torch.arange(30) % 3, ["a", "b", "c"], "x", "train")
    te = ArrayDataset(torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8, generator=g), torch.arange(10) % 3, ["a", "b", "c"], "x", "test")
    splits = make_splits(30, 10, SplitSizes(10, 10, 2, 2, 5), seed=1)
    path = write_manifest(tmp_path / "m.csv", splits, tr, te)
    assert path.read_text().splitlines()[0] == "role,source_split,index,label,sha256"
    assert read_manifest(path) == splits and verify_manifest(path, tr, te) == []


def _good_manifest(tmp_path, digits):
    train, test = digits
    splits = make_splits(len(train), len(test), SplitSizes(20, 20, 5, 5, 10), seed=0)
    return write_manifest(tmp_path / "manifest.csv", splits, train, test)


def _edit_first_row(**changes):
    """A mutation that rewrites fields of the first data row (a members row)."""
    cols = ["role", "source_split", "index", "label", "sha256", "id"]

    def mutate(lines):
        fields = lines[1].split(",")
        for key, value in changes.items():
            fields[cols.index(key)] = value
        return [lines[0], ",".join(fields)] + lines[2:]

    return mutate


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda lines: ["role,split,index,label,sha256,id"] + lines[1:], "header"),
        (_edit_first_row(role="spies"), "role 'spies'"),
        (_edit_first_row(source_split="test"), "source_split"),
        (_edit_first_row(index="x1"), "integers"),
        (_edit_first_row(label="1.5"), "integers"),
        (_edit_first_row(index="-3"), "negative"),
        (_edit_first_row(sha256="zz"), "sha256"),
        (lambda lines: lines + [lines[1].replace("members", "external", 1)], "more than one role"),
        (lambda lines: lines[:1] + [lines[1] + ",extra"] + lines[2:], "fields"),
    ],
)
def test_bad_manifest(tmp_path, digits, mutate, expect):
    path = _good_manifest(tmp_path, digits)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(mutate(lines)) + "\n")
    with pytest.raises(DatasetError) as e:
        read_manifest(path)
    assert str(path) in str(e.value) and expect in str(e.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError) as e:
        read_manifest(tmp_path / "nope.csv")
    assert "nope.csv" in str(e.value)


def test_manifest_round_trip_for_70000(tmp_path):
    """A paper-sized manifest (70,000 rows) reads back as the splits and verifies clean (its speed: benchmarks, not tests)."""
    g = torch.Generator().manual_seed(0)
    tr = ArrayDataset(torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (60000,), generator=g), list("0123456789"), "x", "train")
    te = ArrayDataset(torch.randint(0, 256, (10000, 1, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (10000,), generator=g), list("0123456789"), "x", "test")
    splits = make_splits(60000, 10000, SplitSizes.paper("fashion-mnist"), seed=0)
    path = write_manifest(tmp_path / "manifest.csv", splits, tr, te)
    assert read_manifest(path) == splits
    assert verify_manifest(path, tr, te) == []
    assert len(path.read_text().splitlines()) == 70001
