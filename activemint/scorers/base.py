"""The scorer protocol: one shape for every membership method.

A scorer is a class registered under a key (:func:`register`).  An instance is bound to one
model (``plain``: trained without aMINT, ``active``: the Enhanced Audited Model) and, where the
method has variants, to one config.  It has

* ``applies(ctx)``: ``None`` if it can run on the context, else why not (one line);
* ``prepare(ctx)``: everything expensive (train a head, index D, train reference models);
* ``score(ctx)`` -> :class:`Scores`: one float64 score per sample of every evaluated role,
  higher = member.

:meth:`Scorer.run` is what a caller uses: ``prepare`` + ``score``, or the cached
:class:`Scores` when the scorer names a :meth:`~Scorer.cache_key` (:class:`ScorerCache`).
Scorers that look only at images implement ``score_images(images) -> (N,)`` instead of
``score`` (``activemint robustness`` scores transformed copies through it).

A new method is one file with one registered class; ``compare`` runs every scorer whose
``suites`` hold ``"compare"`` (in registration order), ``robustness`` those with
``"robustness"``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from activemint.errors import UserError
from activemint.io import atomic_json, atomic_write, file_sha256, sha256_json
from activemint.rundir import CACHE_KEY, CACHE_SCORERS, MODEL, SCORES
from activemint.runs import Run
from activemint.scores import EVAL_ROLES, Scores

MODELS = ("plain", "active")


class ScorerError(UserError):
    """A scorer cannot run as asked (unknown key, missing manifest, mismatched runs, ...)."""


# ------------------------------------------------------------------- context
@dataclass(frozen=True)
class EngineOptions:
    """Where shared expensive work (the reference models) runs: :func:`activemint.engine.run_tasks`."""

    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: float = 0

    def kwargs(self) -> dict[str, Any]:
        """The engine keyword arguments (without ``workers``)."""
        return {"engine": self.engine, "ray_address": self.ray_address, "cpus_per_task": self.cpus_per_task,
                "gpus_per_task": self.gpus_per_task}


@dataclass
class Work:
    """What a scorer's ``prepare`` trained and what it reused (one line each, for the reports)."""

    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

    def add(self, other: Work | None) -> None:
        """Append ``other``'s lines that are not here yet (shared work is reported once)."""
        if other is not None:
            self.trained += [t for t in other.trained if t not in self.trained]
            self.reused += [r for r in other.reused if r not in self.reused]


