"""The Enhanced Audited Model's hooks, truncated forward and the multitask loss."""
import pytest
import torch
from torch import nn

from activemint.mint import EnhancedAuditedModel, MintHead, MultitaskLoss


class Net(nn.Module):
    """A user's model with an in-place ReLU right after a tapped layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.tail = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(32, 10)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = self.act(self.stem(x))
        x = self.body(x)
        self.tail_ran = True
        return self.fc(self.tail(x))


def make(taps=("stem", "body")):
    torch.manual_seed(0)
    return EnhancedAuditedModel(Net(), list(taps), input_shape=(1, 16, 16))


def test_outputs_and_shapes():
    eam = make()
    x = torch.randn(5, 1, 16, 16)
    logits, mint = eam(x)
    assert logits.shape == (5, 10) and mint.shape == (5,)
    # In-place activations were turned off, so the tapped stem output was not overwritten.
    assert not eam.backbone.act.inplace


def test_truncated_forward_matches_full_and_stops_early():
    eam = make().eval()
    x = torch.randn(4, 1, 16, 16)
    calls = []
    h = eam.backbone.tail.register_forward_hook(lambda *a: calls.append(1))
    _, full = eam(x)
    assert len(calls) == 1
    trunc = eam.membership_logit(x)
    assert len(calls) == 1  # the tail did not run
    # Same float32 ops on the same inputs in one process: bit-identical in practice; assert_close's float32 default
    # (rtol 1.3e-6, atol 1e-5) only absorbs a different kernel path.
    torch.testing.assert_close(full, trunc)
    h.remove()


def test_forward_train_split_equals_separate_passes_in_eval():
    eam = make().eval()
    assert eam.split_forward_ok
    xm, xe = torch.randn(3, 1, 16, 16), torch.randn(2, 1, 16, 16)
    logits, mm, me = eam.forward_train(xm, xe)
    assert logits.shape == (3, 10) and mm.shape == (3,) and me.shape == (2,)
    ref_logits, ref_m = eam(xm)
    # One joint forward vs separate forwards of the same float32 model: batch composition may change the kernel's summation
    # order (~1e-7 relative); the float32 default tolerance (rtol 1.3e-6) covers it on any CPU and thread count.
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(mm, ref_m)
    torch.testing.assert_close(me, eam.membership_logit(xe))


def test_bad_taps_and_hook_removal():
    with pytest.raises(ValueError, match="not a submodule"):
        make(("stem", "nope"))
    eam = make()
    eam.remove_hooks()
    with pytest.raises(RuntimeError, match="removed"):
        eam(torch.randn(1, 1, 16, 16))
    # The backbone runs as the user's plain model again.
    assert eam.backbone(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_to_standard_module_is_the_users_model_without_hooks():
    user = Net()
    n_user_hooks = _hook_count(user)
    torch.manual_seed(0)
    eam = EnhancedAuditedModel(user, ["stem", "body"], input_shape=(1, 16, 16)).eval()
    x = torch.randn(3, 1, 16, 16)
    logits, _ = eam(x)
    # copy=True: a hook-free copy with the same outputs; the audited model still scores
    clean = eam.to_standard_module(copy=True)
    assert clean is not user and _hook_count(clean) == n_user_hooks
    # A copy of the same weights on the same input: same float32 ops, default tolerance is headroom.
    torch.testing.assert_close(clean(x), logits)
    assert eam.membership_logit(x).shape == (3,)
    # copy=False: the user's very module, its hooks removed (Opacus' to_standard_module)
    same = eam.to_standard_module()
    assert same is user and _hook_count(user) == n_user_hooks
    torch.testing.assert_close(user(x), logits)


def test_plain_and_audited_models_answer_the_same_calls():
    from activemint.mint import PlainModel

    torch.manual_seed(0)
    plain = PlainModel(Net()).eval()
    eam = make().eval()
    xm, xe = torch.randn(3, 1, 16, 16), torch.randn(2, 1, 16, 16)
    for model in (plain, eam):
        logits, mint_m, mint_e = model.forward_train(xm, xe)
        assert logits.shape == (3, 10)
        # classify runs the same layers as forward_train on the same batch: float32 default tolerance covers kernel choice.
        torch.testing.assert_close(model.classify(xm), logits)
        assert (mint_m is None) == (not model.audited) == (mint_e is None)
        assert model.to_standard_module(copy=True)(xm).shape == (3, 10)
    assert plain.head_parameters() == [] and len(eam.head_parameters()) == len(list(eam.head.parameters()))
    assert eam.membership_logit(xe).shape == (2,) and not hasattr(plain, "membership_logit")


def test_head_token_branch_and_validation():
    head = MintHead([(4, 8, 8), (5, 16)])
    out = head([torch.randn(3, 4, 8, 8), torch.randn(3, 5, 16)])
    assert out.shape == (3,)
    with pytest.raises(ValueError):
        MintHead([(4,)])


def test_multitask_loss_normalises_by_first_batch():
    loss = MultitaskLoss(lambda_task=1.0, lambda_mint=1.0)
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    mm, me = torch.randn(8), torch.randn(8)
    total, parts = loss(logits, y, mm, me)
    # Each term divided by its own first value: 1 up to float32 rounding (~6e-8 each); rel 1e-5 is > 100x that.
    assert total.item() == pytest.approx(2.0, rel=1e-5)  # both terms start at 1
    assert set(parts) == {"task_loss", "mint_loss"}
    # Members labelled 1, externals 0: perfect logits drive the MINT term to ~0.
    total2, parts2 = loss(logits, y, torch.full((8,), 20.0), torch.full((8,), -20.0))
    # Logits +-20: BCE = log(1 + e^-20) = 2.1e-9 < 1e-6; the total is 1 + that / its first value (~1e-9 / 0.7) -> rel 1e-4 holds.
    assert parts2["mint_loss"] < 1e-6 and total2.item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError):
        MultitaskLoss(lambda_task=0, lambda_mint=0)


def test_flooding_turns_the_mint_step_around_below_its_level():
    """--mint-flood b: |L - b| + b.  Above b the loss and its gradient are the raw BCE's; below b
    the value is 2b - L and the gradient on the membership logits points the other way."""
    g = torch.Generator().manual_seed(0)  # fixed draws: the "above b" case has BCE ~0.8, far above b = 0.1
    logits, y = torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    for mm, me, below in ((torch.randn(8, generator=g), torch.randn(8, generator=g), False),
                          (torch.full((8,), 4.0), torch.full((8,), -4.0), True)):
        grads, totals = [], []
        for flood in (0.0, 0.1):
            m, e = mm.clone().requires_grad_(), me.clone().requires_grad_()
            total, parts = MultitaskLoss(normalize=False, flood=flood)(logits, y, m, e)
            total.backward()
            grads.append(torch.cat([m.grad, e.grad]))
            totals.append(total.item() - parts["task_loss"])
        raw = parts["mint_loss"]  # logged raw, with or without flooding
        assert (raw < 0.1) == below  # logits +-4: BCE = log(1 + e^-4) = 0.018
        # Float32 sums of 16 terms of size <= 1: error ~1e-6; 1e-5 holds.
        assert totals[1] == pytest.approx(0.2 - raw if below else raw, abs=1e-5)
        assert torch.allclose(grads[1], -grads[0] if below else grads[0], atol=1e-7)
    with pytest.raises(ValueError, match="flood"):
        MultitaskLoss(flood=-0.1)


def _head_flops(head: MintHead, feats) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        head(feats)
    return counter.get_total_flops()


def test_head_stride_makes_the_head_cheaper_on_large_maps_only():
    """head_stride=2 is a lighter head with the same weights: same parameter shapes (a
    checkpoint of one loads into the other), fewer FLOPs where maps are large, and the very
    same output where every tapped map is small."""
    shapes = [(8, 14, 14), (16, 4, 4), (32, 2, 2)]
    torch.manual_seed(0)
    plain = MintHead(shapes, width=8, stride=1).eval()
    strided = MintHead(shapes, width=8, stride=2).eval()
    strided.load_state_dict(plain.state_dict())  # same shapes: loads without error
    feats = [torch.randn(3, *s) for s in shapes]
    assert strided(feats).shape == (3,)
    assert _head_flops(strided, feats) < _head_flops(plain, feats)
    small = [(16, 4, 4), (32, 2, 2)]
    torch.manual_seed(0)
    plain_s = MintHead(small, width=8, stride=1).eval()
    strided_s = MintHead(small, width=8, stride=2).eval()
    strided_s.load_state_dict(plain_s.state_dict())
    feats_s = [torch.randn(3, *s) for s in small]
    # Stride 2 on a map it cannot stride is the same computation: float32 default tolerance.
    torch.testing.assert_close(strided_s(feats_s), plain_s(feats_s))
    # Through the Enhanced Audited Model (16 px and 8 px maps): cheaper, same outputs shape.
    torch.manual_seed(0)
    eam1 = EnhancedAuditedModel(Net(), ["stem", "body"], input_shape=(1, 16, 16), head_stride=1).eval()
    torch.manual_seed(0)
    eam2 = EnhancedAuditedModel(Net(), ["stem", "body"], input_shape=(1, 16, 16), head_stride=2).eval()
    x = torch.randn(2, 1, 16, 16)
    assert eam2.membership_logit(x).shape == (2,)
    f1 = eam1.tap_features(x)
    assert _head_flops(eam2.head, f1) < _head_flops(eam1.head, f1)


def _batch_dependent(head: MintHead, feats) -> bool:
    """Whether the first sample's output changes with the batch it is scored in."""
    # Batch statistics change outputs by O(0.1) in train mode; batch-independent heads differ only by float32 order (~1e-7).
    return not torch.allclose(head(feats)[:2], head([f[:2] for f in feats]), atol=1e-6)


