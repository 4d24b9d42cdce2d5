"""Streamed (lazy) image folders: the same bytes, batches, manifest and figures as in memory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activemint.data import (
    ArrayDataset,
    ImageInputError,
    clear_dataset_cache,
    load_dataset,
)
from activemint.data.memory import parse_memory
from activemint.data.splits import (
    SplitSizes,
    make_splits,
    verify_manifest,
    write_manifest,
)
from activemint.data.streaming import (
    FileDataset,
    StreamedRows,
    plan_batches,
)

N_PER_CLASS = (110, 100, 90)  # 300 files, 3 classes


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder per class; RGB, greyscale and 16-bit greyscale PNGs and JPEGs of varied sizes.

    Every decode / resize / 16-bit path of the in-memory reader is exercised.
    """
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c, n in enumerate(N_PER_CLASS):
        d = root / f"class{c}"
        d.mkdir()
        for i in range(n):
            h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
            kind = i % 4
            if kind == 0:
                img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
                img.save(d / f"{i:04d}.png")
            elif kind == 1:
                Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(d / f"{i:04d}.png")
            elif kind == 2:
                arr = rng.integers(0, 65536, (h, w), dtype=np.uint16)
                Image.fromarray(arr).save(d / f"{i:04d}.png")  # mode I;16
            else:
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(d / f"{i:04d}.jpg", quality=80)
    return root


def load(root: Path, split: str, budget, size=16, channels=None):
    return load_dataset("imagefolder", split, root=root, image_size=size, channels=channels, max_memory=budget)


def test_parse_memory():
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory("1.5 GiB") == int(1.5 * 2**30)
    assert parse_memory("512M") == 512 * 10**6
    assert parse_memory(0) == 0
    assert parse_memory("off") is None
    assert parse_memory(None) == parse_memory("auto") == "auto"
    with pytest.raises(ValueError, match="max_memory"):
        parse_memory("2 parsecs")


@pytest.mark.parametrize("channels", [None, 1])
def test_streamed_samples_byte_identical(folder, channels):
    for split in ("train", "test"):
        mem = load(folder, split, "off", channels=channels)
        lazy = load(folder, split, 0, channels=channels)
        assert isinstance(mem, ArrayDataset) and not mem.streamed
        assert isinstance(lazy, FileDataset) and lazy.streamed
        assert lazy.ids == mem.ids and torch.equal(lazy.labels, mem.labels) and lazy.classes == mem.classes
        assert lazy.input_shape == mem.input_shape and len(lazy) == len(mem)
        assert torch.equal(lazy.batch(np.arange(len(lazy))), mem.images)  # > 2 chunks on train: the workers decode
        idx = np.random.default_rng(1).permutation(len(mem))[:37]
        assert torch.equal(lazy.images[torch.as_tensor(idx)], mem.images[torch.as_tensor(idx)])
        assert torch.equal(lazy.images[5], mem.images[5])
        view = lazy.rows(idx)
        assert view.shape == mem.rows(idx).shape and torch.equal(view[3:9], mem.rows(idx)[3:9])


