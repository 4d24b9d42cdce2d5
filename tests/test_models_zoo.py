"""Model zoo: every architecture builds for small inputs, its taps exist, fire in order, and are safe."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activemint.models import (
    SETUPS,
    ArchSpec,
    arch_spec,
    create_model,
    disable_inplace,
    list_archs,
    probe_taps,
    register_arch,
    resolve_taps,
    tap_points,
    unregister_arch,
)

EXPECTED_ARCHS = {"small_cnn", "small_cnn_half", "mobilenet_v2", "resnet50", "resnet101", "densenet121", "xception", "vit"}
B = 2
# (in_chans, img_size, num_classes) configurations: all archs on MNIST-like input, a few on RGB.
MNIST = (1, 28, 10)
RGB = (3, 32, 43)
CONFIGS = [(a, MNIST) for a in sorted(EXPECTED_ARCHS)] + [("small_cnn", RGB), ("resnet50", RGB)]

_CACHE: dict = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batch-2 forwards gain nothing from intra-op threads, and with 2 threads on a shared 2-core
    machine a busy neighbour process makes OpenMP barriers ~100x slower.  Restored afterwards."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _run(arch: str, cfg: tuple[int, int, int]):
    """Build ``arch`` once per config and run one forward with hooks on every tap of every setup.

    Returns (model, logits, {tap: activation}, [tap names in hook-call order]).
    """
    key = (arch, cfg)
    if key not in _CACHE:
        in_chans, size, ncls = cfg
        torch.manual_seed(0)
        model = create_model(arch, in_chans=in_chans, num_classes=ncls, img_size=size).eval()
        taps = []
        for setup in SETUPS:
            taps += [t for t in tap_points(arch, setup) if t not in taps]
        acts: dict[str, torch.Tensor] = {}
        order: list[str] = []

        def make_hook(name):
            def hook(_m, _i, out):
                order.append(name)
                acts[name] = out

            return hook

        handles = [m.register_forward_hook(make_hook(n)) for n, m in resolve_taps(model, taps).items()]
        with torch.no_grad():
            logits = model(torch.randn(B, in_chans, size, size))
        for h in handles:
            h.remove()
        _CACHE[key] = (model, logits, acts, order)
    return _CACHE[key]


def test_registry_lists_exactly_the_builtin_archs():
    assert set(list_archs()) == EXPECTED_ARCHS
    assert list_archs() == sorted(list_archs())
    for name in EXPECTED_ARCHS:
        spec = arch_spec(name)
        assert isinstance(spec, ArchSpec) and spec.name == name and spec.description
        assert set(spec.taps) == set(SETUPS)
        for setup in SETUPS:
            assert 1 <= len(spec.taps[setup]) <= 2
            assert tap_points(name, setup) == list(spec.taps[setup])


def test_unknown_arch_and_setup_errors():
    with pytest.raises(ValueError, match="resnet50"):  # the message lists the known names
        arch_spec("resnet5O")
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("no_such_net", in_chans=1, num_classes=10, img_size=28)
    with pytest.raises(ValueError, match="entry"):
        tap_points("small_cnn", "input")


@pytest.mark.parametrize("kw", [dict(in_chans=0), dict(num_classes=0), dict(img_size=8), dict(in_chans=1.0)])
def test_create_model_rejects_bad_arguments(kw):
    args = dict(in_chans=1, num_classes=10, img_size=28) | kw
    with pytest.raises(ValueError):
        create_model("small_cnn", **args)


def test_register_arch_validates_and_rejects_duplicates():
    with pytest.raises(ValueError, match="keys"):
        register_arch("tmp_bad", taps={"entry": ("a",), "middle": ("b",)})
    with pytest.raises(ValueError, match="non-empty"):
        register_arch("tmp_bad", taps={"entry": (), "middle": ("b",), "output": ("c",)})
    with pytest.raises(ValueError, match="already registered"):
        register_arch("small_cnn", taps={s: ("x",) for s in SETUPS})(lambda c, n, s: nn.Identity())

    taps = {"entry": ("0",), "middle": ("1",), "output": ("2", "3")}
    try:

        @register_arch("tmp_mlp", taps=taps, description="tmp")
        def tmp_mlp(in_chans, num_classes, img_size):
            return nn.Sequential(
                nn.Conv2d(in_chans, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
            )

        model = create_model("tmp_mlp", in_chans=1, num_classes=3, img_size=16)
        assert not model[1].inplace  # create_model disables in-place activations
        assert tap_points("tmp_mlp", "output") == ["2", "3"]
    finally:
        unregister_arch("tmp_mlp")
    assert "tmp_mlp" not in list_archs()


@pytest.mark.parametrize("arch,cfg", CONFIGS, ids=[f"{a}-{c[0]}x{c[1]}" for a, c in CONFIGS])
def test_forward_and_taps(arch, cfg):
    in_chans, size, ncls = cfg
    model, logits, acts, order = _run(arch, cfg)
    assert logits.shape == (B, ncls)
    assert torch.isfinite(logits).all()
    # every hooked tap fired exactly once
    assert sorted(order) == sorted(set(order)) and set(order) == set(acts)
    for setup in SETUPS:
        taps = tap_points(arch, setup)
        assert len(taps) == 2, f"{arch}/{setup}: two taps expected"
        for t in taps:
            a = acts[t]
            assert isinstance(a, torch.Tensor), (arch, t)
            assert a.dim() == (3 if arch == "vit" else 4), (arch, t, tuple(a.shape))
            assert a.shape[0] == B
            assert a[0].numel() > 0
            assert torch.isfinite(a).all()
        # listed in forward-execution order (the last tap is where a truncated forward may stop)
        fired = [t for t in order if t in taps]
        assert fired == taps, f"{arch}/{setup}: hooks fired {fired}, listed {taps}"
    # setups go from the input side to the output side
    first = {s: order.index(tap_points(arch, s)[0]) for s in SETUPS}
    last = {s: order.index(tap_points(arch, s)[-1]) for s in SETUPS}
    assert first["entry"] <= first["middle"] <= first["output"]
    assert last["entry"] <= last["middle"] <= last["output"]


@pytest.mark.parametrize("arch", sorted(EXPECTED_ARCHS))
def test_no_inplace_modules_and_probe(arch):
    model, _, _, _ = _run(arch, MNIST)
    bad = [n for n, m in model.named_modules() if getattr(m, "inplace", False) is True]
    assert not bad, f"in-place modules left in {arch}: {bad[:5]}"
    # one forward with all taps of all setups, listed entry -> middle -> output
    all_taps = []
    for setup in SETUPS:
        all_taps += [t for t in tap_points(arch, setup) if t not in all_taps]
    shapes = probe_taps(model, all_taps, torch.randn(B, 1, 28, 28))
    assert list(shapes) == all_taps


@pytest.mark.parametrize("arch", sorted(EXPECTED_ARCHS))
def test_resolve_taps_bad_name_is_clear(arch):
    model, _, _, _ = _run(arch, MNIST)
    good = tap_points(arch, "output")
    assert list(resolve_taps(model, good)) == good
    bad = good[-1] + "_nope"
    with pytest.raises(ValueError) as exc:
        resolve_taps(model, [good[0], bad])
    msg = str(exc.value)
    assert repr(bad) in msg
    assert "top-level modules" in msg


def test_resolve_taps_suggestions_on_a_user_model():
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(1, 4, 3))
    model.add_module("layer1", nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)))
    model.add_module("head", nn.Linear(4, 2))
    assert list(resolve_taps(model, ["stem", "layer1.2"])) == ["stem", "layer1.2"]
    assert list(resolve_taps(model, "layer1")) == ["layer1"]
    with pytest.raises(ValueError, match=r"children of 'layer1': \['layer1.0', 'layer1.1', 'layer1.2'\]"):
        resolve_taps(model, ["layer1.7"])
    with pytest.raises(ValueError, match=r"closest names: \[.*'layer1'") as exc:
        resolve_taps(model, ["layer2"])
    assert "top-level modules: ['stem', 'layer1', 'head']" in str(exc.value)
    with pytest.raises(ValueError, match="twice"):
        resolve_taps(model, ["stem", "stem"])
    with pytest.raises(ValueError, match="whole model"):
        resolve_taps(model, [""])
    with pytest.raises(ValueError, match="no tap points"):
        resolve_taps(model, [])
    with pytest.raises(TypeError):
        resolve_taps(model, [0])


def test_probe_taps_rejects_wrong_order_and_non_firing_taps():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Identity())
    x = torch.randn(B, 1, 12, 12)
    assert probe_taps(model, ["0", "2"], x) == {"0": (B, 4, 10, 10), "2": (B, 4, 8, 8)}
    with pytest.raises(ValueError, match="order"):
        probe_taps(model, ["2", "0"], x)

    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model
            self.spare = nn.ReLU()  # never called in forward

        def forward(self, inp):
            return self.body(inp)

    with pytest.raises(ValueError, match="0 times"):
        probe_taps(WithSpare(), ["body.0", "spare"], x)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, inp):
            return self.conv(self.conv(inp))

    with pytest.raises(ValueError, match="2 times"):
        probe_taps(Twice(), ["conv"], x)


def test_disable_inplace_on_a_user_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Sequential(nn.ReLU6(inplace=True), nn.Dropout(0.1, inplace=True)))
    assert disable_inplace(model) is model
    assert not any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("arch", sorted(EXPECTED_ARCHS))
def test_backprop_through_tapped_activations(arch):
    """A MINT head reads the taps and is trained jointly: autograd must survive (no in-place overwrites)."""
    model, _, _, _ = _run(arch, MNIST)
    model.train()
    taps = tap_points(arch, "output")
    acts = []
    handles = [m.register_forward_hook(lambda _m, _i, o: acts.append(o)) for m in resolve_taps(model, taps).values()]
    try:
        model.zero_grad(set_to_none=True)
        logits = model(torch.randn(B, 1, 28, 28))
        loss = F.cross_entropy(logits, torch.tensor([0, 1])) + sum(a.float().flatten(1).pow(2).mean() for a in acts)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.eval()
    assert len(acts) == len(taps)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_small_inputs_are_not_shrunk_too_early():
    """Small-input stems downsample ~2x: the first taps keep at least half the resolution."""
    for arch in ("small_cnn", "mobilenet_v2", "resnet50", "densenet121", "xception"):
        _, _, acts, _ = _run(arch, MNIST)
        h = acts[tap_points(arch, "entry")[0]].shape[-1]
        assert h >= 12, (arch, h)
    _, _, acts, _ = _run("vit", MNIST)
    assert acts["blocks.0"].shape[1:] == (1 + 7 * 7, 64)  # patch 4 on 28 px, dim 64


def test_models_never_need_pretrained_weights_and_are_seeded():
    torch.manual_seed(1)
    a = create_model("small_cnn", in_chans=1, num_classes=10, img_size=28)
    torch.manual_seed(1)
    b = create_model("small_cnn", in_chans=1, num_classes=10, img_size=28)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
        assert pa.is_contiguous()  # parameters stay in the default layout (safe for safetensors)