def test_head_norm_and_unnormalised_loss():
    """head_norm: BatchNorm makes training outputs depend on the batch (none does not); in
    eval mode every head scores a sample the same whatever its batch (running statistics)."""
    shapes = [(8, 14, 14), (16, 4, 4)]
    torch.manual_seed(0)
    feats = [torch.randn(6, *s) * 3 + 1 for s in shapes]
    for norm, in_training in (("none", False), ("mlp", True), ("branch", True)):
        torch.manual_seed(0)
        head = MintHead(shapes, width=8, norm=norm)
        head.train()
        assert head(feats).shape == (6,)
        assert _batch_dependent(head, feats) == in_training, norm
        head.eval()
        assert not _batch_dependent(head, feats), norm
        assert head([f[:1] for f in feats]).shape == (1,)  # scoring one sample uses running stats
    with pytest.raises(ValueError, match="norm"):
        MintHead(shapes, norm="layer")
    # normalize=False: the raw weighted sum of the two terms.
    loss = MultitaskLoss(lambda_task=2.0, lambda_mint=3.0, normalize=False)
    logits, y, mm, me = torch.randn(8, 10), torch.randint(0, 10, (8,)), torch.randn(8), torch.randn(8)
    total, parts = loss(logits, y, mm, me)
    # The same float32 terms weighted and summed in float32 (parts are their .item() values): ~1e-7 relative; 1e-5 holds.
    assert total.item() == pytest.approx(2.0 * parts["task_loss"] + 3.0 * parts["mint_loss"], rel=1e-5)