def test_same_batches_for_the_same_seed(folder):
    """The trainer's pattern: a view of the members, an epoch's permutation planned, then members[idx] per step."""
    mem, lazy = load(folder, "train", "off"), load(folder, "train", 0)
    members = np.sort(np.random.default_rng(2).permutation(len(mem))[:150])
    m_mem, m_lazy = mem.rows(members), lazy.rows(members)
    assert isinstance(m_lazy, StreamedRows) and len(m_lazy) == len(m_mem)
    for epoch in range(2):
        gen_a, gen_b = torch.Generator().manual_seed(epoch), torch.Generator().manual_seed(epoch)
        perm_a, perm_b = torch.randperm(len(m_mem), generator=gen_a), torch.randperm(len(m_lazy), generator=gen_b)
        plan_batches(m_mem, perm_a, 32)  # a no-op on a tensor
        plan_batches(m_lazy, perm_b, 32)
        for step in range(-(-len(members) // 32)):
            idx = perm_b[step * 32 : (step + 1) * 32]
            assert m_lazy._expected and np.array_equal(m_lazy._expected[0], members[idx.numpy()])  # served from the plan
            assert torch.equal(m_lazy[idx], m_mem[perm_a[step * 32 : (step + 1) * 32]])
        assert not m_lazy._expected  # every planned batch was consumed in order
    # a part of each planned batch (a rank's shard of a global batch) is served from the plan too
    perm = torch.randperm(len(members), generator=torch.Generator().manual_seed(9))
    plan_batches(m_lazy, perm, 32)
    for step in range(-(-len(members) // 32)):
        shard = perm[step * 32 : (step + 1) * 32][1::2]
        assert m_lazy._expected
        assert torch.equal(m_lazy[shard], m_mem[shard])
    assert not m_lazy._expected
    # a request outside the plan is decoded on the spot, with the same bytes
    plan_batches(m_lazy, torch.arange(len(members)), 32)
    assert torch.equal(m_lazy[torch.tensor([100, 3])], m_mem[torch.tensor([100, 3])])  # not within batch 0..31
    assert not m_lazy._expected


def test_manifest_identical_and_hashes_computed_once(folder, tmp_path, monkeypatch):
    train_m, test_m = load(folder, "train", "off"), load(folder, "test", "off")
    train_s, test_s = load(folder, "train", 0), load(folder, "test", 0)
    sizes = SplitSizes(100, 100, 30, 30, 20)
    splits = make_splits(len(train_m), len(test_m), sizes, seed=3)
    a = write_manifest(tmp_path / "a.csv", splits, train_m, test_m)
    b = write_manifest(tmp_path / "b.csv", splits, train_s, test_s)
    assert a.read_bytes() == b.read_bytes()
    # every digest is now known: verifying decodes nothing again
    monkeypatch.setattr(FileDataset, "iter_batches", lambda *a, **k: pytest.fail("decoded again"))
    assert verify_manifest(b, train_s, test_s) == []


def test_selection_by_memory_budget(folder, monkeypatch):
    from activemint.data import memory

    mem = load(folder, "train", "off")
    nbytes = mem.images.numel()
    assert not load(folder, "train", nbytes).streamed  # fits exactly
    assert load(folder, "train", nbytes - 1).streamed
    assert load(folder, "train", f"{nbytes / 1e6 * 0.5}MB").streamed
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * nbytes - 2)  # auto = half of it
    assert load(folder, "train", "auto").streamed
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * nbytes)
    assert not load(folder, "train", "auto").streamed
    # the array formats stay in memory whatever the budget
    assert not load_dataset("digits", "train", max_memory=0).streamed


def test_run_budget_covers_both_splits(folder):
    """load_run_data: train fits the budget, what is left does not hold the test split -> test streamed."""
    from activemint.training import TrainConfig, load_run_data

    n_train = load(folder, "train", "off", size=64).images.numel()
    cfg = TrainConfig(dataset="imagefolder", data_root=str(folder), arch="small_cnn", members=50, external=50,
                      validation=20, calibration=20, eval_nonmembers=10, max_memory=str(n_train + 100))
    data = load_run_data(cfg)
    assert not data.train.streamed and data.test.streamed
    cfg = TrainConfig(dataset="imagefolder", data_root=str(folder), arch="small_cnn", members=50, external=50,
                      validation=20, calibration=20, eval_nonmembers=10, max_memory="off")
    data = load_run_data(cfg)
    assert not data.train.streamed and not data.test.streamed


def test_corrupt_file_mid_stream_names_the_file(folder, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    lazy = load(root, "train", 0)
    bad = Path(lazy.files[123])
    bad.write_bytes(b"not an image at all" * 10)
    view = lazy.rows(np.arange(len(lazy)))
    order = torch.arange(len(lazy))
    plan_batches(view, order, 16)
    with pytest.raises(ImageInputError, match=str(bad)) as err:
        for s in range(0, len(lazy), 16):
            view[order[s : s + 16]]
    assert "\n" not in str(err.value) and "cannot read image" in str(err.value)
    with pytest.raises(ImageInputError, match=str(bad)):  # and the on-the-spot path
        lazy.batch([3, 123])


@pytest.mark.slow
def test_cli_corrupt_file_is_one_line_exit_2(folder, tmp_path, capsys):
    import shutil

    from activemint.cli import main

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    bad = Path(load(root, "train", 0).files[150])  # the four carves below take every train file
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then garbage
    clear_dataset_cache()
    rc = main(["train", "--dataset", "imagefolder", "--data-root", str(root), "--max-memory", "0", "--members", "120",
               "--external", "110", "--validation", "20", "--calibration", "20", "--eval-nonmembers", "10",
               "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert bad.name in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_tiny_training_run_streamed_matches_in_memory(folder, tmp_path):
    """Same process, same machine: the same uint8 batches in the same order give bit-identical figures."""
    from activemint.training import TrainConfig, Trainer

    figures = {}
    for budget in ("off", "0"):
        clear_dataset_cache()
        cfg = TrainConfig(dataset="imagefolder", data_root=str(folder), arch="small_cnn", members=80, external=80,
                          validation=30, calibration=30, eval_nonmembers=25, epochs=2, batch_size=16,
                          external_batch_size=16, device="cpu", seed=4, head_epochs=1, max_memory=budget)
        trainer = Trainer(cfg, tmp_path / budget, progress=False, log=lambda m: None)
        result = trainer.run()
        assert trainer.data.train.streamed == (budget == "0")
        log = [json.loads(line) for line in (tmp_path / budget / "metrics.jsonl").read_text().splitlines()]
        for rec in log:
            rec.pop("seconds"), rec.pop("epoch_seconds")
        scores = np.load(tmp_path / budget / "scores.npz")
        figures[budget] = (log, result.metrics["test_accuracy"], result.metrics["membership"]["auc"],
                           {k: scores[k].tolist() for k in scores.files})
        manifest = (tmp_path / budget / "manifest.csv").read_bytes()
        figures[budget] += (manifest,)
    assert figures["off"] == figures["0"]


@pytest.mark.parametrize("name", ["gtsrb", "tiny-imagenet", "casia-webface"])
def test_other_folder_readers_stream_the_same_samples(name, folder, tmp_path):
    """GTSRB (CSV labels, .ppm), Tiny ImageNet (wnids, val annotations) and CASIA-WebFace stream byte-identically."""
    from test_data_readers import write_gtsrb, write_tiny_imagenet

    root = folder
    if name == "gtsrb":
        write_gtsrb(tmp_path, size=40)
        root = tmp_path
    elif name == "tiny-imagenet":
        write_tiny_imagenet(tmp_path)
        root = tmp_path
    for split in ("train", "test"):
        mem = load_dataset(name, split, root=root, image_size=24, max_memory="off")
        lazy = load_dataset(name, split, root=root, image_size=24, max_memory=0)
        assert lazy.streamed and not mem.streamed
        assert lazy.ids == mem.ids and torch.equal(lazy.labels, mem.labels) and lazy.classes == mem.classes
        assert torch.equal(lazy.batch(np.arange(len(lazy))), mem.images)
