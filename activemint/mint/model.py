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
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from activemint.mint.head import MintHead
from activemint.models.registry import disable_inplace


class _StopForward(Exception):
    """Raised by the last tap's hook to end a truncated forward pass."""


def validate_taps(model: nn.Module, taps: Sequence[str]) -> list[nn.Module]:
    """Resolve dotted tap names to modules, with an error that lists valid names."""
    if not taps:
        raise ValueError("at least one tap point is needed")
    names = dict(model.named_modules())
    modules = []
    for tap in taps:
        if tap not in names or tap == "":
            close = [n for n in names if n and (n.startswith(tap.split(".")[0]) or tap in n)][:8]
            hint = ", ".join(close) if close else ", ".join([n for n in names if n and "." not in n][:12])
            raise ValueError(f"tap point {tap!r} is not a submodule of {type(model).__name__}; candidates: {hint}")
        modules.append(names[tap])
    if len(set(taps)) != len(taps):
        raise ValueError(f"tap points must be distinct, got {list(taps)}")
    return modules


class EnhancedAuditedModel(nn.Module):
    """A classifier ``backbone`` with a MINT head reading the activations at ``taps``.

    Args:
        backbone: any ``nn.Module`` mapping (B, C, H, W) images to (B, num_classes) logits.
        taps: dotted module names, in forward-execution order; the last one is where a
            truncated forward stops.
        input_shape: (C, H, W) of one input, used to infer the tapped shapes.
        head_width, head_hidden, head_stride: size of the :class:`MintHead`, and the stride
            of its branches' first conv.

    Outputs: ``forward(x)`` -> ``(class_logits (B, K), membership_logits (B,))``.
    """

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
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = list(taps)
        self.input_shape = tuple(int(s) for s in input_shape)
        disable_inplace(backbone)
        self._tap_modules = validate_taps(backbone, self.taps)
        self._captured: list[torch.Tensor | None] = [None] * len(self.taps)
        self._mode = "full"
        self._keep = 0
        self._handles = [m.register_forward_hook(self._make_hook(i)) for i, m in enumerate(self._tap_modules)]
        shapes, self.split_forward_ok = self._probe()
        self.head = MintHead(shapes, width=head_width, hidden=head_hidden, stride=head_stride, norm=head_norm)

    # ------------------------------------------------------------------ hooks
    def _make_hook(self, i: int):
        last = i == len(self.taps) - 1

        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"tap {self.taps[i]!r} returns {type(output).__name__}; a tap must output one tensor"
                )
            self._captured[i] = output
            if last and self._mode == "truncate":
                raise _StopForward
            if last and self._mode == "split":
                return output[: self._keep]
            return None

        return hook

    def remove_hooks(self) -> None:
        """Detach the hooks; the backbone is then exactly the user's model again."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def _run(self, mode: str, keep: int = 0) -> Iterator[None]:
        if not self._handles:
            raise RuntimeError("the hooks of this EnhancedAuditedModel were removed")
        self._mode, self._keep = mode, keep
        self._captured = [None] * len(self.taps)
        try:
            yield
        finally:
            self._mode, self._keep = "full", 0

    def _features(self) -> list[torch.Tensor]:
        missing = [t for t, f in zip(self.taps, self._captured) if f is None]
        if missing:
            raise RuntimeError(f"tap points {missing} were not reached by the forward pass")
        out = list(self._captured)  # type: ignore[arg-type]
        self._captured = [None] * len(self.taps)
        return out

    @torch.no_grad()
    def _probe(self) -> tuple[list[tuple[int, ...]], bool]:
        was_training = self.backbone.training
        self.backbone.eval()
        x = torch.zeros(2, *self.input_shape)
        try:
            with self._run("truncate"):
                try:
                    self.backbone(x)
                except _StopForward:
                    pass
                feats = self._features()
            try:
                with self._run("split", keep=1):
                    logits = self.backbone(x)
                    self._features()
                split_ok = logits.shape[0] == 1
            except (RuntimeError, ValueError, IndexError):
                split_ok = False
        finally:
            self.backbone.train(was_training)
        shapes = []
        for tap, f in zip(self.taps, feats):
            if f.shape[0] != 2:
                raise ValueError(f"tap {tap!r} output has batch size {f.shape[0]}, expected 2: tap a module whose output is batch-first")
            shapes.append(tuple(f.shape[1:]))
        return shapes, split_ok

    # --------------------------------------------------------------- forwards
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, K) and membership logits (B,) from one full pass."""
        with self._run("full"):
            logits = self.backbone(x)
            feats = self._features()
        return logits, self.head(feats)

    def membership_logit(self, x: torch.Tensor) -> torch.Tensor:
        """Membership logits (B,) from a pass that stops after the last tap."""
        with self._run("truncate"):
            try:
                self.backbone(x)
            except _StopForward:
                pass
            feats = self._features()
        return self.head(feats)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) only (the taps are recorded and dropped)."""
        with self._run("full"):
            logits = self.backbone(x)
            self._captured = [None] * len(self.taps)
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
        if self.split_forward_ok:
            with self._run("split", keep=n):
                logits = self.backbone(torch.cat([members, external]))
                feats = self._features()
            mint = self.head(feats)
            return logits, mint[:n], mint[n:]
        logits, mint_m = self.forward(members)
        return logits, mint_m, self.membership_logit(external)
