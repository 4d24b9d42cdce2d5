"""aMINT as a library (issue 22): the user's model, data and loop; timm:/torchvision: archs; runs saved from outside."""
from __future__ import annotations

import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_fashion_mnist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import activemint
from activemint.cli import main
from activemint.data import DatasetError, load_dataset
from activemint.data.tensors import collect
from activemint.errors import UserError
from activemint.mint import EnhancedAuditedModel
from activemint.models import create_model, tap_points
from activemint.rundir import RunDir, RunError, RunExistsError
from activemint.training.batches import to_input
from activemint.training.config import ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def fmnist(split: str, start: int, stop: int, channels: int = 1) -> TensorDataset:
    require_fashion_mnist()
    ds = load_dataset("fashion-mnist", split)
    return TensorDataset(ds.images[start:stop].expand(-1, channels, -1, -1).contiguous(), ds.labels[start:stop])


class Flat(nn.Module):  # a classifier with no spatial map anywhere: nothing a MINT head can tap
    def __init__(self) -> None:
        super().__init__()
        self.flatten, self.fc = nn.Flatten(), nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.fc(self.flatten(x))


# ------------------------------------------------------------------ make_auditable
def test_make_auditable_taps_by_name_by_setup_and_hands_the_plain_module_back():
    import timm

    net = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)
    plain_out = None
    with torch.no_grad():
        x = torch.randn(4, 1, 28, 28)
        net.eval()
        plain_out = net(x)
    # timm: taps from feature_info ('act1', 'layer1'..'layer4'), two per setup
    names = [d["module"] for d in net.feature_info]
    for setup, want in (("entry", names[:2]), ("middle", names[1:3]), ("output", names[-2:])):
        amint = activemint.make_auditable(net, input_shape=(1, 28, 28), setup=setup)
        assert isinstance(amint, EnhancedAuditedModel) and amint.taps == want
        amint.eval()
        with torch.no_grad():
            logits, member = amint(x)
        assert torch.equal(logits, plain_out) and member.shape == (4,)
        back = amint.to_standard_module()
        assert back is net and not any(m._forward_hooks for m in net.modules())
    # taps by name; the head options of `activemint train` unless given
    amint = activemint.make_auditable(net, input_shape=(1, 28, 28), taps=["layer2", "layer3"], head={"width": 16})
    assert amint.taps == ["layer2", "layer3"] and amint.head.width == 16 and amint.head.norm == TrainConfig().head_norm
    copy = amint.to_standard_module(copy=True)
    assert copy is not net and not any(m._forward_hooks for m in copy.modules())
    assert any(m._forward_hooks for m in net.modules())  # copy=True leaves the wrapper working


def test_make_auditable_errors_are_one_line_and_name_the_candidates():
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError) as e:
        activemint.make_auditable(net, input_shape=(3, 32, 32), taps=["layer9"])
    msg = str(e.value)
    assert "\n" not in msg and "'layer9'" in msg and "tappable modules of ResNet: ['layer1', 'layer2', 'layer3', 'layer4']" in msg
    with pytest.raises(ValueError, match="no tappable module") as e:
        activemint.make_auditable(Flat(), input_shape=(1, 28, 28), setup="entry")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="taps or setup, not both"):
        activemint.make_auditable(net, input_shape=(3, 32, 32), taps=["layer1"], setup="entry")
    with pytest.raises(ValueError, match="unknown setup 'midle'"):
        activemint.make_auditable(net, input_shape=(3, 32, 32), setup="midle")
    with pytest.raises(ValueError, match="unknown head options"):
        activemint.make_auditable(net, input_shape=(3, 32, 32), head={"widht": 8})


def test_loss_is_the_trainers_multitask_loss():
    """One step of amint.loss equals MultitaskLoss over forward_train, term by term and in total."""
    from activemint.mint import MultitaskLoss

    torch.manual_seed(0)
    amint = activemint.make_auditable(create_model("small_cnn", in_chans=1, num_classes=10, img_size=28),
                                      input_shape=(1, 28, 28), taps=tap_points("small_cnn", "entry"))
    xm, xe, y = torch.randn(8, 1, 28, 28), torch.randn(6, 1, 28, 28), torch.randint(0, 10, (8,))
    state = {k: v.clone() for k, v in amint.state_dict().items()}
    loss = amint.loss(xm, y, xe)
    amint.load_state_dict(state)  # BatchNorm running stats back to where they were
    ref = MultitaskLoss()
    logits, mm, me = amint.forward_train(xm, xe)
    want, parts = ref(logits, y, mm, me)
    assert torch.equal(loss, want) and amint.last_losses == parts
    # Exact in IEEE arithmetic: each term divided by itself is exactly 1.0, and 1.0 + 1.0 == 2.0.
    assert float(loss.detach()) == 2.0  # the first batch normalises both terms to 1: 1 + 1
    assert set(amint.state_dict()) == set(state)  # the loss's normalisers are not in the model's weights


