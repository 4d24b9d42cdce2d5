"""Issue 20 item 2's head designs: ``head_pool`` (anti-aliased / global pooling) and the view curriculum
(``view_curriculum_epochs``): built, trained on real data, recorded, seeded, refused in one line."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import yaml
from conftest import FASHION_ROOT, require_fashion_mnist, train_refused_in_one_line

from activemint.mint.head import HEAD_POOLS, BlurPool, MintHead
from activemint.runs import load_run
from activemint.training import TrainConfig, Trainer
from activemint.training.config import ConfigError
from activemint.training.head import curriculum_policy
from activemint.transforms import get_policy

TINY = dict(dataset="fashion-mnist", data_root=str(FASHION_ROOT), arch="small_cnn", setup="entry", members=200,
            external=200, validation=100, calibration=300, eval_nonmembers=100, test_samples=200, epochs=2, lr=1e-3,
            seed=7, audit_policy="robust")


def _head(pool: str, shapes=((8, 14, 14),)) -> MintHead:
    torch.manual_seed(0)
    return MintHead(list(shapes), width=16, hidden=8, pool=pool).eval()


def test_every_pool_has_the_default_heads_parameters():
    """A pool design changes the computation, not the weights: same state-dict keys and shapes as "max"."""
    ref = {k: v.shape for k, v in _head("max", [(8, 14, 14), (16, 7, 7)]).state_dict().items()}
    for pool in HEAD_POOLS:
        head = _head(pool, [(8, 14, 14), (16, 7, 7)])
        assert {k: v.shape for k, v in head.state_dict().items()} == ref, pool
        out = head([torch.randn(3, 8, 14, 14), torch.randn(3, 16, 7, 7)])
        assert out.shape == (3,) and torch.isfinite(out).all()


def test_global_pools_ignore_a_shift_that_max_pool_does_not():
    """A pattern inside a zero map, moved by 1 px (staying inside): with global-max / global-avg the
    branch never subsamples, so the head's output is the same (to float summation error); the
    paper's max-pool at stride 2 sees an odd shift as another image."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 8, 14, 14)
    x[:, :, 4:9, 4:9] = torch.randn(4, 8, 5, 5, generator=g)
    moved = torch.roll(x, shifts=(1, 1), dims=(2, 3))  # the pattern stays 4+ px from every border
    for pool in ("global-max", "global-avg"):
        head = _head(pool)
        with torch.no_grad():
            a, b = head([x]), head([moved])
        # fp32 sums over <= 14*14*8*9 terms of O(1): error far below 1e-4
        assert torch.allclose(a, b, atol=1e-4), (pool, a, b)
    head = _head("max")
    with torch.no_grad():
        assert not torch.allclose(head([x]), head([moved]), atol=1e-4)


def test_blur_pool_is_a_normalised_low_pass_at_max_pools_size():
    """BlurPool keeps a constant map constant (its kernel sums to 1) and gives MaxPool2d(2)'s output size."""
    pool = BlurPool(3)
    for size in (14, 8):
        x = torch.full((2, 3, size, size), 2.5)
        y = pool(x)
        assert y.shape == torch.nn.MaxPool2d(2)(x).shape
        assert torch.allclose(y, torch.full_like(y, 2.5), atol=1e-6)
    assert "kernel" not in pool.state_dict()  # fixed, not a weight


def test_curriculum_ramps_the_views_probability_from_exact_images():
    pol = get_policy("robust")
    assert curriculum_policy(pol, 0, 10).p == 0.0
    assert curriculum_policy(pol, 5, 10).p == pytest.approx(pol.p / 2)
    assert curriculum_policy(pol, 10, 10) is pol and curriculum_policy(pol, 3, 0) is pol
    assert curriculum_policy(None, 0, 10) is None
    # The first epoch's views are the exact images; the full policy's are not.
    require_fashion_mnist()
    from activemint.data import load_dataset

    images = load_dataset("fashion-mnist", root=str(FASHION_ROOT), split="train").rows(np.arange(64))
    first = curriculum_policy(pol, 0, 10)(images, np.random.default_rng(0))
    assert torch.equal(first, images)
    # p = 0.5 over 64 images: all 64 left exact has probability 2**-64 < 1e-6 (views that change no pixel aside)
    assert not torch.equal(pol(images, np.random.default_rng(0)), images)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_runs_train_record_reload_and_repeat(tmp_path):
    """Each new option trains a real tiny run, is recorded in config.yaml and model.json, rebuilds the
    same model on load (its scores reproduce the run's), and a second run with the same seed is identical."""
    require_fashion_mnist()
    cfg = TrainConfig(**TINY, head_pool="blur", view_curriculum_epochs=2)
    a = Trainer(cfg, tmp_path / "a", progress=False, log=lambda m: None).run()
    b = Trainer(cfg, tmp_path / "b", progress=False, log=lambda m: None).run()
    assert _sha(tmp_path / "a/model.safetensors") == _sha(tmp_path / "b/model.safetensors")
    assert a.metrics["membership"] == b.metrics["membership"]
    saved = yaml.safe_load((tmp_path / "a/config.yaml").read_text())
    assert saved["head_pool"] == "blur" and saved["view_curriculum_epochs"] == 2
    run = load_run(tmp_path / "a", device="cpu")
    assert all(branch.pool_kind == "blur" for branch in run.model.head.branches)
    metrics, _ = run.evaluate()
    assert metrics["membership"] == a.metrics["membership"]
    # Another pool is another model (same seed, same data).
    c = Trainer(TrainConfig(**{**TINY, "head_pool": "global-max"}), tmp_path / "c", progress=False, log=lambda m: None).run()
    assert _sha(tmp_path / "c/model.safetensors") != _sha(tmp_path / "a/model.safetensors")
    assert c.metrics["membership"] != a.metrics["membership"]


def test_defaults_keep_the_fingerprint_of_runs_made_before_the_options():
    cfg = TrainConfig(**TINY)
    assert "head_pool" not in cfg.fingerprint_fields() and "view_curriculum_epochs" not in cfg.fingerprint_fields()
    assert TrainConfig(**TINY, head_pool="blur").fingerprint() != cfg.fingerprint()
    assert TrainConfig(**TINY, view_curriculum_epochs=3).fingerprint() != cfg.fingerprint()


@pytest.mark.parametrize("extra, needles", [
    (["--head-pool", "avg"], ("--head-pool", "avg")),
    (["--view-curriculum-epochs", "-1"], ("view_curriculum_epochs",)),
    (["--view-curriculum-epochs", "3"], ("view_curriculum_epochs", "audit_policy")),
])
def test_bad_values_are_refused_in_one_line(tmp_path, capsys, extra, needles):
    require_fashion_mnist()
    train_refused_in_one_line(tmp_path, capsys, extra, *needles)


def test_config_refuses_an_unknown_pool():
    with pytest.raises(ConfigError, match="head_pool"):
        TrainConfig(head_pool="average").validate()
