"""Any timm or torchvision classifier as an audited architecture, and tap discovery on any module.

``timm:NAME`` and ``torchvision:NAME`` name a model those libraries build (``timm.create_model``,
``torchvision.models.get_model``), always with random weights (``pretrained=False`` /
``weights=None``: nothing is downloaded).  Unlike the registry's own architectures their stems are
left as the library builds them (only a torchvision model's first 3-channel convolution is
replaced when the data has another number of channels).  Local weights, where the user has
them, are loaded by :func:`load_local_weights` (safetensors, or ``torch.load(weights_only=True)``).

Where to tap (:func:`tap_candidates`): timm models list their stages in ``feature_info``; any
other module is probed once, and the candidates are the submodules of the shallowest level that
has at least three containers each firing exactly once with a batch-first ``(B, C, H, W)`` map
or ``(B, N, D)`` token sequence.  :func:`setup_taps` picks two of them per setup: the first two
(``entry``), the two in the middle (``middle``) and the last two (``output``).
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never try to reach the Hugging Face hub

import torch
from torch import nn

from activemint.errors import UserError
from activemint.setups import SETUPS

from .taps import disable_inplace, probe_taps

LIBRARIES = ("timm", "torchvision")
#: ``user:<module>.<class>``: a model built by the user's own code, saved by ``activemint.save_run``
#: without an ``arch`` it can be rebuilt from; only ``load_run(path, model=...)`` loads it.
USER_PREFIX = "user:"
#: Input sizes (3 channels) a model's taps are discovered with when only its name is known, tried in order.
PROBE_SIZES = (64, 224)


class ArchWeightsError(UserError):
    """A local weights file cannot be read or does not fit the model."""


def is_external(name: object) -> bool:
    """Whether ``name`` is ``timm:NAME`` or ``torchvision:NAME``."""
    return isinstance(name, str) and name.partition(":")[0] in LIBRARIES and bool(name.partition(":")[2])


def is_user_arch(name: object) -> bool:
    """Whether ``name`` is ``user:...`` (a model only the user's code builds)."""
    return isinstance(name, str) and name.startswith(USER_PREFIX) and len(name) > len(USER_PREFIX)


def _split(name: str) -> tuple[str, str]:
    lib, _, model = name.partition(":")
    return lib, model


def _known(lib: str) -> list[str]:
    if lib == "timm":
        import timm

        return timm.list_models()
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def check_external(name: str) -> None:
    """Raise a one-line ``ValueError`` unless the library of ``name`` builds a classifier of that name."""
    lib, model = _split(name)
    if lib == "timm":
        import timm

        ok = timm.is_model(model)
    else:
        ok = model in _known(lib)
    if not ok:
        close = difflib.get_close_matches(model, _known(lib), n=4)
        raise ValueError(f"unknown {lib} model {model!r} in arch {name!r}"
                         + (f"; did you mean {', '.join(f'{lib}:{c}' for c in close)}?" if close else
                            f"; list them with {'timm.list_models()' if lib == 'timm' else 'torchvision.models.list_models()'}"))


def _first_rgb_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            parent_name, _, attr = name.rpartition(".")
            return (model.get_submodule(parent_name) if parent_name else model), attr, module
    return None


def build_external(name: str, *, in_chans: int, num_classes: int, img_size: int, **kwargs) -> nn.Module:
    """Build ``timm:NAME`` / ``torchvision:NAME`` with random weights for ``in_chans`` x ``img_size`` inputs.

    timm: ``timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...)`` (and
    ``img_size`` for the models whose input size is fixed, e.g. ViTs).  torchvision:
    ``get_model(NAME, weights=None, num_classes=...)``, and for ``in_chans != 3`` its first
    3-channel conv is replaced by one taking ``in_chans`` (same kernel, stride, padding).
    ``kwargs`` go to the library (e.g. ``width_mult=0.25`` for torchvision's MobileNetV2).
    In-place activations are switched off (taps must not be overwritten).
    """
    check_external(name)
    lib, model_name = _split(name)
    if lib == "timm":
        import timm

        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                      img_size=img_size, **kwargs)
        except TypeError:  # a model whose input size is not fixed takes no img_size
            model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        import torchvision.models

        model = torchvision.models.get_model(model_name, weights=None, num_classes=num_classes, **kwargs)
        if in_chans != 3:
            found = _first_rgb_conv(model)
            if found is None:
                raise ValueError(f"arch {name!r}: no 3-channel convolution to adapt to {in_chans}-channel inputs")
            parent, attr, old = found
            setattr(parent, attr, nn.Conv2d(in_chans, old.out_channels, old.kernel_size, stride=old.stride,
                                            padding=old.padding, dilation=old.dilation, groups=1, bias=old.bias is not None))
    return disable_inplace(model)


