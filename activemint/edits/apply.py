"""Named, seeded model edits of an audited run, each written as a run directory of its own.

``edit_run(RUN, "prune-unstructured", "0.5", OUT)`` loads the aMINT run ``RUN``, edits its
model and writes ``OUT`` as a complete run directory that ``evaluate``, ``audit``, ``report``
and ``robustness`` read like any other::

    OUT/
      config.yaml        the source run's config; extra.model_edit records the edit (name, level,
                         seed, options, the source run and its model's SHA-256, what happened to
                         the head, the runtime, what the stored weights hold)
      provenance.yaml    this activemint / torch / machine, and the source run
      manifest.csv       the source run's splits (a byte copy: same D, E, calibration, test)
      model.safetensors  the edited model's weights, float32 (+ model.json)
      scores.npz, metrics.json   the edited model's evaluation, as ``train`` writes them

Edits (``NAME:LEVEL``; :data:`EDITS` lists each one's default levels):

========================  ========================================================================
``finetune-external:N``   N epochs of the task loss on the externals E (non-member data), backbone only
``finetune-members:N``    N epochs of the task loss on the members D, backbone only
``prune-unstructured:A``  per-layer L1 magnitude pruning of a fraction A of every conv / linear weight
``prune-structured:A``    per-layer L2 pruning of a fraction A of every conv layer's filters
``prune-global:A``        L1 magnitude pruning of a fraction A of all conv / linear weights together
``prune-*-ft:A``          the same, then 1 epoch of recovery fine-tuning on E with the masks kept
``quantize:KIND``         bf16, fp16, int8-dynamic (torch.ao) or int8-static (calibrated on E, simulated)
``distill-same:N``        a fresh student of the same architecture distilled on E for N epochs; the
                          teacher's head is carried onto the student's taps
``distill-small:N``       a half-width student (small_cnn_half) distilled on E for N epochs; it has no
                          head of the teacher's shape, so a post-hoc head is trained on it (D and E)
========================  ========================================================================

``reattach=K`` adds K epochs of head-only training on the edited model (D = members,
E = non-members), the auditor's re-attachment step after an edit broke the head.

**Held-out members.** A head trained on members of D recognises those very members, whatever
the model learned from them (a head re-attached to a student that never saw D still flags the
D it was trained on).  So a re-attached head, and the post-hoc head of ``distill-small``, train
on a seeded random part of D only (``reattach_members``, default half) and that head is then
measured on the *other* members of D alone (:func:`scored_members`; black-box scorers, which
never saw them, on all of D); the
train-split indices of the members the head saw are recorded in the edited run's config
(``extra.model_edit.head_trained_members``).  ``reattach_members=1`` trains on all of D, as
before: its figures are then an upper bound (the head is scored on its own training members),
and its run folders and table rows say so (``+reattachK-allD``).
"""
from __future__ import annotations

import dataclasses
import difflib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from activemint import rundir
from activemint.errors import UserError
from activemint.io import atomic_write, file_sha256
from activemint.rundir import RunDir
from activemint.runs import Run, load_run
from activemint.training.build import build_model, checkpoint_metadata, provenance
from activemint.training.checkpoint import save_weights
from activemint.training.config import TrainConfig
from activemint.training.evaluation import evaluate, write_evaluation

from . import ops

RECORD_KEY = "model_edit"
STUDENT_ARCH = "small_cnn_half"
QUANT_KINDS = {"bf16": "bf16", "fp16": "fp16", "int8-dynamic": "int8_dynamic", "int8-static": "int8_static"}


class EditError(UserError):
    """A model edit cannot be made as asked (unknown name or level, plain run, ...)."""


@dataclass(frozen=True)
class EditSpec:
    name: str
    levels: tuple[str, ...]  # default levels, mildest first
    level_kind: str  # "epochs", "fraction" or "precision"
    about: str


