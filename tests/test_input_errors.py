"""Careless and hostile input (issue 9): one clear line and exit 2, nothing written, no traceback.

Covers the CLI error policy (--debug, exit codes), config validation before a run directory
is created, the idx reader (registered dims, overflowing dims, bounded decompression) and
image files (16-bit greyscale, decompression bombs, one size/channel policy).  Nothing here
trains more than one 1-epoch run on 64 images.
"""
from __future__ import annotations

import gzip
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FASHION_ROOT, require_fashion_mnist
from PIL import Image

from activemint.cli import main
from activemint.data import DatasetError, ImageInputError, load_dataset, load_image, load_image_checked
from activemint.data import images as images_mod
from activemint.data.idx import IMAGES_MAGIC, LABELS_MAGIC, MAX_IDX_BYTES, read_idx
from activemint.errors import UserError
from activemint.training.config import ConfigError, TrainConfig

TINY = ["--members", "64", "--external", "64", "--validation", "32", "--calibration", "100",
        "--eval-nonmembers", "64", "--epochs", "1", "--no-progress"]


def one_line_error(capsys, argv: list[str], match: str, rc: int = 2) -> str:
    """Run the CLI, expect exit ``rc`` and exactly one stderr line ``activemint <cmd>: error: ...`` containing ``match``."""
    try:
        got = main(argv)
    except SystemExit as e:  # argparse
        got = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert got == rc, (got, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("activemint"), lines[0]
    assert match in lines[0], (match, lines[0])
    return lines[0]


# ----------------------------------------------------------------- 1. CLI error policy
def test_user_error_is_one_line_exit_2_and_debug_shows_the_traceback(capsys, tmp_path):
    line = one_line_error(capsys, ["train", "--arch", "nosuch", "--out", str(tmp_path / "r")], "unknown arch 'nosuch'")
    assert line.startswith("activemint train: error: ")
    for argv in (["--debug", "train", "--arch", "nosuch"], ["train", "--arch", "nosuch", "--debug"]):
        with pytest.raises(ConfigError, match="unknown arch"):
            main(argv + ["--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_argparse_mistakes_are_one_line_exit_2(capsys):
    one_line_error(capsys, ["train", "--epochs", "ten"], "invalid int value")
    one_line_error(capsys, ["audit"], "the following arguments are required")
    one_line_error(capsys, ["nosuchcommand"], "invalid choice")


def test_unexpected_errors_are_one_line_and_nonzero(capsys, monkeypatch):
    import activemint.models

    def boom():  # a bug in the library the command calls
        raise RuntimeError("something broke\nacross lines")

    monkeypatch.setattr(activemint.models, "list_archs", boom)
    line = one_line_error(capsys, ["archs"], "internal error: RuntimeError: something broke across lines", rc=1)
    assert "--debug" in line
    with pytest.raises(RuntimeError):
        main(["archs", "--debug"])


def test_unreadable_config_names_the_file(capsys, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads mode-000 files")
    cfg = tmp_path / "locked.yaml"
    cfg.write_text("epochs: 1\n")
    cfg.chmod(0)
    one_line_error(capsys, ["train", "--config", str(cfg)], f"config {cfg} cannot be read")


# ------------------------------------------- 2. config values validated before writing
BAD_OPTIONS = [
    (["--arch", "nosuch"], "unknown arch 'nosuch'"),
    (["--arch", "resnet"], "did you mean"),
    (["--taps", "block1,nosuch"], "tap point 'nosuch' is not a submodule"),
    (["--setup", "middle", "--taps", ","], "taps must be a non-empty list"),
    (["--lr", "0"], "lr must be > 0"),
    (["--lr", "-0.1"], "lr must be > 0"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--weight-decay", "-1"], "weight_decay must be >= 0"),
    (["--lambda-task", "-1"], "lambda_task and lambda_mint must be >= 0"),
    (["--lambda-mint", "inf"], "lambda_mint must be a finite number"),
    (["--lambda-task", "0", "--lambda-mint", "0"], "both 0"),
    (["--device", "bogus"], "device 'bogus' is not a device name"),
    (["--device", "cuda:x"], "is not a device name"),
    (["--device", "meta"], "not supported"),
    (["--threads", "-1"], "argument --threads: must be an integer >= 1"),
    (["--threads", "0"], "argument --threads: must be an integer >= 1"),
    (["--members", "0"], "members must be >= 1"),
    (["--seed", "-3"], "seed must be"),
    (["--target-fpr", "1.5"], "target_fpr must be in (0, 1)"),
    (["--head-width", str(10**20)], "does not build"),
    (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["--data-root", "/nonexistent/activemint"], "does not exist"),
]


@pytest.mark.parametrize("options,match", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_option_is_refused_before_anything_is_written(capsys, tmp_path, options, match):
    out = tmp_path / "run"
    one_line_error(capsys, ["train", *options, "--out", str(out)], match)
    assert not out.exists()


def test_cuda_without_a_gpu_is_refused_before_writing(capsys, tmp_path):
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    dev = "cuda" if n == 0 else f"cuda:{n}"  # a GPU this machine does not have
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "--device", dev, "--out", str(out)], f"device '{dev}'")
    assert not out.exists()


CONFIG_FILES = {
    "syntax": ("epochs: [1, 2\nlr: 0.1\n", "is not valid YAML"),
    "tab": ("epochs:\t1\n\tlr: 2\n", "is not valid YAML"),
    "python_tag": ('x: !!python/object/apply:os.system ["echo pwned"]\n', "Python tags are refused"),
    "python_name": ("arch: !!python/name:os.system\n", "Python tags are refused"),
    "wrong_type": ("epochs: ten\n", "epochs must be an integer, got 'ten'"),
    "bool_for_int": ("members: yes\n", "members must be an integer"),
    "list_for_str": ("arch: [small_cnn]\n", "arch must be a string"),
    "string_lr": ("lr: fast\n", "lr must be a number"),
    "unknown_key": ("epochz: 3\n", "unknown config keys: epochz (did you mean epochs?)"),
    "not_a_mapping": ("- 1\n- 2\n", "must be a YAML mapping"),
    "binary": (b"\xff\xfe\x00garbage", "cannot be read"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_bad_config_file_is_one_line_naming_the_file(capsys, tmp_path, name):
    text, match = CONFIG_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    line = one_line_error(capsys, ["train", "--config", str(path), "--out", str(out)], match)
    assert str(path) in line
    assert not out.exists()


def test_missing_or_directory_config(capsys, tmp_path):
    one_line_error(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], "does not exist")
    one_line_error(capsys, ["train", "--config", str(tmp_path)], "is a directory")


def test_yaml_scientific_notation_is_a_number(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a config takes it as the number it means."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nepochs: 2\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float) and cfg.epochs == 2


def test_config_error_is_a_user_error_and_a_value_error():
    with pytest.raises(UserError):
        TrainConfig(epochs="ten")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TrainConfig(lr=-1.0)


@pytest.mark.slow
def test_after_a_refused_config_the_same_out_trains(capsys, tmp_path):
    """No stub blocks the --out of a refused run: the corrected command trains into it."""
    require_fashion_mnist()
    out = tmp_path / "run"
    for bad in (["--arch", "nosuch"], ["--taps", "nosuch"], ["--lr", "-1"], ["--lambda-task", "-1"], ["--device", "bogus"]):
        one_line_error(capsys, ["train", *TINY, *bad, "--out", str(out)], "")
        assert not out.exists()
    assert main(["train", *TINY, "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert (out / "metrics.json").is_file()


# ------------------------------------------------------------------ 5. the idx reader
def write_idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes | None = None, gz: bool = True) -> Path:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    if data is None:
        data = bytes(int(np.prod(dims, dtype=object)))
    raw = header + data
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_fashion(root: Path, n: int = 10, hw: tuple[int, int] = (28, 28), split: str = "t10k") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / f"{split}-images-idx3-ubyte.gz", IMAGES_MAGIC, (n, *hw))
    write_idx(root / f"{split}-labels-idx1-ubyte.gz", LABELS_MAGIC, (n,))
    return root


def test_idx_with_registered_dims_loads(tmp_path):
    root = fake_fashion(tmp_path / "ok")
    ds = load_dataset("fashion-mnist", "test", root=root)
    assert tuple(ds.images.shape) == (10, 1, 28, 28)


def test_idx_with_other_dims_is_refused(tmp_path):
    """A t10k header of (10000, 14, 56) has the right byte count but not Fashion-MNIST's images."""
    root = fake_fashion(tmp_path / "wide", n=100, hw=(14, 56))
    with pytest.raises(DatasetError, match=r"shape \(14, 56\), expected \(28, 28\)"):
        load_dataset("fashion-mnist", "test", root=root)


def test_idx_dims_whose_product_overflows_are_refused(tmp_path):
    big = 2**32 - 1  # (2^32-1)^3 overflows int64; the old check wrapped around
    p = write_idx(tmp_path / "x-images-idx3-ubyte", IMAGES_MAGIC, (big, big, big), data=b"\0" * 64, gz=False)
    with pytest.raises(DatasetError, match="over the limit"):
        read_idx(p, IMAGES_MAGIC, "fashion-mnist")
    with pytest.raises(DatasetError, match="expected"):
        read_idx(p, IMAGES_MAGIC, "fashion-mnist", (28, 28))
    # a product that wraps to exactly the bytes present: 2^32 * 2^32 * 1 == 0 mod 2^64
    p = write_idx(tmp_path / "y", IMAGES_MAGIC, (2**31, 2**31, 4), data=b"", gz=False)
    with pytest.raises(DatasetError, match="over the limit"):
        read_idx(p, IMAGES_MAGIC, "fashion-mnist")


def _gzip_zeros(path: Path, header: bytes, n_zeros: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        chunk = bytes(1 << 20)
        for _ in range(n_zeros >> 20):
            f.write(chunk)
    return path


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A 10-image header followed by 256 MiB of zeros (a 256 KB file): refused after reading
    only the announced bytes, with a bounded peak memory instead of a MemoryError."""
    header = struct.pack(">IIII", IMAGES_MAGIC, 10, 28, 28)
    bomb = _gzip_zeros(tmp_path / "t10k-images-idx3-ubyte.gz", header, 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="gzip bomb"):
            read_idx(bomb, IMAGES_MAGIC, "fashion-mnist", (28, 28))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # the old reader inflated all 256 MiB before looking at the header


def test_gzip_announcing_too_much_is_refused_before_inflating(tmp_path):
    header = struct.pack(">IIII", IMAGES_MAGIC, 4_000_000, 28, 28)  # 3.1 GB announced
    p = _gzip_zeros(tmp_path / "train-images-idx3-ubyte.gz", header, 1 << 20)
    with pytest.raises(DatasetError, match=f"over the limit of {MAX_IDX_BYTES}"):
        read_idx(p, IMAGES_MAGIC, "fashion-mnist", (28, 28))


def test_idx_truncated_and_corrupt_gzip(tmp_path):
    good = write_idx(tmp_path / "g.gz", IMAGES_MAGIC, (3, 28, 28))
    raw = good.read_bytes()
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="cannot be read"):
        read_idx(tmp_path / "cut.gz", IMAGES_MAGIC, "fashion-mnist", (28, 28))
    short = write_idx(tmp_path / "s.gz", IMAGES_MAGIC, (3, 28, 28), data=bytes(100))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(short, IMAGES_MAGIC, "fashion-mnist", (28, 28))


# ---------------------------------------------------------------------- 4. image files
def _png16(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I"), im.mode  # really a 16-bit file
    return path


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    v16 = rng.integers(0, 65536, size=(28, 28))
    v16[0, :4] = [0, 257, 65535, 32896]  # exact 8-bit values k * 257 -> k
    p = _png16(tmp_path / "g16.png", v16)
    expected = np.floor(v16 * 255 / 65535 + 0.5).astype(np.uint8)
    img, resized, converted = load_image_checked(p, (1, 28, 28))
    assert not resized and not converted
    np.testing.assert_array_equal(img[0].numpy(), expected)
    assert list(img[0, 0, :4]) == [0, 1, 255, 128]
    assert 0 < (expected == 255).mean() < 0.01  # clipping would make ~99.6% of pixels white
    np.testing.assert_array_equal(load_image(p, None, channels=1)[0].numpy(), expected)  # data-set readers too
    rgb, _, conv = load_image_checked(p, (3, 28, 28), convert_channels=True)
    assert conv and all(np.array_equal(rgb[c].numpy(), expected) for c in range(3))


def test_32bit_pixels_are_refused(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(np.full((28, 28), 0.5, dtype=np.float32)).save(p)
    with pytest.raises(ImageInputError, match="32-bit pixels"):
        load_image_checked(p, (1, 28, 28))
    p = tmp_path / "i.tif"
    Image.fromarray(np.full((28, 28), 70000, dtype=np.int32)).save(p)
    with pytest.raises(ImageInputError, match="expected 8-bit or 16-bit"):
        load_image_checked(p, (1, 28, 28))


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG declaring w x h greyscale pixels and holding (almost) none: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w,h", [(10_000, 10_000), (100_000, 100_000)])  # over the limit, over Pillow's 2x error limit
def test_decompression_bomb_is_a_clear_error_everywhere(tmp_path, w, h):
    p = _png_header_only(tmp_path / "bomb.png", w, h)
    for load in (lambda: load_image_checked(p, (1, 28, 28), resize=True), lambda: load_image(p, 28, 1)):
        with pytest.raises(ImageInputError, match="pixels") as e:
            load()
        assert str(p) in str(e.value)


def test_image_limit_is_applied_before_decoding(tmp_path, monkeypatch):
    p = tmp_path / "small.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(p)
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 28 * 28 - 1)
    with pytest.raises(ImageInputError, match="over the limit of 783"):
        load_image_checked(p, (1, 28, 28))


def test_one_policy_for_size_and_channels(tmp_path):
    """load_image_checked is what score and audit both call: refuse unless asked."""
    p = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)
    with pytest.raises(ImageInputError, match="has 3 channels"):
        load_image_checked(p, (1, 28, 28), resize=True)
    with pytest.raises(ImageInputError, match="is 32x32 pixels; the model takes 28x28"):
        load_image_checked(p, (1, 28, 28), convert_channels=True)
    img, resized, converted = load_image_checked(p, (1, 28, 28), resize=True, convert_channels=True)
    assert tuple(img.shape) == (1, 28, 28) and resized and converted
    with pytest.raises(ImageInputError, match="is a directory"):
        load_image_checked(tmp_path, (1, 28, 28))
    with pytest.raises(ImageInputError, match="does not exist"):
        load_image_checked(tmp_path / "nope.png", (1, 28, 28))


# ------------------------------------------------------------- 6. smaller: files vs folders
def test_a_file_given_as_a_directory_says_so(capsys, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    for argv in (["evaluate", str(f)], ["score", str(f), "split:members"], ["report", str(f)],
                 ["train", "--data-root", str(f), "--out", str(tmp_path / "r")]):
        line = one_line_error(capsys, argv, str(f))
        assert "not a directory" in line or "not a folder" in line, line
        assert "does not exist" not in line


def test_real_fashion_mnist_still_reads(tmp_path):
    require_fashion_mnist()
    ds = load_dataset("fashion-mnist", "test", root=FASHION_ROOT)
    assert tuple(ds.images.shape) == (10000, 1, 28, 28)
