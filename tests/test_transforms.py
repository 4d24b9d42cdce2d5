"""Auditor-side transformations: seeded, identical for members and non-members, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from activemint.errors import UserError
from activemint.training.config import TrainConfig
from activemint.transforms import (
    POLICIES,
    TRANSFORMS,
    AuditPolicy,
    TransformError,
    apply_transform,
    parse_spec,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """40 real Fashion-MNIST training images (uint8, 1x28x28)."""
    from conftest import require_fashion_mnist

    from activemint.data import load_dataset

    require_fashion_mnist()
    return load_dataset("fashion-mnist", "train").images[:40].clone()


def _levels(channels: int):
    return [(t.name, lv) for t in TRANSFORMS.values() if channels == 3 or not t.rgb_only for lv in t.levels]


@pytest.mark.parametrize("name,level", _levels(1))
def test_seeded_and_identical_for_members_and_nonmembers(images, name, level):
    # "members" and "non-members" batches that share 10 images at other positions, in another order.
    members = images[:20]
    back = torch.arange(14, 4, -1)
    nonmembers = torch.cat([images[25:35], images[back]])
    tm = apply_transform(members, name, level, seed=3)
    tn = apply_transform(nonmembers, name, level, seed=3)
    assert tm.dtype == torch.uint8 and tm.shape == members.shape
    assert torch.equal(tn[10:], tm[back])  # the same image -> the same copy, whichever set it is in
    assert torch.equal(tm, apply_transform(members, name, level, seed=3))  # seeded: reproducible
    assert not torch.equal(tm, members)  # every level changes real images


def test_seed_changes_the_random_choices(images):
    a = apply_transform(images, "translate", "2px", seed=0)
    b = apply_transform(images, "translate", "2px", seed=1)
    # One of 4 directions per image and seed: all 40 equal under both seeds with probability
    # (1/4)^40 < 1e-6 (real images are not symmetric under these shifts).
    assert not torch.equal(a, b)


def test_rgb_grayscale_and_all_spec():
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    g = apply_transform(x, "grayscale", "on")
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    assert ("grayscale", "on") in parse_spec("all", channels=3)
    assert all(n != "grayscale" for n, _ in parse_spec("all", channels=1))
    assert parse_spec("jpeg:q50,translate") == [("jpeg", "q50"), ("translate", "1px"), ("translate", "2px"), ("translate", "4px")]


@pytest.mark.parametrize("call", [
    lambda x: apply_transform(x, "blur", "1"),            # unknown transformation
    lambda x: apply_transform(x, "jpeg", "q500"),         # unknown level name
    lambda x: apply_transform(x, "jpeg", 500),            # severity out of range
    lambda x: apply_transform(x, "translate", -1),        # severity out of range
    lambda x: apply_transform(x, "perspective", 0.5),     # severity out of range
    lambda x: apply_transform(x, "perspective", "tilt"),  # unknown level name
    lambda x: apply_transform(x, "grayscale", "on"),      # RGB only
    lambda x: apply_transform(x.float(), "jpeg", "q50"),  # not uint8
    lambda x: parse_spec(""),
    lambda x: parse_spec("noise:2"),
])
def test_bad_arguments_raise_one_user_error(call):
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(TransformError) as e:
        call(x)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_audit_policy_is_seeded_and_validated(images, name):
    pol = POLICIES[name]
    assert TrainConfig(audit_policy=name).audit_policy == name
    a = pol(images, np.random.default_rng(5))
    b = pol(images, np.random.default_rng(5))
    assert torch.equal(a, b) and not torch.equal(a, images)
    with pytest.raises(TransformError):
        AuditPolicy({"translate": (0, 99)})
    with pytest.raises(ValueError):
        TrainConfig(audit_policy="nope")
    with pytest.raises(ValueError):
        TrainConfig(mint_members=0.0)


def test_held_out_member_mask():
    from activemint.training.data import mint_seen_mask

    cfg = TrainConfig(mint_members=0.5, seed=4)
    m = mint_seen_mask(cfg, 1001)
    assert m.sum() == 500 and np.array_equal(m, mint_seen_mask(cfg, 1001))
    assert mint_seen_mask(TrainConfig(), 10).all()


def test_plain_twin_of_a_robust_run_trains_on_the_same_views(tmp_path):
    """``--mint off`` keeps an ``--audit-views all`` policy as the classifier's augmentation
    (the plain twin of a robust run sees the images its audited model saw); ``--audit-views
    mint`` views only ever fed the MINT loss, so without aMINT they change nothing."""
    from conftest import FASHION_ROOT, require_fashion_mnist
    from safetensors.torch import load_file

    from activemint.training import Trainer

    require_fashion_mnist()
    tiny = dict(dataset="fashion-mnist", data_root=str(FASHION_ROOT), arch="small_cnn", members=128, external=64,
                validation=64, calibration=300, eval_nonmembers=64, test_samples=64, epochs=1, lr=1e-3, seed=3,
                mint=False)

    def weights(name: str, **kw) -> dict[str, torch.Tensor]:
        Trainer(TrainConfig(**tiny, **kw), tmp_path / name, progress=False, log=lambda m: None).run()
        return load_file(str(tmp_path / name / "model.safetensors"))

    exact = weights("exact")
    all_views = weights("all", audit_policy="robust", audit_views="all")
    mint_views = weights("mint", audit_policy="robust", audit_views="mint")
    assert exact.keys() == all_views.keys() == mint_views.keys()
    assert all(torch.equal(exact[k], mint_views[k]) for k in exact)
    assert not all(torch.equal(exact[k], all_views[k]) for k in exact)


def test_perspective_is_a_keystone_warp_that_grows_with_its_level(images):
    # An unseen-by-training transformation (a photographed print or screen): every corner moves
    # inward by a drawn fraction, so the warp keeps the image at 0 and changes it more at each
    # severer level (mean absolute pixel change on these 40 real images; deterministic: seeded).
    assert torch.equal(apply_transform(images, "perspective", 0.0), images)
    change = [(apply_transform(images, "perspective", lv, seed=0).float() - images.float()).abs().mean().item()
              for lv in ("0.05", "0.1", "0.15")]
    assert 0 < change[0] < change[1] < change[2]
