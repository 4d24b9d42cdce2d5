"""Typed run configuration: a config fully describes a run and is saved beside its results."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from activemint.config import ConfigBase, ConfigError, Range, read_yaml_mapping
from activemint.setups import SETUPS

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("val_task_mint", "val_task", "val_mint", "last")
LOSS_NORMS = ("first", "none")
HEAD_NORMS = ("none", "mlp", "branch")
HEAD_CONVS = ("full", "separable")
HEAD_POOLS = ("max", "blur", "global-max", "global-avg")
PRECISIONS = ("auto", "fp32", "bf16")
DATA_PATHS = ("auto", "host", "device")
LR_SCALINGS = ("none", "linear", "sqrt")
#: The batch size at which ``lr`` is meant (the paper's); ``lr_scaling`` scales from it.
LR_REFERENCE_BATCH = 64
AUDIT_VIEWS = ("all", "mint")
#: How a generated external is made from two externals (activemint.training.externals.generate).
EXTERNAL_GENERATORS = ("mixup", "cutmix")

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
    "max_memory": None, "external_grad": True, "head_conv": "full", "arch_weights": None,
    "data_path": "auto", "lr_scaling": "none", "warmup_epochs": 0.0,
    "tap_noise": 0.0,
    "external_views": None, "external_source": None, "external_source_root": None, "external_source_size": None,
    "external_per_epoch": None, "external_generated": 0.0, "external_generator": "mixup",
    "head_pool": "max", "view_curriculum_epochs": 0, "view_pairs": 0.0, "mint_flood": 0.0,
}


def parse_device(name: object) -> str:
    """Check the syntax of a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Returns the name; raises :class:`ConfigError` naming the accepted forms.  Whether the
    device exists on this machine is checked by :func:`activemint.training.build.resolve_device`.
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


