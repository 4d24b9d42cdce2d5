"""The externals' levers (activemint.training.externals; issue 19 item 4): each trains, is recorded and
seeded, refuses bad values in one line, and never puts a member among the externals."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import FASHION_ROOT, refused_in_one_line, require_fashion_mnist

from activemint.cli import main
from activemint.config import ConfigError
from activemint.training import TrainConfig, Trainer
from activemint.training.batches import DeviceBatches, cycled_permutation, host_batches
from activemint.training.data import load_run_data, mint_seen_mask
from activemint.training.externals import MIX_RANGE, ExternalsError, check_pool, external_order, external_pool, generate

SMALL = dict(dataset="fashion-mnist", data_root=str(FASHION_ROOT), arch="small_cnn", setup="entry", members=128,
             external=128, validation=64, calibration=64, eval_nonmembers=64, test_samples=64, epochs=1, lr=1e-3, seed=3,
             batch_size=32, external_batch_size=32)

#: One setting per lever (the GPU sweep's levers at toy size).
LEVERS = {
    "views": dict(external_views="robust"),
    "pool": dict(external_per_epoch=64),
    "source": dict(external_source="digits", external_source_size=200),
    "mixup": dict(external_generated=0.5),
    "cutmix": dict(external_generated=0.5, external_generator="cutmix"),
}


def digests(images: torch.Tensor) -> list[str]:
    arr = np.ascontiguousarray(images.cpu().numpy())
    return [hashlib.sha256(a).hexdigest() for a in arr]


def weights_sha(run) -> str:
    return hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("bad, needle", [
    (dict(external_generated=1.5), "external_generated"),
    (dict(external_generated=-0.1), "external_generated"),
    (dict(external_generator="blend"), "external_generator"),
    (dict(external_views="sharpen"), "external_views"),
    (dict(external_views="robust", audit_policy="robust"), "external_views with audit_policy"),
    (dict(external_source="no-such-set"), "external_source"),
    (dict(external_source="fmnist"), "the run's own data set"),
    (dict(external_source_size=10), "need external_source"),
    (dict(external_source_root="/tmp"), "need external_source"),
    (dict(external_per_epoch=0), "external_per_epoch"),
])
def test_bad_values_are_one_line_config_errors(bad, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{**SMALL, **bad})
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_value_on_the_command_line_is_refused_in_one_line(capsys, tmp_path):
    rc = main(["train", "--members", "100", "--external-generated", "2", "--out", str(tmp_path / "r")])
    refused_in_one_line(capsys, rc, "external_generated")
    assert not (tmp_path / "r").exists()


def test_defaults_leave_the_fingerprint_alone_and_each_lever_changes_it():
    base = TrainConfig(**SMALL)
    from activemint.training.config import FINGERPRINT_NEUTRAL

    assert not [k for k in base.fingerprint_fields() if k.startswith("external_") and k in FINGERPRINT_NEUTRAL]
    assert {k for k in FINGERPRINT_NEUTRAL if k.startswith("external_")} >= {k for kw in LEVERS.values() for k in kw} - {"external"}
    prints = {TrainConfig(**{**SMALL, **kw}).fingerprint() for kw in LEVERS.values()}
    assert len(prints) == len(LEVERS) and base.fingerprint() not in prints


def test_pool_larger_than_the_run_has_is_refused_before_training(tmp_path):
    require_fashion_mnist()
    with pytest.raises(ExternalsError, match="external_per_epoch 500 > the 128 externals"):
        Trainer(TrainConfig(**{**SMALL, "external_per_epoch": 500}), tmp_path / "r", progress=False, log=lambda m: None).run()
    # an unknown source root: one line naming the option
    cfg = TrainConfig(**{**SMALL, "external_source": "mnist", "external_source_root": str(tmp_path / "missing")})
    with pytest.raises(ExternalsError, match="external_source 'mnist'") as e:
        external_pool(cfg, load_run_data(cfg))
    assert "\n" not in str(e.value)


def test_external_order_without_a_subset_is_the_old_order_and_with_one_draws_fresh_subsets():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(external_order(300, 1000, g1), cycled_permutation(300, 1000, g2))
    gen = torch.Generator().manual_seed(7)
    epochs = [external_order(300, 1000, gen, per_epoch=50) for _ in range(3)]
    for order in epochs:
        assert len(order) >= 1000 and len(set(order.tolist())) == 50 and 0 <= int(order.min()) and int(order.max()) < 300
    # fresh subsets: two random 50-subsets of 300 are equal with probability 1 / C(300, 50) < 1e-6
    assert len({tuple(sorted(set(o.tolist()))) for o in epochs}) == 3
    gen = torch.Generator().manual_seed(7)
    assert torch.equal(external_order(300, 1000, gen, per_epoch=50), epochs[0])  # seeded


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_generated_externals_blend_two_rows_of_the_batch(kind):
    require_fashion_mnist()
    cfg = TrainConfig(**{**SMALL, "external": 400})
    data = load_run_data(cfg)
    x = data.train.rows(data.splits.external)
    _, first = np.unique(digests(x), return_index=True)
    x = x[torch.as_tensor(np.sort(first))][:256]  # distinct images: a picked row always changes
    y = generate(x, 0.5, kind, torch.Generator().manual_seed(1))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    changed = (y != x).flatten(1).any(1)
    # about half replaced: Hoeffding, P(|k - 128| > 44 of 256) <= 2 exp(-2 * 44^2 / 256) < 6e-7
    assert abs(int(changed.sum()) - 128) <= 44
    xf, yf = x.float().flatten(1), y.float().flatten(1)
    for i in torch.nonzero(changed).flatten().tolist():
        a = xf[i]
        if kind == "mixup":  # every pixel between a's and some other row's, and not (nearly) either
            lo, hi = torch.minimum(a, xf), torch.maximum(a, xf)
            fits = ((yf[i] >= lo - 0.5) & (yf[i] <= hi + 0.5)).all(1)
        else:  # every pixel a's or some other row's, a box of the other's
            fits = ((yf[i] == a) | (yf[i] == xf)).all(1)
        fits[i] = False
        assert fits.any(), f"row {i} is not a blend of two externals of the batch"
    if kind == "cutmix":  # the pasted box covers between 1 - hi and 1 - lo of the image, up to rounding of its sides
        frac = (y != x).flatten(1).float().mean(1)[changed]
        assert float(frac.max()) <= 1 - MIX_RANGE[0] + 0.1


@pytest.mark.parametrize("lever", list(LEVERS))
def test_no_member_ever_appears_among_the_externals(lever):
    require_fashion_mnist()
    cfg = TrainConfig(**{**SMALL, **LEVERS[lever]})
    data = load_run_data(cfg)
    s = data.splits
    assert not set(s.external.tolist()) & set(s.members.tolist())
    pool = external_pool(cfg, data)
    check_pool(cfg, pool)
    assert torch.equal(pool.images[: pool.n_split], data.train.rows(s.external))
    members = data.train.rows(s.members)
    assert not set(digests(pool.images[pool.n_split:])) & set(digests(members))  # the source: no member's pixels
    # every external a batch draws (levers that transform them off) is a row of the pool, on both data paths
    plain = TrainConfig(**{**SMALL, **LEVERS[lever], "external_views": None, "external_generated": 0.0})
    pool_set = set(digests(pool.images))
    seen = torch.as_tensor(mint_seen_mask(plain, len(members)))
    host = host_batches(plain, members, data.train.labels[torch.as_tensor(s.members)], pool.images, seen, seen.numpy(), None,
                        torch.Generator().manual_seed(0), 0, 4, torch.device("cpu"))
    dev = DeviceBatches(plain, members, data.train.labels[torch.as_tensor(s.members)], pool.images, seen, None,
                        torch.Generator().manual_seed(0), False)
    for xe in [b[2] for b in host] + [b[2] for b in dev.epoch(4, 4)]:
        back = (xe * 0.5 + 0.5).mul(255).round().to(torch.uint8)  # to_input undone (augmentation off: the paper recipe)
        assert set(digests(back)) <= pool_set


def test_a_source_holding_the_members_is_stripped_of_them():
    """mnist read from the Fashion-MNIST files: its train split holds every member, and none reaches E."""
    require_fashion_mnist()
    cfg = TrainConfig(**{**SMALL, "external_source": "mnist", "external_source_root": str(FASHION_ROOT)})
    data = load_run_data(cfg)
    pool = external_pool(cfg, data)
    member_set = set(digests(data.train.rows(data.splits.members)))
    assert pool.dropped >= len(member_set)
    assert pool.n_source == len(data.train) - pool.dropped
    assert not set(digests(pool.images[pool.n_split:])) & member_set


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory) -> dict[str, str]:
    """model.safetensors' SHA-256 of SMALL without any lever, per data path."""
    require_fashion_mnist()
    out = {}
    for path in ("host", "device"):
        run = tmp_path_factory.mktemp("base") / path
        Trainer(TrainConfig(**{**SMALL, "data_path": path}), run, progress=False, log=lambda m: None).run()
        assert "externals" not in json.loads((run / "metrics.json").read_text())
        out[path] = weights_sha(run)
    return out


@pytest.mark.filterwarnings("ignore:no calibrated figures")
@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize("lever", list(LEVERS))
def test_each_lever_trains_is_recorded_and_is_seeded(tmp_path, lever, path, base_weights):
    cfg = TrainConfig(**{**SMALL, **LEVERS[lever], "data_path": path})
    runs = []
    for k in range(2):
        Trainer(cfg, tmp_path / f"r{k}", progress=False, log=lambda m: None).run()
        runs.append(tmp_path / f"r{k}")
    assert weights_sha(runs[0]) == weights_sha(runs[1])  # seeded: the same weights in this process
    assert weights_sha(runs[0]) != base_weights[path]  # the lever changes what is trained
    saved = yaml.safe_load((runs[0] / "config.yaml").read_text())
    for k, v in LEVERS[lever].items():
        assert saved[k] == v
    rec = json.loads((runs[0] / "metrics.json").read_text())["externals"]
    assert rec["pool"] == cfg.external + (200 if lever == "source" else 0)
    if lever == "source":
        assert rec["from_source"] == 200 and len(rec["source_sha256"]) == 64
