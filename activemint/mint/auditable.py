"""aMINT as a library: the user's own ``nn.Module``, made auditable, trained in the user's own loop.

>>> amint = make_auditable(model, input_shape=(3, 28, 28), setup="middle")
>>> loss = amint.loss(members, labels, externals)   # the trainer's multitask loss, same maths
>>> loss.backward(); opt.step()
>>> plain = amint.to_standard_module()              # the user's model again, without hooks

The pattern is Opacus' ``make_private``: the user's objects are wrapped, never edited (forward
hooks on the tapped modules; in-place activations are switched off so a tap is never
overwritten), the loop stays the user's, and :meth:`~EnhancedAuditedModel.to_standard_module`
hands the plain module back.

The contract of one step (what :meth:`AuditableModel.loss` needs): a batch of members (model
inputs), their labels, and a batch of externals (samples of the same distribution that the
model never trains on; they teach the MINT head what a non-member looks like).  It runs the
same forward (:meth:`~EnhancedAuditedModel.forward_train`) and the same
:class:`~activemint.mint.MultitaskLoss` as ``activemint train``, so the same seed, data and
batches give the same model.  Model inputs are pixels in [0, 1] normalised as
``(x - 0.5) / 0.5`` (:func:`pixels_to_input`): ``evaluate``, ``score`` and ``audit`` feed a saved
model that way.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from activemint.mint.loss import MultitaskLoss
from activemint.mint.model import EnhancedAuditedModel
from activemint.models.external import setup_taps, tap_candidates
from activemint.setups import SETUPS

#: The MINT head's options and the defaults ``activemint train`` uses (TrainConfig's head_*).
HEAD_DEFAULTS = {"width": 64, "hidden": 128, "stride": 1, "norm": "mlp", "conv": "full", "pool": "max"}
MEAN, STD = 0.5, 0.5  # the normalisation of activemint.training.batches.to_input (the paper's)


def pixels_to_input(images: torch.Tensor) -> torch.Tensor:
    """Model inputs from pixels: uint8 0..255 or float 0..1 (``ToTensor()``'s), shape (B, C, H, W) or (C, H, W).

    The same values, bit for bit, as the trainer's ``to_input`` for uint8 images:
    ``x / 255``, then ``(x - 0.5) / 0.5``.
    """
    x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
    return x.sub(MEAN).div(STD)


class AuditableModel(EnhancedAuditedModel):
    """An :class:`EnhancedAuditedModel` with the multitask loss for the user's loop.

    The loss's state (the first batch's values that normalise the two terms) is kept beside
    the module, not in its ``state_dict``: the saved weights have exactly the keys of a model
    trained by ``activemint train``.
    """

    def __init__(self, backbone: nn.Module, taps: Sequence[str], *, input_shape: Sequence[int], setup: str | None = None,
                 head: Mapping[str, object] | None = None, lambda_task: float = 1.0, lambda_mint: float = 1.0,
                 loss_norm: str = "first", external_grad: bool = True) -> None:
        opts = _head_options(head)
        super().__init__(backbone, taps, input_shape=input_shape, head_width=opts["width"], head_hidden=opts["hidden"],
                         head_stride=opts["stride"], head_norm=opts["norm"], head_conv=opts["conv"],
                         head_pool=opts["pool"])
        if loss_norm not in ("first", "none"):
            raise ValueError(f"loss_norm must be 'first' or 'none', got {loss_norm!r}")
        param = next(backbone.parameters(), None)
        if param is not None:
            self.head.to(param.device)  # beside a model that already lives on a GPU
        self.setup = setup
        self.external_grad = bool(external_grad)
        # A plain attribute, not a submodule: its buffers stay out of this model's state_dict.
        self.__dict__["multitask"] = MultitaskLoss(lambda_task=lambda_task, lambda_mint=lambda_mint,
                                                   normalize=loss_norm == "first")
        self.last_losses: dict[str, float] = {}

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, externals: torch.Tensor | None = None):
        """``amint(x)``: ``(class_logits, membership_logits)``; ``amint(members, labels, externals)``: :meth:`loss`.

        The second form is for wrappers that only call ``forward``, DistributedDataParallel
        first: ``loss = DDP(amint)(members, labels, externals)`` synchronises the gradients.
        """
        if labels is None:
            return super().forward(x)
        return self.loss(x, labels, externals)

    def loss(self, members: torch.Tensor, labels: torch.Tensor, externals: torch.Tensor | None = None) -> torch.Tensor:
        """The multitask loss of one step: ``λ1·L_task/L_task,0 + λ2·L_mint/L_mint,0``.

        ``members`` / ``externals``: model inputs (B, C, H, W) (see :func:`pixels_to_input`);
        ``labels``: the members' classes (B,).  Externals run only up to the last tap.  The raw
        terms of the step are in :attr:`last_losses` (``task_loss``, ``mint_loss``).  Works under
        ``torch.autocast`` (the loss is computed in float32, as in the trainer).  Under
        ``torch.distributed`` the first-batch normalisers are averaged over the processes (as
        ``torchrun -m activemint train`` does), so every process divides by the same values.
        """
        if self.multitask.reduce is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.multitask.reduce = _mean_over_processes
        logits, mint_m, mint_e = self.forward_train(members, externals)
        loss, parts = self.multitask(logits.float(), labels, mint_m.float(), None if mint_e is None else mint_e.float())
        self.last_losses = parts
        return loss

    inputs = staticmethod(pixels_to_input)


def _mean_over_processes(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().clone()
    torch.distributed.all_reduce(t)
    return t / torch.distributed.get_world_size()


def _head_options(head: Mapping[str, object] | None) -> dict[str, object]:
    head = dict(head or {})
    unknown = sorted(set(head) - set(HEAD_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown head options {unknown}; expected some of {sorted(HEAD_DEFAULTS)}")
    return {**HEAD_DEFAULTS, **head}


def make_auditable(model: nn.Module, *, input_shape: Sequence[int], taps: Sequence[str] | None = None,
                   setup: str | None = None, head: Mapping[str, object] | None = None, lambda_task: float = 1.0,
                   lambda_mint: float = 1.0, loss_norm: str = "first", external_grad: bool = True) -> AuditableModel:
    """Wrap any classifier ``model`` (images (B, C, H, W) -> logits (B, K)) with a MINT head.

    Args:
        model: the user's module; it is hooked, not edited (in-place activations are switched
            off).  ``to_standard_module()`` on the result returns it without hooks.
        input_shape: (C, H, W) of one input (the tapped shapes are found with one probe pass).
        taps: dotted module names to tap (``model.named_modules()``), in forward order; or
        setup: ``"entry"``, ``"middle"`` or ``"output"``: two taps chosen among the model's
            stages (timm's ``feature_info`` where the model has it, else a probe of its module
            tree; :func:`activemint.models.external.tap_candidates`).  Neither: ``"entry"``.
        head: MINT head options (``width``, ``hidden``, ``stride``, ``norm``, ``conv``); default
            :data:`HEAD_DEFAULTS`, those of ``activemint train``.
        lambda_task, lambda_mint, loss_norm, external_grad: as ``activemint train``'s options.

    Raises a one-line ``ValueError`` for taps that do not fit, listing the tappable modules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_auditable needs a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, EnhancedAuditedModel):
        raise TypeError("this model is already auditable; wrap the plain classifier (to_standard_module())")
    if taps is not None and setup is not None:
        raise ValueError("give taps or setup, not both")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    if taps is None:
        setup = setup or "entry"
        if setup not in SETUPS:
            raise ValueError(f"unknown setup {setup!r}; expected one of {list(SETUPS)} (or name taps=[...])")
        taps = setup_taps(tap_candidates(model, shape), setup)
    elif isinstance(taps, str):
        taps = [taps]
    try:
        return AuditableModel(model, list(taps), input_shape=shape, setup=setup, head=head, lambda_task=lambda_task,
                              lambda_mint=lambda_mint, loss_norm=loss_norm, external_grad=external_grad)
    except (ValueError, TypeError) as e:
        if "head option" in str(e) or "loss_norm" in str(e):
            raise
        try:
            hint = f"; tappable modules of {type(model).__name__}: {tap_candidates(model, shape)}"
        except ValueError:
            hint = ""
        raise ValueError(f"{' '.join(str(e).split())}{hint}") from None
