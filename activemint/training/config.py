"""Typed run configuration: a config fully describes a run and is saved beside its results."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

SETUPS = ("entry", "middle", "output")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("last", "val_task", "val_mint")

# Recipes fill the optimisation fields a user did not set explicitly.
RECIPES: dict[str, dict[str, Any]] = {
    # The paper: Adam, lr 1e-4, no augmentation, no weight decay, constant lr.
    "paper": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant", "augment": False},
    # A stronger recipe for a more useful audited model: AdamW + cosine decay + light
    # augmentation (random 2-px shifts; flips are left to the user via augment_flip).
    "improved": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "schedule": "cosine", "augment": True},
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (plain or active).

    Split sizes left at ``None`` take the paper's defaults for the data set.
    """

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    download: bool = False
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
    select: str = "last"
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
        if self.setup not in SETUPS and self.taps is None:
            raise ValueError(f"setup must be one of {SETUPS} (or give explicit taps), got {self.setup!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.select == "val_mint" and not self.mint:
            raise ValueError("select=val_mint needs mint=True")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError("precision must be auto, fp32 or bf16")
        for name in ("epochs", "batch_size", "external_batch_size", "head_width", "head_hidden", "head_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("members", "external", "validation", "calibration", "eval_nonmembers", "test_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not 0 < self.target_fpr < 1:
            raise ValueError("target_fpr must be in (0, 1)")
        if not 0 < self.mint_members <= 1:
            raise ValueError(f"mint_members must be in (0, 1], got {self.mint_members}")
        if self.audit_views not in ("all", "mint"):
            raise ValueError(f"audit_views must be all or mint, got {self.audit_views!r}")
        if self.head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {self.head_epochs}")
        if self.audit_policy is not None:
            from activemint.transforms import POLICIES

            if self.audit_policy not in POLICIES:
                raise ValueError(f"audit_policy must be one of {tuple(POLICIES)}, got {self.audit_policy!r}")

    def resolved(self, name: str) -> Any:
        """An optimisation field, falling back to the recipe's value."""
        v = getattr(self, name)
        return RECIPES[self.recipe][name] if v is None else v

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        with open(path) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a config must be a YAML mapping")
        return cls.from_dict(d)

    def save(self, path: str | Path, **extra: Any) -> None:
        d = {**self.to_dict()}
        with open(path, "w") as f:
            yaml.safe_dump(d, f, sort_keys=False)
        if extra:
            with open(Path(path).with_name("provenance.yaml"), "w") as f:
                yaml.safe_dump(extra, f, sort_keys=False)