def test_external_grad_off_keeps_the_externals_out_of_the_backbone_gradient():
    """external_grad=False: the externals' membership logits train the head but send nothing
    into the backbone; the members' logits, the class logits and the head's view of both are
    those of the paper's forward (eval mode: batch statistics do not differ)."""
    torch.manual_seed(0)
    eam = EnhancedAuditedModel(Net(), ["stem", "body"], input_shape=(1, 16, 16)).eval()
    xm, xe = torch.randn(4, 1, 16, 16), torch.randn(3, 1, 16, 16)
    ref = eam.forward_train(xm, xe)
    eam.external_grad = False
    out = eam.forward_train(xm, xe)
    # external_grad only changes the backward pass; the forward is the same float32 computation (default tolerance).
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b)
    backbone = [p for p in eam.backbone.parameters()]
    for grad_flag, expect_backbone in ((True, True), (False, False)):
        eam.external_grad = grad_flag
        eam.zero_grad(set_to_none=True)
        _, _, mint_e = eam.forward_train(xm, xe)
        mint_e.sum().backward()
        got = any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone)
        assert got is expect_backbone
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in eam.head.parameters() if p.dim() > 1)


def test_separable_head_convs_keep_resolution_for_fewer_flops():
    """head_conv="separable": depthwise 3x3 + pointwise 1x1 in place of each 3x3 conv: the
    same output shape and receptive field at full resolution, at least 4x fewer FLOPs and
    parameters on 32-64 channel maps; an unknown kind is refused."""
    shapes = [(32, 14, 14), (32, 14, 14)]
    torch.manual_seed(0)
    full, sep = MintHead(shapes, width=64), MintHead(shapes, width=64, conv="separable")
    feats = [torch.randn(4, *s) for s in shapes]
    assert sep(feats).shape == full(feats).shape == (4,)
    assert 4 * _head_flops(sep, feats) < _head_flops(full, feats)
    n = lambda m: sum(p.numel() for p in m.branches.parameters())  # noqa: E731
    assert 4 * n(sep) < n(full)
    # Receptive field: a change at one pixel reaches the output through both 3x3 stages.
    x = [f.clone() for f in feats]
    x[0][:, :, 7, 7] += 5.0
    # A +5 change at one pixel moves the output by O(0.01+), far above allclose's 1e-5 + 1e-8 (float32 order is ~1e-7).
    assert not torch.allclose(sep.eval()(x), sep(feats))
    with pytest.raises(ValueError, match="head conv"):
        MintHead(shapes, conv="dilated")