@dataclass
class Context:
    """What scorers may use, input only: the audited (active) run, an optional plain run with the
    same splits, uint8 images per role (members, external, calibration, eval_nonmembers) with
    their labels and sample indices, a cache folder, the scorers' configs (by config key,
    :meth:`Scorer.config_key`), the shared reference models' config and the engine options.

    ``known`` holds what the auditor knows to fit on (D: ``members``, E: ``external``); by
    default the evaluated images themselves (``robustness`` evaluates a subset of D but fits on
    all of it).  Scorers never write into a context: ``prepare`` returns what it trained or
    reused (:class:`Work`).  :meth:`memo` caches derived values several scorers share (class
    logits, gradient features, the reference models' logits).
    """

    run: Run
    images: dict[str, torch.Tensor]
    cache_dir: Path
    plain: Run | None = None
    log: Callable[[str], None] = field(default=lambda m: None)
    progress: bool = True  # progress bars on the scorers' long steps (compare --no-progress: off)
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    configs: Mapping[str, Any] = field(default_factory=dict)
    reference: Any = None  # activemint.attacks.reference.ReferenceConfig, or None: no reference models
    engine: EngineOptions = field(default_factory=EngineOptions)
    roles: tuple[str, ...] = EVAL_ROLES
    known: dict[str, torch.Tensor] | None = None
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.known is None:
            self.known = self.images

    def config(self, cls: type[Scorer]) -> Any:
        """``cls``'s config: the one given for its config key, else its ``Config()`` defaults."""
        got = self.configs.get(cls.config_key())
        return got if got is not None else cls.Config()

    def model(self, name: str) -> Run:
        """The run behind a model name: ``active`` (the audited run) or ``plain``."""
        if name == "active":
            return self.run
        if name == "plain" and self.plain is not None:
            return self.plain
        raise ScorerError(f"no {name} model in this context")

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def memoised(self, key: Any) -> Any:
        """What :meth:`memo` holds under ``key`` (``None``: not computed in this context)."""
        return self._memo.get(key)

    def labels_np(self, role: str) -> np.ndarray:
        return self.memo(("labels", role), lambda: self.labels[role].numpy())

    def logits(self, model: str, role: str) -> np.ndarray:
        """(n, K) float64 class logits of ``model`` on ``role``'s images (computed once)."""
        run = self.model(model)
        return self.memo(("logits", model, role), lambda: run.class_logits(self.image(role)).double().numpy())

    def image(self, role: str) -> torch.Tensor:
        """The images of ``role`` (an evaluated role, else a shared one such as the reference population)."""
        if role in self.images:
            return self.images[role]
        got = self.memoised(("images", role))
        if got is None:
            raise ScorerError(f"no {role} images in this context")
        return got

    def taps(self) -> list[str]:
        """The audited run's taps, as its record holds them (:attr:`activemint.runs.Run.taps`)."""
        return self.run.taps

    def identity(self, model: str) -> dict[str, str]:
        """What identifies a model's scores in a cache: its weights and its splits (SHA-256)."""
        from activemint.data.splits import manifest_fingerprint

        run = self.model(model)
        return self.memo(("identity", model), lambda: {"model_sha256": file_sha256(run.dir.model),
                                                       "manifest_sha256": manifest_fingerprint(run.run_dir)})

    def wrap(self, scores: dict[str, np.ndarray]) -> Scores:
        return Scores(scores, {r: self.indices[r] for r in scores if r in self.indices})


# ------------------------------------------------------------------- protocol
class Scorer:
    """Base of every scorer: subclasses set the class attributes and implement ``prepare`` and
    ``score`` (or ``score_images``).

    ``Config`` (a :class:`~activemint.config.ConfigBase` dataclass, usually nested in the
    scorer's class) holds the method's parameters: their defaults, bounds and descriptions are
    written there once.  Every field with a ``help`` in its metadata becomes the command-line
    flag ``--<config key>-<field>`` of ``compare`` and ``robustness``
    (:mod:`activemint.cli.scorers`); :meth:`Context.config` gives the value in use.
    """

    key: ClassVar[str] = ""
    name: ClassVar[str] = ""  # a long name (robustness tables); ``method`` is the compare row
    method: str = ""
    family: str = "other"
    needs: ClassVar[str] = ""
    half_threshold: float | None = None  # the score of P(member) = 0.5, if any
    suites: ClassVar[tuple[str, ...]] = ("compare",)
    models: ClassVar[tuple[str, ...]] = MODELS
    Config: ClassVar[type | None] = None
    #: Scorers that share one config (and its flags) name the same key; default: ``key``.
    config_name: ClassVar[str] = ""

    def __init__(self, model: str = "active") -> None:
        self.model = model

    @classmethod
    def config_key(cls) -> str:
        return cls.config_name or cls.key

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        """The rows this scorer adds to ``compare``, in order (default: one per model in ``models``)."""
        return [cls(m) for m in cls.models]

    @classmethod
    def applies(cls, ctx: Context) -> str | None:
        """``None`` if the scorer can run on ``ctx``, else why not (one line)."""
        return None

    @property
    def row(self) -> str:
        return self.method or self.name or self.key

    def describe(self) -> dict[str, Any]:
        """Description, what the auditor needs (list) and parameters, for tables and JSON."""
        return {"description": self.name or self.row, "needs": [self.needs] if self.needs else [], "params": {}}

    def cache_key(self, ctx: Context) -> dict[str, Any] | None:
        """A JSON object naming everything that decides the scores, or ``None``: not cached."""
        return None

    def what(self) -> str:
        """What ``prepare`` trains, for the trained / reused lists."""
        return f"{self.row} ({self.model})"

    def module(self) -> torch.nn.Module | None:
        """What ``prepare`` trained, saved beside cached scores (weights only)."""
        return None

    def prepare(self, ctx: Context) -> Work | None:
        """Everything expensive; returns what it trained or reused (``None``: nothing to say)."""
        self.run = ctx.model(self.model)
        return None

    def score(self, ctx: Context) -> Scores:
        return ctx.wrap({r: self.score_images(ctx.images[r]) for r in ctx.roles})

    def score_images(self, images: torch.Tensor) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} scores samples of the context, not bare images")

    def run_scores(self, ctx: Context, cache: ScorerCache | None = None) -> tuple[Scores, Work]:
        """``prepare`` + ``score``, or the cached scores when :meth:`cache_key` names them; and
        what was trained or reused on the way."""
        work = Work()
        key = self.cache_key(ctx) if cache is not None else None
        if key is not None:
            got = cache.load(key, ctx.roles)
            if got is not None:
                work.reused.append(f"{self.what()} {cache.path(key)}")
                ctx.log(f"{self.what()}: reusing the trained scores from {cache.path(key)}")
                return ctx.wrap(got.scores), work
        work.add(self.prepare(ctx))
        self.prepared = True
        scores = self.score(ctx)
        if key is not None:
            d = cache.save(key, scores, self.module())
            work.trained.append(f"{self.what()} {d}")
        return scores, work


