"""Typed run configuration: a config fully describes a run and is saved beside its results."""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from activemint.errors import UserError

SETUPS = ("entry", "middle", "output")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("last", "val_task", "val_mint", "val_task_mint")
LOSS_NORMS = ("first", "none")
HEAD_NORMS = ("none", "mlp", "branch")

# Recipes fill the optimisation fields a user did not set explicitly.
RECIPES: dict[str, dict[str, Any]] = {
    # The paper: Adam, lr 1e-4, no augmentation, no weight decay, constant lr.
    "paper": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant", "augment": False},
    # A stronger recipe for a more useful audited model: AdamW + cosine decay + light
    # augmentation (random 2-px shifts; flips are left to the user via augment_flip).
    "improved": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "schedule": "cosine", "augment": True},
}


DEVICE_TYPES = ("cpu", "cuda", "mps")

#: TrainConfig fields added after runs were first cached, with the value that reproduces runs
#: from before they existed.  A field holding that value is left out of the fingerprint, so
#: adding a field does not orphan cached runs and grid cells; any other value changes it.
FINGERPRINT_NEUTRAL: dict[str, Any] = {
    "test_samples": None, "head_stride": 1, "head_lr_scale": 1.0, "head_norm": "none", "loss_norm": "first",
    "mint_members": 1.0, "audit_policy": None, "audit_views": "all", "head_epochs": 0,
    "max_memory": None,
}


class ConfigError(UserError, ValueError):
    """A config value (from ``--config`` YAML or an option) is of the wrong type or out of range.

    Also a ``ValueError``, so callers that caught the old ``ValueError`` keep working.
    """


def parse_device(name: object) -> str:
    """Check the syntax of a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Returns the name; raises :class:`ConfigError` naming the accepted forms.  Whether the
    device exists on this machine is checked by :func:`activemint.training.trainer.resolve_device`.
    """
    import torch

    expected = "expected auto, cpu, cuda, cuda:N or mps"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"device must be a string ({expected}), got {name!r}")
    if name == "auto":
        return name
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"device {name!r} is not a device name; {expected}") from e
    if dev.type not in DEVICE_TYPES:
        raise ConfigError(f"device {name!r}: {dev.type} devices are not supported; {expected}")
    return name


def _type_spec(annotation: str) -> tuple[str, bool]:
    """('int' | 'float' | 'str' | 'bool' | 'list' | 'dict', optional?) of a field annotation."""
    optional = "None" in annotation
    base = annotation.replace("| None", "").strip()
    for kind in ("list", "dict"):
        if base.startswith(kind):
            return kind, optional
    return base, optional


_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "list": "a list of strings", "dict": "a mapping"}


