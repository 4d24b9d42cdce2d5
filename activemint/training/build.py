"""What a run is built from: its device, its model (plain or audited), and what its files record about both."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

import activemint
from activemint.mint import EnhancedAuditedModel, MultitaskLoss, PlainModel
from activemint.models import create_model, tap_points
from activemint.models.external import ArchWeightsError, load_local_weights
from activemint.training import distributed
from activemint.training.config import ConfigError, TrainConfig, parse_device
from activemint.training.data import RunData


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (``auto`` = the first GPU if any, else CPU).

    Raises:
        ConfigError: a malformed name, or a device this machine does not have (``cuda``
            without a GPU, ``cuda:3`` on a one-GPU machine, ``mps`` off Apple silicon).
    """
    parse_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device {name!r}: no CUDA GPU is available on this machine; use --device cpu or auto")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device {name!r}: this machine has {n} CUDA GPU{'s' if n != 1 else ''} (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r}: MPS is not available on this machine; use --device cpu or auto")
    return dev


def preflight(cfg: TrainConfig, data: RunData | None = None) -> torch.device:
    """Check what only a build can tell, before a run writes anything; returns the device.

    The data set must be registered, the device must exist here, and the architecture with
    its taps must build for the data set's registered input shape (built on the ``meta``
    device: no memory, no weights, about a second for the largest models; the global RNG
    is left as it was).  Raises :class:`ConfigError` or :class:`DatasetError`.
    """
    from activemint.data import dataset_info

    device = resolve_device(cfg.device)
    if data is not None:
        shape, n_classes = data.train.input_shape, data.train.num_classes
    else:
        info = dataset_info(cfg.dataset)
        shape, n_classes = info.input_shape, info.num_classes or 2
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            build_model(cfg, tuple(shape), n_classes)
    except ArchWeightsError as e:
        raise ConfigError(str(e)) from e
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError, AssertionError) as e:
        what = f"taps {cfg.taps}" if cfg.taps else f"setup {cfg.setup!r}"
        msg = " ".join(str(e).split("Exception raised from")[0].split())  # no C++ stack from torch
        msg = msg if len(msg) <= 300 else msg[:297] + "..."
        raise ConfigError(f"arch {cfg.arch!r} with {what} does not build for {cfg.dataset} inputs {tuple(shape)}: {msg}") from e
    return device


def build_model(cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The audited architecture; wrapped as an Enhanced Audited Model when ``cfg.mint``.

    A plain model is wrapped too when asked for by passive methods; here ``mint=False``
    gives the bare backbone so a plain run costs exactly plain training.
    """
    torch.manual_seed(cfg.seed)
    backbone = create_model(cfg.arch, in_chans=input_shape[0], num_classes=num_classes, img_size=input_shape[1])
    if cfg.arch_weights:
        load_local_weights(backbone, cfg.arch_weights)
    if not cfg.mint:
        return PlainModel(backbone)
    taps = config_taps(cfg)
    model = EnhancedAuditedModel(
        backbone, taps, input_shape=input_shape, head_width=cfg.head_width, head_hidden=cfg.head_hidden,
        head_stride=cfg.head_stride, head_norm=cfg.head_norm, head_conv=cfg.head_conv, head_pool=cfg.head_pool,
    )
    model.external_grad = cfg.external_grad
    model.set_tap_noise(cfg.tap_noise, cfg.seed)
    return model


def build_loss(cfg: TrainConfig) -> MultitaskLoss:
    """The run's multitask loss (weights, first-batch normalisation, MINT flooding) from its config."""
    return MultitaskLoss(lambda_task=cfg.lambda_task, lambda_mint=cfg.lambda_mint, normalize=cfg.loss_norm == "first",
                         flood=cfg.mint_flood)


def config_taps(cfg: TrainConfig) -> list[str]:
    """The layers a config taps: its explicit ``taps``, else its setup's on its architecture.

    The one place this is derived; a saved run's taps are those its model.json records
    (:attr:`activemint.runs.Run.taps`).
    """
    return list(cfg.taps) if cfg.taps else tap_points(cfg.arch, cfg.setup)


def provenance() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(activemint.__file__).parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "activemint": activemint.__version__, "git_commit": commit, "torch": str(torch.__version__),
        "python": platform.python_version(), "machine": platform.platform(), "processor": platform.machine(),
        "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **({"torchrun": {"world_size": distributed.world(), "backend": distributed.backend()}} if distributed.is_distributed() else {}),
    }


def checkpoint_metadata(cfg: TrainConfig, input_shape, num_classes: int, epoch: int) -> dict[str, Any]:
    """What a checkpoint's JSON says about the model it holds."""
    return {
        "format": "activemint-checkpoint/1", "arch": cfg.arch, "mint": cfg.mint,
        "setup": cfg.setup if cfg.mint else None,
        "taps": config_taps(cfg) if cfg.mint else None,
        "dataset": cfg.dataset, "input_shape": list(input_shape), "num_classes": num_classes,
        "head_width": cfg.head_width, "head_hidden": cfg.head_hidden, "head_stride": cfg.head_stride,
        "head_norm": cfg.head_norm, "head_conv": cfg.head_conv, "head_pool": cfg.head_pool, "activemint": activemint.__version__,
        "epoch": epoch,
    }
