"""The options of ``train`` and ``compare``, derived from :class:`activemint.training.TrainConfig`,
and the runtime options every command that runs a model shares (:func:`add_runtime_args`).

Each TrainConfig field listed in :data:`TRAIN_OPTIONS` becomes ``--field-name``: its type
(int, float, string, flag) and its choices come from the config class, only its help text
is written here.  A few options are not fields: ``--config`` (a YAML file of fields),
``--threads`` (the process's torch threads) and the on/off spellings of boolean fields.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import fields

from activemint.cli.checks import POSITIVE, real

#: The help of the options every command that runs torch takes (``--threads``, ``--device``,
#: ``--data-root``): one text, used by ``train``/``compare`` (TrainConfig fields) and by
#: :func:`add_runtime_args` (the commands that load a finished run).
RUNTIME_HELP = {
    "threads": "CPU threads for torch (default: one per core; idle threads sleep: OMP_WAIT_POLICY=PASSIVE unless your "
               "environment sets it, see activemint.threads)",
    "device": "where the model runs: auto (the first GPU if any, else the CPU), cpu, cuda, cuda:1 ... (default: auto; "
              "model-edits: cpu, as its int8 edits run on the CPU only)",
    "data_root": "folder holding the data set in its standard on-disk layout",
}
RUN_DATA_ROOT_HELP = (RUNTIME_HELP["data_root"] + "; default: the run's own (data_root in its config.yaml). The data "
                      "found there is checked against the run's manifest (pixel SHA-256) before use")

#: (argument group, [(field or option name, help)]) in the order ``--help`` lists them.
TRAIN_OPTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ('data', [
        ('config', 'YAML file with TrainConfig keys; command-line options override it'),
        ('dataset', 'data set name (default fashion-mnist); see `activemint datasets`'),
        ('data_root', RUNTIME_HELP['data_root']),
        ('download', 'allow downloading the data set (off by default: nothing is ever fetched otherwise)'),
        ('max_memory', 'memory budget of the decoded images, e.g. 2GB (default auto: half the available memory; off: no limit); image folders above it are streamed from disk'),
        ('members', "number of members D (training set); default: the paper's size"),
        ('external', 'number of external non-members E that train the MINT head'),
        ('validation', 'held-out training-split samples for model selection'),
        ('calibration', 'held-out non-members that fix calibrated thresholds'),
        ('eval_nonmembers', 'evaluation non-members drawn from the test split'),
    ]),
    ('model', [
        ('arch', 'architecture (default small_cnn; see `activemint archs`), or any timm:NAME / torchvision:NAME (random weights, nothing downloaded)'),
        ('arch_weights', 'local weights file the backbone starts from (.safetensors, or a weights-only torch file); tensors that do not fit stay random'),
        ('setup', 'where the MINT head taps the model'),
        ('taps', 'comma-separated dotted module names to tap instead of a setup'),
        ('mint', 'on: train with aMINT (default); off: plain training on D alone'),
        ('head_width', 'channels of each MINT head branch (default 64)'),
        ('head_hidden', "hidden units of the MINT head's MLP (default 128)"),
        ('head_stride', "stride of the MINT head's first convs on maps >= 8 px (default 1; 2 = a lighter head)"),
        ('head_conv', "the MINT head's 3x3 convs: full (default, the paper's) or separable (depthwise + pointwise, lighter)"),
        ('head_pool', "the MINT head's pooling: max (default, the paper's), blur (anti-aliased), global-max / global-avg (no subsampling, one global max / mean); for shifted copies"),
    ]),
    ('optimisation', [
        ('epochs', 'passes over the members (default 10)'),
        ('batch_size', 'member batch size (default 64)'),
        ('external_batch_size', 'external batch size per step (default 64)'),
        ('external_grad', "on: the MINT loss on externals also trains the backbone (the paper, default); off: externals' forward without a graph (cheaper steps)"),
        ('recipe', 'paper: Adam lr 1e-4, no augmentation; improved: AdamW 1e-3, cosine, shifts'),
        ('optimizer', "override the recipe's optimiser"),
        ('lr', "override the recipe's learning rate"),
        ('weight_decay', "override the recipe's weight decay"),
        ('schedule', "override the recipe's learning-rate schedule"),
        ('lr_scaling', 'scale --lr from the paper\'s batch of 64 to --batch-size: none (default), linear (SGD) or sqrt (Adam)'),
        ('warmup_epochs', 'linear learning-rate warm-up over this many epochs (default 0)'),
        ('augment', "override the recipe's augmentation (random 2-px shifts)"),
        ('lambda_task', 'λ1, weight of the normalised task loss (default 1)'),
        ('lambda_mint', 'λ2, weight of the normalised MINT loss (default 1)'),
        ('head_norm', 'BatchNorm in the MINT head: none, before its MLP (mlp, default: the head learns from the first epochs), also in its conv branches (branch)'),
        ('head_lr_scale', "the MINT head's learning rate as a multiple of --lr"),
        ('loss_norm', 'first: each loss term divided by its first-batch value (paper); none: raw sum'),
        ('mint_members', 'fraction of D whose membership the MINT loss sees (default 1; the task loss always sees all of D)'),
        ('audit_policy', 'robust aMINT: train the MINT head on transformed views ({policies}; see `activemint transforms`); default: exact images. With --audit-views all the classifier trains on the views too, also with --mint off (the plain twin of a robust run)'),
        ('audit_views', 'with --audit-policy: transform the inputs of both losses (all, default) or of the MINT loss only (mint)'),
        ('view_curriculum_epochs', "with --audit-policy: the policy's probability of a view ramps linearly from 0 (exact images) at the first epoch to its own at this epoch (default 0: none)"),
        ('view_pairs', "with --audit-policy: weight of a contrastive term pulling the MINT head's embeddings of two views of one member together (NT-Xent over the batch's members; default 0: none; costs two extra truncated forwards a step)"),
        ('mint_flood', 'flooding level b of the MINT loss: below b the step climbs back to b instead of driving the loss to zero (Ishida et al. 2020; default 0: none)'),
        ('head_epochs', 'extra epochs training only the MINT head, backbone frozen (default 0)'),
        ('tap_noise', "std of multiplicative Gaussian noise on the taps while the MINT head trains (default 0 = none; tried as a lever against pruning: no help at 0.1 or 0.3, docs/model-edits.md)"),
        ('select', 'which epoch to keep, judged on the validation split: best accuracy + membership AUC (default), best accuracy, best membership AUC, or the last epoch'),
        ('target_fpr', 'FPR of the calibrated threshold (default 0.01)'),
        ('seed', 'seed of splits, initialisation and batch order (default 0)'),
    ]),
    ('externals (more non-members for the MINT head; docs/what-amint-detects.md)', [
        ('external_views', "an audit policy's views of the externals only, members exact ({policies})"),
        ('external_source', "add another data set's train split (converted to this run's images) to the externals, e.g. digits"),
        ('external_source_root', "--external-source's data root (default: its own)"),
        ('external_source_size', "a seeded subset of this many --external-source images (default: all)"),
        ('external_per_epoch', 'each epoch draws its externals from a fresh seeded subset of this many (default: all)'),
        ('external_generated', 'fraction of each external batch replaced by blends of two externals (default 0)'),
        ('external_generator', 'how --external-generated blends them: mixup (default) or cutmix'),
    ]),
    ('hardware', [
        ('device', RUNTIME_HELP['device']),
        ('precision', 'auto: bf16 autocast on GPU, fp32 on CPU'),
        ('channels_last', 'channels-last memory format (GPU)'),
        ('compile', 'torch.compile the model'),
        ('data_path', 'where batches are built: device (images, augmentation, audit views on the GPU, no per-step sync), host, or auto (default: device on CUDA, host on CPU)'),
        ('threads', RUNTIME_HELP['threads']),
    ]),
]

#: Boolean fields spelled ``--field on|off`` (the others are ``--field`` flags).
ON_OFF = ("mint", "augment", "external_grad")
#: Fields whose allowed values come from a registry filled at import time: the config checks them.
NO_CHOICES = ("audit_policy", "external_views")
#: Options that are not TrainConfig fields.
NOT_FIELDS = ("config", "threads")
#: The set-level tests `audit` and `model-edits` choose from (activemint.audit.settest.TESTS, spelled
#: here so that building the parser does not import the audit; a test keeps the two equal).
SET_TESTS = ("mixture", "exceedance", "mann_whitney")


def _field_kinds() -> dict[str, str]:
    from activemint.config import _type_spec
    from activemint.training.config import TrainConfig

    return {f.name: _type_spec(str(f.type))[0] for f in fields(TrainConfig)}


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Add the TrainConfig options (and ``--config``, ``--threads``) to ``p``, in groups."""
    from activemint.training.config import TrainConfig

    kinds = _field_kinds()
    for group, options in TRAIN_OPTIONS:
        g = p.add_argument_group(group)
        for name, help_ in options:
            flag = "--" + name.replace("_", "-")
            if name in ("audit_policy", "external_views"):  # the registered policies' names
                from activemint.transforms import POLICIES

                help_ = help_.replace("{policies}", ", ".join(POLICIES))
            if name == "config":
                g.add_argument(flag, help=help_)
            elif name == "threads":
                g.add_argument(flag, type=POSITIVE, help=help_)
            elif name in ON_OFF:
                g.add_argument(flag, choices=["on", "off"], help=help_)
            elif kinds[name] == "bool":
                g.add_argument(flag, action="store_true", default=None, help=help_)
            else:
                kw: dict = {"type": {"int": int, "float": float}[kinds[name]]} if kinds[name] in ("int", "float") else {}
                if name in TrainConfig.choices and name not in NO_CHOICES:
                    kw["choices"] = list(TrainConfig.choices_of(name))
                g.add_argument(flag, help=help_, **kw)


