"""Tap points: the one place that resolves, records and checks the activations a MINT head reads.

A tap point is a dotted module name valid for ``model.get_submodule(name)``.

* :func:`resolve_taps` turns names into modules, with an error that suggests valid names;
* :class:`TapRecorder` puts forward hooks on them and records their outputs (and can end a
  forward pass after the last tap, or hand only the first rows of a batch on from there);
  its :meth:`~TapRecorder.remove` takes every hook off again, leaving the user's model as it
  was (the pattern of Opacus' ``GradSampleModule`` and timm's ``FeatureHooks``);
* :func:`probe_taps` is the one validator: one forward pass must fire every tap exactly
  once, in the order listed, each with a single batch-first tensor.

The Enhanced Audited Model (:mod:`activemint.mint.model`) is built on these three.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["TapRecorder", "disable_inplace", "probe_taps", "resolve_taps"]


class StopForward(Exception):
    """Raised by the last tap's hook to end a truncated forward pass."""


def disable_inplace(model: nn.Module) -> nn.Module:
    """Set ``inplace = False`` on every submodule having a boolean ``inplace`` attribute.

    In-place activations (``nn.ReLU(inplace=True)`` ...) overwrite the output of the preceding
    module, which may be a tapped activation the MINT head reads (and backpropagates through).
    Returns ``model`` (modified in place).  Functional in-place ops inside ``forward`` methods
    (``F.relu(x, inplace=True)``, ``x += y``) cannot be fixed this way: avoid tapping their inputs.
    """
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    return model


def _suggest(model: nn.Module, bad: str, valid: list[str], k: int = 8) -> str:
    """A short hint naming valid modules near ``bad``."""
    parts = bad.split(".")
    prefix = ""
    for i in range(len(parts) - 1, 0, -1):  # deepest existing parent of the bad name
        cand = ".".join(parts[:i])
        if cand in valid:
            prefix = cand
            break
    hints: list[str] = []
    if prefix:
        children = [f"{prefix}.{c}" for c, _ in model.get_submodule(prefix).named_children()]
        if children:
            hints.append(f"children of {prefix!r}: {children[:k]}" + (" ..." if len(children) > k else ""))
    close = difflib.get_close_matches(bad, valid, n=5, cutoff=0.5)
    if close:
        hints.append(f"closest names: {close}")
    top = [n for n, _ in model.named_children()]
    hints.append(f"top-level modules: {top[:k]}" + (" ..." if len(top) > k else ""))
    return "; ".join(hints)


def resolve_taps(model: nn.Module, taps: Iterable[str]) -> dict[str, nn.Module]:
    """Check that each dotted name in ``taps`` is a submodule of ``model``.

    Returns ``{name: module}`` in the order given.  Raises ``ValueError`` for an empty list, a
    duplicate, the empty name (the model itself) or an unknown name (the message lists valid names
    near the bad one); ``TypeError`` for a non-string name.
    """
    if isinstance(taps, str):
        taps = [taps]
    taps = list(taps)
    if not taps:
        raise ValueError("no tap points given")
    valid: list[str] | None = None
    out: dict[str, nn.Module] = {}
    for name in taps:
        if not isinstance(name, str):
            raise TypeError(f"tap point names must be strings, got {type(name).__name__}: {name!r}")
        if not name:
            raise ValueError("tap point '' is the whole model; name a submodule instead")
        if name in out:
            raise ValueError(f"tap point {name!r} is listed twice in {taps}")
        try:
            out[name] = model.get_submodule(name)
        except AttributeError:
            if valid is None:
                valid = [n for n, _ in model.named_modules() if n]
            raise ValueError(
                f"tap point {name!r} is not a submodule of {type(model).__name__} (tap points are dotted "
                f"names from model.named_modules()); {_suggest(model, name, valid)}"
            ) from None
    return out


