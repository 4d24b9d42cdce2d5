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
    torch.testing.assert_close(full, trunc)
    h.remove()


def test_forward_train_split_equals_separate_passes_in_eval():
    eam = make().eval()
    assert eam.split_forward_ok
    xm, xe = torch.randn(3, 1, 16, 16), torch.randn(2, 1, 16, 16)
    logits, mm, me = eam.forward_train(xm, xe)
    assert logits.shape == (3, 10) and mm.shape == (3,) and me.shape == (2,)
    ref_logits, ref_m = eam(xm)
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
    assert total.item() == pytest.approx(2.0, rel=1e-5)  # both terms start at 1
    assert set(parts) == {"task_loss", "mint_loss"}
    # Members labelled 1, externals 0: perfect logits drive the MINT term to ~0.
    total2, parts2 = loss(logits, y, torch.full((8,), 20.0), torch.full((8,), -20.0))
    assert parts2["mint_loss"] < 1e-6 and total2.item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError):
        MultitaskLoss(lambda_task=0, lambda_mint=0)


def test_head_stride_subsamples_large_maps_only():
    """head_stride=2: the first conv of a branch strides on maps of >= 8 px; small maps keep
    stride 1 and the pool only runs where there is room. Parameter shapes do not change."""
    shapes = [(8, 14, 14), (16, 4, 4), (32, 2, 2)]
    plain, strided = MintHead(shapes, width=8, stride=1), MintHead(shapes, width=8, stride=2)
    assert [b.conv1.stride for b in strided.branches] == [(2, 2), (1, 1), (1, 1)]
    assert [b.conv1.stride for b in plain.branches] == [(1, 1)] * 3
    assert [type(b.pool).__name__ for b in strided.branches] == ["MaxPool2d", "MaxPool2d", "Identity"]
    assert [p.shape for p in plain.parameters()] == [p.shape for p in strided.parameters()]
    feats = [torch.randn(3, *s) for s in shapes]
    assert strided(feats).shape == (3,)
    # Through the Enhanced Audited Model: the stride reaches the head.
    torch.manual_seed(0)
    eam = EnhancedAuditedModel(Net(), ["stem", "body"], input_shape=(1, 16, 16), head_stride=2)
    assert [b.conv1.stride for b in eam.head.branches] == [(2, 2), (2, 2)]  # 16 px and 8 px maps
    assert eam.membership_logit(torch.randn(2, 1, 16, 16)).shape == (2,)


def test_head_norm_and_unnormalised_loss():
    shapes = [(8, 14, 14), (16, 4, 4)]
    torch.manual_seed(0)
    head = MintHead(shapes, width=8, norm="mlp")
    assert isinstance(head.mlp[0], nn.BatchNorm1d) and head.mlp[0].num_features == 16
    feats = [torch.randn(4, *s) for s in shapes]
    head.train()
    assert head(feats).shape == (4,)
    head.eval()
    assert head([f[:1] for f in feats]).shape == (1,)  # scoring one sample uses running stats
    assert not isinstance(MintHead(shapes, width=8).mlp[0], nn.BatchNorm1d)
    both = MintHead(shapes, width=8, norm="branch")
    assert [type(b.norm).__name__ for b in both.branches] == ["BatchNorm2d", "BatchNorm2d"]
    assert isinstance(both.mlp[0], nn.BatchNorm1d) and both(feats).shape == (4,)
    with pytest.raises(ValueError, match="norm"):
        MintHead(shapes, norm="layer")
    # normalize=False: the raw weighted sum of the two terms.
    loss = MultitaskLoss(lambda_task=2.0, lambda_mint=3.0, normalize=False)
    logits, y, mm, me = torch.randn(8, 10), torch.randint(0, 10, (8,)), torch.randn(8), torch.randn(8)
    total, parts = loss(logits, y, mm, me)
    assert total.item() == pytest.approx(2.0 * parts["task_loss"] + 3.0 * parts["mint_loss"], rel=1e-5)
