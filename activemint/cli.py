"""The ``activemint`` command line.  Thin: it parses, builds a config, calls the library."""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from activemint.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch weights from the hub at run time


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--config", help="YAML file with TrainConfig keys; command-line options override it")
    g.add_argument("--dataset", help="data set name (default fashion-mnist); see `activemint datasets`")
    g.add_argument("--data-root", help="folder holding the data set in its standard on-disk layout")
    g.add_argument("--download", action="store_true", default=None, help="allow downloading the data set (off by default: nothing is ever fetched otherwise)")
    g.add_argument("--max-memory", help="memory budget of the decoded images, e.g. 2GB (default auto: half the available memory; off: no limit); image folders above it are streamed from disk")
    g.add_argument("--members", type=int, help="number of members D (training set); default: the paper's size")
    g.add_argument("--external", type=int, help="number of external non-members E that train the MINT head")
    g.add_argument("--validation", type=int, help="held-out training-split samples for model selection")
    g.add_argument("--calibration", type=int, help="held-out non-members that fix calibrated thresholds")
    g.add_argument("--eval-nonmembers", type=int, help="evaluation non-members drawn from the test split")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="architecture (default small_cnn); see `activemint archs`")
    g.add_argument("--setup", choices=["entry", "middle", "output"], help="where the MINT head taps the model")
    g.add_argument("--taps", help="comma-separated dotted module names to tap instead of a setup")
    g.add_argument("--mint", choices=["on", "off"], help="on: train with aMINT (default); off: plain training on D alone")
    g.add_argument("--head-width", type=int, help="channels of each MINT head branch (default 64)")
    g.add_argument("--head-hidden", type=int, help="hidden units of the MINT head's MLP (default 128)")
    g.add_argument("--head-stride", type=int, help="stride of the MINT head's first convs on maps >= 8 px (default 1; 2 = a lighter head)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="passes over the members (default 10)")
    g.add_argument("--batch-size", type=int, help="member batch size (default 64)")
    g.add_argument("--external-batch-size", type=int, help="external batch size per step (default 64)")
    g.add_argument("--recipe", choices=["paper", "improved"], help="paper: Adam lr 1e-4, no augmentation; improved: AdamW 1e-3, cosine, shifts")
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="override the recipe's optimiser")
    g.add_argument("--lr", type=float, help="override the recipe's learning rate")
    g.add_argument("--weight-decay", type=float, help="override the recipe's weight decay")
    g.add_argument("--schedule", choices=["constant", "cosine"], help="override the recipe's learning-rate schedule")
    g.add_argument("--augment", choices=["on", "off"], help="override the recipe's augmentation (random 2-px shifts)")
    g.add_argument("--lambda-task", type=float, help="λ1, weight of the normalised task loss (default 1)")
    g.add_argument("--lambda-mint", type=float, help="λ2, weight of the normalised MINT loss (default 1)")
    g.add_argument("--head-norm", choices=["none", "mlp", "branch"], help="BatchNorm in the MINT head: none, before its MLP (mlp, default: the head learns from the first epochs), also in its conv branches (branch)")
    g.add_argument("--head-lr-scale", type=float, help="the MINT head's learning rate as a multiple of --lr")
    g.add_argument("--loss-norm", choices=["first", "none"], help="first: each loss term divided by its first-batch value (paper); none: raw sum")
    g.add_argument("--mint-members", type=float, help="fraction of D whose membership the MINT loss sees (default 1; the task loss always sees all of D)")
    g.add_argument("--audit-policy", help="robust aMINT: train the MINT head on transformed views (robust, geometric); default: exact images")
    g.add_argument("--audit-views", choices=["all", "mint"], help="with --audit-policy: transform the inputs of both losses (all, default) or of the MINT loss only (mint)")
    g.add_argument("--head-epochs", type=int, help="extra epochs training only the MINT head, backbone frozen (default 0)")
    g.add_argument("--select", choices=["val_task_mint", "val_task", "val_mint", "last"],
                   help="which epoch to keep, judged on the validation split: best accuracy + membership AUC (default), "
                        "best accuracy, best membership AUC, or the last epoch")
    g.add_argument("--target-fpr", type=float, help="FPR of the calibrated threshold (default 0.01)")
    g.add_argument("--seed", type=int, help="seed of splits, initialisation and batch order (default 0)")
    g = p.add_argument_group("hardware")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 autocast on GPU, fp32 on CPU")
    g.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format (GPU)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core; idle threads sleep: OMP_WAIT_POLICY=PASSIVE unless your environment sets it, see activemint.threads)")