@dataclass
class TrainConfig(ConfigBase):
    """Everything that defines a training run (plain or active).

    Split sizes left at ``None`` take the paper's defaults for the data set.  Types, bounds,
    choices, unknown keys and YAML come from :class:`activemint.config.ConfigBase`.
    """

    bounds: ClassVar[dict[str, Range]] = {
        "lr": Range(0, lo_open=True), "weight_decay": Range(0), "head_lr_scale": Range(0, lo_open=True),
        **{k: Range(1) for k in ("epochs", "batch_size", "external_batch_size", "head_width", "head_hidden", "head_stride")},
        **{k: Range(1) for k in ("members", "external", "validation", "calibration", "eval_nonmembers", "test_samples")},
        "target_fpr": Range(0, 1, lo_open=True, hi_open=True), "mint_members": Range(0, 1, lo_open=True),
        "head_epochs": Range(0), "warmup_epochs": Range(0),
        "tap_noise": Range(0, 10),
        "external_source_size": Range(1), "external_per_epoch": Range(1), "external_generated": Range(0, 1),
        "view_curriculum_epochs": Range(0), "view_pairs": Range(0), "mint_flood": Range(0, 0.69),
    }
    choices: ClassVar[dict[str, Any]] = {
        "setup": SETUPS, "recipe": lambda: tuple(RECIPES), "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
        "select": SELECTIONS, "precision": PRECISIONS, "head_norm": HEAD_NORMS, "head_conv": HEAD_CONVS, "loss_norm": LOSS_NORMS,
        "audit_views": AUDIT_VIEWS, "audit_policy": lambda: tuple(_policies()),
        "data_path": DATA_PATHS, "lr_scaling": LR_SCALINGS,
        "external_views": lambda: tuple(_policies()), "external_generator": EXTERNAL_GENERATORS,
        "head_pool": HEAD_POOLS,
    }
    unknown_what: ClassVar[str] = "config keys"

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    download: bool = False
    # Memory budget of the decoded images ("2GB", "auto" = None = half the available memory,
    # "off"): a folder-based data set above it is streamed from disk (same samples and figures).
    max_memory: str | None = None
    arch: str = "small_cnn"
    # Local weights the backbone starts from (safetensors, or a weights-only torch file); tensors
    # whose shape does not fit (another classifier) stay random.  None: random initialisation.
    arch_weights: str | None = None
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
    # Large batches: the learning rate actually used is ``lr`` scaled from the paper's batch of
    # 64 members (LR_REFERENCE_BATCH): "none", "linear" (lr x batch/64; Goyal et al. 2017, for
    # SGD) or "sqrt" (lr x sqrt(batch/64); the rule for Adam-type optimisers, Malladi et al.
    # 2022).  See effective_lr and docs/scaling.md.
    lr_scaling: str = "none"
    # Linear learning-rate warm-up from lr/steps to lr over this many epochs (fractions allowed);
    # 0 = none.  With a cosine schedule the decay follows the warm-up's factor.
    warmup_epochs: float = 0.0
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
    # With mint off, "all" keeps the views as the classifier's augmentation: the plain twin of a
    # robust run (``--baseline``) trains on the same images.
    audit_views: str = "all"
    # Extra epochs that train only the MINT head (backbone frozen) after the last epoch.
    head_epochs: int = 0
    # Whether the MINT loss on the externals back-propagates into the backbone (the paper's
    # joint training: True).  False: the externals' truncated forward runs without a graph
    # (the backbone learns from the members' membership logits; the head from both), which
    # removes the externals' backward from every step.
    external_grad: bool = True
    head_width: int = 64
    head_hidden: int = 128
    head_stride: int = 1
    # The head branches' 3x3 convs: "full" (the paper's) or "separable" (depthwise + pointwise).
    head_conv: str = "full"
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
    # last = the last epoch.  See activemint.training.selection.selection_value.
    select: str = "val_task_mint"
    target_fpr: float = 0.01
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    # Where batches are assembled: "host" (the permutation and augmentation draws on the CPU,
    # the audit policy's views with Pillow, losses read every step), "device" (the split's
    # uint8 images on the device, batches indexed, augmented, viewed and normalised there from
    # a device generator; losses summed on the device and read once per epoch; channels-last
    # on CUDA) or "auto" = device on CUDA, host elsewhere (the CPU's figures stay the host's).
    data_path: str = "auto"
    # Multiplicative Gaussian noise on the tapped activations the MINT head reads while it trains
    # (joint training, head_epochs, a re-attached head): each activation a -> a * (1 + tap_noise * N(0, 1)),
    # drawn from a generator seeded by ``seed``; the backbone's own forward and every evaluation see
    # the exact activations.  0 = none (the paper).  Tried as a lever for a head that survives
    # pruning of the backbone; on the main job it did not help (docs/model-edits.md).
    tap_noise: float = 0.0
    # Where the externals come from (activemint.training.externals; what each buys:
    # benchmarks/results/externals-levers-cpu.md).  All at their defaults: the external split, as before.
    # An audit policy's views of the externals only (members exact); not with audit_policy.
    external_views: str | None = None
    # Another registered data set whose train split (converted to the run's channels and size)
    # is added to the externals; its root (None: its default) and a seeded subset size (None: all).
    external_source: str | None = None
    external_source_root: str | None = None
    external_source_size: int | None = None
    # Each epoch draws its externals from a fresh seeded subset of this many of them (None: all).
    external_per_epoch: int | None = None
    # The fraction of every external batch replaced by blends of two of its externals (never
    # members), made by external_generator: "mixup" (pixel mix) or "cutmix" (a pasted box).
    external_generated: float = 0.0
    external_generator: str = "mixup"
    extra: dict[str, Any] = field(default_factory=dict)
    # How the MINT head's conv branches subsample and reduce a tapped map (activemint.mint.head):
    # "max" (the paper's max-pool, then a global max), "blur" (anti-aliased max-pool, Zhang
    # 2019), "global-max" / "global-avg" (no subsampling, one global max / mean).  For shifted
    # and re-framed copies; docs/near-copy-heads.md.
    head_pool: str = "max"
    # A view curriculum for audit_policy: the policy's probability of a transformed view rises
    # linearly from 0 (exact images) at the first epoch to its own value at this epoch, and
    # stays there; 0 = none (the policy's probability from the first epoch).
    view_curriculum_epochs: int = 0
    # Contrastive pairs of views (audit_policy): weight of an NT-Xent term that pulls the MINT
    # head's embeddings of two views of one member together and apart from the other members'
    # (activemint.mint.loss.view_pair_loss); 0 = none.  docs/near-copy-heads.md.
    view_pairs: float = 0.0
    # Flooding of the MINT loss (activemint.mint.loss.MultitaskLoss): below this batch loss the
    # step climbs back up to it, so the head cannot drive a small external set to zero loss
    # (memorise it); 0 = none (the paper).  Under torchrun each process floods its own share of
    # the batch.  Measured: no help (benchmarks/results/externals-ratio-cpu.md).
    mint_flood: float = 0.0

    def validate(self) -> None:
        """Check every field's type and range; raises :class:`ConfigError` (a ``ValueError``).

        Pure: reads no data and builds no model.  ``Trainer`` additionally checks that the
        architecture and taps build and that the device exists, before writing anything.
        """
        from activemint.models import list_archs
        from activemint.models.external import check_external, is_external, is_user_arch

        super().validate()
        if is_external(self.arch):
            try:
                check_external(self.arch)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        elif not is_user_arch(self.arch) and self.arch not in list_archs():
            close = difflib.get_close_matches(self.arch, list_archs(), n=3)
            raise ConfigError(f"unknown arch {self.arch!r}; known: {', '.join(list_archs())}, or timm:NAME / torchvision:NAME"
                              + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        if self.taps is not None and (not self.taps or any(not t.strip() for t in self.taps)):
            raise ConfigError(f"taps must be a non-empty list of dotted module names, got {self.taps!r}")
        parse_device(self.device)
        try:
            from activemint.data.memory import parse_memory

            parse_memory(self.max_memory)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if self.lambda_task < 0 or self.lambda_mint < 0:
            raise ConfigError(f"lambda_task and lambda_mint must be >= 0, got {self.lambda_task} and {self.lambda_mint}")
        if self.lambda_task + (self.lambda_mint if self.mint else 0.0) == 0:
            raise ConfigError("lambda_task and lambda_mint are both 0 (or lambda_task is 0 without mint): nothing would be trained")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {self.seed}")
        if self.select == "val_mint" and not self.mint:
            raise ConfigError("select=val_mint needs mint=True")
        if self.view_curriculum_epochs and not self.audit_policy:
            raise ConfigError(f"view_curriculum_epochs {self.view_curriculum_epochs} needs an audit_policy (it ramps the policy's views)")
        if self.view_pairs and not (self.audit_policy and self.mint):
            raise ConfigError(f"view_pairs {self.view_pairs} needs mint=True and an audit_policy (it pairs two of the policy's views of a member)")
        self._validate_externals()

    def _validate_externals(self) -> None:
        """The externals' fields (activemint.training.externals): what each needs, one line each."""
        if self.external_views is not None and self.audit_policy is not None:
            raise ConfigError("external_views with audit_policy: the audit policy already views the externals "
                              "(use one of them; views of members and externals for the MINT loss: --audit-views mint)")
        if self.external_source is None:
            if self.external_source_root is not None or self.external_source_size is not None:
                raise ConfigError("external_source_root / external_source_size need external_source")
            return
        from activemint.data import DatasetError, dataset_info

        try:
            name = dataset_info(self.external_source).name
        except DatasetError as e:
            raise ConfigError(f"external_source: {e}") from None
        if name == self.dataset:
            raise ConfigError(f"external_source {self.external_source!r} is the run's own data set, whose train split "
                              "holds the members; more externals from it: raise --external")

    def __post_init__(self) -> None:
        super().__post_init__()  # types first: dataset is a string from here on
        self._canonical_dataset()

    def _canonical_dataset(self) -> None:
        """Store a registered data set under its one canonical name (``fashion_mnist`` -> ``fashion-mnist``).

        The name given is kept in :attr:`dataset_alias` so that whoever logs the run can say
        so (the Trainer's plan line); it is not a field: config.yaml, fingerprints and tables
        name the data set one way.  A name the registry does not know is left as it is.
        """
        from activemint.data import DatasetError, dataset_info

        try:
            name = dataset_info(self.dataset).name
        except DatasetError:
            return
        if name != self.dataset:
            self.__dict__["_dataset_given"] = self.dataset
            self.dataset = name

    @property
    def dataset_alias(self) -> str | None:
        """The alias this config was made with (e.g. ``fashion_mnist``), or None when it was given canonical."""
        return self.__dict__.get("_dataset_given")

    def alias_note(self) -> str | None:
        """``data set 'fashion_mnist' is an alias of 'fashion-mnist': using (and recording) 'fashion-mnist'``, or None."""
        given = self.dataset_alias
        if given is None:
            return None
        return f"data set {given!r} is an alias of {self.dataset!r}: using (and recording) {self.dataset!r}"

    def skip_choice(self, name: str) -> bool:
        return name == "setup" and self.taps is not None  # explicit taps: the setup is only a label

    def resolved(self, name: str) -> Any:
        """An optimisation field, falling back to the recipe's value."""
        v = getattr(self, name)
        return RECIPES[self.recipe][name] if v is None else v

    def effective_lr(self) -> float:
        """``lr`` (or the recipe's) after ``lr_scaling`` from the reference batch of 64."""
        lr = float(self.resolved("lr"))
        ratio = self.batch_size / LR_REFERENCE_BATCH
        if self.lr_scaling == "linear":
            return lr * ratio
        if self.lr_scaling == "sqrt":
            return lr * ratio ** 0.5
        return lr

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that decide a run, for cache keys: :data:`FINGERPRINT_NEUTRAL` values left out."""
        return {k: v for k, v in self.to_dict().items()
                if not (k in FINGERPRINT_NEUTRAL and v == FINGERPRINT_NEUTRAL[k])}

    def fingerprint(self) -> str:
        """The one config fingerprint: SHA-256 (64 hex digits) of :meth:`fingerprint_fields` as
        compact sorted JSON.  Run caches (``compare``, reference models) use it whole; grid cell
        folders its first 12 digits."""
        from activemint.io import sha256_json

        return sha256_json(self.fingerprint_fields())

    def without_mint(self) -> TrainConfig:
        """The same run without aMINT (``--mint off``): selection by validation accuracy unless ``last``."""
        return dataclasses.replace(self, mint=False, select="last" if self.select == "last" else "val_task")


def _policies():
    from activemint.transforms import POLICIES

    return POLICIES


__all__ = ["AUDIT_VIEWS", "EXTERNAL_GENERATORS", "DATA_PATHS", "LR_SCALINGS", "HEAD_CONVS", "HEAD_NORMS", "HEAD_POOLS", "LOSS_NORMS", "OPTIMIZERS", "PRECISIONS", "RECIPES", "SCHEDULES", "SELECTIONS",
           "SETUPS", "ConfigError", "TrainConfig", "parse_device", "read_yaml_mapping"]