class TapRecorder:
    """Forward hooks on ``taps`` of ``model`` that record each tap's output.

    Modes of :meth:`recording`: ``"full"`` (record and go on), ``"probe"`` (record whatever a
    tap outputs, for :func:`probe_taps`), ``"truncate"`` (the last tap
    raises :class:`StopForward`: nothing after it runs) and ``"split"`` (the last tap hands
    only the first ``keep`` rows on to the rest of the network).  :meth:`take` returns the
    recorded outputs in the order of ``taps``; :meth:`fired` the taps in the order their
    hooks ran (with repeats).
    """

    def __init__(self, model: nn.Module, taps: Iterable[str]) -> None:
        self.modules = resolve_taps(model, taps)
        self.taps = list(self.modules)
        self._captured: list[torch.Tensor | None] = [None] * len(self.taps)
        self.fired: list[str] = []
        self._mode, self._keep = "full", 0
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules.values())]

    def _hook(self, i: int):
        last = i == len(self.taps) - 1

        def hook(module: nn.Module, inputs, output):
            self.fired.append(self.taps[i])
            if self._mode == "probe":  # record anything: probe_taps reports what is wrong
                self._captured[i] = output
                return None
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"tap {self.taps[i]!r} returns {type(output).__name__}; a tap must output one tensor")
            self._captured[i] = output
            if last and self._mode == "truncate":
                raise StopForward
            if last and self._mode == "split":
                return output[: self._keep]
            return None

        return hook

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        """Take every hook off: the model is exactly the user's model again."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def recording(self, mode: str = "full", keep: int = 0) -> Iterator[TapRecorder]:
        """Record during the block (see the class doc for ``mode``); a truncated pass's StopForward is swallowed."""
        if not self._handles:
            raise RuntimeError("the hooks of this EnhancedAuditedModel were removed")
        self._mode, self._keep = mode, keep
        self._captured = [None] * len(self.taps)
        self.fired = []
        try:
            yield self
        except StopForward:
            pass
        finally:
            self._mode, self._keep = "full", 0

    def take(self) -> list[torch.Tensor]:
        """The recorded outputs, in the order of ``taps``; the record is cleared."""
        missing = [t for t, f in zip(self.taps, self._captured) if f is None]
        if missing:
            raise RuntimeError(f"tap points {missing} were not reached by the forward pass")
        out = list(self._captured)  # type: ignore[arg-type]
        self.clear()
        return out

    def clear(self) -> None:
        self._captured = [None] * len(self.taps)


@torch.no_grad()
def probe_taps(model: nn.Module, taps: Sequence[str], example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Run ``model(example)`` once with hooks on ``taps`` and return ``{tap: output shape}``.

    Checks what a MINT head needs: each tap fires exactly once, its output is a single tensor whose
    first dimension is the batch, and the taps fire in the order listed (so a truncated forward can
    stop at the last one).  Raises ``ValueError`` otherwise.  Useful to validate taps on a user's
    own model; the model is put back in its previous train/eval mode and left without hooks.
    """
    recorder = TapRecorder(model, taps)
    was_training = model.training
    try:
        model.eval()
        with recorder.recording("probe"):
            model(example)
            outputs = dict(zip(recorder.taps, recorder._captured))
            fired = list(recorder.fired)
    finally:
        model.train(was_training)
        recorder.remove()
    shapes: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    for tap, out in outputs.items():
        if out is None:
            continue
        if not isinstance(out, torch.Tensor):
            problems.append(f"{tap!r} outputs {type(out).__name__}, not a tensor")
        elif out.dim() < 2 or out.shape[0] != example.shape[0]:
            problems.append(f"{tap!r} output shape {tuple(out.shape)} has no batch dimension")
        else:
            shapes[tap] = tuple(out.shape)
    for tap in recorder.taps:
        n = fired.count(tap)
        if n != 1:
            problems.append(f"{tap!r} ran {n} times in one forward (must be exactly once)")
    if not problems and fired != recorder.taps:
        problems.append(f"taps fired in the order {fired}, not the order listed {recorder.taps}")
    if problems:
        raise ValueError("bad tap points: " + "; ".join(problems))
    return shapes
