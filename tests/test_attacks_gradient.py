"""gMINT's per-sample gradients (torch.func vmap over grad) against a loop of autograd.grad,
and passive MINT's frozen backbone, on the real Fashion-MNIST audited run."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from activemint.attacks import per_sample_gradients, reduce_per_filter, tapped_parameter_names, wrap_frozen
from activemint.attacks.passive import train_passive_head
from activemint.models import tap_points
from activemint.runs import load_run
from activemint.scorers import clean_backbone
from activemint.training.batches import to_input


def test_vmap_per_sample_gradients_equal_a_loop_of_autograd(audited_run_dir):
    run = load_run(audited_run_dir, device="cpu")
    backbone = clean_backbone(run)
    names = tapped_parameter_names(backbone, tap_points("small_cnn", "entry"))
    assert names == ["block1.0.weight", "block2.0.weight"]  # the conv filters of the two tapped blocks
    idx = torch.as_tensor(run.data.splits.members[:5])
    x = to_input(run.data.train.images[idx])
    y = run.data.train.labels[idx]
    batched = per_sample_gradients(backbone, names, x, y)
    assert backbone.channels_last is True  # restored after the vmap pass
    params = dict(backbone.named_parameters())
    backbone.eval()
    for i in range(len(x)):
        loss = F.cross_entropy(backbone(x[i : i + 1]), y[i : i + 1])
        ref = torch.autograd.grad(loss, [params[n] for n in names])
        for n, g in zip(names, ref):
            assert batched[n].shape[1:] == g.shape
            # Tolerance: vmap'd and looped autograd sum the same float32 products in different orders (~1e-7 relative per op, 784
            # spatial terms per filter gradient): rtol 1e-4 / atol 1e-6 is >= 100x that, on any CPU and thread count.
            torch.testing.assert_close(batched[n][i], g, rtol=1e-4, atol=1e-6)
    # Samples differ (it is not one batch gradient broadcast), and the features are per filter.
    # Two different samples' gradients differ by far more than allclose's 1e-5 relative (float error is ~1e-7).
    assert not torch.allclose(batched[names[1]][0], batched[names[1]][1])
    feats = reduce_per_filter(batched, ("mean", "mean_abs"))
    assert feats.shape == (5, 2 * (32 + 32))
    # Same float32 tensors reduced by the same torch ops: default float32 tolerance (1.3e-6 rel) covers summation order.
    torch.testing.assert_close(feats[:, :32], batched[names[0]].flatten(2).mean(2))
    torch.testing.assert_close(feats[:, 32:64], batched[names[0]].flatten(2).abs().mean(2))


def test_passive_head_trains_only_the_head(audited_run_dir):
    run = load_run(audited_run_dir, device="cpu")
    backbone = clean_backbone(run)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = wrap_frozen(backbone, tap_points("small_cnn", "entry"), run.input_shape, head_width=8, head_hidden=16, seed=0)
    head_before = [p.clone() for p in model.head.parameters()]
    s = run.data.splits
    train_passive_head(model, run.data.train.images[torch.as_tensor(s.members[:128])],
                       run.data.train.images[torch.as_tensor(s.external[:128])], epochs=1, lr=1e-3, batch_size=64,
                       external_batch_size=64, seed=0, device=torch.device("cpu"))
    after = model.backbone.state_dict()
    for k, v in before.items():  # weights *and* BatchNorm running statistics unchanged
        assert torch.equal(after[k], v), k
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters()))
    assert np.isfinite(model.membership_logit(to_input(run.data.train.images[:4])).detach().numpy()).all()