_FIELDS = {
    "dataset": "dataset", "data_root": "data_root", "download": "download", "max_memory": "max_memory", "members": "members",
    "external": "external", "validation": "validation", "calibration": "calibration",
    "eval_nonmembers": "eval_nonmembers", "arch": "arch", "setup": "setup", "head_width": "head_width",
    "head_hidden": "head_hidden", "head_stride": "head_stride", "head_lr_scale": "head_lr_scale",
    "head_norm": "head_norm", "loss_norm": "loss_norm", "epochs": "epochs", "batch_size": "batch_size",
    "external_batch_size": "external_batch_size", "recipe": "recipe", "optimizer": "optimizer", "lr": "lr",
    "weight_decay": "weight_decay", "schedule": "schedule", "lambda_task": "lambda_task",
    "lambda_mint": "lambda_mint", "select": "select", "target_fpr": "target_fpr", "seed": "seed",
    "device": "device", "precision": "precision", "channels_last": "channels_last", "compile": "compile",
    "mint_members": "mint_members", "audit_policy": "audit_policy", "head_epochs": "head_epochs", "audit_views": "audit_views",
}


def config_from_args(args: argparse.Namespace):
    """A TrainConfig from ``--config`` (if any) overridden by explicit options."""
    from activemint.training import TrainConfig

    base = {}
    if args.config:
        base = TrainConfig.from_yaml(args.config).to_dict()
    for arg, key in _FIELDS.items():
        v = getattr(args, arg, None)
        if v is not None:
            base[key] = v
    if args.taps:
        base["taps"] = [t.strip() for t in args.taps.split(",") if t.strip()]
    if args.mint is not None:
        base["mint"] = args.mint == "on"
    if args.augment is not None:
        base["augment"] = args.augment == "on"
    return TrainConfig.from_dict(base)


def _default_out(cfg) -> Path:
    tag = cfg.setup if cfg.mint else "plain"
    return Path("runs") / f"{cfg.dataset}-{cfg.arch}-{tag}-s{cfg.seed}"


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from activemint.report import run_summary
    from activemint.training import Trainer
    from activemint.training.distributed import is_main

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else _default_out(cfg)
    result = Trainer(cfg, out, progress=not args.no_progress).run(resume=args.resume)
    baseline = None  # under torchrun every rank trains; rank 0 alone writes and reports
    if args.baseline and cfg.mint:
        bcfg = cfg.without_mint()
        from activemint.rundir import RunDir

        bdir = RunDir(out).baseline
        resume = args.resume and RunDir(bdir).config.exists()
        print(f"\ntraining the same model without aMINT (utility baseline) into {bdir}", file=sys.stderr)
        baseline = Trainer(bcfg, bdir, progress=not args.no_progress).run(resume=resume).metrics
        if not is_main():
            return 0
        result.metrics["baseline_test_accuracy"] = baseline["test_accuracy"]
        result.metrics["baseline_train_seconds"] = baseline.get("train_seconds")
        with RunDir(out).lock("train --baseline"):
            result.metrics = RunDir(out).write_metrics(result.metrics)  # still written last, still binding the files
    if is_main():
        print(run_summary(result.metrics, baseline))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from activemint.report import run_summary
    from activemint.runs import load_run

    run = load_run(args.run_dir, device=args.device)
    metrics, _ = run.evaluate()
    from activemint.rundir import RunDir

    saved = RunDir(args.run_dir).read_metrics() or {}
    for k, v in saved.items():
        metrics.setdefault(k, v)
    metrics["run_dir"] = str(args.run_dir)  # the directory evaluated here, not the one stored at training time
    base = None
    if "baseline_test_accuracy" in saved:
        base = {"test_accuracy": saved["baseline_test_accuracy"], "train_seconds": saved.get("baseline_train_seconds")}
    print(run_summary(metrics, base))
    if saved:
        same = _same_figures(saved, metrics)
        print(f"\nmatches the saved metrics.json: {'yes' if same else 'NO'}")
        if not same:
            return 1
    if args.json:
        print(json.dumps(metrics, indent=2))
    return 0


