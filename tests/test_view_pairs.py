"""Issue 20 item 2's contrastive pairs of views (``TrainConfig.view_pairs``): the loss, the head's
embedding, real tiny runs on both data paths, the fingerprint, and one-line refusals."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
import yaml
from conftest import FASHION_ROOT, require_fashion_mnist, train_refused_in_one_line

from activemint.mint.head import MintHead
from activemint.mint.loss import view_pair_loss
from activemint.training import TrainConfig, Trainer
from activemint.training.config import ConfigError

TINY = dict(dataset="fashion-mnist", data_root=str(FASHION_ROOT), arch="small_cnn", setup="entry", members=200,
            external=200, validation=100, calibration=300, eval_nonmembers=100, test_samples=200, epochs=2, lr=1e-3,
            seed=7, audit_policy="robust")


def test_pair_loss_is_low_for_matching_pairs_and_near_one_without_information():
    n = 16
    basis = torch.eye(n)
    # each embedding's pair is itself and every other is orthogonal: the pair's logit is 1 / 0.5 = 2,
    # the 2n - 2 others' 0, so the loss is log(1 + (2n - 2) e^-2) / log(2n - 1) = 0.472 (float32: ~1e-7 off)
    want = math.log(1 + (2 * n - 2) * math.exp(-2)) / math.log(2 * n - 1)
    assert view_pair_loss(basis, basis.clone()).item() == pytest.approx(want, abs=1e-5) and want < 0.5
    # every embedding the same: each of the 2n - 1 candidates is equally likely, the loss is exactly 1
    same = torch.ones(n, 4)
    # float32 log-softmax over 31 equal logits vs log(31): off by ~1e-7; 1e-5 is headroom
    assert view_pair_loss(same, same.clone()).item() == pytest.approx(1.0, abs=1e-5)
    # pairs swapped between members: worse than no information
    assert view_pair_loss(basis, basis.roll(1, dims=0)).item() > 1.0
    assert view_pair_loss(basis[:1], basis[:1]).item() == 0.0  # one pair: no negatives, no loss
    assert math.isfinite(view_pair_loss(torch.randn(8, 3), torch.randn(8, 3)).item())


def test_head_embedding_is_what_its_logit_reads():
    torch.manual_seed(0)
    head = MintHead([(8, 14, 14), (16, 7, 7)], width=16, hidden=8, pool="global-max").eval()
    feats = [torch.randn(5, 8, 14, 14), torch.randn(5, 16, 7, 7)]
    emb = head.embed(feats)
    assert emb.shape == (5, 8) and bool((emb >= 0).all())  # after the hidden layer's ReLU
    # same process, same ops: the logit is the last layer applied to the embedding
    assert torch.equal(head(feats), head.mlp[-1](emb).squeeze(1))


@pytest.mark.parametrize("data_path", ["host", "device"])
def test_tiny_runs_with_pairs_train_log_the_term_and_repeat(tmp_path, data_path):
    require_fashion_mnist()
    cfg = TrainConfig(**TINY, view_pairs=0.5, data_path=data_path)
    a = Trainer(cfg, tmp_path / "a", progress=False, log=lambda m: None).run()
    b = Trainer(cfg, tmp_path / "b", progress=False, log=lambda m: None).run()
    sha = [hashlib.sha256((tmp_path / r / "model.safetensors").read_bytes()).hexdigest() for r in "ab"]
    assert sha[0] == sha[1] and a.metrics["membership"] == b.metrics["membership"]
    rows = [json.loads(line) for line in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    pair = [r["pair_loss"] for r in rows if "epoch" in r]
    # normalised NT-Xent starts near 1 (no information) and is a positive, finite number
    assert len(pair) == 2 and all(0 < p < 1.5 for p in pair)
    assert yaml.safe_load((tmp_path / "a/config.yaml").read_text())["view_pairs"] == 0.5
    # the term changes training: the same seed without it gives another model
    c = Trainer(TrainConfig(**TINY, data_path=data_path), tmp_path / "c", progress=False, log=lambda m: None).run()
    assert c.metrics["membership"] != a.metrics["membership"]


def test_default_keeps_the_fingerprint():
    cfg = TrainConfig(**TINY)
    assert "view_pairs" not in cfg.fingerprint_fields()
    assert TrainConfig(**TINY, view_pairs=0.5).fingerprint() != cfg.fingerprint()


def test_pairs_need_a_policy_and_mint():
    with pytest.raises(ConfigError, match="view_pairs"):
        TrainConfig(**{**TINY, "audit_policy": None}, view_pairs=0.5).validate()
    with pytest.raises(ConfigError, match="view_pairs"):
        TrainConfig(**TINY, view_pairs=0.5, mint=False).validate()


@pytest.mark.parametrize("extra, needles", [
    (["--view-pairs", "-1"], ("view_pairs",)),
    (["--view-pairs", "0.5"], ("view_pairs", "audit_policy")),
])
def test_bad_values_are_refused_in_one_line(tmp_path, capsys, extra, needles):
    require_fashion_mnist()
    train_refused_in_one_line(tmp_path, capsys, extra, *needles)
