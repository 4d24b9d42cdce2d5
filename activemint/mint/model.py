"""The Enhanced Audited Model: any classifier plus a MINT head on its activations.

The user's ``nn.Module`` is wrapped, never edited: forward hooks on the tapped modules
(chosen by dotted name, ``model.get_submodule("layer2")``) copy their outputs to the MINT
head.  One forward pass gives both outputs, the class logits ``y1`` and the membership logit
``y2`` (P(member) = sigmoid(y2)).

The membership output depends only on the layers up to the last tap.  Two things follow,
and both are used by the trainer and the scorers:

* :meth:`EnhancedAuditedModel.membership_logit` stops the forward pass right after the last
  tap (a hook raises a private exception), so scoring never pays for the rest of the net;
* :meth:`EnhancedAuditedModel.forward_train` runs members and externals as one
  concatenated batch up to the last tap, then the last tap's hook hands only the members
  on to the remaining layers.  External samples train only the MINT loss, so they never
  need the rest of the network.  BatchNorm layers before the last tap therefore normalise
  over members + externals (both are samples of the same training distribution), layers
  after it over members only, exactly as in plain training.

:class:`PlainModel` (a classifier without a head) answers the same calls, so the trainer and
the scorers never ask which kind they hold: ``classify``, ``forward_train`` (its membership
outputs are ``None``), ``head_parameters`` (none), ``to_standard_module``; ``audited`` says
whether ``membership_logit`` exists.
"""
from __future__ import annotations

import copy as _copy
from collections.abc import Sequence

import torch
from torch import nn

from activemint.mint.head import MintHead
from activemint.models.taps import TapRecorder, disable_inplace, probe_taps


class PlainModel(nn.Module):
    """The backbone alone, under the same ``backbone.`` key prefix as an audited model."""

    audited = False

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K)."""
        return self.backbone(x)

    def forward_train(self, members: torch.Tensor, external: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, None, None]:
        """Class logits of the members; no membership outputs (externals are not used)."""
        return self(members), None, None

    def head_parameters(self) -> list[nn.Parameter]:
        return []

    def to_standard_module(self, *, copy: bool = False) -> nn.Module:
        """The user's classifier (a deep copy with ``copy=True``)."""
        return _copy.deepcopy(self.backbone) if copy else self.backbone


