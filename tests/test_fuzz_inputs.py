"""Property-based fuzzing (hypothesis) of every reader of user files.

For any mutation of a valid file (truncation, byte flips, random headers, random bytes,
random YAML), each reader either returns a valid result or raises its documented error, a
subclass of :class:`activemint.errors.UserError`: never another exception type, a
MemoryError or a hang.  Examples are bounded (``max_examples``) so the file runs in seconds.
"""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from activemint.data import ArrayDataset, DatasetError, ImageInputError, load_image_checked  # noqa: E402
from activemint.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx  # noqa: E402
from activemint.data.splits import ROLES, SplitSizes, make_splits, read_manifest, write_manifest  # noqa: E402
from activemint.errors import UserError  # noqa: E402
from activemint.training.config import ConfigError, TrainConfig  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` truncated, with flipped / overwritten / inserted bytes, or replaced outright."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "random", "append"]))
    data = bytearray(original)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "append":
        return bytes(data) + draw(st.binary(min_size=1, max_size=256))
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            data[i] = draw(st.integers(0, 255))
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


# ------------------------------------------------------------------------------ idx
def _idx_bytes(magic: int, dims: tuple[int, ...]) -> bytes:
    rng = np.random.default_rng(0)
    n = int(np.prod(dims))
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + rng.integers(0, 256, n, dtype=np.uint8).tobytes()


IDX_IMAGES = _idx_bytes(IMAGES_MAGIC, (3, 28, 28))
IDX_LABELS = _idx_bytes(LABELS_MAGIC, (3,))


@FUZZ
@given(data=st.data(), gz=st.booleans(), labels=st.booleans())
def test_idx_reader_gives_an_array_or_dataset_error(tmp_path, data, gz, labels):
    original = IDX_LABELS if labels else IDX_IMAGES
    raw = data.draw(mutated(gzip.compress(original) if gz else original))
    if gz and data.draw(st.booleans()):  # mutate inside the gzip stream too: random headers, lengths
        raw = gzip.compress(data.draw(mutated(original)))
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(raw)
    magic, shape = (LABELS_MAGIC, ()) if labels else (IMAGES_MAGIC, (28, 28))
    try:
        arr = read_idx(path, magic, "fuzz", shape)
    except DatasetError as e:
        assert str(path) in str(e)
        return
    assert arr.dtype == np.uint8 and arr.shape[1:] == shape and arr.ndim == 1 + len(shape)


@FUZZ
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=6), tail=st.binary(max_size=64))
def test_idx_random_headers(tmp_path, dims, tail):
    path = tmp_path / "h"
    path.write_bytes(struct.pack(">HBB", 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + tail)
    try:
        arr = read_idx(path, IMAGES_MAGIC, "fuzz", (28, 28))
    except DatasetError:
        return
    assert arr.shape == tuple(dims) and arr.shape[1:] == (28, 28)


# ----------------------------------------------------------------------------- images
def _png(mode: str) -> bytes:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (28, 28)).astype(np.uint16))
    elif mode == "RGB":
        img = Image.fromarray(rng.integers(0, 256, (28, 28, 3)).astype(np.uint8))
    else:
        img = Image.fromarray(rng.integers(0, 256, (28, 28)).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNGS = {m: _png(m) for m in ("L", "I;16", "RGB")}


@FUZZ
@given(data=st.data(), mode=st.sampled_from(sorted(PNGS)), channels=st.sampled_from([1, 3]),
       resize=st.booleans(), convert=st.booleans())
def test_image_loading_gives_a_tensor_or_image_error(tmp_path, data, mode, channels, resize, convert):
    path = tmp_path / "x.png"
    path.write_bytes(data.draw(mutated(PNGS[mode])))
    try:
        img, _, _ = load_image_checked(path, (channels, 28, 28), resize=resize, convert_channels=convert)
    except ImageInputError as e:
        assert str(path) in str(e)
        return
    assert img.dtype == torch.uint8 and tuple(img.shape) == (channels, 28, 28)


# --------------------------------------------------------------------------- manifest
@pytest.fixture(scope="module")
def manifest_bytes(tmp_path_factory) -> bytes:
    g = torch.Generator().manual_seed(0)
    train = ArrayDataset(torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=g),
                         torch.randint(0, 3, (40,), generator=g), ["a", "b", "c"], "fuzz", "train")
    test = ArrayDataset(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8, generator=g),
                        torch.randint(0, 3, (10,), generator=g), ["a", "b", "c"], "fuzz", "test")
    splits = make_splits(40, 10, SplitSizes(10, 10, 5, 5, 5), seed=0)
    path = write_manifest(tmp_path_factory.mktemp("manifest") / "manifest.csv", splits, train, test)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_manifest_reader_gives_splits_or_dataset_error(tmp_path, manifest_bytes, data):
    path = tmp_path / "manifest.csv"
    path.write_bytes(data.draw(mutated(manifest_bytes)))
    try:
        splits = read_manifest(path)
    except DatasetError as e:
        assert str(path) in str(e)
        return
    assert splits.is_disjoint()
    for role in ROLES:
        idx = getattr(splits, role)
        assert idx.dtype == np.int64 and (idx >= 0).all()


# ------------------------------------------------------------------------ config YAML
VALID_CONFIG = yaml.safe_dump(TrainConfig(members=100, epochs=2, lr=1e-3).to_dict(), sort_keys=False).encode()

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                         st.text(max_size=12))
yaml_values = st.recursive(yaml_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=6)
config_keys = st.sampled_from(sorted(TrainConfig.__dataclass_fields__) + ["epochz", "", "extra"])


def _check_config_file(path: Path) -> None:
    try:
        cfg = TrainConfig.from_yaml(path)
    except ConfigError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    cfg.validate()  # a returned config is valid and round-trips
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@FUZZ
@given(data=st.data())
def test_config_yaml_bytes_give_a_config_or_config_error(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data.draw(mutated(VALID_CONFIG)))
    _check_config_file(path)


@settings(FUZZ, max_examples=100)
@given(doc=st.dictionaries(config_keys, yaml_values, max_size=6))
def test_config_yaml_values_give_a_config_or_config_error(tmp_path, doc):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    _check_config_file(path)


@FUZZ
@given(text=st.text(max_size=200))
def test_config_random_text(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    _check_config_file(path)


def test_errors_are_user_errors():
    for cls in (DatasetError, ImageInputError, ConfigError):
        assert issubclass(cls, UserError)
