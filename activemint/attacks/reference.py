"""Reference models for LiRA and RMIA: trained once (jobs, in workers or a SLURM array), cached as per-sample logits.

What they train on is planned by :mod:`activemint.attacks.reference_plan` (the pool, the balanced IN
mask, the population).

**Cache.**  ``<cache>/reference-models/<key>/`` where ``key`` is the SHA-256 of the full JSON
(``config.json`` there) of everything that decides the models: the training config's
fingerprint (:meth:`TrainConfig.fingerprint`), the reference config, and the index sets of
the pool.  Each ``model-XX/`` is a normal run
directory plus ``logits.npz`` (float32 class logits of every scored sample and its index).
A model is trained only when its ``model.safetensors`` is missing, and run only when its
``logits.npz`` lacks a needed role.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activemint.attacks.reference_plan import (
    POOL_ROLES,
    SCORED_ROLES,
    ReferenceConfig,
    ReferencePlan,
    make_plan,
    reference_test_indices,
    reference_train_config,
)
from activemint.data import ArrayDataset, Splits, load_dataset
from activemint.io import atomic_json, atomic_write, sha256_json
from activemint.rundir import CACHE_KEY, CACHE_REFERENCE, PLAN, RunDir
from activemint.training.checkpoint import load_weights
from activemint.training.config import TrainConfig

FORMAT = "activemint-reference-models/1"


def _images(role_split: str, idx: np.ndarray, train: ArrayDataset, test: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    ds = test if role_split == "test" else train
    t = torch.as_tensor(idx, dtype=torch.long)
    return ds.images[t], ds.labels[t]


def pool_run_data(plan: ReferencePlan, model: int, train: ArrayDataset, test: ArrayDataset):
    """A RunData whose ``train`` is the pool + validation samples and whose members are model ``model``'s IN set."""
    from activemint.training.data import RunData

    imgs, labels = [], []
    for role in POOL_ROLES:
        x, y = _images(plan.samples[role][0], plan.samples[role][1], train, test)
        imgs.append(x)
        labels.append(y)
    x, y = _images("train", plan.validation, train, test)
    imgs.append(x)
    labels.append(y)
    n_pool = plan.keep.shape[1]
    pool = ArrayDataset(torch.cat(imgs), torch.cat(labels), list(train.classes), train.name, "reference-pool", source=train.source)
    members = np.flatnonzero(plan.keep[model])
    validation = np.arange(n_pool, n_pool + len(plan.validation))
    empty = np.zeros(0, dtype=np.int64)
    held = reference_test_indices(plan, len(test))
    t = torch.as_tensor(held)
    held_test = ArrayDataset(test.images[t], test.labels[t], list(test.classes), test.name, "test", source=test.source)
    return RunData(pool, held_test, Splits(members, empty, validation, empty, empty))


@dataclass
class ReferenceLogits:
    """Class logits of all reference models on the scored roles, and their IN masks.

    ``logits[role]``: (n_role, N, K) float64; ``keep[role]``: (n_role, N) bool;
    ``labels[role]``: (n_role,) int64; ``indices[role]``: (source split, (n_role,) indices).
    """

    logits: dict[str, np.ndarray]
    keep: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    indices: dict[str, tuple[str, np.ndarray]]
    cache_dir: Path
    key: str
    trained: list[int] = field(default_factory=list)
    ran: list[int] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    training_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------- jobs