def _check_type(name: str, value: Any, kind: str, optional: bool) -> Any:
    """``value`` checked (and for numbers, normalised) against ``kind``; raises ConfigError."""
    if value is None and optional:
        return None
    ok = False
    if kind == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif kind == "float":
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = list(value) if ok else value
    elif kind == "dict":
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(
            f"{name} must be {_TYPE_WORDS.get(kind, kind)}{' or null' if optional else ''}, "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


@dataclass
class TrainConfig:
    """Everything that defines a training run (plain or active).

    Split sizes left at ``None`` take the paper's defaults for the data set.
    """

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    download: bool = False
    # Memory budget of the decoded images ("2GB", "auto" = None = half the available memory,
    # "off"): a folder-based data set above it is streamed from disk (same samples and figures).
    max_memory: str | None = None
    arch: str = "small_cnn"
    setup: str = "entry"
    taps: list[str] | None = None
    mint: bool = True
    members: int | None = None
    external: int | None = None
    validation: int | None = None
    calibration: int | None = None
    eval_nonmembers: int | None = None
    # Test images for the final audited accuracy: None = the whole test split, else a seeded
    # random subset of this size (CPU-scale grids: 10,000 inferences of a ResNet cost minutes).
    test_samples: int | None = None
    epochs: int = 10
    batch_size: int = 64
    external_batch_size: int = 64
    recipe: str = "paper"
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    augment: bool | None = None
    augment_flip: bool = False
    lambda_task: float = 1.0
    lambda_mint: float = 1.0
    # Held-out members: the fraction of D whose membership the MINT loss sees (the task loss
    # always sees all of D); the evaluation reports seen and unseen members separately.
    mint_members: float = 1.0
    # Robust Active MINT: a named policy of transformed views (activemint.transforms.POLICIES)
    # that members and externals go through before each training step; None = exact images.
    audit_policy: str | None = None
    # Which inputs go through audit_policy: "all" (task and MINT loss see the same transformed
    # members) or "mint" (the task loss sees the exact members; the MINT loss transformed views).
    audit_views: str = "all"
    # Extra epochs that train only the MINT head (backbone frozen) after the last epoch.
    head_epochs: int = 0
    head_width: int = 64
    head_hidden: int = 128
    head_stride: int = 1
    # The MINT head's learning rate as a multiple of ``lr`` (its own optimiser parameter
    # group); the backbone keeps ``lr``.
    head_lr_scale: float = 1.0
    # BatchNorm in the MINT head: "none", "mlp" (on the concatenated branch vectors, before
    # its MLP) or "branch" (also after each conv branch's first pool).  "mlp" makes the head
    # learn from the first epochs (benchmarks/results/head-early-cpu.md).
    head_norm: str = "mlp"
    # Normalisation of the two loss terms: "first" = each divided by its value on the first
    # batch (the paper), "none" = raw λ1·L_aud + λ2·L_mint.
    loss_norm: str = "first"
    # Which epoch a run keeps, judged on the validation split (train-split samples outside D
    # and E; never test data): val_task_mint = best validation accuracy + validation
    # membership AUC (plain runs: accuracy alone), val_task = accuracy, val_mint = AUC,
    # last = the last epoch.  See activemint.training.trainer.selection_value.
    select: str = "val_task_mint"
    target_fpr: float = 0.01
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range; raises :class:`ConfigError` (a ``ValueError``).

        Pure: reads no data and builds no model.  ``Trainer`` additionally checks that the
        architecture and taps build and that the device exists, before writing anything.
        """
        for f in fields(self):
            kind, optional = _type_spec(str(f.type))
            setattr(self, f.name, _check_type(f.name, getattr(self, f.name), kind, optional))
        self._check_ranges()

    def _check_ranges(self) -> None:
        from activemint.models import list_archs

        if self.arch not in list_archs():
            close = difflib.get_close_matches(self.arch, list_archs(), n=3)
            raise ConfigError(f"unknown arch {self.arch!r}; known: {', '.join(list_archs())}"
                              + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        if self.taps is not None and (not self.taps or any(not t.strip() for t in self.taps)):
            raise ConfigError(f"taps must be a non-empty list of dotted module names, got {self.taps!r}")
        parse_device(self.device)
        try:
            from activemint.data.streaming import parse_memory

            parse_memory(self.max_memory)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.lambda_task < 0 or self.lambda_mint < 0:
            raise ConfigError(f"lambda_task and lambda_mint must be >= 0, got {self.lambda_task} and {self.lambda_mint}")
        if self.lambda_task + (self.lambda_mint if self.mint else 0.0) == 0:
            raise ConfigError("lambda_task and lambda_mint are both 0 (or lambda_task is 0 without mint): nothing would be trained")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {self.seed}")
        if self.setup not in SETUPS and self.taps is None:
            raise ConfigError(f"setup must be one of {SETUPS} (or give explicit taps), got {self.setup!r}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.select not in SELECTIONS:
            raise ConfigError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.select == "val_mint" and not self.mint:
            raise ConfigError("select=val_mint needs mint=True")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError("precision must be auto, fp32 or bf16")
        for name in ("epochs", "batch_size", "external_batch_size", "head_width", "head_hidden", "head_stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("members", "external", "validation", "calibration", "eval_nonmembers", "test_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if not self.head_lr_scale > 0:
            raise ConfigError(f"head_lr_scale must be > 0, got {self.head_lr_scale}")
        if self.head_norm not in HEAD_NORMS:
            raise ConfigError(f"head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}")
        if self.loss_norm not in LOSS_NORMS:
            raise ConfigError(f"loss_norm must be one of {LOSS_NORMS}, got {self.loss_norm!r}")
        if not 0 < self.target_fpr < 1:
            raise ConfigError("target_fpr must be in (0, 1)")
        if not 0 < self.mint_members <= 1:
            raise ConfigError(f"mint_members must be in (0, 1], got {self.mint_members}")
        if self.audit_views not in ("all", "mint"):
            raise ConfigError(f"audit_views must be all or mint, got {self.audit_views!r}")
        if self.head_epochs < 0:
            raise ConfigError(f"head_epochs must be >= 0, got {self.head_epochs}")
        if self.audit_policy is not None:
            from activemint.transforms import POLICIES

            if self.audit_policy not in POLICIES:
                raise ConfigError(f"audit_policy must be one of {tuple(POLICIES)}, got {self.audit_policy!r}")

    def resolved(self, name: str) -> Any:
        """An optimisation field, falling back to the recipe's value."""
        v = getattr(self, name)
        return RECIPES[self.recipe][name] if v is None else v

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that decide a run, for cache keys: :data:`FINGERPRINT_NEUTRAL` values left out."""
        return {k: v for k, v in self.to_dict().items()
                if not (k in FINGERPRINT_NEUTRAL and v == FINGERPRINT_NEUTRAL[k])}

    def fingerprint(self) -> str:
        """The one config fingerprint: SHA-256 (64 hex digits) of :meth:`fingerprint_fields` as
        compact sorted JSON.  Run caches (``compare``, reference models) use it whole; grid cell
        folders its first 12 digits."""
        from activemint.rundir import sha256_json

        return sha256_json(self.fingerprint_fields())

    def without_mint(self) -> "TrainConfig":
        """The same run without aMINT (``--mint off``): selection by validation accuracy unless ``last``."""
        return dataclasses.replace(self, mint=False, select="last" if self.select == "last" else "val_task")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A validated config from a mapping; unknown keys and bad values raise :class:`ConfigError`."""
        known = [f.name for f in fields(cls)]
        bad_keys = [k for k in d if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(f"config keys must be strings, got {bad_keys[:5]!r}")
        unknown = sorted(set(d) - set(known))
        if unknown:
            hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, n=1)) else k for k in unknown]
            raise ConfigError(f"unknown config keys: {', '.join(hints)}; known keys: {', '.join(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML config file (safe loader: no Python tags).

        Raises:
            ConfigError: the file cannot be read, is not YAML, is not a mapping, or holds an
                unknown key or a bad value; the message names the file (and line for YAML errors).
        """
        d = read_yaml_mapping(path, "config")
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"config {path}: {e}") from e

    def save(self, path: str | Path, **extra: Any) -> None:
        d = {**self.to_dict()}
        with open(path, "w") as f:
            yaml.safe_dump(d, f, sort_keys=False)
        if extra:
            from activemint.rundir import PROVENANCE

            with open(Path(path).with_name(PROVENANCE), "w") as f:
                yaml.safe_dump(extra, f, sort_keys=False)


def read_yaml_mapping(path: str | Path, what: str = "YAML file") -> dict[str, Any]:
    """A YAML mapping read with ``yaml.safe_load``; every failure is one :class:`ConfigError` line.

    A missing file, a folder, a permission problem, bad UTF-8, a YAML syntax error (with its
    line and column), a ``!!python/...`` tag (refused by the safe loader) and a document that
    is not a mapping all name ``path``.  An empty file is ``{}``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; expected a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{what} {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} cannot be read: {getattr(e, 'strerror', None) or e}") from e
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {_yaml_problem(e)}") from e
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # odd scalars the resolver cannot build
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from e
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of keys to values, got a {type(d).__name__}")
    return d


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line from a PyYAML error: what went wrong and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in str(problem):
        problem = f"{problem.strip()}; only plain YAML values are accepted (Python tags are refused)"
    return " ".join(str(problem).split()) + where
