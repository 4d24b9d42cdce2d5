"""Baselines an auditor tries first, behind the same protocol (``activemint robustness``).

* ``exact_sha256``: is the image's pixel SHA-256 in the run's manifest? (1 / 0)
* ``phash``: minus the Hamming distance of the image's 64-bit perceptual hash
  (``imagehash.phash``) to the nearest member's;
* ``feature_nn``: cosine similarity to the nearest member in the audited model's own
  penultimate features (the input of its last linear layer); D's features are stored once
  in the cache folder, like a manifest;

The post-hoc heads (``posthoc_head``, ``posthoc_head_robust``) are the passive MINT head of
:mod:`activemint.scorers.mint` on all of D.

They score bare images (``score_images``), so they also score transformed copies.
"""
from __future__ import annotations

import csv

import numpy as np
import torch
from torch import nn

from activemint.data import pixel_sha256
from activemint.io import file_sha256
from activemint.rundir import FEATURES
from activemint.runs import Run
from activemint.scorers.base import Context, Scorer, ScorerError, register


# ------------------------------------------------------------------- scorers
@register
class ExactHashScorer(Scorer):
    key = "exact_sha256"
    name = "Exact lookup (SHA-256 of pixels in the manifest)"
    needs = "data hashes (SHA-256 of D)"
    suites = ("robustness",)

    def prepare(self, ctx: Context) -> None:
        path = ctx.run.dir.manifest
        if not path.is_file():
            raise ScorerError(f"{ctx.run.run_dir} has no {path.name}: the exact-lookup baseline needs the members' hashes")
        with open(path, newline="") as f:
            self.members = {row["sha256"] for row in csv.DictReader(f) if row.get("role") == "members"}
        if not self.members:
            raise ScorerError(f"{path} lists no members")

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        return np.array([1.0 if d in self.members else 0.0 for d in pixel_sha256(images)])


def phash_bits(images: torch.Tensor) -> np.ndarray:
    """(N,) uint64: the 64-bit perceptual hash (``imagehash.phash``) of each uint8 image."""
    import imagehash
    from PIL import Image

    arr = images.cpu().numpy()
    out = np.empty(len(arr), dtype=np.uint64)
    for i, a in enumerate(arr):
        im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
        bits = imagehash.phash(im).hash.ravel()
        out[i] = np.uint64(int("".join("1" if b else "0" for b in bits), 2))
    return out


@register
class PerceptualHashScorer(Scorer):
    key = "phash"
    name = "Perceptual-hash lookup (imagehash.phash, nearest member)"
    needs = "data hashes (perceptual hashes of D)"
    suites = ("robustness",)

    def prepare(self, ctx: Context) -> None:
        self.members = phash_bits(ctx.known["members"])

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        q = phash_bits(images)
        out = np.empty(len(q))
        for i in range(0, len(q), 256):
            d = np.bitwise_count(q[i:i + 256, None] ^ self.members[None, :]).astype(np.int64)  # uint8 would wrap on negation
            out[i:i + 256] = -d.min(axis=1)
        return out


def _last_linear(model: nn.Module) -> nn.Linear:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ScorerError(f"{type(model).__name__} has no nn.Linear layer: no penultimate features to store")
    return last


@torch.no_grad()
def penultimate_features(run: Run, images: torch.Tensor, batch: int = 512) -> np.ndarray:
    """(N, D) float32: the input of the classifier's last linear layer, L2-normalised."""
    backbone = run.model.backbone if hasattr(run.model, "backbone") else run.model
    lin = _last_linear(backbone)
    got: list[torch.Tensor] = []
    handle = lin.register_forward_hook(lambda mod, inp, out: got.append(inp[0].detach().float().cpu()))
    try:
        run.class_logits(images)
    finally:
        handle.remove()
    f = torch.cat(got).flatten(1)
    return torch.nn.functional.normalize(f, dim=1).numpy()


@register
class FeatureNNScorer(Scorer):
    key = "feature_nn"
    name = "Nearest member in the model's penultimate features (cosine)"
    needs = "the model + stored features of D"
    suites = ("robustness",)

    def prepare(self, ctx: Context) -> None:
        self.run = ctx.run
        path = ctx.cache_dir / FEATURES
        digest = file_sha256(ctx.run.dir.model)
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                if str(z["model_sha256"]) == digest and len(z["members"]) == len(ctx.known["members"]):
                    self.members = z["members"]
                    return
        self.members = penultimate_features(ctx.run, ctx.known["members"])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, members=self.members, model_sha256=np.array(digest))

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        q = penultimate_features(self.run, images)
        return (q @ self.members.T).max(axis=1).astype(np.float64)