EDITS: dict[str, EditSpec] = {e.name: e for e in (
    EditSpec("finetune-external", ("1", "3"), "epochs", "fine-tune the backbone on the externals E (non-members), head frozen"),
    EditSpec("finetune-members", ("1", "3"), "epochs", "fine-tune the backbone on the members D, head frozen"),
    EditSpec("prune-unstructured", ("0.3", "0.5", "0.7"), "fraction", "L1 magnitude pruning of each conv / linear weight"),
    EditSpec("prune-structured", ("0.3", "0.5", "0.7"), "fraction", "L2 pruning of each conv layer's output filters"),
    EditSpec("prune-global", ("0.3", "0.5", "0.7"), "fraction", "L1 magnitude pruning of all conv / linear weights together"),
    EditSpec("prune-unstructured-ft", ("0.3", "0.5", "0.7"), "fraction", "unstructured pruning + 1 recovery epoch on E"),
    EditSpec("prune-global-ft", ("0.3", "0.5", "0.7"), "fraction", "global pruning + 1 recovery epoch on E"),
    EditSpec("prune-structured-ft", ("0.3", "0.5", "0.7"), "fraction", "structured pruning + 1 recovery epoch on E"),
    EditSpec("quantize", tuple(QUANT_KINDS), "precision", "post-training quantisation of the backbone"),
    EditSpec("distill-same", ("5", "10"), "epochs", "distil into a fresh student of the same architecture on E, head carried"),
    EditSpec("distill-small", ("5", "10"), "epochs", f"distil into a half-width student ({STUDENT_ARCH}) on E, post-hoc head"),
)}


