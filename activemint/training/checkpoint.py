"""Checkpoints: safetensors weights + JSON metadata; training state loaded without pickle code.

Models come from other parties, so nothing here ever unpickles arbitrary objects: weights
are safetensors (a flat tensor format), metadata is JSON, and the optimiser / RNG state of
``--resume`` is read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from activemint.errors import UserError


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or does not fit the model."""


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json, atomically."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": "activemint"}))
    meta_path = path.with_suffix(".json")
    _atomic_write(meta_path, lambda p: p.write_text(json.dumps(metadata, indent=2, default=str)))


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta_path = Path(path).with_suffix(".json")
    try:
        d = json.loads(meta_path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is missing") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise CheckpointError(f"checkpoint metadata {meta_path} must be a JSON object")
    return d


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load safetensors weights into ``model``; returns the model keys left unfilled.

    Shapes and names are checked against the model and a mismatch raises
    :class:`CheckpointError` naming the first offending tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    missing = sorted(set(own) - set(tensors))
    wrong = [k for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)]
    if unexpected or wrong or (strict and missing):
        raise CheckpointError(
            f"{path} does not fit this model: unexpected {unexpected[:5]}, missing {missing[:5]}, "
            f"wrong shape {wrong[:5]}"
        )
    model.load_state_dict(tensors, strict=False)
    return missing


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    _atomic_write(Path(path), lambda p: torch.save(state, p))


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The optimiser / RNG / epoch state of ``--resume``, read without running pickle code.

    Raises:
        CheckpointError: one line naming ``path`` when the file is missing, refused by the
            safe loader (anything but tensors and plain containers), or not shaped like a
            state this trainer wrote (:func:`check_train_state`).
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter is not the user's business
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"no training state at {path}") from e
    except Exception as e:  # the safe unpickler refuses anything but tensors and containers
        raise CheckpointError(f"{path} is not a valid training state (refused by the safe loader: {_safe_reason(e)}); "
                              "it was not written by activemint or is corrupt") from e
    check_train_state(state, path)
    return state


#: What ``Trainer`` stores in train_state.pt: key -> accepted types.
TRAIN_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "optimizer": (dict,), "scheduler": (dict,), "task0": (float, int), "mint0": (float, int),
    "generator": (torch.Tensor,), "torch_rng": (torch.Tensor,), "epoch": (int,), "best": (float, int),
}


def check_train_state(state: Any, path: str | Path) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` looks like a state the trainer wrote.

    A mapping with every key of :data:`TRAIN_STATE_TYPES` of the right type, an optimiser
    state with ``state`` and ``param_groups``, RNG states as uint8 tensors and an epoch >= 0.
    """
    where = f"{path} is not a valid training state"
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a mapping, got {type(state).__name__}")
    missing = [k for k in TRAIN_STATE_TYPES if k not in state]
    if missing:
        raise CheckpointError(f"{where}: missing {', '.join(missing)}")
    for k, types in TRAIN_STATE_TYPES.items():
        v = state[k]
        if not isinstance(v, types) or isinstance(v, bool):
            raise CheckpointError(f"{where}: {k} is a {type(v).__name__}, expected {' or '.join(t.__name__ for t in types)}")
    opt = state["optimizer"]
    if not isinstance(opt.get("state"), dict) or not isinstance(opt.get("param_groups"), list):
        raise CheckpointError(f"{where}: optimizer lacks 'state' / 'param_groups'")
    for k in ("generator", "torch_rng"):
        if state[k].dtype != torch.uint8 or state[k].ndim != 1:
            raise CheckpointError(f"{where}: {k} must be a 1-d uint8 RNG state, got {state[k].dtype} {tuple(state[k].shape)}")
    if state["epoch"] < 0:
        raise CheckpointError(f"{where}: epoch {state['epoch']} < 0")


def _safe_reason(e: Exception) -> str:
    """The safe loader's reason, without torch's advice to retry with ``weights_only=False``."""
    text = str(e)
    for marker in ("WeightsUnpickler error:", "Unpickler error:"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    else:
        if "weights_only" in text:
            return type(e).__name__
    text = text.split("Check the documentation")[0]
    return " ".join(text.split())[:200] or type(e).__name__
