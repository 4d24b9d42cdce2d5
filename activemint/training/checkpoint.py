"""Checkpoints: safetensors weights + JSON metadata; training state loaded without pickle code.

Models come from other parties, so nothing here ever unpickles arbitrary objects: weights
are safetensors (a flat tensor format), metadata is JSON, and the optimiser / RNG state of
``--resume`` is read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers.

A training checkpoint is one directory ``checkpoints/epoch-NNNN/`` holding the weights
(``weights.safetensors`` + ``weights.json``), the optimiser / RNG / epoch state
(``train_state.pt``) and, written last, ``checkpoint.json``: the epoch, the per-epoch log
records so far and the SHA-256 of each part.  It is written complete into a staging folder
and renamed into place, so ``epoch-NNNN/`` either holds all four parts of one epoch or does
not exist; on load every part is checked against its SHA-256 (a flipped bit is an error, not
a silently different model) and the epochs recorded by the parts must agree.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from activemint import rundir
from activemint.errors import UserError
from activemint.io import atomic_json, atomic_write, commit_dir, file_sha256, make_dir

CHECKPOINT_FORMAT = "activemint-checkpoint-dir/1"
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")
STATE_KEYS = ("optimizer", "scheduler", "task0", "mint0", "generator", "torch_rng", "epoch", "best", "best_epoch")


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or does not fit the model."""


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json, each atomically (0644)."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(path, safetensors_bytes(tensors, metadata={"format": "activemint"}))
    atomic_write(path.with_suffix(rundir.META_SUFFIX), json.dumps(metadata, indent=2, default=str))


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta_path = Path(path).with_suffix(rundir.META_SUFFIX)
    try:
        d = json.loads(meta_path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is missing") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
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
    dtype = [f"{k} ({tensors[k].dtype}, expected {own[k].dtype})" for k in tensors if tensors[k].dtype != own[k].dtype]
    if dtype:
        raise CheckpointError(f"{path} holds tensors of the wrong dtype: {', '.join(dtype[:3])}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{path} holds non-finite values (NaN or inf) in {', '.join(bad[:3])}")
    model.load_state_dict(tensors, strict=False)
    return missing


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(Path(path), buf.getvalue())


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


# ------------------------------------------------------------------ checkpoint directories
def checkpoint_dirname(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


@dataclass
class Checkpoint:
    """One committed checkpoint directory ``checkpoints/epoch-NNNN/``."""

    dir: Path
    epoch: int

    @property
    def weights(self) -> Path:
        return self.dir / rundir.CKPT_WEIGHTS

    @property
    def state_path(self) -> Path:
        return self.dir / rundir.CKPT_STATE

    @property
    def manifest_path(self) -> Path:
        return self.dir / rundir.CKPT_MANIFEST

    def manifest(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.manifest_path.read_text())
        except FileNotFoundError as e:
            raise CheckpointError(f"checkpoint {self.dir} has no {rundir.CKPT_MANIFEST}: it is incomplete") from e
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.manifest_path} is not valid JSON ({e}): the checkpoint is corrupt") from e
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT or not isinstance(doc.get("files"), dict):
            raise CheckpointError(f"{self.manifest_path} is not an activemint checkpoint manifest ({CHECKPOINT_FORMAT})")
        parts = (rundir.CKPT_WEIGHTS, rundir.CKPT_META, rundir.CKPT_STATE)
        unknown = [str(k)[:60] for k in doc if k not in ("format", "epoch", "files", "log")]
        unknown += [str(n)[:60] for n in doc["files"] if n not in parts]  # e.g. ../../etc/passwd with a made-up hash
        if unknown:
            raise CheckpointError(f"{self.manifest_path} has unknown entries {unknown[:3]} (a checkpoint lists exactly "
                                  f"{', '.join(parts)}): the checkpoint is corrupt or was edited")
        bad = [n for n, h in doc["files"].items() if not isinstance(h, str) or len(h) != 64]
        if bad:
            raise CheckpointError(f"{self.manifest_path}: the SHA-256 of {bad[0]} is not 64 hex digits: the checkpoint is corrupt")
        return doc

    def verify(self, *, max_epoch: int) -> dict[str, Any]:
        """Check every part's SHA-256 and that all parts name the same epoch in [1, max_epoch]."""
        doc = self.manifest()
        for name in (rundir.CKPT_WEIGHTS, rundir.CKPT_META, rundir.CKPT_STATE):
            p = self.dir / name
            if name not in doc["files"]:
                raise CheckpointError(f"{self.manifest_path} does not list {name}: the checkpoint is corrupt")
            if not p.is_file():
                raise CheckpointError(f"checkpoint part {p} is missing")
            if file_sha256(p) != doc["files"][name]:
                raise CheckpointError(f"checkpoint part {p} is corrupt: its SHA-256 differs from {self.manifest_path} "
                                      f"(a flipped bit or a partial copy); resuming from it would train a different model")
        epochs = {"directory name": self.epoch, rundir.CKPT_MANIFEST: doc.get("epoch"),
                  rundir.CKPT_META: read_metadata(self.weights).get("epoch")}
        if len(set(map(repr, epochs.values()))) != 1:
            raise CheckpointError(f"checkpoint {self.dir} is inconsistent: epochs {epochs}")
        if not 1 <= self.epoch <= max_epoch:
            raise CheckpointError(f"checkpoint {self.dir} is of epoch {self.epoch}, outside 1..{max_epoch} (the config's epochs)")
        return doc

    def load(self, model: nn.Module, *, max_epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Verify, load the weights into ``model``; returns (train state, manifest)."""
        doc = self.verify(max_epoch=max_epoch)
        state = load_train_state(self.state_path)
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{self.state_path} is not a valid training state: it lacks {missing}")
        try:
            epoch, best_epoch = int(state["epoch"]), int(state["best_epoch"])
            float(state["best"]), float(state["task0"]), float(state["mint0"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{self.state_path} is not a valid training state: {e}") from e
        if epoch != self.epoch:
            raise CheckpointError(f"{self.state_path} says epoch {state['epoch']} but its checkpoint holds the weights of "
                                  f"epoch {self.epoch}; refusing to pair them")
        if not 0 <= best_epoch <= epoch:
            raise CheckpointError(f"{self.state_path}: best_epoch {best_epoch} is outside 0..{epoch}")
        if not isinstance(doc.get("log"), list) or len(doc["log"]) != epoch:
            raise CheckpointError(f"{self.manifest_path} must hold one log record per epoch ({epoch})")
        load_weights(model, self.weights)
        return state, doc


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Committed checkpoint directories under ``root`` (``checkpoints/``), oldest first."""
    if not root.is_dir():
        return []
    out = [Checkpoint(p, int(m.group(1))) for p in root.iterdir() if p.is_dir() and (m := _EPOCH_DIR.match(p.name))]
    return sorted(out, key=lambda c: c.epoch)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    found = list_checkpoints(root)
    if not found and (root / rundir.CKPT_STATE).is_file():
        raise CheckpointError(f"{root} holds a checkpoint of an older activemint (train_state.pt beside last.safetensors), "
                              f"which cannot be resumed safely; start a new run")
    return found[-1] if found else None


def clean_leftovers(root: Path) -> None:
    """Remove staging and trash folders of a writer that was killed (call under the run's lock)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".staging-", ".trash-")):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(root: Path, epoch: int, model: nn.Module, metadata: dict[str, Any], state: dict[str, Any],
                    log: list[dict[str, Any]], *, keep: Iterable[int] = ()) -> Checkpoint:
    """Write ``root/epoch-NNNN`` complete (staging folder + rename), then drop other epochs not in ``keep``."""
    make_dir(root)
    final = root / checkpoint_dirname(epoch)
    staging = root / f".staging-{final.name}-{os.getpid()}-{secrets.token_hex(3)}"
    make_dir(staging)
    save_weights(model, staging / rundir.CKPT_WEIGHTS, metadata)
    save_train_state(staging / rundir.CKPT_STATE, state)
    files = {n: file_sha256(staging / n) for n in (rundir.CKPT_WEIGHTS, rundir.CKPT_META, rundir.CKPT_STATE)}
    atomic_json(staging / rundir.CKPT_MANIFEST, {"format": CHECKPOINT_FORMAT, "epoch": epoch, "files": files,
                                                         "log": log})
    if final.exists():  # a stale copy of this epoch (e.g. redone after a refused resume): set it aside first
        _discard(final)
    commit_dir(staging, final)
    keep = set(keep) | {epoch}
    for c in list_checkpoints(root):
        if c.epoch not in keep:
            _discard(c.dir)
    return Checkpoint(final, epoch)


def _discard(path: Path) -> None:
    trash = path.with_name(f".trash-{path.name}-{secrets.token_hex(3)}")
    try:
        os.rename(path, trash)  # atomic: the directory vanishes whole, never half-deleted
    except OSError as e:
        raise CheckpointError(f"cannot remove old checkpoint {path}: {e.strerror or e}") from e
    shutil.rmtree(trash, ignore_errors=True)
