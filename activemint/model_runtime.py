"""How an edited model runs once loaded: reduced-precision and int8 runtimes of a model edit.

A model edit (:mod:`activemint.edits`) stores its run's weights as float32 safetensors, so that
every reader of a run (``evaluate``, ``audit``, ``report``, ``robustness``) builds the same
model class and loads them.  Edits that change how the model *computes*, not only its weights,
also record a runtime in ``config.yaml`` (``extra.model_edit.runtime``), which
:func:`activemint.runs.load_run` re-applies after loading the weights:

* ``bf16`` / ``fp16``: the backbone's parameters and activations in that type (the stored
  float32 weights were rounded to it, so the cast is exact);
* ``int8_dynamic``: ``torch.ao.quantization.quantize_dynamic`` on the backbone's ``nn.Linear``
  layers (int8 weights, activations quantised per batch at run time; torch's dynamic
  quantisation leaves convolutions in float).  The stored weights are the float weights
  before quantisation: quantising them is deterministic;
* ``int8_static``: simulated static int8 ("fake quantisation", the numerics of an int8
  deployment in float arithmetic): the stored conv / linear weights already lie on a
  per-channel symmetric int8 grid, and the runtime rounds the backbone's input and the output
  of every leaf module to the per-tensor affine 8-bit grid calibrated at edit time (the scales
  and zero points are in the record).

Only the backbone (the deployed classifier) runs in the edited precision; the MINT head keeps
float32 and reads the edited backbone's taps cast to float32.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from activemint.errors import UserError

RUNTIMES = ("bf16", "fp16", "int8_dynamic", "int8_static")
#: leaf modules whose outputs a static int8 simulation does not round (they only reshape or drop)
NOT_QUANTISED = (nn.Flatten, nn.Identity, nn.Dropout)


class RuntimeSpecError(UserError):
    """A model edit's runtime record is malformed or cannot run here."""


def quiet_ao():
    """A context that hides torch.ao.quantization's deprecation warnings (it still works in torch 2.14)."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
    return ctx


def _float_inputs(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of the head: the taps (a list of tensors) as float32."""
    feats = args[0]
    return ([f.float() for f in feats],) + tuple(args[1:])


def _cast_input(dtype: torch.dtype):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(dtype),) + tuple(args[1:])
    return hook


def _fake_quant(scale: float, zero_point: int, qmin: int, qmax: int):
    def quant(t: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(t.float(), scale, zero_point, qmin, qmax)
    return quant


def static_leaves(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules whose outputs a static int8 simulation rounds (by dotted name)."""
    return [(n, m) for n, m in backbone.named_modules()
            if n and not any(True for _ in m.children()) and not isinstance(m, NOT_QUANTISED)]


def apply_runtime(model: nn.Module, spec: dict[str, Any] | None, *, where: str = "config.yaml") -> nn.Module:
    """Apply a model edit's runtime (``spec``; None: none) to ``model``'s backbone, in place; returns ``model``."""
    if not spec:
        return model
    if not isinstance(spec, dict) or spec.get("kind") not in RUNTIMES:
        raise RuntimeSpecError(f"{where}: model_edit.runtime must be a mapping with kind one of {', '.join(RUNTIMES)}, got {spec!r}")
    kind = spec["kind"]
    backbone = model.backbone
    device = next(iter(backbone.parameters())).device
    if kind.startswith("int8") and device.type != "cpu":
        raise RuntimeSpecError(f"{where}: an {kind} model runs on the CPU only (load it with --device cpu)")
    if getattr(model, "audited", False):
        model.head.register_forward_pre_hook(_float_inputs)
    if kind in ("bf16", "fp16"):
        dtype = torch.bfloat16 if kind == "bf16" else torch.float16
        backbone.to(dtype)
        backbone.register_forward_pre_hook(_cast_input(dtype))
        backbone.register_forward_hook(lambda m, a, out: out.float() if isinstance(out, torch.Tensor) else out)
    elif kind == "int8_dynamic":
        from torch.ao.quantization import quantize_dynamic

        ctx = quiet_ao()
        try:
            quantize_dynamic(backbone, {nn.Linear}, dtype=torch.qint8, inplace=True)
        finally:
            ctx.__exit__(None, None, None)
    else:
        act = spec.get("activations")
        if not isinstance(act, dict) or "input" not in act:
            raise RuntimeSpecError(f"{where}: model_edit.runtime (int8_static) lacks its calibrated activations")
        try:
            qin = _fake_quant(*act["input"])
            backbone.register_forward_pre_hook(lambda m, a: (qin(a[0]),) + tuple(a[1:]))
            for name, module in static_leaves(backbone):
                if name not in act:
                    raise RuntimeSpecError(f"{where}: model_edit.runtime (int8_static) has no activation scale for {name!r}")
                q = _fake_quant(*act[name])
                module.register_forward_hook(lambda m, a, out, q=q: q(out) if isinstance(out, torch.Tensor) else out)
        except (TypeError, ValueError) as e:
            raise RuntimeSpecError(f"{where}: model_edit.runtime (int8_static) activations are malformed ({e})") from e
    return model