def config_from_args(args: argparse.Namespace, *, announce: bool = True):
    """A TrainConfig from ``--config`` (if any) overridden by explicit options.

    A data set given by an alias is stored under its canonical name and announced here, or,
    with ``announce=False``, by the Trainer's plan."""
    from activemint.training import TrainConfig

    base = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    for _, options in TRAIN_OPTIONS:
        for name, _ in options:
            v = getattr(args, name, None)
            if name in NOT_FIELDS or v is None:
                continue
            if name == "taps":
                v = [t.strip() for t in v.split(",") if t.strip()]
            elif name in ON_OFF:
                v = v == "on"
            base[name] = v
    cfg = TrainConfig.from_dict(base)
    return canonical_dataset(cfg, None if announce else False)


def canonical_dataset(cfg, announce=None):
    """``cfg`` announced when its data set was given as an alias (TrainConfig stores the canonical name).

    ``--dataset fashion_mnist`` (or ``fmnist``) trains ``fashion-mnist`` and its config.yaml
    says ``fashion-mnist``, so that runs, caches and tables name the data set one way.
    ``announce=False`` leaves the announcement to the Trainer's plan (``train``: it goes into
    train.log too); otherwise it is printed here and the returned config no longer carries it.
    """
    import dataclasses
    import sys

    note = cfg.alias_note()
    if note is None or announce is False:
        return cfg
    (announce or (lambda m: print(m, file=sys.stderr, flush=True)))(note)
    return dataclasses.replace(cfg)  # a copy made with the canonical name: nothing left to announce