def _same_figures(a: dict, b: dict, tol: float = 1e-6) -> bool:
    keys = ["test_accuracy"]
    ok = all(abs(a[k] - b[k]) <= tol for k in keys if k in a)
    if "membership" in a:
        for k, v in a["membership"].items():
            w = b["membership"].get(k)
            if isinstance(v, (int, float)) and isinstance(w, (int, float)):
                ok &= abs(v - w) <= tol
    return ok


def cmd_score(args: argparse.Namespace) -> int:
    from activemint.runs import load_run
    from activemint.scoring import resolve_input_groups

    run = load_run(args.run_dir, device=args.device)
    ids, images, groups = resolve_input_groups(run, args.inputs, resize=args.resize, convert_channels=args.convert_channels)
    import numpy as np

    logits = run.membership_logits(images)
    probs = 1.0 / (1.0 + np.exp(-logits))
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w", newline="")
    try:
        w = csv.writer(out)
        w.writerow(["id", "membership_probability", "membership_logit"])
        for i, p, l in zip(ids, probs, logits):
            w.writerow([i, f"{p:.6f}", f"{l:.6f}"])
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"scored {len(ids)} samples" + (f"; written to {args.output}" if out is not sys.stdout else ""), file=sys.stderr)
    width = max(len(spec) for spec, _ in groups)
    for spec, rows in groups:  # one line per input: members and non-members are never pooled
        n = rows.stop - rows.start
        mean = f"{probs[rows].mean():.4f}" if n else "-"
        print(f"  {spec:<{width}}  {n:>6} samples  mean P(member) {mean}", file=sys.stderr)
    return 0


def _add_engine_args(g) -> None:
    """--engine, --ray-address, --cpus-per-task, --gpus-per-task (activemint.engine)."""
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where independent runs train: local worker processes (default) or Ray tasks "
                        "(pip install activemint[ray]); results are the same for the same seeds and threads per task")
    g.add_argument("--ray-address", help="with --engine ray: join this Ray cluster (e.g. auto, or HOST:6379 of `ray start "
                                         "--head`) instead of starting a local Ray instance")
    g.add_argument("--cpus-per-task", type=int, help="CPUs (torch threads) per task (ray default 1; local default "
                                                     "cores // workers)")
    g.add_argument("--gpus-per-task", type=float, default=0, help="with --engine ray: GPUs each task reserves (default 0)")


def _engine_kwargs(args: argparse.Namespace) -> dict:
    """The engine options of ``args``, checked (a missing Ray fails now, before any training)."""
    from activemint import engine

    kw = {"engine": args.engine, "ray_address": args.ray_address, "cpus_per_task": args.cpus_per_task,
          "gpus_per_task": args.gpus_per_task}
    engine.check_options(workers=getattr(args, "workers", None), **kw)
    if args.engine == "ray":
        engine.require_ray()
    return kw


