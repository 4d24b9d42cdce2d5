"""torchrun / DistributedDataParallel for one training run: the process-group helpers.

``torchrun --nproc_per_node N -m activemint train ...`` starts N copies of ``train``; each
learns its place from the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` / ``MASTER_PORT``).  :func:`setup` joins them into one process group (gloo
on CPU, nccl on CUDA, one GPU per process: ``cuda:LOCAL_RANK``).  Without those variables,
or with ``WORLD_SIZE=1``, every helper here is the identity and the trainer runs exactly as
a plain single process.

How the trainer uses them (the single-process run is the reference):

* Every rank draws the same permutations from the same seeded generator, so every rank
  knows each *global* batch; :func:`shard` gives this rank its contiguous part of it
  (members and externals alike).  Random augmentation parameters are drawn for the whole
  global batch and sliced the same way, so the global batch is the single-process batch.
* Each rank's loss terms are weighted by :func:`share` (``world * n_local / n_global``), so
  the mean DDP takes over ranks' gradients is the gradient of the global batch's mean loss,
  whatever the shard sizes (the last batch of an epoch, held-out members); the first-batch
  normalisers of ``loss_norm: first`` are the :func:`all_reduce_mean` of those weighted
  terms, i.e. the global batch's loss, the same on every rank.
* The model is wrapped by :func:`wrap` in DDP around a small module whose ``forward`` runs
  the trainer's whole training forward (members' full pass, externals' truncated pass, robust
  views), so DDP sees exactly one forward per backward.
* Validation, checkpoints, metrics and every run-directory write happen on rank 0 (which
  alone holds the run's lock); the other ranks wait at a :func:`barrier`.
"""
from __future__ import annotations

import atexit
import os
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from activemint.errors import UserError

#: How long a collective (a barrier while rank 0 validates, checkpoints or evaluates) may wait.
TIMEOUT = timedelta(minutes=float(os.environ.get("ACTIVEMINT_DIST_TIMEOUT_MIN", "120")))

_OWNED = False  # whether setup() created the process group (then teardown() destroys it)


class DistributedError(UserError):
    """A torchrun launch this trainer cannot serve (e.g. fewer GPUs than processes)."""


def launched() -> bool:
    """True when torchrun (or any launcher setting RANK / WORLD_SIZE / LOCAL_RANK) started us with WORLD_SIZE > 1."""
    env = os.environ
    return all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")) and int(env["WORLD_SIZE"]) > 1


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world() -> int:
    return dist.get_world_size() if is_distributed() else 1


def backend() -> str | None:
    return str(dist.get_backend()) if is_distributed() else None


def is_main() -> bool:
    """Rank 0 (or a single process): the one process that writes the run directory."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group if launched by it; returns this process's device.

    gloo for CPU runs, nccl for CUDA ones; on CUDA each process takes ``cuda:LOCAL_RANK``
    (whatever ``--device cuda`` / ``auto`` named).  A group someone else initialised is
    used as is.  Without torchrun: ``device`` unchanged, nothing initialised.
    """
    global _OWNED
    if not launched() and not is_distributed():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise DistributedError(f"torchrun started local rank {local} but this node has {torch.cuda.device_count()} "
                                   f"CUDA GPU(s); use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise DistributedError(f"torchrun runs need a CPU (gloo) or CUDA (nccl) device, not {device.type!r}")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
        _OWNED = True
        atexit.register(teardown)  # kept for the process's later runs (e.g. train --baseline), destroyed at exit
    return device


def teardown() -> None:
    """Destroy the process group if :func:`setup` created it."""
    global _OWNED
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each value (one collective; every rank must pass the same keys)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    t /= world()
    mean = dict(zip(keys, t.cpu().tolist()))
    return {k: mean[k] for k in values}


def reduce_mean_tensor(t: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor (a copy; ``t`` itself is left as is)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / world()


def shard(n: int) -> slice:
    """This rank's contiguous part of a global batch of ``n`` (all of it in one process).

    Parts differ in size by at most one; they are in rank order and cover ``range(n)``.
    """
    r, w = rank(), world()
    return slice(n * r // w, n * (r + 1) // w)


def share(n_local: int, n_global: int) -> float:
    """Weight of a rank's per-term mean loss so that DDP's mean over ranks is the global mean.

    The global batch's mean loss is ``sum_r n_r / N * mean_r``; DDP averages gradients over
    ``world`` ranks, so rank r's loss is scaled by ``world * n_r / N`` (1 in one process).
    """
    if not is_distributed():
        return 1.0
    return world() * n_local / n_global if n_global else 0.0


def check_batches(batch_sizes: dict[str, int]) -> None:
    """Every rank needs at least one sample of every batch (e.g. the last, partial one of an epoch)."""
    w = world()
    small = {k: v for k, v in batch_sizes.items() if 0 < v < w}
    if small:
        what = ", ".join(f"{k} {v}" for k, v in small.items())
        raise DistributedError(f"{w} processes need batches of at least {w} samples, but some batches are smaller "
                               f"({what}); use fewer processes or sizes that leave every process a sample")


class TrainForward(nn.Module):
    """The module DDP wraps: its ``forward(fn, *args)`` runs ``fn(model, *args)``.

    DDP synchronises gradients of what runs inside its ``forward``; the trainer's forward of
    an audited model is not ``model.forward`` (a full pass of the members, a pass of the
    externals truncated after the last tap, maybe a pass of robust views), so the whole of it
    goes through here, one DDP forward per backward.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.model, *args)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDP when distributed (else unchanged).

    ``static_graph=True``: the set of parameters a training step reaches is the same at every
    step of a run (the members' pass reaches the whole backbone and the head, the externals'
    pass stops at the same tap every time), so DDP records it once in the first iteration
    and needs neither ``find_unused_parameters`` (a graph walk every step) nor every
    parameter to be used.  BatchNorm keeps per-rank batch statistics (DDP's default, see
    the docs: SyncBatchNorm has no CPU kernel); ``broadcast_buffers`` keeps rank 0's running
    statistics on every rank, and rank 0's are what the checkpoints hold.
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    # channels-last convs (small_cnn on CPU) give NHWC-strided weight grads for NCHW weights:
    # DDP copies them into its buckets (correct, a copy per step) and warns at every backward.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DDP(TrainForward(model), device_ids=ids, static_graph=True)


def call(model: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(model, *args)``, through DDP's forward when ``model`` is DDP-wrapped (maybe compiled)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if isinstance(getattr(model, "_orig_mod", model), DDP):
        return model(fn, *args)
    return fn(model, *args)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside torch.compile / DDP / :class:`TrainForward` wrappers."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = getattr(model, "_orig_mod", model)
    if isinstance(model, DDP):
        model = model.module
    if isinstance(model, TrainForward):
        model = model.model
    return model