def add_engine_args(g) -> None:
    """--engine, --ray-address, --cpus-per-task, --gpus-per-task (:mod:`activemint.engine`)."""
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where independent runs train: local worker processes (default) or Ray tasks "
                        "(pip install activemint[ray]); results are the same for the same seeds and threads per task")
    g.add_argument("--ray-address", help="with --engine ray: join this Ray cluster (e.g. auto, or HOST:6379 of `ray start "
                                         "--head`) instead of starting a local Ray instance")
    g.add_argument("--cpus-per-task", type=POSITIVE, help="CPUs (torch threads) per task (ray default 1; local default "
                                                     "cores // workers)")
    g.add_argument("--gpus-per-task", type=real(0, math.inf), default=0, help="with --engine ray: GPUs each task reserves (default 0)")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """The engine options of ``args``, checked (a missing Ray fails now, before any training)."""
    from activemint import engine

    kw = {"engine": args.engine, "ray_address": args.ray_address, "cpus_per_task": args.cpus_per_task,
          "gpus_per_task": args.gpus_per_task}
    engine.check_options(workers=getattr(args, "workers", None), **kw)
    if args.engine == "ray":
        engine.require_ray()
    return kw


def add_runtime_args(p: argparse.ArgumentParser, *, data_root_help: str = RUN_DATA_ROOT_HELP, device: str = "auto") -> None:
    """``--threads``, ``--device`` and ``--data-root``: the options of every command that runs a model.

    ``train`` and ``compare`` get the same three (with the same help) as TrainConfig fields
    through :func:`add_train_args`; the other commands call this.  ``--threads`` is applied
    by :func:`activemint.cli.main` before the command runs.
    """
    g = p.add_argument_group("hardware and data")
    g.add_argument("--threads", type=POSITIVE, help=RUNTIME_HELP["threads"])
    g.add_argument("--device", default=device, help=RUNTIME_HELP["device"])
    g.add_argument("--data-root", help=data_root_help)


def command_line(args: argparse.Namespace) -> str:
    """The full command as the user typed it (``activemint <cmd> ...``), for the reports to record."""
    import shlex

    argv = getattr(args, "argv", None)
    if argv is None:  # parsed outside activemint.cli.main
        import sys

        argv = sys.argv[1:]
    return "activemint " + shlex.join(argv)


def make_config(cls, flags: dict[str, str], **values):
    """``cls(**values)``, with a bad value reported by the option that gave it, never by the class.

    ``flags`` maps a field to its option (``{"n_models": "--reference-models"}``); the error
    reads ``--reference-models must be a number in [4, 4096], got 2`` instead of
    ``ReferenceConfig.n_models must ...``.
    """
    import re

    from activemint.errors import UserError

    try:
        return cls(**values)
    except cls.error as e:
        msg = str(e)
        for field, flag in flags.items():
            msg = re.sub(rf"^(?:{cls.__name__}\.)?{field}\b", flag, msg)
        msg = re.sub(rf"\b{cls.__name__}\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), msg)
        raise UserError(msg) from e