def _reference_job(job: dict[str, Any], datasets: tuple[ArrayDataset, ArrayDataset] | None = None) -> dict[str, Any]:
    """Train (if needed) reference model ``job['model']`` and save its logits (if needed).

    Runs in a worker process (then it loads the data set itself) or in-process.
    """
    from activemint.runs import ensure_run
    from activemint.training.build import build_model, resolve_device
    from activemint.training.evaluation import predict_classes

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    t0 = time.time()
    cfg = TrainConfig.from_dict(job["config"])
    run_dir = Path(job["run_dir"])
    plan: ReferencePlan = job["plan"]
    i = int(job["model"])
    if datasets is None:
        datasets = (load_dataset(cfg.dataset, "train", root=cfg.data_root, download=cfg.download),
                    load_dataset(cfg.dataset, "test", root=cfg.data_root, download=cfg.download))
    train, test = datasets
    ran = False
    _, trained = ensure_run(cfg, run_dir, data=lambda: pool_run_data(plan, i, train, test), log=job.get("log"))
    lpath = RunDir(run_dir).logits
    saved = dict(np.load(lpath)) if lpath.is_file() else {}
    wanted = {r: plan.samples[r] for r in SCORED_ROLES}
    stale = [r for r, (split, idx) in wanted.items()
             if r not in saved or not np.array_equal(saved.get(r + "_index"), idx) or str(saved.get(r + "_split")) != split]
    if stale:
        device = resolve_device(cfg.device)
        model = build_model(cfg, tuple(train.input_shape), train.num_classes)
        load_weights(model, RunDir(run_dir).model)
        model.to(device).eval()
        for r in stale:
            x, _ = _images(wanted[r][0], wanted[r][1], train, test)
            saved[r] = predict_classes(model, x, device).numpy().astype(np.float32)
            saved[r + "_index"] = np.asarray(wanted[r][1], dtype=np.int64)
            saved[r + "_split"] = np.asarray(wanted[r][0])
        atomic_write(lpath, lambda f: np.savez(f, **saved))
        ran = True
    metrics = RunDir(run_dir).read_metrics() or {}
    return {"model": i, "trained": trained, "ran": ran, "seconds": time.time() - t0,
            "test_accuracy": metrics.get("test_accuracy"), "logits": {r: saved[r] for r in SCORED_ROLES}}


def reference_jobs(base: TrainConfig, splits: Splits, config: ReferenceConfig,
                   cache_root: str | Path) -> tuple[ReferencePlan, TrainConfig, str, Path, list[dict[str, Any]]]:
    """The plan, the shared training config, the cache key and folder, and one job per model.

    Job ``k`` (model ``k``: its IN set ``plan.keep[k]`` and its seed ``1 + k + 1000 * seed``)
    follows from ``k``, the run's splits and ``config`` alone: any engine, or a SLURM array
    task running :func:`train_reference_model` for ``k``, trains the same model.  Writes the
    cache folder's ``config.json`` and ``plan.npz``.
    """
    plan = make_plan(splits, config)
    rcfg = reference_train_config(base, config)
    key_obj = {"format": FORMAT, "train_config": rcfg.fingerprint(),
               "reference": {"n_models": config.n_models, "seed": config.seed},  # epochs: in train_config
               "pool": plan.fingerprint()}
    key = sha256_json(key_obj)
    root = Path(cache_root) / CACHE_REFERENCE / key
    root.mkdir(parents=True, exist_ok=True)
    # The folder is named by the key, so files already there hold these same bytes: written once,
    # whole, then renamed (atomic_write), so SLURM array tasks may write them side by side.
    if not (root / CACHE_KEY).is_file():
        atomic_json(root / CACHE_KEY, key_obj)
    if not (root / PLAN).is_file():
        plan_arrays = {"keep": plan.keep, "validation": plan.validation, **{f"{r}_index": plan.samples[r][1] for r in plan.samples}}
        atomic_write(root / PLAN, lambda f: np.savez(f, **plan_arrays))
    sizes = plan.training_sizes()
    jobs = []
    for i in range(config.n_models):
        d = rcfg.to_dict()
        d.update(seed=1 + i + 1000 * config.seed, members=sizes[i], validation=len(plan.validation),
                 extra={"reference_model": i, "n_reference_models": config.n_models, "reference_key": key})
        jobs.append({"config": d, "run_dir": str(root / f"model-{i:02d}"), "plan": plan, "model": i})
    return plan, rcfg, key, root, jobs