# ----------------------------------------------------------------------------- taps
def _feature_info_names(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if not isinstance(info, (list, tuple)):
        return []
    names = [d.get("module") for d in info if isinstance(d, dict)]
    return [n for n in names if isinstance(n, str) and n]


@torch.no_grad()
def _probe_all(model: nn.Module, example: torch.Tensor, max_depth: int = 3) -> dict[str, tuple[int, tuple[int, ...] | None]]:
    """One eval forward with a hook on every module up to ``max_depth`` dots deep: name -> (times fired, shape of a good output)."""
    seen: dict[str, list] = {}
    handles = []

    def hook(name: str):
        def fn(module, inputs, output):
            rec = seen.setdefault(name, [0, None, len(seen)])
            rec[0] += 1
            ok = isinstance(output, torch.Tensor) and output.dim() in (3, 4) and output.shape[0] == example.shape[0]
            rec[1] = tuple(output.shape) if ok else None
        return fn

    for name, module in model.named_modules():
        if name and name.count(".") < max_depth:
            handles.append(module.register_forward_hook(hook(name)))
    was = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    order = sorted(seen, key=lambda n: seen[n][2])
    return {n: (seen[n][0], seen[n][1]) for n in order}


def tap_candidates(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Dotted names where a MINT head can read ``model``, in forward order (see the module doc).

    Raises a one-line ``ValueError`` when the model has none (no submodule outputs a batch-first
    map or token sequence exactly once per forward).
    """
    param = next(model.parameters(), None)
    example = torch.zeros(2, *input_shape, device=None if param is None else param.device)
    names = _feature_info_names(model)
    if names:
        try:
            probe_taps(model, names, example)
            return names
        except (ValueError, TypeError, RuntimeError, AttributeError):
            pass  # fall back to probing the module tree
    try:
        fired = _probe_all(model, example)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ValueError(f"{type(model).__name__} does not run on inputs of shape {tuple(input_shape)}: {msg}") from None
    good = [n for n, (times, shape) in fired.items() if times == 1 and shape is not None]
    containers = {n for n in good if any(True for _ in model.get_submodule(n).children())}
    best: list[str] = []
    for depth in range(3):
        level = [n for n in good if n.count(".") == depth and n in containers]
        if len(level) >= 3:
            return level
        if len(level) > len(best):
            best = level
    if not best:
        best = [n for n in good if n.count(".") == 0]
    if not best:
        raise ValueError(f"{type(model).__name__} has no tappable module: none of its submodules outputs a (B, C, H, W) map "
                         f"or (B, N, D) token sequence exactly once per forward; name taps yourself")
    return best


def setup_taps(candidates: Sequence[str], setup: str) -> list[str]:
    """Two taps of ``candidates`` for ``setup``: the first two, the middle two or the last two (one if only one)."""
    if setup not in SETUPS:
        raise ValueError(f"unknown tap setup {setup!r}; expected one of {list(SETUPS)}")
    c = list(candidates)
    k = min(2, len(c))
    start = {"entry": 0, "middle": (len(c) - k) // 2, "output": len(c) - k}[setup]
    return c[start:start + k]


# --------------------------------------------------------------------------- weights
def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ArchWeightsError(f"arch weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors / unpickler errors of every kind: one line
        msg = " ".join(str(e).split())[:200]
        raise ArchWeightsError(f"arch weights {path} cannot be read as safetensors or a weights-only torch file "
                               f"({type(e).__name__}: {msg})") from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArchWeightsError(f"arch weights {path}: expected a state dict of tensors")
    return state


def load_local_weights(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a local weights file into ``model`` (safetensors or ``torch.load(weights_only=True)``).

    Keys whose shape differs from the model's (a classifier for another number of classes, an
    adapted first conv) are left at their random initialisation and returned.  A file of which
    no tensor fits, or that cannot be read, raises a one-line :class:`ArchWeightsError`.
    """
    path = Path(path)
    state = _read_state(path)
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fits:
        raise ArchWeightsError(f"arch weights {path}: none of its {len(state)} tensors fits {type(model).__name__} "
                               f"(first keys: {list(state)[:3]}; the model's: {list(own)[:3]})")
    model.load_state_dict(fits, strict=False)
    return sorted(set(own) - set(fits))