class EnhancedAuditedModel(nn.Module):
    """A classifier ``backbone`` with a MINT head reading the activations at ``taps``.

    Args:
        backbone: any ``nn.Module`` mapping (B, C, H, W) images to (B, num_classes) logits.
        taps: dotted module names, in forward-execution order; the last one is where a
            truncated forward stops.
        input_shape: (C, H, W) of one input, used to infer the tapped shapes.
        head_width, head_hidden, head_stride: size of the :class:`MintHead`, and the stride
            of its branches' first conv.
        head_norm, head_conv, head_pool: the head's normalisation, 3x3 convs and pooling
            (:class:`MintHead`'s ``norm``, ``conv``, ``pool``).

    Outputs: ``forward(x)`` -> ``(class_logits (B, K), membership_logits (B,))``.
    """

    audited = True
    #: Training only: whether the MINT loss on external samples back-propagates into the
    #: backbone (the paper: yes).  False runs the externals' truncated forward without a graph.
    external_grad = True
    #: Training only: std of the multiplicative Gaussian noise on the taps the head reads while it
    #: trains (``TrainConfig.tap_noise``; 0 = none).  Set with :meth:`set_tap_noise`.
    tap_noise = 0.0

    def __init__(
        self,
        backbone: nn.Module,
        taps: Sequence[str],
        *,
        input_shape: Sequence[int],
        head_width: int = 64,
        head_hidden: int = 128,
        head_stride: int = 1,
        head_norm: str = "none",
        head_conv: str = "full",
        head_pool: str = "max",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = list(taps)
        self.input_shape = tuple(int(s) for s in input_shape)
        disable_inplace(backbone)
        shapes, self.split_forward_ok = self._probe()
        self._recorder = TapRecorder(backbone, self.taps)
        self._noise_seed, self._noise_gens = 0, {}
        self.head = MintHead(shapes, width=head_width, hidden=head_hidden, stride=head_stride, norm=head_norm, conv=head_conv,
                             pool=head_pool)

    @torch.no_grad()
    def _probe(self) -> tuple[list[tuple[int, ...]], bool]:
        """The tapped shapes (checked by :func:`probe_taps`) and whether a split forward works."""
        param = next(self.backbone.parameters(), None)  # probe where the model lives (a user's model may be on a GPU)
        x = torch.zeros(2, *self.input_shape, device=None if param is None else param.device)
        shapes = probe_taps(self.backbone, self.taps, x)
        was_training = self.backbone.training
        self.backbone.eval()
        recorder = TapRecorder(self.backbone, self.taps)
        try:
            with recorder.recording("split", keep=1):
                logits = self.backbone(x)
                recorder.take()
            split_ok = logits.shape[0] == 1
        except (RuntimeError, ValueError, IndexError):
            split_ok = False
        finally:
            recorder.remove()
            self.backbone.train(was_training)
        return [s[1:] for s in shapes.values()], split_ok

    # ------------------------------------------------------------------ hooks
    def remove_hooks(self) -> None:
        """Detach the hooks; the backbone is then exactly the user's model again."""
        self._recorder.remove()

    def to_standard_module(self, *, copy: bool = False) -> nn.Module:
        """The user's model without hooks (the pattern of Opacus' ``GradSampleModule``).

        ``copy=False``: this model's hooks are removed and its backbone returned (this model
        then no longer runs).  ``copy=True``: a hook-free deep copy (same weights, buffers and
        device); this model is left as it was.
        """
        if not copy:
            self.remove_hooks()
            return self.backbone
        attached = self._recorder.attached
        self._recorder.remove()
        try:
            return _copy.deepcopy(self.backbone)
        finally:
            if attached:
                self._recorder = TapRecorder(self.backbone, self.taps)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def set_tap_noise(self, std: float, seed: int = 0) -> None:
        """Noise on the tapped activations while the head trains: a -> a * (1 + std * N(0, 1)) (0: none).

        The draws come from a generator of their own (one per device), seeded by ``seed``: the
        global RNG is not touched, so ``std = 0`` trains exactly as without this option."""
        self.tap_noise = float(std)
        self._noise_seed = int(seed)
        self._noise_gens: dict[str, torch.Generator] = {}

    def _head(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The head on ``feats``; while the head trains with ``tap_noise`` > 0, on noisy copies of them."""
        if self.tap_noise > 0 and self.head.training and torch.is_grad_enabled():
            dev = feats[0].device
            gen = self._noise_gens.get(str(dev))
            if gen is None:
                gen = self._noise_gens[str(dev)] = torch.Generator(device=dev).manual_seed(self._noise_seed)
            feats = [f * (1 + self.tap_noise * torch.randn(f.shape, generator=gen, device=dev, dtype=f.dtype)) for f in feats]
        return self.head(feats)

    # --------------------------------------------------------------- forwards
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, K) and membership logits (B,) from one full pass."""
        with self._recorder.recording("full") as rec:
            logits = self.backbone(x)
            feats = rec.take()
        return logits, self._head(feats)

    def tap_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped activations (in the order of ``taps``) from a pass that stops after the last tap."""
        with self._recorder.recording("truncate") as rec:
            self.backbone(x)
        return rec.take()

    def membership_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The MINT head's hidden activations (B, hidden) from a pass that stops after the last tap."""
        return self.head.embed(self.tap_features(x))

    def membership_logit(self, x: torch.Tensor) -> torch.Tensor:
        """Membership logits (B,) from a pass that stops after the last tap."""
        return self._head(self.tap_features(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) only (the taps are recorded and dropped)."""
        with self._recorder.recording("full") as rec:
            logits = self.backbone(x)
            rec.clear()
        return logits

    def forward_train(
        self, members: torch.Tensor, external: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One training forward over a member batch and an external batch.

        Returns ``(class_logits_members (Bm, K), mint_logits_members (Bm,),
        mint_logits_external (Be,) or None)``.  Externals stop at the last tap.
        """
        if external is None or len(external) == 0:
            logits, mint = self.forward(members)
            return logits, mint, None
        n = len(members)
        if not self.external_grad:
            # Externals stop at the last tap without a graph: the backbone learns from the
            # members' membership logits only, and the externals' prefix costs one forward.
            with self._recorder.recording("full") as rec:
                logits = self.backbone(members)
                feats_m = rec.take()
            with torch.no_grad():
                feats_e = self.tap_features(external)
            # One head call over both: its BatchNorm normalises members and externals together.
            mint = self._head([torch.cat([a, b]) for a, b in zip(feats_m, feats_e)])
            return logits, mint[:n], mint[n:]
        if self.split_forward_ok:
            with self._recorder.recording("split", keep=n) as rec:
                logits = self.backbone(torch.cat([members, external]))
                feats = rec.take()
            mint = self._head(feats)
            return logits, mint[:n], mint[n:]
        logits, mint_m = self.forward(members)
        return logits, mint_m, self.membership_logit(external)
