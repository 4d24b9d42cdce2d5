"""Streaming vs in-memory on a generated folder of >= 100,000 small images: peak memory and images/s.

The folder (``--root``, default ``/tmp/activemint-stream-bench``; never inside the repository)
holds ``--n`` 32x32 RGB PNGs in 10 class folders, made from Fashion-MNIST: image ``i`` is
Fashion-MNIST image ``i mod 70000`` (train then test), upscaled 28 -> 32 px (PIL bilinear),
mirrored when ``i >= 70000``, and tinted with a seeded random colour (so files differ and
compress like small natural images: ~1.5 KB each).  It is generated once and reused.

Each mode runs in a fresh subprocess (so its peak RSS is its own), ``--rounds`` times,
alternating memory / streamed so that load from other processes hits both alike:

* ``memory``:   ``load_dataset("imagefolder", ..., max_memory="off")``: every file decoded
  into one uint8 tensor up front (today's path);
* ``streamed``: ``max_memory="0"``: files listed up front, decoded on demand by
  ``DataLoader`` worker processes (``ACTIVEMINT_STREAM_WORKERS``, default min(4, cores)).

Per mode: ``load`` = seconds to get the data set object (listing; for memory also decoding
everything), ``read`` = images/s of ``--batches`` random batches fetched exactly as the trainer
does (``rows = ds.rows(...)``, ``plan_batches(rows, perm, b)``, ``rows[idx]``), ``train`` =
images/s of ``--train-batches`` steps of small_cnn (forward, cross-entropy, backward, Adam) fed
the same way, and peak RSS: the main process's ``VmHWM`` and the largest worker's
``VmHWM`` (workers are forked, so their RSS counts pages shared with the main process), and
the peak PSS of main + workers together (shared pages counted once; sampled every 10 steps).  Ratios are streamed / memory from the same run.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/streaming.py --n 100000 --rounds 2 \\
        --out benchmarks/results/streaming-cpu.md
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


# --------------------------------------------------------------------------- the folder
def _idx(path: Path) -> np.ndarray:
    if path.suffix == ".gz":
        with gzip.open(path) as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_chunk(args: tuple[str, int, int, int]) -> int:
    from PIL import Image

    root, start, stop, seed = args
    x = np.concatenate([_idx(FASHION / "train-images-idx3-ubyte.gz"), _idx(FASHION / "t10k-images-idx3-ubyte.gz")])
    y = np.concatenate([_idx(FASHION / "train-labels-idx1-ubyte.gz"), _idx(FASHION / "t10k-labels-idx1-ubyte.gz")])
    for i in range(start, stop):
        j = i % len(x)
        img = Image.fromarray(x[j], "L").resize((32, 32), Image.BILINEAR)
        if i >= len(x):
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        tint = np.random.default_rng([seed, i]).uniform(0.35, 1.0, size=3)
        rgb = (np.asarray(img, dtype=np.float32)[:, :, None] * tint[None, None, :]).round().astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(Path(root) / CLASSES[y[j]] / f"{i:06d}.png")
    return stop - start


def generate(root: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` PNGs under ``root/<class>/`` unless exactly ``n`` are there already."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text().strip() == str(n):
        return
    from multiprocessing import Pool

    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    t = time.time()
    step = 5000
    with Pool(min(4, os.cpu_count() or 1)) as pool:
        done = sum(pool.imap_unordered(_write_chunk, [(str(root), s, min(s + step, n), seed) for s in range(0, n, step)]))
    marker.write_text(str(n))
    print(f"generated {done} images in {root} in {time.time() - t:.0f} s", flush=True)


# --------------------------------------------------------------------------- one mode, in a fresh process
def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # where /proc is missing


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def _status(pid: int | str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pss(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """Peaks of the main process's anonymous RSS (data, not library code), the workers' RSS and main + workers' PSS.

    Sampled every few steps.  ``RssAnon`` leaves out file-backed pages: the first call of a
    torch kernel faults in hundreds of MB of libtorch code, which ``VmHWM`` counts.
    """

    def __init__(self) -> None:
        self.worker_hwm = 0
        self.pss_total = 0
        self.anon = 0

    def __call__(self) -> None:
        self.anon = max(self.anon, _status("self", "RssAnon"))
        kids = _children()
        self.worker_hwm = max([self.worker_hwm, *(_status(k, "VmHWM") for k in kids)])
        self.pss_total = max(self.pss_total, _pss("self") + sum(_pss(k) for k in kids))


def child(mode: str, root: Path, batch: int, batches: int, train_batches: int, seed: int) -> dict:
    import torch
    from torch import nn

    from activemint.data import load_dataset
    from activemint.data.streaming import plan_batches
    from activemint.models import create_model
    from activemint.training.batches import to_input

    base = _vmhwm()
    anon_base = _status("self", "RssAnon")
    budget = "off" if mode == "memory" else "0"
    t = time.time()
    train = load_dataset("imagefolder", "train", root=root, image_size=32, max_memory=budget)
    test = load_dataset("imagefolder", "test", root=root, image_size=32, max_memory=budget)
    load_s = time.time() - t
    after_load = _vmhwm()
    sample = Sampler()
    sample()
    n = len(train)
    rows = train.rows(None)  # memory: the split's tensor itself; streamed: a lazy view of every file
    gen = torch.Generator().manual_seed(seed)

    perm = torch.randperm(n, generator=gen)[: batch * batches]
    plan_batches(rows, perm, batch)
    t = time.time()
    checksum = 0
    for s in range(batches):
        x = rows[perm[s * batch : (s + 1) * batch]]
        checksum += int(x.numpy().sum(dtype=np.int64))
        if s % 10 == 5:
            sample()
    read_s = time.time() - t
    after_read = _vmhwm()
    sample()

    torch.manual_seed(seed)
    model = create_model("small_cnn", in_chans=3, num_classes=train.num_classes, img_size=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(n, generator=gen)[: batch * train_batches]
    plan_batches(rows, perm, batch)
    t = time.time()
    for s in range(train_batches):
        idx = perm[s * batch : (s + 1) * batch]
        loss = loss_fn(model(to_input(rows[idx])), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s % 10 == 5:
            sample()
    train_s = time.time() - t
    sample()
    return {
        "mode": mode, "n_train": n, "n_test": len(test), "load_s": load_s,
        "read_img_s": batch * batches / read_s, "train_img_s": batch * train_batches / train_s,
        "rss_base": base, "rss_after_load": after_load, "rss_after_read": after_read, "rss_peak": _vmhwm(),
        "worker_rss_peak": sample.worker_hwm, "rss_anon_peak": sample.anon, "rss_anon_base": anon_base, "pss_total_peak": max(sample.pss_total, _pss("self")),
        "workers": getattr(train, "workers", 0), "prefetch": getattr(train, "prefetch", 0),
        "checksum": checksum, "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- driver
def _mb(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/activemint-stream-bench"), help="folder of generated images (outside the repo)")
    p.add_argument("--n", type=int, default=100_000, help="images to generate (>= 100000 for the acceptance)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=200, help="batches of the read pass")
    p.add_argument("--train-batches", type=int, default=60, help="training steps of the training pass")
    p.add_argument("--rounds", type=int, default=2, help="fresh-process runs per mode, alternating")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write a markdown report here")
    p.add_argument("--child", choices=["memory", "streamed"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.root, a.batch, a.batches, a.train_batches, a.seed)))
        return 0
    generate(a.root, a.n, a.seed)
    results: dict[str, list[dict]] = {"memory": [], "streamed": []}
    cmd = [sys.executable, __file__, "--root", str(a.root), "--batch", str(a.batch), "--batches", str(a.batches),
           "--train-batches", str(a.train_batches), "--seed", str(a.seed)]
    for r in range(a.rounds):
        for mode in ("memory", "streamed"):
            out = subprocess.run([*cmd, "--child", mode], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[mode].append(res)
            print(f"round {r + 1} {mode}: {json.dumps(res)}", flush=True)
    assert len({res["checksum"] for rs in results.values() for res in rs}) == 1, "modes read different pixels"

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in results[mode])

    m, s = "memory", "streamed"
    rows = [
        ("load (s): list files (+ decode all, memory)", f"{med(m, 'load_s'):.1f}", f"{med(s, 'load_s'):.1f}", med(s, "load_s") / med(m, "load_s")),
        ("read pass (img/s)", f"{med(m, 'read_img_s'):.0f}", f"{med(s, 'read_img_s'):.0f}", med(s, "read_img_s") / med(m, "read_img_s")),
        ("training pass, small_cnn (img/s)", f"{med(m, 'train_img_s'):.0f}", f"{med(s, 'train_img_s'):.0f}", med(s, "train_img_s") / med(m, "train_img_s")),
        ("peak anonymous RSS, main process (sampled)", _mb(med(m, "rss_anon_peak")), _mb(med(s, "rss_anon_peak")),
         med(s, "rss_anon_peak") / med(m, "rss_anon_peak")),
        ("  of which: anonymous RSS after import", _mb(med(m, "rss_anon_base")), _mb(med(s, "rss_anon_base")),
         med(s, "rss_anon_base") / med(m, "rss_anon_base")),
        ("peak RSS (VmHWM), main process", _mb(med(m, "rss_peak")), _mb(med(s, "rss_peak")), med(s, "rss_peak") / med(m, "rss_peak")),
        ("RSS after import (before data)", _mb(med(m, "rss_base")), _mb(med(s, "rss_base")), med(s, "rss_base") / med(m, "rss_base")),
        ("peak RSS, largest worker", "-", _mb(med(s, "worker_rss_peak")), float("nan")),
        ("peak PSS, main + workers (sampled)", _mb(med(m, "pss_total_peak")), _mb(med(s, "pss_total_peak")),
         med(s, "pss_total_peak") / med(m, "pss_total_peak")),
    ]
    n_train, n_test = results[m][0]["n_train"], results[m][0]["n_test"]
    decoded = (n_train + n_test) * 3 * 32 * 32
    st = results[s][0]
    inflight = (st["workers"] * st["prefetch"] + 2) * a.batch * 3 * 32 * 32
    head = f"{'':46s}{'memory':>12s}{'streamed':>12s}{'ratio s/m':>11s}"
    lines = [head] + [f"{k:46s}{v1:>12s}{v2:>12s}{r:>11.2f}" for k, v1, v2, r in rows]
    print("\n".join(lines))
    if a.out:
        cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True, check=False).stdout.split(":")[-1].strip()
        cmdline = "OMP_WAIT_POLICY=PASSIVE python benchmarks/streaming.py " + " ".join(
            f"{k} {v}" for k, v in (("--n", a.n), ("--batch", a.batch), ("--batches", a.batches),
                                    ("--train-batches", a.train_batches), ("--rounds", a.rounds), ("--out", a.out)))
        md = [
            "# Streaming vs in-memory image folder (CPU)", "",
            f"Command: `{cmdline}`", "",
            (f"Machine: {cpu}, {os.cpu_count()} vCPUs, shared with other jobs while this ran (ratios within one run only); "
             f"torch {__import__('torch').__version__}, Python {platform.python_version()}, torch threads {st['torch_threads']}, "
             f"{st['workers']} DataLoader workers x prefetch {st['prefetch']}."), "",
            (f"Data: {a.n} generated 32x32 RGB PNGs in 10 class folders under {a.root} (Fashion-MNIST upscaled, mirrored "
             f"beyond 70,000, tinted with a seeded random colour); read as `imagefolder` at 32 px: {n_train} train + "
             f"{n_test} test images = {_mb(decoded)} decoded. Medians of {a.rounds} fresh-process runs per mode, alternating."), "",
            "| | memory | streamed | streamed / memory |", "|---|---:|---:|---:|",
            *[f"| {k} | {v1} | {v2} | {'-' if math.isnan(r) else f'{r:.2f}'} |" for k, v1, v2, r in rows], "",
            (f"Read pass: {a.batches} random batches of {a.batch}; training pass: {a.train_batches} steps of small_cnn "
             "(forward, cross-entropy, backward, Adam), both fed as the trainer does (`ds.rows`, `plan_batches`, `rows[idx]`)."),
            "", ("Bound (streamed, main process): RSS after import + file list and labels "
                 f"+ (workers x prefetch + 2) x batch x image bytes = ({st['workers']} x {st['prefetch']} + 2) x {a.batch} x 3072 B "
                 f"= {_mb(inflight)} of decoded batches in flight + the model and optimiser; independent of the number of images "
                 "except for the file list (~200 B a file held, plus allocator slack from the folder scan).  Measured growth of anonymous memory over the import baseline: "
                 f"{_mb(med(s, 'rss_anon_peak') - med(s, 'rss_anon_base'))} streamed vs "
                 f"{_mb(med(m, 'rss_anon_peak') - med(m, 'rss_anon_base'))} in memory.  VmHWM also counts file-backed pages "
                 "(libtorch code faulted in by the first call of each kernel), hence its large common offset."),
            "", "Per-run records:", "", "```",
            *[json.dumps(x) for mode in (m, s) for x in results[mode]], "```", "",
        ]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(md))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