def cmd_grid(args: argparse.Namespace) -> int:
    from activemint import grid
    from activemint.rundir import GRID_FILES

    matrix = grid.load_matrix(args.matrix)
    split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None  # noqa: E731
    if args.generate:
        for profile in split(args.generate) if args.generate != "all" else sorted(matrix.profiles):
            paths = grid.generate_configs(matrix, profile)
            print(f"profile {profile}: {len(paths)} configs in {paths[0].parent}")
        return 0
    cells = grid.expand(matrix, args.profile, datasets=split(args.datasets), archs=split(args.archs),
                        setups=split(args.setups), baselines=not args.no_baselines)
    out = Path(args.out or f"runs/grid-{args.profile}")
    if args.only_index is not None:  # one cell, in this process: a SLURM array task (docs/scaling.md)
        if not 0 <= args.only_index < len(cells):
            raise grid.GridError(f"--only-index {args.only_index} is outside the selection's {len(cells)} cells (0..{len(cells) - 1})")
        if args.table_only:
            raise grid.GridError("--only-index runs one cell; write the table afterwards with --table-only alone")
        cells = [cells[args.only_index]]
        if not args.dry_run:
            outcome = grid.run_cell(cells[0], out, log=lambda m: print(m, flush=True))
            print(f"{outcome.cell}: {outcome.status} ({outcome.run_dir})")
            return 1 if outcome.status == "failed" else 0
    if args.dry_run:
        for c in cells:
            print(f"{grid.cell_status(c, out):8s} {c.name:45s} {c.key}  epochs {c.config.epochs}")
        return 0
    failed = []
    if not args.table_only:
        outcomes = grid.run_grid(cells, out, workers=args.workers, **_engine_kwargs(args))
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            print(f"FAILED {o.cell}: {o.error}", file=sys.stderr)
    rows = grid.results_table(matrix, cells, out)
    grid.write_table(rows, out / GRID_FILES["markdown"], out / GRID_FILES["csv"])
    print(grid.table_markdown(rows))
    print(f"table written to {out / 'results.md'} and {out / 'results.csv'}", file=sys.stderr)
    return 1 if failed else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from activemint.audit import audit, default_out_dir
    from activemint.report.audit import audit_markdown

    result = audit(args.run_dir, args.suspect, alpha=args.alpha, target_fpr=args.target_fpr, test=args.test,
                   resize=args.resize, convert_channels=args.convert_channels, device=args.device)
    out = result.write(args.out or default_out_dir(result), force=args.force)
    print(audit_markdown(result))
    print(f"written to {out}: report.html, summary.md, samples.csv, audit.json", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from activemint.report import write_report

    out = write_report(args.run_dir, args.out)
    print(f"report written to {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import shlex

    from activemint.attacks import GradientMintConfig, PassiveMintConfig, ReferenceConfig
    from activemint.compare import run_compare

    if args.mint == "off":
        raise ValueError("compare trains the active run with aMINT and the plain run itself; drop --mint off")
    cfg = None if args.active_run else config_from_args(args)
    if cfg is not None and not cfg.mint:
        raise ValueError("the active run must have mint on")
    engine_kw = _engine_kwargs(args) if args.reference_models else {}
    reference = None if args.reference_models == 0 else ReferenceConfig(
        n_models=args.reference_models, epochs=args.reference_epochs, population=args.population, seed=args.reference_seed)
    if args.only_reference_model is not None:  # one reference model, in this process: a SLURM array task
        return _one_reference_model(args, reference)
    out = Path(args.out) if args.out else Path("runs") / (f"compare-{cfg.dataset}-{cfg.arch}-{cfg.setup}-s{cfg.seed}" if cfg else "compare")
    result = run_compare(
        cfg, out, active_run=args.active_run, plain_run=args.plain_run, reference=reference,
        passive=PassiveMintConfig(epochs=args.passive_epochs),
        gradient=GradientMintConfig(epochs=args.gmint_epochs, external_limit=args.gmint_external),
        rmia_a=args.rmia_a, cache_dir=args.cache_dir, workers=args.workers, progress=not args.no_progress, **engine_kw,
        command="activemint " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["compare"] else None,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(result.table())
    print()
    print(result.headline)
    print(("trained: " + "; ".join(result.trained)) if result.trained else "trained nothing: every run, reference model and "
          "scorer was reused from the cache", file=sys.stderr)
    print(f"written to {out}/ (compare.md, compare.csv, compare.json, roc_linear.png, roc_loglog.png) in {result.seconds:.0f} s",
          file=sys.stderr)
    return 0


def _one_reference_model(args: argparse.Namespace, reference) -> int:
    """``compare --active-run RUN --only-reference-model K``: train reference model K alone."""
    from activemint.attacks.reference import train_reference_model
    from activemint.runs import load_run

    if reference is None or not args.active_run:
        raise UserError("--only-reference-model needs --active-run RUN_DIR (train it first) and --reference-models N > 0")
    run = load_run(args.active_run)
    res = train_reference_model(run.config, run.data.splits, reference, args.cache_dir, args.only_reference_model,
                                train=run.data.train, test=run.data.test,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"reference model {res['model']} of {reference.n_models}: {'trained' if res['trained'] else 'reused'}, "
          f"test accuracy {res['test_accuracy']:.4f}")
    return 0

def cmd_robustness(args: argparse.Namespace) -> int:
    from activemint.robustness import run_robustness

    scorers = [k.strip() for k in args.scorers.split(",") if k.strip()] if args.scorers else None
    out = Path(args.out) if args.out else Path(args.run_dir) / "robustness"
    rows = run_robustness(args.run_dir, out, transforms=args.transforms, scorers=scorers, plain_run=args.plain_run,
                          members=args.members, seed=args.seed, max_samples=args.max_samples, bootstrap=args.bootstrap,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{len(rows)} rows written to {out}/robustness.md (.csv, .json, .png, .html)")
    return 0


def cmd_list(kind: str) -> int:
    if kind == "datasets":
        from activemint.data import dataset_info, list_datasets

        for n in list_datasets():
            info = dataset_info(n)
            print(f"{n:16s} {tuple(info.input_shape)} {info.num_classes:>6d} classes  {info.description}")
    else:
        from activemint.models import arch_spec, list_archs

        for n in list_archs():
            spec = arch_spec(n)
            print(f"{n:14s} " + "  ".join(f"{s}={','.join(spec.taps[s])}" for s in ("entry", "middle", "output")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error instead of one line")
    p = _Parser(prog="activemint", description="Active Membership Inference Test: train auditable classifiers and test which data they were trained on.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kw):  # every subcommand takes --debug too (before or after its name)
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    t = sub.add_parser("train", help="train a model with aMINT (or plainly with --mint off)", description="Train an Enhanced Audited Model (classifier + MINT head) and evaluate it.")
    _add_train_args(t)
    t.add_argument("--out", help="run directory (default runs/<dataset>-<arch>-<setup>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last checkpoint")
    t.add_argument("--baseline", action="store_true", help="also train the same architecture without aMINT (into OUT/baseline) and compare accuracy")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="recompute the metrics of a saved run from its checkpoint and manifest")
    e.add_argument("run_dir")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="also print all figures as JSON")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("score", help="per-sample membership probability as CSV",
                       description="Score samples with a run's MINT head. INPUTS: image files, folders of images, "
                                   "'split:ROLE' (members, external, validation, calibration, eval_nonmembers of the run's manifest) "
                                   "or 'dataset:NAME:SPLIT' (a whole split of a registered data set). Images must have the "
                                   "model's input size and channels unless --resize / --convert-channels (as for audit); "
                                   "split:ROLE is checked against the run's manifest (pixel SHA-256).")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+")
    s.add_argument("-o", "--output", help="CSV file (default: standard output)")
    s.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear); without it they are refused")
    s.add_argument("--convert-channels", action="store_true", help="convert greyscale/colour images to the model's channels; without it they are refused")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_score)

    g = sub.add_parser("grid", help="run (a subset of) the paper's grid of data sets x archs x setups and tabulate it",
                       description="Run cells of configs/grid.yaml: skips cells already done (keyed by config hash), "
                                   "resumes interrupted ones, trains a plain baseline per data set x arch, and writes "
                                   "OUT/results.md + results.csv beside the paper's Table 1.")
    g.add_argument("--matrix", help="grid matrix file (default: the repository's configs/grid.yaml)")
    g.add_argument("--profile", default="paper", help="paper (full size) or cpu (shrunk sizes and epochs)")
    g.add_argument("--datasets", help="comma-separated data sets (default: the profile's)")
    g.add_argument("--archs", help="comma-separated architectures (default: all six)")
    g.add_argument("--setups", help="comma-separated setups among entry,middle,output,plain (default: all)")
    g.add_argument("--no-baselines", action="store_true", help="skip the plain (mint off) baseline cells")
    g.add_argument("--workers", type=int, help="parallel worker processes of the local engine (default: one per GPU, 1 on CPU); "
                                               "with --engine ray and no --ray-address, the CPUs of the local Ray instance (default: all)")
    _add_engine_args(g)
    g.add_argument("--only-index", type=int, metavar="I",
                   help="run only cell I (0-based, in --dry-run's order) of the selection, in this process, and write "
                        "no table: one task of a SLURM array (sbatch --array=0-N-1; then --table-only)")
    g.add_argument("--out", help="folder of the cells' run directories (default runs/grid-<profile>)")
    g.add_argument("--dry-run", action="store_true", help="list the selected cells and their status; train nothing")
    g.add_argument("--table-only", action="store_true", help="only (re)write the results table from finished cells")
    g.add_argument("--generate", nargs="?", const="all", help="write configs/<profile>/*.yaml from the matrix (all profiles, or a comma-separated list) and exit")
    g.set_defaults(func=cmd_grid)

    a = sub.add_parser("audit", help="test whether a set of images was used to train a run's model (p-value, report)",
                       description="Audit a suspect set against an aMINT run: per-sample decisions at a threshold calibrated "
                                   "on held-out non-members, a set-level test of H0 'none of these were members' with a "
                                   "p-value, the estimated fraction of members with a 95%% CI, and an HTML + Markdown report. "
                                   "SUSPECT: a folder of images, image files, a .txt file list (one path per line, relative "
                                   "to the list's folder) or split:ROLE of the run. Images must have the model's input size "
                                   "and channels unless --resize / --convert-channels. Exit code 2 on bad input, with "
                                   "nothing written.")
    a.add_argument("run_dir")
    a.add_argument("suspect", nargs="+")
    a.add_argument("--alpha", type=float, default=0.01, help="significance level of the set-level test (default 0.01)")
    a.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate of the per-sample decisions (default 0.01)")
    a.add_argument("--test", choices=["mixture", "exceedance", "mann_whitney"], default="mixture",
                   help="the set-level test that decides (default mixture; all three are reported)")
    a.add_argument("--out", help="output folder (default RUN_DIR/audits/<time>-<data hash>); must not exist or be empty")
    a.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    a.add_argument("--resize", action="store_true", help="resize images of another size to the model's input (bilinear)")
    a.add_argument("--convert-channels", action="store_true", help="convert greyscale/colour images to the model's channels")
    a.add_argument("--device", default="auto")
    a.set_defaults(func=cmd_audit)

    r = sub.add_parser("report", help="HTML report of a training run or a compare output directory",
                       description="Render learning curves, score histograms and ROC curves (linear and log-log) of a "
                                   "training run, or the per-method figures of a compare directory, into one HTML file.")
    r.add_argument("run_dir")
    r.add_argument("--out", help="HTML file (default RUN_DIR/report.html)")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="Active MINT vs passive MINT, gMINT, output attacks, LiRA and RMIA on the same splits",
                       description="Train (or reuse) the active run, the same model trained plainly and N reference models; "
                                   "score members vs evaluation non-members with every method; write a table (Markdown, "
                                   "CSV, JSON) and ROC plots.  Everything trained is cached under --cache-dir.")
    _add_train_args(c)
    g = c.add_argument_group("compare")
    g.add_argument("--out", help="output folder (default runs/compare-<dataset>-<arch>-<setup>-s<seed>)")
    g.add_argument("--reference-models", type=int, default=4, help="reference models for LiRA / RMIA (default 4; 0 skips both)")
    g.add_argument("--reference-epochs", type=int, help="epochs of each reference model (default: the audited run's)")
    g.add_argument("--reference-seed", type=int, default=0, help="seed of the reference pool split and models (default 0)")
    g.add_argument("--population", type=int, help="RMIA population size z from the external set (default: all not in the pool)")
    g.add_argument("--rmia-a", type=float, default=0.3, help="RMIA offline parameter a in [0, 1] (default 0.3)")
    g.add_argument("--passive-epochs", type=int, help="epochs of the passive MINT head (default: the audited run's)")
    g.add_argument("--gmint-epochs", type=int, default=40, help="epochs of the gMINT classifier (default 40)")
    g.add_argument("--gmint-external", type=int, help="train gMINT on at most this many external samples (default: all of E)")
    g.add_argument("--workers", type=int, default=1, help="parallel processes training reference models with the local engine (default 1)")
    _add_engine_args(g)
    g.add_argument("--only-reference-model", type=int, metavar="K",
                   help="with --active-run: train (or reuse) reference model K (0-based) alone, in this process, into "
                        "the cache, and stop: one task of a SLURM array (sbatch --array=0-N-1); a later compare reuses it")
    g.add_argument("--cache-dir", default=".cache", help="cache of runs, reference models and trained scorers (default .cache)")
    g.add_argument("--active-run", help="use this finished aMINT run directory instead of training one")
    g.add_argument("--plain-run", help="use this finished plain run directory (same splits) instead of training one")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=cmd_compare)

    rb = sub.add_parser("robustness", help="membership figures of aMINT and the baselines on transformed copies (JPEG, shifts, crops ...)",
                        description="Transform members and non-members the same way (every transformation and severity), score "
                                    "them with Active MINT and the baselines (exact SHA-256 lookup, perceptual hash, nearest "
                                    "member in the model's features, the post-hoc head with --plain-run) and write a table "
                                    "(MD/CSV/JSON), a plot and HTML.")
    rb.add_argument("run_dir")
    rb.add_argument("--out", help="output folder (default RUN_DIR/robustness)")
    rb.add_argument("--transforms", default="all", help="comma-separated NAME[:LEVEL] (default all); names: jpeg, translate, crop, "
                                                        "resize, hflip, rotate, noise, brightness_contrast, grayscale (RGB)")
    rb.add_argument("--scorers", help="comma-separated scorer keys (default: every one that applies): "
                                      "active_mint, exact_sha256, phash, feature_nn, posthoc_head")
    rb.add_argument("--plain-run", help="the same splits trained without aMINT (enables the post-hoc head row)")
    rb.add_argument("--members", default="all", choices=["all", "seen", "unseen"],
                    help="which members to evaluate on a run trained with --mint-members < 1 (default all)")
    rb.add_argument("--seed", type=int, default=0, help="seed of the transformations' random choices (default 0)")
    rb.add_argument("--max-samples", type=int, help="evaluate at most this many samples per role (a seeded subset; calibration keeps at least what its threshold needs)")
    rb.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the AUC interval (default 100)")
    rb.set_defaults(func=cmd_robustness)

    sub.add_parser("datasets", help="list the registered data sets").set_defaults(func=lambda a: cmd_list("datasets"))
    sub.add_parser("archs", help="list the architectures and their tap points").set_defaults(func=lambda a: cmd_list("archs"))
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``activemint <cmd>: error: ...`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (newlines folded); OSErrors name their file."""
    if isinstance(e, OSError) and not isinstance(e, UserError) and e.strerror:
        files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        msg = f"{files}: {e.strerror}" if files else e.strerror
    else:
        msg = str(e) or type(e).__name__
    msg = " ".join(msg.split())
    # never pass on a library's advice to load untrusted files unsafely (torch: weights_only=False)
    return re.sub(r"[^.;]*weights_only[^.;]*(False|false)[^.;]*[.;]?", "", msg).strip() or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0 on success; 2 with one line ``activemint <cmd>: error: ...`` on a user mistake (bad
    option, config, input file or run directory) or an environment problem the user can fix
    (a file that cannot be read or written); 1 with one line on anything unexpected; 130 on
    Ctrl-C.  ``--debug`` re-raises instead, showing the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"activemint {args.command}"
    debug = bool(getattr(args, "debug", False))
    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise UserError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, ValueError) as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only file system, I/O error: the environment, not a bug
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(f"{prog}: error: out of memory (try fewer samples, a smaller --batch-size or another --device)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, non-zero; --debug shows where
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