def check_level(name: str, level: str) -> str:
    """``level`` normalised for edit ``name``, or a one-line :class:`EditError`."""
    if name not in EDITS:
        close = difflib.get_close_matches(name, list(EDITS), n=2)
        raise EditError(f"unknown model edit {name!r}; known: {', '.join(EDITS)}"
                        + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    kind = EDITS[name].level_kind
    level = str(level).strip()
    if kind == "precision":
        if level not in QUANT_KINDS:
            raise EditError(f"model edit quantize:{level}: the level must be one of {', '.join(QUANT_KINDS)}")
        return level
    try:
        v = float(level)
    except ValueError:
        raise EditError(f"model edit {name}:{level}: the level must be a number ({kind})") from None
    if kind == "epochs":
        if v != int(v) or not 1 <= v <= 1000:
            raise EditError(f"model edit {name}:{level}: the level is a number of epochs, an integer in 1..1000")
        return str(int(v))
    if not 0 < v < 1:
        raise EditError(f"model edit {name}:{level}: the level is the pruned fraction, in (0, 1)")
    return f"{v:g}"


def parse_edits(spec: str) -> list[tuple[str, str]]:
    """``"all"`` or comma-separated ``NAME[:LEVEL]`` (a NAME alone: its default levels) -> [(name, level)]."""
    out: list[tuple[str, str]] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        if part == "all":
            out += [(e.name, lv) for e in EDITS.values() for lv in e.levels]
            continue
        name, _, level = part.partition(":")
        name = name.strip()
        if not level:
            check_level(name, EDITS[name].levels[0] if name in EDITS else "1")
            out += [(name, lv) for lv in EDITS[name].levels]
        else:
            out.append((name, check_level(name, level)))
    if not out:
        raise EditError(f"--model-edits: no edit named in {spec!r}; known: {', '.join(EDITS)}")
    return list(dict.fromkeys(out))


@dataclass
class EditOptions:
    """The knobs of an edit (recorded in the edited run's config)."""

    seed: int = 0
    lr: float = 1e-4  # fine-tuning (and recovery) learning rate
    distill_lr: float = 1e-3
    reattach: int = 0  # epochs of head-only re-attachment after the edit (0: none)
    posthoc_epochs: int = 5  # head epochs on a smaller student
    calibration_images: int = 512  # static int8 calibration images, drawn from E
    # Fraction of D a re-attached or post-hoc head trains on (a seeded random part); the rest of D is
    # what the audit of that edited run scores.  1.0: all of D (an upper bound: scored on its own training members).
    reattach_members: float = 0.5
    reattach_lr: float = 1e-3  # Adam learning rate of the re-attached and post-hoc heads
    batch_size: int | None = None  # None: the run's batch size

    def check(self) -> None:
        for k in ("reattach", "posthoc_epochs"):
            if getattr(self, k) < 0:
                raise EditError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.calibration_images < 1:
            raise EditError(f"calibration_images must be >= 1, got {self.calibration_images}")
        if not 0 < self.reattach_members <= 1:
            raise EditError(f"reattach_members must be in (0, 1] (the fraction of D the re-attached head trains on), "
                            f"got {self.reattach_members}")
        if not self.lr > 0 or not self.distill_lr > 0 or not self.reattach_lr > 0:
            raise EditError(f"learning rates must be > 0, got {self.lr}, {self.distill_lr} and {self.reattach_lr}")


def edit_label(name: str, level: str, reattach: int = 0, all_members: bool = False) -> str:
    """``prune-global-0.3``, ``...+reattach3`` (head re-attached on part of D, scored on the rest) or
    ``...+reattach3-allD`` (re-attached on all of D: an upper bound)."""
    if name == "none":
        return "none (unedited)"
    retrained = reattach or name == "distill-small"  # a head trained on members of D
    return f"{name}-{level}" + (f"+reattach{reattach}" if reattach else "") + ("-allD" if all_members and retrained else "")


def head_training_members(members: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The members (train-split indices, sorted) a re-attached or post-hoc head trains on: a seeded random
    ``fraction`` of ``members`` (all of them at 1.0), at least one and, below 1.0, at most all but one."""
    members = np.asarray(members)
    if fraction >= 1:
        return np.sort(members)
    k = min(max(1, round(fraction * len(members))), len(members) - 1)
    pick = np.random.default_rng([seed, 21, 7]).permutation(len(members))[:k]
    return np.sort(members[pick])


def scored_members(run: Run) -> np.ndarray:
    """Boolean mask over ``run.data.splits.members``: the members an audit of this (edited) run may score.

    All of D, except on a run whose head was re-trained on part of D (a held-out re-attachment or a
    post-hoc head): then only the members that head did not see."""
    members = np.asarray(run.data.splits.members)
    rec = run.config.extra.get(RECORD_KEY) if isinstance(run.config.extra, dict) else None
    seen = rec.get("head_trained_members") if isinstance(rec, dict) else None
    if seen is None or len(seen) >= len(members):
        return np.ones(len(members), dtype=bool)
    return ~np.isin(members, np.asarray(seen, dtype=np.int64))


def load_source(run_dir: str | Path, device: str = "cpu", data_root: str | None = None) -> Run:
    """The run to edit: a finished aMINT run that is not already quantised, or a one-line EditError.

    ``data_root``: read the run's data set from there (the edited runs record it in their config)."""
    run = load_run(run_dir, device=device, data_root=data_root)
    if not run.is_audited:
        raise EditError(f"{run_dir} is a plain run (mint off): model edits measure an aMINT run's head; edit an aMINT run")
    prior = run.config.extra.get(RECORD_KEY) if isinstance(run.config.extra, dict) else None
    if isinstance(prior, dict) and prior.get("runtime"):
        raise EditError(f"{run_dir} is already quantised ({prior.get('name')}:{prior.get('level')}); edit its source run")
    return run


def _clone(cfg: TrainConfig, meta: dict[str, Any], model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A second model of the same class holding ``model``'s weights (for a runtime applied to a copy)."""
    twin = build_model(cfg, tuple(meta["input_shape"]), int(meta["num_classes"]))
    twin.load_state_dict(model.state_dict())
    return twin.to(device).eval()


def _same_record(rd: RunDir, record: dict[str, Any]) -> bool:
    try:
        old = TrainConfig.from_yaml(rd.config).extra.get(RECORD_KEY)
    except Exception:  # any unreadable config: not a reusable edit
        return False
    keys = ("name", "level", "options", "source_model_sha256")
    return isinstance(old, dict) and all(old.get(k) == record.get(k) for k in keys)


def edit_run(run_dir: str | Path, name: str, level: str, out_dir: str | Path, *, options: EditOptions | None = None,
             device: str = "cpu", reuse: bool = True, log: Callable[[str], None] = lambda m: None) -> Path:
    """Apply edit ``name:level`` to the aMINT run ``run_dir``; write the edited run to ``out_dir``; return it.

    An ``out_dir`` that already holds this very edit of this very model (complete) is reused
    when ``reuse``; one holding an earlier edit is replaced; any other folder is an error.
    """
    opts = options or EditOptions()
    opts.check()
    level = check_level(name, level)
    run = load_source(run_dir, device)
    src = run.dir
    out = RunDir(out_dir)
    cfg, meta, dev = run.config, dict(run.metadata), run.device
    prior = cfg.extra.get(RECORD_KEY) if isinstance(cfg.extra, dict) else None
    record: dict[str, Any] = {
        "name": name, "level": level, "options": dataclasses.asdict(opts),
        "source_run": str(run.run_dir), "source_model_sha256": file_sha256(src.model),
        "source_test_accuracy": (src.read_metrics() or {}).get("test_accuracy"),
        "history": ([*prior.get("history", []), {k: prior[k] for k in ("name", "level", "source_run") if k in prior}]
                    if isinstance(prior, dict) else []),
    }
    if out.path.exists():
        if reuse and out.is_complete() and _same_record(out, record):
            log(f"reusing {out.path} ({edit_label(name, level, opts.reattach)})")
            return out.path
        try:
            ours = isinstance(TrainConfig.from_yaml(out.config).extra.get(RECORD_KEY), dict)
        except Exception:  # no or unreadable config.yaml
            ours = False
        if not ours or out.path.resolve() == src.path.resolve():
            raise EditError(f"{out.path} exists and is not an edited run; choose another output folder")
        shutil.rmtree(out.path)

    torch.manual_seed(opts.seed)  # nothing below draws from the global RNG except through seeded generators
    bs = opts.batch_size or cfg.batch_size
    data, s = run.data, run.data.splits
    external = data.train.rows(s.external)
    ext_labels = data.train.labels[torch.as_tensor(s.external)]
    head_members = None  # train-split indices of the members a re-trained head sees (None: the head is not re-trained)
    if opts.reattach or name == "distill-small":
        head_members = head_training_members(np.asarray(s.members), opts.reattach_members, opts.seed)
        record["head_trained_members"] = [int(i) for i in head_members]
        record["head_heldout_members"] = int(len(s.members) - len(head_members))
    members = data.train.rows(head_members if head_members is not None else s.members)
    model: torch.nn.Module = run.model
    out_cfg = cfg
    runtime = None
    head = "carried (as trained; the edit changed the backbone it reads)"
    log(f"editing {run.run_dir}: {name}:{level}")
    if name in ("finetune-external", "finetune-members"):
        imgs, labels = ((external, ext_labels) if name == "finetune-external"
                        else (data.train.rows(s.members), data.train.labels[torch.as_tensor(s.members)]))
        ops.finetune_backbone(model, imgs, labels, epochs=int(level), lr=opts.lr, batch_size=bs, seed=opts.seed, device=dev, log=log)
        stored = "float32 weights after fine-tuning"
    elif name.startswith("prune-"):
        pruned = ops.prune_backbone(model, float(level), structured="-structured" in name,
                                    scope="global" if name.startswith("prune-global") else "layer")
        if name.endswith("-ft"):
            ops.finetune_backbone(model, external, ext_labels, epochs=1, lr=opts.lr, batch_size=bs, seed=opts.seed,
                                  device=dev, log=log)
        record["zero_fraction"] = ops.finish_pruning(pruned)
        stored = "float32 weights with the pruned entries set to zero (pruning made permanent)"
    elif name == "quantize":
        kind = QUANT_KINDS[level]
        runtime = {"kind": kind}
        if kind in ("bf16", "fp16"):
            ops.round_backbone(model, torch.bfloat16 if kind == "bf16" else torch.float16)
            stored = f"the backbone's weights rounded to {kind}, stored as float32 (exact); loading runs the backbone in {kind}"
        elif kind == "int8_dynamic":
            stored = ("the float32 weights before quantisation; loading applies torch.ao.quantization.quantize_dynamic "
                      "(int8 nn.Linear layers of the backbone; convolutions stay float32)")
        else:
            gen = torch.Generator().manual_seed(opts.seed)
            pick = torch.randperm(len(external), generator=gen)[: opts.calibration_images]
            runtime["activations"] = ops.calibrate_static_int8(model, external[pick.sort().values], batch_size=bs, device=dev)
            runtime["calibration_images"] = int(len(pick))
            stored = ("conv / linear weights on their per-channel symmetric int8 grid, stored as float32; loading rounds the "
                      "backbone's input and every leaf module's output to the calibrated 8-bit grid (simulated static int8)")
    else:  # distillation
        student_cfg = out_cfg = cfg if name == "distill-same" else dataclasses.replace(cfg, arch=STUDENT_ARCH, taps=None)
        with torch.random.fork_rng(devices=[]):
            student = build_model(dataclasses.replace(student_cfg, seed=opts.seed + 1), tuple(meta["input_shape"]),
                                  int(meta["num_classes"])).to(dev)
        if name == "distill-same":
            student.head.load_state_dict(model.head.state_dict())
        ops.distill(model, student, external, epochs=int(level), lr=opts.distill_lr, batch_size=bs, seed=opts.seed,
                    device=dev, log=log)
        if name == "distill-small":
            ops.reattach_head(student, members, external, epochs=opts.posthoc_epochs, batch_size=bs, seed=opts.seed + 2,
                              device=dev, lr=opts.reattach_lr, log=log)
            head = (f"post hoc: a new head trained {opts.posthoc_epochs} epochs on the student (E = 0, D = 1: "
                    f"{len(head_members)} of {len(s.members)} members)")
            meta = checkpoint_metadata(out_cfg, meta["input_shape"], int(meta["num_classes"]), int(meta.get("epoch", 0)))
        else:
            head = "carried: the teacher's head on the student's taps"
        model = student
        stored = f"the student's float32 weights ({out_cfg.arch})"
    if opts.reattach:
        deployed = apply_runtime_copy(out_cfg, meta, model, runtime, dev)
        ops.reattach_head(deployed, members, external, epochs=opts.reattach, batch_size=bs, seed=opts.seed + 3,
                          device=dev, lr=opts.reattach_lr, log=log)
        model.head.load_state_dict(deployed.head.state_dict())
        head += (f"; then re-attached: {opts.reattach} head-only epochs on the edited model (E = 0, D = 1: "
                 f"{len(head_members)} of {len(s.members)} members"
                 + (", all of D: figures are an upper bound)" if len(head_members) == len(s.members)
                    else "; the audit scores the other members)"))
    record.update({"head": head, "runtime": runtime, "stored_weights": stored})
    out_cfg = dataclasses.replace(out_cfg, extra={**(out_cfg.extra or {}), RECORD_KEY: record})
    meta = {**meta, "edit": {"name": name, "level": level}}
    _write(out, src, out_cfg, meta, model, record)
    return out.path


def apply_runtime_copy(cfg: TrainConfig, meta: dict[str, Any], model: torch.nn.Module, runtime: dict[str, Any] | None,
                       device: torch.device) -> torch.nn.Module:
    """``model`` as it will run once loaded (a copy with the edit's runtime), or ``model`` itself without one."""
    if not runtime:
        return model
    from activemint.model_runtime import apply_runtime

    return apply_runtime(_clone(cfg, meta, model, device), runtime)


def _write(out: RunDir, src: RunDir, cfg: TrainConfig, meta: dict[str, Any], model: torch.nn.Module,
           record: dict[str, Any]) -> None:
    with out.lock("edit"):
        out.write_text(rundir.CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        prov = {**provenance(), "edited_from": record["source_run"], "edit": f"{record['name']}:{record['level']}"}
        out.write_text(rundir.PROVENANCE, yaml.safe_dump(prov, sort_keys=False))
        atomic_write(out.manifest, src.manifest.read_bytes())
        save_weights(model, out.model, meta)
        run = load_run(out.path, device=str(next(iter(model.parameters())).device))  # as every reader will: runtime applied
        metrics, scores = evaluate(run.model, run.config, run.data, run.device)
        saved = src.read_metrics() or {}
        metrics.update({"run_dir": str(out.path), "mint": True, "arch": cfg.arch, "setup": cfg.setup, "dataset": cfg.dataset,
                        "model_edit": {k: record[k] for k in ("name", "level", "head", "stored_weights")},
                        "source_test_accuracy": record["source_test_accuracy"],
                        "epochs_trained": saved.get("epochs_trained"), "selected_epoch": saved.get("selected_epoch")})
        write_evaluation(out.path, metrics, scores)