# ------------------------------------------------------------------- registry
REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make ``cls`` available under ``cls.key`` (after those registered before)."""
    if not cls.key or cls.key in REGISTRY:
        raise ValueError(f"scorer key {cls.key!r} is empty or already registered")
    REGISTRY[cls.key] = cls
    return cls


def unregister(key: str) -> None:
    REGISTRY.pop(key, None)


class Suite(Mapping):
    """A live view of the registered scorers of one suite (``compare``, ``robustness``), by key."""

    def __init__(self, suite: str) -> None:
        self.suite = suite

    def __getitem__(self, key: str) -> type[Scorer]:
        cls = REGISTRY[key]
        if self.suite not in cls.suites:
            raise KeyError(key)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, c in REGISTRY.items() if self.suite in c.suites])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def get_scorers(keys: list[str] | None = None, suite: str = "robustness") -> list[type[Scorer]]:
    """The scorer classes of ``suite`` (all, in registration order, or those named)."""
    view = Suite(suite)
    if keys is None:
        return [view[k] for k in view]
    unknown = [k for k in keys if k not in view]
    if unknown:
        raise ScorerError(f"unknown scorer(s) {', '.join(unknown)}; known: {', '.join(view)}")
    return [view[k] for k in keys]


# ------------------------------------------------------------------- cache
class ScorerCache:
    """``<root>/scorers/<SHA-256 of the key>/``: the key (JSON), the scores and the trained module."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / CACHE_SCORERS

    def path(self, key_obj: dict[str, Any]) -> Path:
        return self.root / sha256_json(key_obj)

    def load(self, key_obj: dict[str, Any], roles: tuple[str, ...] = EVAL_ROLES) -> Scores | None:
        p = self.path(key_obj) / SCORES
        if not p.is_file():
            return None
        with np.load(p, allow_pickle=False) as z:
            got = Scores.from_arrays({k: z[k] for k in z.files}, roles)
        return got if all(r in got for r in roles) else None

    def save(self, key_obj: dict[str, Any], scores: Scores, module: torch.nn.Module | None = None) -> Path:
        from activemint.training.checkpoint import save_weights

        d = self.path(key_obj)
        d.mkdir(parents=True, exist_ok=True)
        atomic_json(d / CACHE_KEY, key_obj)
        if module is not None:
            save_weights(module, d / MODEL, {"scorer": key_obj.get("method")})
        arrays = scores.arrays()
        atomic_write(d / SCORES, lambda f: np.savez(f, **arrays))
        return d


def clean_backbone(run: Run) -> torch.nn.Module:
    """A hook-free copy of a run's classifier (the same weights), on the run's device, eval mode."""
    return run.model.to_standard_module(copy=True).to(run.device).eval()
