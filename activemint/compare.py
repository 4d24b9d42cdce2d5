"""Side by side: Active MINT against passive MINT, gMINT and membership inference attacks.

One call answers "how much better is the jointly trained head than what I could get from the
model alone?" on equal terms: the same audited run (and the same architecture trained
plainly, on the same splits), the same members D vs. evaluation non-members, the same
calibration split for thresholds, and one metrics engine
(:func:`activemint.metrics.membership_metrics`) for every method.

Every method is a scorer that returns one float64 score per sample, higher = member:

=====================  ===============  =========================================================
method                 models           what it needs
=====================  ===============  =========================================================
Active MINT            active           the Enhanced Audited Model's membership logit
Passive MINT           plain            MINT head on the frozen plain model, trained on D / E
gMINT                  plain, active    per-sample gradients (labels, white-box), MLP on D / E
... (cross-fit)        as above         the same, each member scored by a head trained on the
                                        other half of D (never by one that saw it)
loss, confidence,      plain, active    the model's softmax outputs (loss, modified entropy
entropy, mod. entropy                   also need the label)
LiRA on/offline,       plain, active    N reference models (cached), logit-scaled confidence
fixed variance
RMIA offline / online  plain, active    the same reference models, population z from E
=====================  ===============  =========================================================

``run_compare`` writes to ``out_dir``: ``compare.md`` and ``compare.csv`` (one row per method x
model), ``compare.json`` (the same plus configs and descriptions), ``roc_linear.png`` and
``roc_loglog.png`` (all methods on one plot each), ``scores.npz`` (every row's scores).

Everything expensive is cached under ``cache_dir`` (default ``.cache``), keyed by SHA-256 of
its full configuration: the active and plain runs (``runs/``), the reference models and their
per-sample logits (``reference-models/``), and the trained passive-MINT / gMINT heads with
their scores (``scorers/``).  A second call with the same configuration trains nothing and
gives the same numbers.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from activemint.attacks.gradient import (
    GradientMintConfig,
    gradient_features,
    gradient_mint_scores,
    tapped_parameter_names,
    train_gradient_mlp,
)
from activemint.attacks.lira import LiraConfig, lira_scores
from activemint.attacks.output import SIGNALS, OutputAttackConfig, logit_confidence, output_scores, true_label_prob
from activemint.attacks.passive import PassiveMintConfig, passive_mint_scores, train_passive_head, wrap_frozen
from activemint.attacks.reference import ReferenceConfig, ReferenceLogits, config_key_dict, reference_logits, sha256_json
from activemint.attacks.rmia import RmiaConfig, rmia_from_config
from activemint.data import read_manifest
from activemint.data.splits import manifest_fingerprint
from activemint.metrics import MembershipMetrics, membership_metrics, roc
from activemint.models import create_model, tap_points
from activemint.rundir import RunDir
from activemint.runs import Run, RunError, load_run
from activemint.training import Trainer, TrainConfig, predict_classes
from activemint.training.checkpoint import save_weights

EVAL_ROLES = ("members", "eval_nonmembers", "calibration")
MODELS = ("plain", "active")


# ------------------------------------------------------------------- results
@dataclass
class MethodResult:
    """One row: a method on one model, with its figures and per-sample scores."""

    method: str
    model: str  # "plain" (trained without aMINT) or "active" (the Enhanced Audited Model)
    family: str
    description: str
    needs: list[str]
    params: dict[str, Any]
    half_threshold: float | None
    metrics: MembershipMetrics
    test_accuracy: float
    scores: dict[str, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "model": self.model, "family": self.family, "description": self.description,
                "needs": self.needs, "params": self.params, "half_threshold": self.half_threshold,
                "test_accuracy": self.test_accuracy, "metrics": self.metrics.to_dict()}


@dataclass
class CompareResult:
    rows: list[MethodResult]
    headline: str
    trained: list[str]
    reused: list[str]
    out_dir: Path
    files: dict[str, Path]
    seconds: float
    info: dict[str, Any]

    def row(self, method: str, model: str) -> MethodResult:
        for r in self.rows:
            if r.method == method and r.model == model:
                return r
        raise KeyError(f"no row {method!r} on the {model} model")

    def table(self) -> str:
        return markdown_table(self.rows)


# ------------------------------------------------------------------- helpers
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain_config(cfg: TrainConfig) -> TrainConfig:
    """The same run without aMINT (``--mint off``); selection by validation accuracy if any."""
    return dataclasses.replace(cfg, mint=False, select="last" if cfg.select == "last" else "val_task")


def ensure_run(cfg: TrainConfig, cache_root: Path, *, progress: bool, log: Callable[[str], None]) -> tuple[Path, bool]:
    """Train ``cfg`` into ``<cache_root>/runs/<sha256 of its config>``, or reuse it. Returns (dir, trained)."""
    key = sha256_json({"format": "activemint-compare-run/1", "config": config_key_dict(cfg)})
    run_dir = cache_root / "runs" / key
    if RunDir(run_dir).is_complete():
        return run_dir, False
    RunDir(run_dir).require("incomplete", "missing", "not a run", "model only", "inconsistent")  # not one in progress
    resume = RunDir(run_dir).has_checkpoint()
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    log(f"training the {'active (aMINT)' if cfg.mint else 'plain'} run into {run_dir}" + (" (resuming)" if resume else ""))
    Trainer(cfg, run_dir, progress=progress, log=log).run(resume=resume)
    return run_dir, True


def clean_backbone(run: Run) -> torch.nn.Module:
    """A hook-free copy of a run's classifier (the same weights), on the run's device, eval mode."""
    shape = tuple(run.metadata["input_shape"])
    model = create_model(run.config.arch, in_chans=shape[0], num_classes=int(run.metadata["num_classes"]), img_size=shape[1])
    model.load_state_dict(run.model.backbone.state_dict())
    return model.to(run.device).eval()


def _test_accuracy(run: Run) -> float:
    m = RunDir(run.run_dir).read_metrics() or {}
    if "test_accuracy" in m:
        return float(m["test_accuracy"])
    return float(run.evaluate()[0]["test_accuracy"])


class _ScorerCache:
    """``<cache_root>/scorers/<key>/scores.npz`` for scorers that train something (passive MINT, gMINT)."""

    def __init__(self, root: Path) -> None:
        self.root = root / "scorers"

    def path(self, key_obj: dict[str, Any]) -> Path:
        key = sha256_json(key_obj)
        d = self.root / key
        return d

    def load(self, key_obj: dict[str, Any]) -> dict[str, np.ndarray] | None:
        p = self.path(key_obj) / "scores.npz"
        if not p.is_file():
            return None
        with np.load(p) as z:
            out = {r: z[r] for r in z.files}
        return out if all(r in out for r in EVAL_ROLES) else None

    def save(self, key_obj: dict[str, Any], scores: dict[str, np.ndarray], module: torch.nn.Module | None = None) -> Path:
        d = self.path(key_obj)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(key_obj, indent=2, sort_keys=True))
        if module is not None:
            save_weights(module, d / "model.safetensors", {"scorer": key_obj.get("method")})
        tmp = d / "scores.tmp.npz"
        np.savez(tmp, **scores)
        tmp.replace(d / "scores.npz")
        return d


CROSS_FIT_NOTE = ("2-fold cross-fit: D is split in halves, one head / classifier per half, and every member is scored by "
                  "the one that did not train on it (every non-member by a random one of the two), so a score never "
                  "comes from a head that saw that member")


def cross_fit_folds(sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Per role, a seeded 0/1 fold per sample (halves)."""
    rng = np.random.default_rng([seed, 2])
    out = {}
    for role in EVAL_ROLES:
        f = np.zeros(sizes[role], dtype=np.int64)
        f[rng.permutation(sizes[role])[: sizes[role] // 2]] = 1
        out[role] = f
    return out


def cross_fit_scores(folds: dict[str, np.ndarray], score: Callable[[int, str, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Assemble cross-fitted scores: ``score(k, role, positions)`` of model k (trained on member fold k).

    Members of fold k are scored by model 1 - k; non-members of fold k by model k.
    """
    out = {}
    for role in EVAL_ROLES:
        res = np.full(len(folds[role]), np.nan)
        for k in (0, 1):
            pos = np.flatnonzero(folds[role] == (1 - k if role == "members" else k))
            if len(pos):
                res[pos] = score(k, role, pos)
        out[role] = res
    return out


# ------------------------------------------------------------------- pipeline
def run_compare(
    cfg: TrainConfig | None,
    out_dir: str | Path,
    *,
    active_run: str | Path | None = None,
    plain_run: str | Path | None = None,
    reference: ReferenceConfig | None = ReferenceConfig(),
    passive: PassiveMintConfig = PassiveMintConfig(),
    gradient: GradientMintConfig = GradientMintConfig(),
    rmia_a: float = 0.3,
    lira_min_std: float = 1e-3,
    cache_dir: str | Path = ".cache",
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float = 0,
    bootstrap: int = 200,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Run every scorer on the same splits and write the comparison to ``out_dir``.

    Args:
        cfg: the active run's config (``mint=True``); ``None`` when ``active_run`` is given.
        active_run, plain_run: existing run directories to use instead of training (the plain
            run must share the active run's splits); otherwise both are trained (or reused)
            under ``cache_dir/runs``.
        reference: the reference models of LiRA / RMIA; ``None`` skips both.
        rmia_a: RMIA's offline ``a``.
        workers: parallel processes for the reference models (local engine).
        engine, ray_address, cpus_per_task, gpus_per_task: where the reference models train
            (:func:`activemint.engine.run_tasks`; ``ray``: one Ray task per model).
        command: the command line, recorded in the Markdown report.
    """
    t0 = time.time()
    log = log or (lambda m: print(m, flush=True))
    cache_root = Path(cache_dir)
    out_dir = Path(out_dir)
    trained: list[str] = []
    reused: list[str] = []

    # 1. The two audited runs: active (aMINT) and plain, on the same splits.
    if active_run is not None:
        active_dir = Path(active_run)
        reused.append(f"active run {active_dir} (given)")
    else:
        if cfg is None or not cfg.mint:
            raise ValueError("compare needs the active run's config with mint=True (or an existing --active-run)")
        active_dir, did = ensure_run(cfg, cache_root, progress=progress, log=log)
        (trained if did else reused).append(f"active run {active_dir}")
    active = load_run(active_dir)
    if not active.is_audited:
        raise RunError(f"{active_dir} is a plain run; compare needs an aMINT run as the active model")
    acfg = active.config
    if plain_run is not None:
        plain_dir = Path(plain_run)
        reused.append(f"plain run {plain_dir} (given)")
    else:
        plain_dir, did = ensure_run(plain_config(acfg), cache_root, progress=progress, log=log)
        (trained if did else reused).append(f"plain run {plain_dir}")
    plain = load_run(plain_dir)
    if plain.is_audited:
        raise RunError(f"{plain_dir} is an aMINT run; the plain model must be trained with mint off")
    data = active.data
    if read_manifest(RunDir(plain_dir).manifest) != data.splits:
        raise RunError(f"the plain run {plain_dir} and the active run {active_dir} use different splits (manifests differ); "
                       "train them with the same data set, sizes and seed")
    for r in reused:
        log(f"reusing {r}")
    runs = {"active": active, "plain": plain}
    s = data.splits
    images = {
        "members": data.train.images[torch.as_tensor(s.members)],
        "eval_nonmembers": data.test.images[torch.as_tensor(s.eval_nonmembers)],
        "calibration": data.train.images[torch.as_tensor(s.calibration)],
        "external": data.train.images[torch.as_tensor(s.external)],
    }
    labels = {
        "members": data.train.labels[torch.as_tensor(s.members)],
        "eval_nonmembers": data.test.labels[torch.as_tensor(s.eval_nonmembers)],
        "calibration": data.train.labels[torch.as_tensor(s.calibration)],
        "external": data.train.labels[torch.as_tensor(s.external)],
    }
    labels_np = {r: v.numpy() for r, v in labels.items()}
    test_acc = {m: _test_accuracy(runs[m]) for m in MODELS}
    taps = acfg.taps or tap_points(acfg.arch, acfg.setup)
    identity = {m: {"model_sha256": _sha256_file(RunDir(runs[m].run_dir).model),
                    "manifest_sha256": manifest_fingerprint(runs[m].run_dir)} for m in MODELS}
    scorer_cache = _ScorerCache(cache_root)
    rows: list[MethodResult] = []

    def add(method: str, model: str, family: str, desc: dict[str, Any], scores: dict[str, np.ndarray], half: float | None) -> None:
        m = membership_metrics(scores["members"], scores["eval_nonmembers"], calibration_scores=scores["calibration"],
                               target_fpr=acfg.target_fpr, half_threshold=half, bootstrap=bootstrap, seed=acfg.seed)
        rows.append(MethodResult(method, model, family, desc["description"], list(desc["needs"]), desc.get("params", {}),
                                 half, m, test_acc[model], {r: np.asarray(scores[r], dtype=np.float64) for r in EVAL_ROLES}))

    # 2. Class logits of both models on every evaluated sample (cheap forward passes).
    logits = {m: {r: predict_classes(runs[m].model, images[r], runs[m].device).double().numpy() for r in EVAL_ROLES} for m in MODELS}

    # 3. Active MINT.
    add("Active MINT", "active", "MINT",
        {"description": "Membership logit of the Enhanced Audited Model's MINT head, trained jointly with the classifier "
                        "on members (1) / external data (0) (DeAlcala et al., 2025)",
         "needs": ["the Enhanced Audited Model (its membership output)"], "params": {"taps": taps}},
        {r: active.membership_logits(images[r]) for r in EVAL_ROLES}, 0.0)

    # 4. Passive MINT on the plain model: the head on all of D (as Active MINT's), and cross-fitted.
    p_epochs = passive.epochs or acfg.epochs
    p_lr = passive.lr or acfg.resolved("lr")
    p_bs = passive.batch_size or acfg.batch_size
    p_ebs = passive.external_batch_size or acfg.external_batch_size
    p_params = {"taps": taps, "epochs": p_epochs, "lr": p_lr, "batch_size": p_bs, "external_batch_size": p_ebs,
                "seed": passive.seed, "head_width": acfg.head_width, "head_hidden": acfg.head_hidden}

    def train_heads(member_sets: list[np.ndarray]) -> list[torch.nn.Module]:
        heads = []
        for k, pos in enumerate(member_sets):
            model = wrap_frozen(clean_backbone(plain).cpu(), taps, plain.input_shape, head_width=acfg.head_width,
                                head_hidden=acfg.head_hidden, seed=passive.seed + k)
            train_passive_head(model, images["members"][torch.as_tensor(pos)], images["external"], epochs=p_epochs, lr=p_lr,
                               batch_size=p_bs, external_batch_size=p_ebs, seed=passive.seed + k, device=plain.device,
                               log=log, log_every=10)
            heads.append(model)
        return heads

    for cross in (False, True):
        params = {**p_params, "cross_fit_folds": 2} if cross else p_params
        key = {"format": "activemint-scorer/1", "method": "passive_mint", "params": params, **identity["plain"]}
        what = "passive MINT head" + ("s (cross-fit)" if cross else "")
        scores = scorer_cache.load(key)
        if scores is None:
            log(f"{what}: training on the frozen plain model ({p_epochs} epochs)")
            if cross:
                folds = cross_fit_folds({r: len(images[r]) for r in EVAL_ROLES}, passive.seed)
                heads = train_heads([np.flatnonzero(folds["members"] == k) for k in (0, 1)])
                scores = cross_fit_scores(folds, lambda k, r, pos: passive_mint_scores(heads[k], images[r][torch.as_tensor(pos)], plain.device))
            else:
                heads = train_heads([np.arange(len(s.members))])
                scores = {r: passive_mint_scores(heads[0], images[r], plain.device) for r in EVAL_ROLES}
            d = scorer_cache.save(key, scores, torch.nn.ModuleList([h.head for h in heads]))
            trained.append(f"{what} {d}")
        else:
            reused.append(f"{what} {scorer_cache.path(key)}")
            log(f"{what}: reusing the trained scores from {scorer_cache.path(key)}")
        desc = passive.describe()
        if cross:
            desc["description"] += "; " + CROSS_FIT_NOTE
        add("Passive MINT (cross-fit)" if cross else "Passive MINT", "plain", "MINT", {**desc, "params": params}, scores, 0.0)

    # 5. gMINT on both models (all of D, and cross-fitted), from one set of gradient features.
    g_rng = np.random.default_rng(gradient.seed)
    ext_pos = np.arange(len(s.external))
    if gradient.external_limit is not None and gradient.external_limit < len(ext_pos):
        ext_pos = np.sort(g_rng.choice(ext_pos, gradient.external_limit, replace=False))
    for model_name in MODELS:
        run = runs[model_name]
        backbone = clean_backbone(run)
        names = tapped_parameter_names(backbone, taps, params=gradient.params, max_tensors=gradient.max_tensors)
        g_params = {**gradient.to_dict(), "parameters": names}
        feats: dict[str, np.ndarray] = {}

        def features() -> dict[str, np.ndarray]:
            if not feats:
                log(f"gMINT ({model_name} model): per-sample gradients of {', '.join(names)} on "
                    f"{len(s.members) + len(ext_pos) + len(s.eval_nonmembers) + len(s.calibration)} samples")
                for r in ("members", "external", "eval_nonmembers", "calibration"):
                    x, y = images[r], labels[r]
                    if r == "external":
                        x, y = x[torch.as_tensor(ext_pos)], y[torch.as_tensor(ext_pos)]
                    feats[r] = gradient_features(backbone, names, x, y, run.device, reductions=gradient.reductions,
                                                 batch=gradient.grad_batch)
            return feats

        for cross in (False, True):
            params = {**g_params, "cross_fit_folds": 2} if cross else g_params
            key = {"format": "activemint-scorer/1", "method": "gmint", "params": params, **identity[model_name]}
            what = f"gMINT classifier{'s (cross-fit)' if cross else ''} ({model_name})"
            scores = scorer_cache.load(key)
            if scores is None:
                f = features()
                if cross:
                    folds = cross_fit_folds({r: len(f[r]) for r in EVAL_ROLES}, gradient.seed)
                    mlps = [train_gradient_mlp(f["members"][folds["members"] == k], f["external"], gradient, log=log) for k in (0, 1)]
                    scores = cross_fit_scores(folds, lambda k, r, pos: gradient_mint_scores(mlps[k], f[r][pos]))
                else:
                    mlps = [train_gradient_mlp(f["members"], f["external"], gradient, log=log)]
                    scores = {r: gradient_mint_scores(mlps[0], f[r]) for r in EVAL_ROLES}
                d = scorer_cache.save(key, scores, torch.nn.ModuleList(mlps) if cross else mlps[0])
                trained.append(f"{what} {d}")
            else:
                reused.append(f"{what} {scorer_cache.path(key)}")
                log(f"{what}: reusing the trained scores from {scorer_cache.path(key)}")
            desc = gradient.describe()
            if cross:
                desc["description"] += "; " + CROSS_FIT_NOTE
            add("gMINT (cross-fit)" if cross else "gMINT", model_name, "MINT", {**desc, "params": params}, scores, 0.0)

    # 6. Output-based attacks on both models.
    for signal in SIGNALS:
        oc = OutputAttackConfig(signal=signal)
        for model_name in MODELS:
            add(oc.display_name, model_name, "output", oc.describe(),
                {r: output_scores(logits[model_name][r], labels_np[r], signal) for r in EVAL_ROLES}, None)

    # 7. LiRA and RMIA with cached reference models.
    ref_info: dict[str, Any] = {}
    if reference is not None:
        refs = reference_logits(acfg, s, reference, cache_root, train=data.train, test=data.test, workers=workers,
                                engine=engine, ray_address=ray_address, cpus_per_task=cpus_per_task,
                                gpus_per_task=gpus_per_task, log=log)
        for r in EVAL_ROLES:
            if not np.array_equal(refs.indices[r][1], getattr(s, r)):
                raise RuntimeError(f"reference logits of {r} do not belong to the run's {r} split")
        for i in refs.trained:
            trained.append(f"reference model {i} {refs.cache_dir / f'model-{i:02d}'}")
        if not refs.trained:
            reused.append(f"{reference.n_models} reference models {refs.cache_dir}")
        ref_info = {"cache_dir": str(refs.cache_dir), "key": refs.key, "config": reference.to_dict(),
                    "description": reference.description, "epochs": reference.epochs or acfg.epochs,
                    "training_sizes": refs.training_sizes, "test_accuracy": refs.test_accuracy,
                    "population": int(refs.logits["population"].shape[0]), "trained_now": refs.trained,
                    "logits_computed_now": refs.ran}
        # Population logits of the audited models (for RMIA's z).
        pop_images = _population_images(refs, data)
        for model_name in MODELS:
            logits[model_name]["population"] = predict_classes(runs[model_name].model, pop_images, runs[model_name].device).double().numpy()
        _reference_rows(add, refs, logits, labels_np, lira_min_std, rmia_a)

    # 8. Headline, files.
    result_rows = rows
    headline = headline_line(result_rows)
    info = {
        "dataset": acfg.dataset, "arch": acfg.arch, "setup": acfg.setup, "taps": taps,
        "active_run": str(active_dir), "plain_run": str(plain_dir),
        "active_config": acfg.to_dict(), "plain_config": plain.config.to_dict(),
        "n_members": len(s.members), "n_eval_nonmembers": len(s.eval_nonmembers), "n_calibration": len(s.calibration),
        "n_external": len(s.external), "target_fpr": acfg.target_fpr, "reference_models": ref_info,
        "cache_dir": str(cache_root), "command": command,
    }
    seconds = time.time() - t0
    files = write_outputs(out_dir, result_rows, headline, info, trained, reused, seconds)
    return CompareResult(result_rows, headline, trained, reused, out_dir, files, seconds, info)


def _population_images(refs: ReferenceLogits, data) -> torch.Tensor:
    split, idx = refs.indices["population"]
    return (data.test if split == "test" else data.train).images[torch.as_tensor(idx)]


def _reference_rows(add, refs: ReferenceLogits, logits, labels_np, min_std: float, rmia_a: float) -> None:
    ref_phi = {r: np.stack([logit_confidence(refs.logits[r][:, j], refs.labels[r]) for j in range(refs.logits[r].shape[1])], axis=1)
               for r in refs.logits}
    ref_p = {r: np.stack([true_label_prob(refs.logits[r][:, j], refs.labels[r]) for j in range(refs.logits[r].shape[1])], axis=1)
             for r in refs.logits}
    for r in EVAL_ROLES:
        if not np.array_equal(refs.labels[r], labels_np[r]):
            raise RuntimeError(f"reference logits of {r} are not aligned with the run's samples")
    for variant in ("online", "offline"):
        for fixed in (False, True):
            lc = LiraConfig(variant=variant, fixed_variance=fixed, min_std=min_std)
            for model_name in MODELS:
                scores = {r: lira_scores(logit_confidence(logits[model_name][r], labels_np[r]), ref_phi[r], refs.keep[r], lc)
                          for r in EVAL_ROLES}
                # Online: a log likelihood ratio, 0 = equal likelihood (P(member) = 0.5 at equal priors).
                add(lc.display_name, model_name, "reference", lc.describe(), scores, 0.0 if variant == "online" else None)
    for variant in ("offline", "online"):
        rc = RmiaConfig(variant=variant, a=rmia_a)
        for model_name in MODELS:
            tz = true_label_prob(logits[model_name]["population"], refs.labels["population"])
            scores = {r: rmia_from_config(true_label_prob(logits[model_name][r], labels_np[r]), ref_p[r], refs.keep[r],
                                          tz, ref_p["population"], refs.keep["population"], rc)
                      for r in EVAL_ROLES}
            add(rc.display_name, model_name, "reference", rc.describe(), scores, None)


# ------------------------------------------------------------------- report
def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "inf" if a > 0 else "n/a"
    return f"{a / b:.2f}x"


def headline_line(rows: list[MethodResult]) -> str:
    """One line: Active MINT's AUC and TPR@1%FPR against the best other method (ratios)."""
    act = next((r for r in rows if r.method == "Active MINT"), None)
    others = [r for r in rows if r.method != "Active MINT"]
    if act is None or not others:
        return "no Active MINT row to compare"
    ba = max(others, key=lambda r: r.metrics.auc)
    bt = max(others, key=lambda r: (r.metrics.tpr_at_1pct_fpr, r.metrics.auc))
    return (f"Active MINT vs best other method: AUC {act.metrics.auc:.3f} vs {ba.metrics.auc:.3f} "
            f"({ba.method}, {ba.model} model) = {_ratio(act.metrics.auc, ba.metrics.auc)}; "
            f"TPR@1%FPR {act.metrics.tpr_at_1pct_fpr:.3f} vs {bt.metrics.tpr_at_1pct_fpr:.3f} "
            f"({bt.method}, {bt.model} model) = {_ratio(act.metrics.tpr_at_1pct_fpr, bt.metrics.tpr_at_1pct_fpr)}"
            + ("; on exact copies of the head's own training members (the paper's protocol). 'Passive MINT' = a post-hoc "
               "head on the plain model trained on the same D; its cross-fit row = heads tested on members they never saw"
               if any(r.method.startswith("Passive MINT") for r in others) else ""))


def _f(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


COLUMNS = ["method", "model", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr",
           "accuracy_at_0_5", "accuracy_at_calibrated", "test_accuracy"]


def markdown_table(rows: list[MethodResult]) -> str:
    if not rows:
        return ""
    fpr = rows[0].metrics.calibration_target_fpr
    head = ["Method", "Model", "AUC [95% CI]", "TPR@1%FPR", "TPR@0.1%FPR", "Acc@0.5",
            f"Acc@calibrated ({fpr:g} FPR)" if fpr is not None else "Acc@calibrated", "Model test acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.metrics
        lines.append("| " + " | ".join([
            r.method, r.model, f"{m.auc:.3f} [{m.auc_ci_low:.3f}, {m.auc_ci_high:.3f}]", _f(m.tpr_at_1pct_fpr),
            _f(m.tpr_at_0_1pct_fpr), _f(m.accuracy_at_0_5), _f(m.accuracy_at_calibrated), f"{r.test_accuracy:.4f}",
        ]) + " |")
    return "\n".join(lines)


def _descriptions(rows: list[MethodResult]) -> list[str]:
    seen: dict[str, MethodResult] = {}
    for r in rows:
        seen.setdefault(r.method, r)
    return [f"- **{name}**: {r.description}. Needs: {', '.join(r.needs)}." for name, r in seen.items()]


def write_outputs(out_dir: Path, rows: list[MethodResult], headline: str, info: dict[str, Any], trained: list[str],
                  reused: list[str], seconds: float) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "compare.md", "csv": out_dir / "compare.csv", "json": out_dir / "compare.json",
             "roc_linear": out_dir / "roc_linear.png", "roc_loglog": out_dir / "roc_loglog.png", "scores": out_dir / "scores.npz"}
    with open(files["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            d = r.metrics.to_dict()
            w.writerow([r.method, r.model] + ["" if d.get(c) is None else d[c] for c in COLUMNS[2:-1]] + [r.test_accuracy])
    files["json"].write_text(json.dumps({
        "headline": headline, "rows": [r.to_dict() for r in rows], "info": info, "trained": trained, "reused": reused,
        "seconds": round(seconds, 1)}, indent=2, default=str))
    np.savez(files["scores"], **{f"{r.method}|{r.model}|{role}": r.scores[role] for r in rows for role in EVAL_ROLES})
    ref = info.get("reference_models") or {}
    lines = [f"# Membership methods side by side: {info['dataset']} / {info['arch']} / aMINT setup '{info['setup']}'", ""]
    if info.get("command"):
        lines += ["```", info["command"], "```", ""]
    lines += [markdown_table(rows), "", f"**{headline}**", "",
              f"Members D: {info['n_members']}; evaluation non-members: {info['n_eval_nonmembers']} (test split); "
              f"calibration non-members (thresholds at {info['target_fpr']:g} FPR): {info['n_calibration']}; external E: "
              f"{info['n_external']}.  'plain' = the same architecture and splits trained without aMINT; 'active' = the "
              "Enhanced Audited Model.  Acc@0.5 only where a score has a natural 0.5 point (logits; LiRA online's log "
              "likelihood ratio).  Accuracies are on a balanced member / non-member set.", ""]
    if ref:
        accs = [a for a in ref["test_accuracy"] if a == a]
        lines += [f"Reference models (LiRA, RMIA): {len(ref['training_sizes'])}, trained plainly with the audited run's "
                  f"recipe for {ref['epochs']} epochs on {min(ref['training_sizes'])}-{max(ref['training_sizes'])} samples "
                  "each: random halves of members + evaluation non-members + calibration (+ external fill up to 2 x |D|), "
                  f"so every evaluated sample is IN for half of them; mean test accuracy {np.mean(accs):.4f} (held-out "
                  f"test images); RMIA population z: {ref['population']} external samples no reference model trained on.", ""]
    lines += ["## Methods", ""] + _descriptions(rows) + ["", "## Notes", "",
              "- The MINT-family heads (Active MINT, Passive MINT, gMINT) are trained on the members D they later score "
              "(the paper's audit protocol: the auditor knows D), so part of their signal can be the head memorising D "
              "itself. The '(cross-fit)' rows score every member with a head that never saw it; Active MINT's head cannot "
              "be cross-fitted without retraining the audited model. Output attacks, LiRA and RMIA never use the "
              "membership labels of D.",
              "- On the active model, the external set E (RMIA's population) trained the MINT head and the shared layers, "
              "not the classifier.",
              "- LiRA and RMIA query every sample once (no augmented queries), with one set of reference models for both.",
              f"- Wall time of this call: {seconds:.0f} s.  Trained now: "
              f"{', '.join(t.rsplit(' ', 1)[0] for t in trained) if trained else 'nothing (all from cache)'}.", ""]
    files["markdown"].write_text("\n".join(lines))
    _plot_rocs(rows, files["roc_linear"], files["roc_loglog"])
    return files


def _plot_rocs(rows: list[MethodResult], linear: Path, loglog: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in rows))
    cmap = plt.get_cmap("tab20")
    colors = {m: cmap(i % 20) for i, m in enumerate(methods)}
    for path, log_scale in ((linear, False), (loglog, True)):
        fig, ax = plt.subplots(figsize=(9, 6.5))
        for r in rows:
            fpr, tpr, _ = roc(r.scores["members"], r.scores["eval_nonmembers"])
            lw = 2.4 if r.method == "Active MINT" else 1.2
            ax.plot(fpr, tpr, color=colors[r.method], lw=lw, ls="-" if r.model == "active" else "--",
                    label=f"{r.method} ({r.model}) AUC {r.metrics.auc:.3f}")
        lo = 1.0 / max(len(rows[0].scores["eval_nonmembers"]), 1)
        if log_scale:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo / 2, 1)
            ax.set_ylim(lo / 2, 1)
            ax.plot([lo / 2, 1], [lo / 2, 1], color="grey", lw=0.8, ls=":")
        else:
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate (evaluation non-members)")
        ax.set_ylabel("true positive rate (members)")
        ax.set_title("ROC of every membership scorer" + (" (log-log)" if log_scale else "") + "; solid = active model, dashed = plain")
        ax.legend(fontsize=6.5, loc="lower right", ncol=1 if len(rows) <= 14 else 2)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)
