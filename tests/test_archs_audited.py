"""Every registered architecture as an Enhanced Audited Model, in every setup.

For each: the model builds on the data set's input size, one forward pass returns class
logits (B, K) and a membership logit (B,), and one optimisation step on a fixed batch of
real Fashion-MNIST images lowers both the task loss and the MINT loss.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require_fashion_mnist

from activemint.data import load_dataset
from activemint.mint import EnhancedAuditedModel, MultitaskLoss
from activemint.models import create_model, list_archs, tap_points
from activemint.training.batches import to_input


@pytest.fixture(scope="module")
def batch():
    require_fashion_mnist()
    ds = load_dataset("fashion-mnist", "train")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)[:16]
    x, y = to_input(ds.images[idx]), ds.labels[idx]
    return x[:8], y[:8], x[8:]  # members, their labels, externals


def losses(model, xm, ym, xe):
    logits, mm, me = model.forward_train(xm, xe)
    task = F.cross_entropy(logits, ym)
    mint = F.binary_cross_entropy_with_logits(torch.cat([mm, me]), torch.cat([torch.ones(len(mm)), torch.zeros(len(me))]))
    return logits, mm, me, task, mint


@pytest.mark.parametrize("arch", list_archs())
@pytest.mark.parametrize("setup", ["entry", "middle", "output"])
def test_setup_builds_forwards_and_learns(arch, setup, batch):
    xm, ym, xe = batch
    torch.manual_seed(0)
    model = EnhancedAuditedModel(
        create_model(arch, in_chans=1, num_classes=10, img_size=28), tap_points(arch, setup), input_shape=(1, 28, 28)
    )
    model.train()
    logits, mint = model(xm)
    assert logits.shape == (8, 10) and mint.shape == (8,)
    assert model.membership_logit(xe).shape == (8,)
    _, mm, me, task0, mint0 = losses(model, xm, ym, xe)
    assert mm.shape == (8,) and me.shape == (8,)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)  # the paper's optimiser
    loss_fn = MultitaskLoss()
    logits, mm, me = model.forward_train(xm, xe)
    total, _ = loss_fn(logits, ym, mm, me)
    opt.zero_grad()
    total.backward()
    opt.step()
    with torch.no_grad():
        *_, task1, mint1 = losses(model, xm, ym, xe)
    assert task1 < task0, f"{arch}/{setup}: task loss {task0:.4f} -> {task1:.4f}"
    assert mint1 < mint0, f"{arch}/{setup}: MINT loss {mint0:.4f} -> {mint1:.4f}"


@pytest.mark.parametrize("arch,shape", [("small_cnn", (3, 32, 32)), ("resnet50", (3, 64, 64)), ("vit", (3, 32, 32))])
def test_other_input_sizes(arch, shape):
    model = EnhancedAuditedModel(
        create_model(arch, in_chans=shape[0], num_classes=43, img_size=shape[1]), tap_points(arch, "middle"), input_shape=shape
    ).eval()
    logits, mint = model(torch.randn(2, *shape))
    assert logits.shape == (2, 43) and mint.shape == (2,)