def test_loss_under_autocast_is_float32_and_trains():
    torch.manual_seed(0)
    amint = activemint.make_auditable(create_model("small_cnn", in_chans=1, num_classes=10, img_size=28),
                                      input_shape=(1, 28, 28), setup="entry")
    xm, xe, y = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = amint.loss(xm, y, xe)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in amint.head.parameters())


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial model on every process, as DDP requires
    amint = activemint.make_auditable(create_model("small_cnn", in_chans=1, num_classes=10, img_size=28),
                                      input_shape=(1, 28, 28), setup="entry")
    ddp = DistributedDataParallel(amint)
    g = torch.Generator().manual_seed(100 + rank)  # each process its own batch
    xm, xe, y = torch.randn(8, 1, 28, 28, generator=g), torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    loss = ddp(xm, y, xe)
    loss.backward()
    torch.save({"grads": torch.cat([p.grad.flatten() for p in amint.parameters()]), "loss": loss.detach(),
                "norm": torch.stack([amint.multitask.task0, amint.multitask.mint0]), "raw": amint.last_losses["task_loss"]},
               f"{out}/{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_loss_under_distributed_data_parallel_synchronises_gradients_and_normalisers(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path}/store", str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    assert a["raw"] != b["raw"]  # different batches on the two processes ...
    assert torch.equal(a["grads"], b["grads"])  # ... and the same (all-reduced) gradients
    assert torch.equal(a["norm"], b["norm"])  # the first-batch normalisers: averaged over the processes


def test_pixels_to_input_is_the_trainers_to_input_bit_for_bit():
    u8 = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    want = to_input(u8)
    assert torch.equal(activemint.pixels_to_input(u8), want)
    assert torch.equal(activemint.pixels_to_input(u8.float() / 255), want)  # ToTensor()'s floats


def test_collect_reads_any_map_style_dataset_and_refuses_normalised_floats():
    u8 = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(5)
    x, y = collect(TensorDataset(u8.float() / 255, labels))
    assert torch.equal(x, u8) and torch.equal(y, labels)
    x, y = collect([(u8[i, 0].numpy(), int(labels[i])) for i in range(5)])  # (H, W) numpy arrays, a plain list
    assert torch.equal(x, u8)
    with pytest.raises(DatasetError, match=r"members\[0\]: float image with values in \[-0?\.?\d"):
        collect(TensorDataset(u8.float() / 127.5 - 1, labels), "members")
    with pytest.raises(DatasetError, match="not a map-style dataset"):
        collect(iter([(u8[0], 0)]), "external")
    with pytest.raises(DatasetError, match=r"nonmembers\[0\] is a Tensor; expected an \(image, label\) pair"):
        collect([u8[0]], "nonmembers")


def test_collect_reads_a_torchvision_image_folder_pixel_for_pixel(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    rng = np.random.default_rng(0)
    want = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            px = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(px).save(tmp_path / cls / f"{i}.png")
            want[(cls, i)] = torch.from_numpy(px).permute(2, 0, 1)
    for transform in (None, ToTensor()):  # PIL images, and ToTensor()'s floats in [0, 1]
        x, y = collect(ImageFolder(str(tmp_path), transform=transform), "members")
        assert y.tolist() == [0, 0, 1, 1]
        assert all(torch.equal(x[k], want[key]) for k, key in enumerate(sorted(want)))


def test_collect_reads_a_streamed_builtin_data_set(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "test" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "train" / cls / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "test" / cls / "0.png")
    streamed = load_dataset("imagefolder", "train", root=tmp_path, image_size=10, max_memory=1)
    memory = load_dataset("imagefolder", "train", root=tmp_path, image_size=10, max_memory="off")
    assert streamed.streamed and not memory.streamed
    x, y = collect(streamed)
    assert torch.equal(x, memory.images) and torch.equal(y, memory.labels)


# --------------------------------------------------------------------- timm / torchvision archs
def test_external_arch_names_and_errors_are_one_line():
    TrainConfig(arch="timm:test_resnet").validate()
    TrainConfig(arch="torchvision:mobilenet_v3_small").validate()
    for bad, hint in (("timm:resnet1888", "did you mean timm:resnet18"), ("torchvision:resnt18", "torchvision:resnet18")):
        with pytest.raises(ConfigError) as e:
            TrainConfig(arch=bad).validate()
        assert "\n" not in str(e.value) and hint in str(e.value)
    with pytest.raises(ConfigError, match="or timm:NAME / torchvision:NAME"):
        TrainConfig(arch="resnet_18").validate()


def test_torchvision_model_adapted_to_one_channel_and_local_weights_loaded(tmp_path):
    net = create_model("torchvision:resnet18", in_chans=1, num_classes=10, img_size=28)
    assert net.conv1.in_channels == 1 and net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # local weights: a 1000-class checkpoint of the same net; the classifier does not fit and stays random
    torch.manual_seed(1)
    donor = create_model("torchvision:resnet18", in_chans=1, num_classes=1000, img_size=28)
    sd = {k: v.clone() for k, v in donor.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": sd}, tmp_path / "w.pt")
    from activemint.training.build import build_model

    for f in ("w.safetensors", "w.pt"):
        cfg = TrainConfig(arch="torchvision:resnet18", arch_weights=str(tmp_path / f), setup="entry")
        model = build_model(cfg, (1, 28, 28), 10)
        got = model.backbone.state_dict()
        assert torch.equal(got["layer3.0.conv1.weight"], sd["layer3.0.conv1.weight"])
        assert got["fc.weight"].shape == (10, 512)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    from activemint.training.build import preflight

    cfg = TrainConfig(arch="torchvision:resnet18", arch_weights=str(tmp_path / "junk.pt"), dataset="fashion-mnist", device="cpu")
    require_fashion_mnist()
    with pytest.raises(ConfigError, match=r"junk.pt cannot be read as safetensors or a weights-only torch file") as e:
        preflight(cfg)
    assert "\n" not in str(e.value)


def test_cli_untappable_or_unknown_arch_is_one_line(capsys):
    assert main(["train", "--arch", "timm:resnet1888", "--out", "/nonexistent/x"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown timm model 'resnet1888'" in err[0]
    assert main(["train", "--arch", "torchvision:resnet18", "--taps", "layer9", "--out", "/nonexistent/x"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tap point 'layer9' is not a submodule of ResNet" in err[0] and "'layer4'" in err[0]


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["entry", "middle", "output"])
def test_cli_trains_a_timm_arch_with_each_setup(tmp_path, setup):
    require_fashion_mnist()
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "activemint", "train", "--arch", "timm:test_resnet", "--setup", setup, "--members", "128",
           "--external", "128", "--validation", "64", "--calibration", "64", "--eval-nonmembers", "64", "--epochs", "1",
           "--batch-size", "32", "--external-batch-size", "32", "--device", "cpu", "--threads", "1",
           "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch"] == "timm:test_resnet" and meta["taps"] == tap_points("timm:test_resnet", setup)
    assert RunDir(out).is_complete()
    run = activemint.load_run(out, device="cpu")
    assert run.model.taps == meta["taps"] and "membership" in run.evaluate()[0]


# ------------------------------------------------------------------------ the user's loop, saved as a run
def train_in_my_loop(model, members, externals, epochs=2, seed=0):
    """Acceptance 1: the hand-written loop (<= 30 lines) of a user with their own model and data."""
    torch.manual_seed(seed)
    amint = activemint.make_auditable(model, input_shape=tuple(members[0][0].shape), setup="middle")
    opt = torch.optim.Adam(amint.parameters(), lr=1e-3)
    log = []
    for epoch in range(epochs):
        amint.train()
        steps = []
        for (x, y), (xe, _) in zip(DataLoader(members, 32, shuffle=True), DataLoader(externals, 32, shuffle=True)):
            loss = amint.loss(amint.inputs(x), y, amint.inputs(xe))
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps.append(amint.last_losses)
        log.append({"epoch": epoch + 1, **{k: float(np.mean([p[k] for p in steps])) for k in steps[0]}})
    return amint, log


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["torchvision:mobilenet_v3_small", "timm:test_efficientnet"])
def test_user_loop_with_library_models_saved_then_evaluated_audited_reported_by_the_cli(tmp_path, arch, capsys):
    assert len(inspect.getsource(train_in_my_loop).splitlines()) <= 30
    import timm
    import torchvision

    lib, name = arch.split(":")
    torch.manual_seed(0)
    net = (torchvision.models.get_model(name, num_classes=10) if lib == "torchvision"
           else timm.create_model(name, pretrained=False, num_classes=10))  # 3-channel models, as the libraries build them
    members, externals = fmnist("train", 0, 192, 3), fmnist("train", 192, 384, 3)
    nonmembers, calibration = fmnist("test", 0, 128, 3), fmnist("train", 400, 700, 3)
    amint, log = train_in_my_loop(net, members, externals)
    assert [r["epoch"] for r in log] == [1, 2] and all(np.isfinite([r["task_loss"], r["mint_loss"]]).all() for r in log)
    out = tmp_path / "run"
    metrics = activemint.save_run(amint, out, members=members, external=externals, nonmembers=nonmembers,
                                  calibration=calibration, arch=arch, log=log)
    assert metrics["arch"] == arch and metrics["membership"]["n_members"] == 192
    # the saved scores are the in-memory model's own membership logits, bit for bit
    amint.eval()
    with torch.no_grad():
        want = amint.membership_logit(to_input(members.tensors[0])).double().numpy()
    saved = RunDir(out).read_scores()
    assert np.array_equal(saved["members"], want)
    # load_run rebuilds the arch (not in the registry) from config.yaml + model.json's taps
    run = activemint.load_run(out, device="cpu")
    assert run.model.taps == amint.taps and type(run.model.backbone) is type(net)
    assert np.array_equal(run.membership_logits(members.tensors[0]), want)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    assert "matches the saved metrics.json: yes" in capsys.readouterr().out
    assert main(["audit", str(out), "split:members", "--out", str(tmp_path / "audit"), "--device", "cpu"]) == 0
    rows = (tmp_path / "audit" / "samples.csv").read_text().splitlines()
    assert len(rows) == 1 + 192
    assert main(["report", str(out)]) == 0
    assert arch in (out / "report.html").read_text()
    assert RunDir(out).read_log() == log


def test_run_of_a_user_built_model_loads_only_with_the_model_given(tmp_path):
    require_fashion_mnist()

    class Mine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
            self.stage = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(self.stage(self.stem(x)).mean((2, 3)))

    torch.manual_seed(0)
    amint = activemint.make_auditable(Mine(), input_shape=(1, 28, 28), taps=["stem", "stage"])
    members, externals, non = fmnist("train", 0, 64), fmnist("train", 64, 128), fmnist("test", 0, 64)
    out = tmp_path / "run"
    activemint.save_run(amint, out, members=members, external=externals, nonmembers=non)
    with pytest.raises(RunExistsError):
        activemint.save_run(amint, out, members=members, external=externals, nonmembers=non)
    with pytest.raises(RunError, match=r"user:.*Mine\) is built by your own code.*load_run\(path, model="):
        activemint.load_run(out, device="cpu")
    torch.manual_seed(5)  # other random weights: the run's replace them
    run = activemint.load_run(out, device="cpu", model=Mine())
    amint.eval()
    with torch.no_grad():
        want = amint.membership_logit(to_input(members.tensors[0])).double().numpy()
    assert np.array_equal(run.membership_logits(members.tensors[0]), want)
    # a moved run finds its own data
    moved = tmp_path / "moved"
    out.rename(moved)
    assert activemint.load_run(moved, device="cpu", model=Mine()).evaluate()[0]["membership"]["n_members"] == 64
    # a log the report cannot draw, and an arch that does not build the saved model, are refused before anything is written
    with pytest.raises(ValueError, match=r"log\[0\] has none of task_loss, mint_loss"):
        activemint.save_run(amint, tmp_path / "other", members=members, external=externals, nonmembers=non, log=[{"epoch": 1}])
    with pytest.raises(ValueError, match="is not what arch 'small_cnn' builds"):
        activemint.save_run(amint, tmp_path / "other", members=members, external=externals, nonmembers=non, arch="small_cnn")
    with pytest.raises(UserError, match="save_run: .*lrr"):
        activemint.save_run(amint, tmp_path / "other", members=members, external=externals, nonmembers=non, config={"lrr": 1})
    assert not (tmp_path / "other" / "config.yaml").exists()


def test_a_plain_module_is_saved_as_a_plain_run(tmp_path, capsys):
    require_fashion_mnist()
    torch.manual_seed(0)
    net = create_model("small_cnn", in_chans=1, num_classes=10, img_size=28)
    members, non = fmnist("train", 0, 64), fmnist("test", 0, 64)
    metrics = activemint.save_run(net, tmp_path / "plain", members=members, nonmembers=non, arch="small_cnn")
    assert metrics["mint"] is False and "membership" not in metrics
    run = activemint.load_run(tmp_path / "plain", device="cpu")
    assert not run.is_audited and len(run.data.test) == 32  # the other half of the non-members calibrates
    net.eval()
    with torch.no_grad():
        acc = float((net(to_input(run.data.test.images)).argmax(1) == run.data.test.labels).float().mean())
    # A count / 32 computed twice in this process from the same weights; the batches differ, so float32 logits may
    # differ by ~1e-6 and only an argmax gap below that could flip a prediction (seeded: the same on every run here).
    assert acc == metrics["test_accuracy"]
    assert main(["evaluate", str(tmp_path / "plain"), "--device", "cpu"]) == 0


# --------------------------------------------------------------------- acceptance 2: library loop == activemint train
@pytest.mark.slow
def test_library_loop_gives_the_figures_of_activemint_train_bit_for_bit(tmp_path):
    """small_cnn, same seed and batches: the same weights, scores and figures, bit for bit (one process, one CPU)."""
    from activemint.training import Trainer, load_run_data

    require_fashion_mnist()
    cfg = TrainConfig(dataset="fashion-mnist", arch="small_cnn", setup="entry", members=256, external=320, validation=64,
                      calibration=300, eval_nonmembers=128, epochs=2, batch_size=32, external_batch_size=32, select="last",
                      device="cpu", seed=3)
    trained = Trainer(cfg, tmp_path / "train", progress=False).run()

    # The same recipe in a user's loop: the paper's recipe is Adam, lr 1e-4, no augmentation, constant lr.
    data = load_run_data(cfg)
    s = data.splits
    mx, my = data.train.images[torch.as_tensor(s.members)], data.train.labels[torch.as_tensor(s.members)]
    ex = data.train.images[torch.as_tensor(s.external)]
    torch.manual_seed(cfg.seed)
    net = create_model("small_cnn", in_chans=1, num_classes=10, img_size=28)
    amint = activemint.make_auditable(net, input_shape=(1, 28, 28), taps=tap_points("small_cnn", "entry"))
    opt = torch.optim.Adam(amint.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(cfg.seed)  # the trainer's batch order: a permutation of D per epoch ...
    steps = -(-len(mx) // 32)
    for _ in range(cfg.epochs):
        amint.train()
        perm = torch.randperm(len(mx), generator=gen)
        reps = -(-steps * 32 // len(ex))  # ... and of E, repeated to cover the epoch's external batches
        eperm = torch.cat([torch.randperm(len(ex), generator=gen) for _ in range(reps)])
        for k in range(steps):
            b, e = perm[k * 32:(k + 1) * 32], eperm[k * 32:(k + 1) * 32]
            loss = amint.loss(amint.inputs(mx[b]), my[b], amint.inputs(ex[e]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    cal = data.train.images[torch.as_tensor(s.calibration)], data.train.labels[torch.as_tensor(s.calibration)]
    ev = data.test.images[torch.as_tensor(s.eval_nonmembers)], data.test.labels[torch.as_tensor(s.eval_nonmembers)]
    rest = torch.as_tensor(np.setdiff1d(np.arange(len(data.test)), s.eval_nonmembers))  # the rest of the test split
    saved = activemint.save_run(amint, tmp_path / "mine", members=TensorDataset(mx, my), external=TensorDataset(ex, data.train.labels[torch.as_tensor(s.external)]),
                                nonmembers=TensorDataset(*ev), calibration=TensorDataset(*cal), arch="small_cnn", seed=cfg.seed,
                                test=TensorDataset(data.test.images[rest], data.test.labels[rest]))

    a, b = load_file(str(tmp_path / "train" / "model.safetensors")), load_file(str(tmp_path / "mine" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = RunDir(tmp_path / "train").read_scores(), RunDir(tmp_path / "mine").read_scores()
    for role in ("members", "eval_nonmembers", "calibration"):
        assert np.array_equal(sa[role], sb[role])
    assert trained.metrics["membership"] == saved["membership"]
    # test accuracy: over the whole test split both ways (a count of 0/1 values: exact in any order)
    # metrics.json written with json (shortest repr) and read back: the same float64, exactly.
    assert (saved["test_accuracy"], saved["n_test"]) == (trained.metrics["test_accuracy"], trained.metrics["n_test"])


# --------------------------------------------------------------------- acceptance 5: README's example
def readme_example() -> tuple[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Your own model and loop\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README.md has no '## Your own model and loop' section"
    python = re.findall(r"```python\n(.*?)```", m.group(1), re.S)
    shell = re.findall(r"```bash\n(.*?)```", m.group(1), re.S)
    assert len(python) == 1 and len(shell) == 1
    return python[0], [line for line in shell[0].splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path):
    require_fashion_mnist()
    code, commands = readme_example()
    assert len(code.splitlines()) <= 30
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "activemint"
        done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, f"{line}: {done.stderr[-2000:]}"
    run = tmp_path / "runs" / "my-model"
    assert RunDir(run).is_complete() and (run / "report.html").is_file() and any((run / "audits").iterdir())
