"""The model edits themselves: fine-tuning, pruning, quantisation, distillation, head re-attachment.

Every function changes a model in place (or trains a new one) and is deterministic given its
seed on one machine: data orders come from a seeded ``torch.Generator``, initialisations
from a seeded global RNG inside ``torch.random.fork_rng`` (the caller's RNG is left as it was).
Only the backbone (the deployed classifier) is edited; the MINT head is carried along as
trained unless :func:`reattach_head` (or a post-hoc head) retrains it.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from activemint.model_runtime import quiet_ao, static_leaves
from activemint.training.batches import to_input
from activemint.training.evaluation import predict_classes
from activemint.training.head import train_head


def _prunable(backbone: nn.Module) -> list[nn.Module]:
    return [m for m in backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def finetune_backbone(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
                      batch_size: int, seed: int, device: torch.device,
                      log: Callable[[str], None] = lambda m: None) -> None:
    """``epochs`` of cross-entropy on (uint8 ``images``, ``labels``) for the backbone (Adam), head frozen.

    BatchNorm layers of the backbone train (their running statistics move, as in any
    fine-tune); the head's parameters and statistics do not change.
    """
    labels = labels.to(device)
    _fit_backbone(model, len(images), lambda idx: F.cross_entropy(model.classify(to_input(images[idx], device)), labels[idx]),
                  [p for p in model.backbone.parameters() if p.requires_grad], epochs=epochs, lr=lr, batch_size=batch_size,
                  seed=seed, what="fine-tune epoch", loss_name="loss", log=log)


def _fit_backbone(model: nn.Module, n_samples: int, loss_of: Callable[[torch.Tensor], torch.Tensor], params: list,
                  *, epochs: int, lr: float, batch_size: int, seed: int, what: str, loss_name: str,
                  log: Callable[[str], None]) -> None:
    """``epochs`` of Adam on ``params`` over seeded batches of sample indices; ``loss_of(idx)`` is a batch's loss.

    The backbone trains (its BatchNorm statistics move), the model ends in eval mode; the mean
    loss of each epoch is logged as ``what N/epochs  loss_name L``.
    """
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.backbone.train()
        total, n = 0.0, 0
        for idx in _batches(n_samples, batch_size, gen):
            loss = loss_of(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        log(f"  {what} {epoch + 1}/{epochs}  {loss_name} {total / max(n, 1):.4f}")
    model.eval()


def prune_backbone(model: nn.Module, amount: float, *, structured: bool, scope: str = "layer") -> list[nn.Module]:
    """Magnitude pruning (``torch.nn.utils.prune``) of every conv / linear weight of the backbone.

    Unstructured: per layer, the ``amount`` fraction of weights with the smallest |w|
    (``l1_unstructured``).  Structured: per conv layer, the ``amount`` fraction of output
    filters with the smallest L2 norm (``ln_structured``, n=2, dim=0); linear layers are left
    whole (pruning the classifier's output rows would delete classes).  The masks stay as
    pruning re-parametrisations (so a recovery fine-tune keeps the zeros) until
    :func:`finish_pruning`.  ``scope="global"`` (unstructured only): the ``amount`` fraction of
    all those weights together with the smallest |w| (``global_unstructured``), so layers
    with larger weights keep more.  Returns the pruned modules.
    """
    if scope == "global":
        modules = _prunable(model.backbone)
        prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=amount)
        return modules
    done = []
    for m in _prunable(model.backbone):
        if structured:
            if isinstance(m, nn.Conv2d):
                prune.ln_structured(m, "weight", amount=amount, n=2, dim=0)
                done.append(m)
        else:
            prune.l1_unstructured(m, "weight", amount=amount)
            done.append(m)
    return done


def finish_pruning(modules: list[nn.Module]) -> float:
    """Make the pruning permanent (``prune.remove``); returns the share of zero weights in those modules."""
    zeros = total = 0
    for m in modules:
        prune.remove(m, "weight")
        zeros += int((m.weight == 0).sum())
        total += m.weight.numel()
    return zeros / max(total, 1)


@torch.no_grad()
def round_backbone(model: nn.Module, dtype: torch.dtype) -> None:
    """Round the backbone's floating parameters and buffers to ``dtype`` (kept as float32: exact)."""
    for t in list(model.backbone.parameters()) + list(model.backbone.buffers()):
        if t.is_floating_point():
            t.copy_(t.to(dtype).float())


@torch.no_grad()
def calibrate_static_int8(model: nn.Module, images: torch.Tensor, *, batch_size: int, device: torch.device) -> dict[str, Any]:
    """Post-training static int8 (x86 settings of ``torch.ao.quantization``), simulated.

    Activations: a ``HistogramObserver`` (quint8, reduce_range, per-tensor affine: the
    ``x86`` default qconfig) on the backbone's input and each leaf module's output, fed the
    float model on the calibration ``images``.  Weights: every conv / linear weight rounded
    to its per-channel symmetric int8 grid (``PerChannelMinMaxObserver``), in place.
    Returns the activation record of :func:`activemint.model_runtime.apply_runtime`
    (``{"input" | module name: [scale, zero_point, qmin, qmax]}``).
    """
    from torch.ao.quantization import get_default_qconfig
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    ctx = quiet_ao()
    warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
    try:
        qconfig = get_default_qconfig("x86")
        backbone = model.backbone
        observers = {"input": qconfig.activation()}

        def see_input(module: nn.Module, args: tuple) -> None:
            observers["input"](args[0].float())

        def see_output(obs):
            def hook(module: nn.Module, args: tuple, out) -> None:
                if isinstance(out, torch.Tensor):
                    obs(out.float())
            return hook

        handles = [backbone.register_forward_pre_hook(see_input)]
        for name, module in static_leaves(backbone):
            observers[name] = obs = qconfig.activation()
            handles.append(module.register_forward_hook(see_output(obs)))
        model.eval()
        try:
            for i in range(0, len(images), batch_size):
                backbone(to_input(images[i:i + batch_size], device))
        finally:
            for h in handles:
                h.remove()
        record = {}
        for name, obs in observers.items():
            scale, zp = obs.calculate_qparams()
            record[name] = [float(scale), int(zp), int(obs.quant_min), int(obs.quant_max)]
        for m in _prunable(backbone):
            wobs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            wobs(m.weight)
            scale, zp = wobs.calculate_qparams()
            m.weight.copy_(torch.fake_quantize_per_channel_affine(m.weight, scale.float(), zp.int(), 0, -128, 127))
    finally:
        ctx.__exit__(None, None, None)
    return record


def distill(teacher: nn.Module, student: nn.Module, images: torch.Tensor, *, epochs: int, lr: float, batch_size: int,
            seed: int, device: torch.device, temperature: float = 4.0,
            log: Callable[[str], None] = lambda m: None) -> None:
    """Train ``student``'s backbone to match ``teacher``'s class outputs on ``images`` (no labels).

    Loss: ``T^2 KL(softmax(t / T) || softmax(s / T))`` (Hinton et al.), T = ``temperature``;
    Adam at ``lr``; the teacher's logits are computed once, in eval mode.
    """
    target = predict_classes(teacher, images, device)

    def kd_loss(idx: torch.Tensor) -> torch.Tensor:
        s = student.classify(to_input(images[idx], device)).float()
        t = target[idx].to(device)
        return F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1), log_target=True,
                        reduction="batchmean") * temperature ** 2

    _fit_backbone(student, len(images), kd_loss, list(student.backbone.parameters()), epochs=epochs, lr=lr,
                  batch_size=batch_size, seed=seed, what="distillation epoch", loss_name="KD loss", log=log)


def reattach_head(model: nn.Module, members: torch.Tensor, external: torch.Tensor, *, epochs: int, batch_size: int,
                  seed: int, device: torch.device, lr: float = 1e-3, log: Callable[[str], None] | None = None) -> None:
    """Head-only training on the (edited) backbone: members D = 1, externals E = 0 (needs D and E)."""
    train_head(model, members, external, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, log=log)
