"""Baselines an auditor tries first, behind the same protocol (``activemint robustness``).

* ``exact_sha256``: is the image's pixel SHA-256 in the run's manifest? (1 / 0)
* ``phash``: minus the Hamming distance of the image's 64-bit perceptual hash
  (``imagehash.phash``) to the nearest member's;
* ``feature_nn``: cosine similarity to the nearest member in the audited model's own
  penultimate features (the input of its last linear layer); D's features are stored once
  in the cache folder, like a manifest;
* ``posthoc_head``: a MINT head trained after the fact on the frozen plain model with all of
  D (1) / E (0) (passive MINT, :mod:`activemint.attacks.passive`): the same access to D as
  Active MINT, without joint training; ``posthoc_head_robust`` trains it on the audited run's
  transformed views.

They score bare images (``score_images``), so they also score transformed copies.
"""
from __future__ import annotations

import csv

import numpy as np
import torch
from torch import nn

from activemint.data import pixel_sha256
from activemint.io import file_sha256, sha256_json
from activemint.rundir import FEATURES, POSTHOC_HEADS, WEIGHTS_SUFFIX, RunDir
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
        path = RunDir(ctx.run.run_dir).manifest
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
        self.members = phash_bits(ctx.images["members"])

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
        digest = file_sha256(RunDir(ctx.run.run_dir).model)
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                if str(z["model_sha256"]) == digest and len(z["members"]) == len(ctx.images["members"]):
                    self.members = z["members"]
                    return
        self.members = penultimate_features(ctx.run, ctx.images["members"])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, members=self.members, model_sha256=np.array(digest))

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        q = penultimate_features(self.run, images)
        return (q @ self.members.T).max(axis=1).astype(np.float64)


@register
class PostHocHeadScorer(Scorer):
    key = "posthoc_head"
    name = "Post-hoc head (passive MINT on the plain model, head trained on all of D)"
    needs = "the plain model's activations + D and E to train a head"
    suites = ("robustness",)
    half_threshold = 0.0

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        return None if ctx.plain is not None else "needs --plain-run (the same splits trained without aMINT)"

    def prepare(self, ctx: Context) -> None:
        from activemint.attacks.passive import train_passive_head, wrap_frozen
        from activemint.training.checkpoint import load_weights, save_weights

        assert ctx.plain is not None
        acfg, plain = ctx.run.config, ctx.plain
        taps = ctx.taps()
        shape = tuple(plain.metadata["input_shape"])
        params = {"taps": taps, "epochs": acfg.epochs, "lr": acfg.resolved("lr"), "batch_size": acfg.batch_size,
                  "external_batch_size": acfg.external_batch_size, "head_width": acfg.head_width,
                  "head_hidden": acfg.head_hidden, "seed": 0,
                  "plain_model": file_sha256(RunDir(plain.run_dir).model)}
        policy = self.policy(acfg)
        params["policy"] = acfg.audit_policy if policy is not None else None
        key = sha256_json(params)[:16]
        # Cached in the output's cache folder (never in the plain run, an input that is only read);
        # the key names the plain model's weights and the recipe.
        path = ctx.cache_dir / POSTHOC_HEADS / f"{self.key}-{key}{WEIGHTS_SUFFIX}"
        model = wrap_frozen(plain.model.backbone, taps, shape, head_width=acfg.head_width, head_hidden=acfg.head_hidden, seed=0)
        if path.is_file():
            load_weights(model, path)
        elif policy is None:
            ctx.log(f"training the post-hoc head on the plain model ({acfg.epochs} epochs) -> {path}")
            train_passive_head(model, ctx.images["members"], ctx.images["external"], epochs=acfg.epochs,
                               lr=acfg.resolved("lr"), batch_size=acfg.batch_size,
                               external_batch_size=acfg.external_batch_size, seed=0, device=plain.device, log=ctx.log)
        else:
            from activemint.training.head import train_head

            epochs = acfg.epochs + acfg.head_epochs
            ctx.log(f"training the robust post-hoc head ({acfg.audit_policy} views, {epochs} epochs) -> {path}")
            train_head(model, ctx.images["members"], ctx.images["external"], epochs=epochs, lr=acfg.resolved("lr"),
                       batch_size=acfg.batch_size, policy=policy, seed=0, device=plain.device, log=ctx.log)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_weights(model, path, params)
        self.model, self.device = model.to(plain.device).eval(), plain.device

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        from activemint.training.evaluation import membership_scores

        return membership_scores(self.model, images, self.device)

    def policy(self, acfg):
        return None


@register
class RobustPostHocHeadScorer(PostHocHeadScorer):
    key = "posthoc_head_robust"
    name = "Robust post-hoc head (as posthoc_head, trained on the audited run's transformed views)"

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        if not ctx.run.config.audit_policy:
            return "the audited run has no --audit-policy to copy"
        return super().applies(ctx)

    def policy(self, acfg):
        from activemint.transforms import get_policy

        return get_policy(acfg.audit_policy)