def train_reference_model(
    base: TrainConfig,
    splits: Splits,
    config: ReferenceConfig,
    cache_root: str | Path,
    model: int,
    *,
    train: ArrayDataset | None = None,
    test: ArrayDataset | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) reference model ``model`` alone, in this process, into the cache that
    :func:`reference_logits` reads: one task of a SLURM array (``compare --only-reference-model``).

    Returns the job's result (``trained``, ``seconds``, ``test_accuracy``, ``logits``).
    """
    from activemint.errors import UserError

    if not 0 <= model < config.n_models:
        raise UserError(f"reference model {model} does not exist: the models are 0..{config.n_models - 1}")
    log = log or (lambda m: None)
    _, _, _, _, jobs = reference_jobs(base, splits, config, cache_root)
    if train is None or test is None:
        train = load_dataset(base.dataset, "train", root=base.data_root, download=base.download)
        test = load_dataset(base.dataset, "test", root=base.data_root, download=base.download)
    tag = f"reference model {model + 1}/{config.n_models}: "
    return _reference_job({**jobs[model], "log": lambda m: log(tag + m)}, (train, test))


def reference_logits(
    base: TrainConfig,
    splits: Splits,
    config: ReferenceConfig,
    cache_root: str | Path,
    *,
    train: ArrayDataset | None = None,
    test: ArrayDataset | None = None,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float = 0,
    log: Callable[[str], None] | None = None,
) -> ReferenceLogits:
    """Train or reuse the reference models of ``base``'s architecture and recipe; return their logits.

    Args:
        base: the audited run's config (its recipe; ``mint`` is turned off).
        splits: the audited run's splits (from its manifest).
        cache_root: cache folder; models live in ``<cache_root>/reference-models/<key>/``.
        train, test: the loaded data set splits (loaded here when not given).
        workers: parallel training processes of the local engine (each gets
            ``cores // workers`` threads, or one GPU each when there are GPUs); 1 trains
            in this process.
        engine, ray_address, cpus_per_task, gpus_per_task: where the models train
            (:func:`activemint.engine.run_tasks`); ``ray`` runs one Ray task per model.
            Which samples model ``k`` trains on, and its seed, follow from ``k`` and
            ``config.seed`` alone, whatever the engine.
    """
    log = log or (lambda m: None)
    t0 = time.time()
    plan, rcfg, key, root, jobs = reference_jobs(base, splits, config, cache_root)
    if train is None or test is None:
        train = load_dataset(base.dataset, "train", root=base.data_root, download=base.download)
        test = load_dataset(base.dataset, "test", root=base.data_root, download=base.download)

    sizes = plan.training_sizes()
    todo = [j for j in jobs if not RunDir(j["run_dir"]).is_complete()]
    if todo:
        log(f"reference models: training {len(todo)} of {config.n_models} into {root} "
            f"({sizes[0]} samples each, {rcfg.epochs} epochs"
            f"{', Ray tasks' if engine == 'ray' else f', {workers} workers' if workers > 1 else ''})")
    else:
        log(f"reference models: reusing all {config.n_models} from {root}")

    results: dict[int, dict] = {}
    if engine != "local" or (workers > 1 and len(todo) > 1):
        from activemint.engine import TaskFailed, run_tasks

        failed: list[str] = []

        def finished(j: int, res: dict | TaskFailed) -> None:
            if isinstance(res, TaskFailed):
                failed.append(f"reference model {todo[j]['model'] + 1}/{config.n_models} failed: {res.error}")
                log(failed[-1])
                return
            results[res["model"]] = res
            log(f"reference model {res['model'] + 1}/{config.n_models}: trained in {res['seconds']:.0f} s, "
                f"test accuracy {res['test_accuracy']:.4f}")

        # Each task loads the data set itself; the engine pins GPUs (local: one per worker) and
        # sets the torch threads per task, so the jobs carry no device or thread count.
        run_tasks(_reference_job, todo, engine=engine, workers=workers if engine == "local" else None,
                  ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                  on_result=finished, log=log)
        if failed:
            raise RuntimeError("; ".join(failed))
    for job in jobs:
        if job["model"] in results:
            continue
        tag = f"reference model {job['model'] + 1}/{config.n_models}: "
        res = _reference_job({**job, "log": lambda m, tag=tag: log(tag + m)}, (train, test))
        results[res["model"]] = res
        if res["trained"]:
            log(f"reference model {res['model'] + 1}/{config.n_models}: trained in {res['seconds']:.0f} s, "
                f"test accuracy {res['test_accuracy']:.4f}")

    ordered = [results[i] for i in range(config.n_models)]
    logits = {r: np.stack([res["logits"][r] for res in ordered], axis=1).astype(np.float64) for r in SCORED_ROLES}
    labels = {r: _images(*plan.samples[r], train, test)[1].numpy() for r in SCORED_ROLES}
    return ReferenceLogits(
        logits=logits, keep={r: plan.keep_for(r) for r in SCORED_ROLES}, labels=labels,
        indices={r: plan.samples[r] for r in SCORED_ROLES}, cache_dir=root, key=key,
        trained=[r["model"] for r in ordered if r["trained"]], ran=[r["model"] for r in ordered if r["ran"]],
        test_accuracy=[float(r["test_accuracy"]) if r["test_accuracy"] is not None else float("nan") for r in ordered],
        training_sizes=sizes, seconds=time.time() - t0,
    )
