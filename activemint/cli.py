"""The ``activemint`` command line.  Thin: it parses, builds a config, calls the library."""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch weights from the hub at run time


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--config", help="YAML file with TrainConfig keys; command-line options override it")
    g.add_argument("--dataset", help="data set name (default fashion-mnist); see `activemint datasets`")
    g.add_argument("--data-root", help="folder holding the data set in its standard on-disk layout")
    g.add_argument("--download", action="store_true", default=None, help="allow downloading the data set (off by default: nothing is ever fetched otherwise)")
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
    g.add_argument("--select", choices=["last", "val_task", "val_mint"], help="which epoch to keep: the last, or the best on held-out validation data")
    g.add_argument("--target-fpr", type=float, help="FPR of the calibrated threshold (default 0.01)")
    g.add_argument("--seed", type=int, help="seed of splits, initialisation and batch order (default 0)")
    g = p.add_argument_group("hardware")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 autocast on GPU, fp32 on CPU")
    g.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format (GPU)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")


_FIELDS = {
    "dataset": "dataset", "data_root": "data_root", "download": "download", "members": "members",
    "external": "external", "validation": "validation", "calibration": "calibration",
    "eval_nonmembers": "eval_nonmembers", "arch": "arch", "setup": "setup", "head_width": "head_width",
    "head_hidden": "head_hidden", "epochs": "epochs", "batch_size": "batch_size",
    "external_batch_size": "external_batch_size", "recipe": "recipe", "optimizer": "optimizer", "lr": "lr",
    "weight_decay": "weight_decay", "schedule": "schedule", "lambda_task": "lambda_task",
    "lambda_mint": "lambda_mint", "select": "select", "target_fpr": "target_fpr", "seed": "seed",
    "device": "device", "precision": "precision", "channels_last": "channels_last", "compile": "compile",
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

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else _default_out(cfg)
    result = Trainer(cfg, out, progress=not args.no_progress).run(resume=args.resume)
    baseline = None
    if args.baseline and cfg.mint:
        bcfg = dataclasses.replace(cfg, mint=False, select="val_task" if cfg.select == "val_mint" else cfg.select)
        bdir = out / "baseline"
        resume = args.resume and (bdir / "config.yaml").exists()
        print(f"\ntraining the same model without aMINT (utility baseline) into {bdir}", file=sys.stderr)
        baseline = Trainer(bcfg, bdir, progress=not args.no_progress).run(resume=resume).metrics
        result.metrics["baseline_test_accuracy"] = baseline["test_accuracy"]
        (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    print(run_summary(result.metrics, baseline))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from activemint.report import run_summary
    from activemint.runs import load_run

    run = load_run(args.run_dir, device=args.device)
    metrics, _ = run.evaluate()
    saved_path = Path(args.run_dir) / "metrics.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    for k, v in saved.items():
        metrics.setdefault(k, v)
    print(run_summary(metrics, {"test_accuracy": saved["baseline_test_accuracy"]} if "baseline_test_accuracy" in saved else None))
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
    from activemint.scoring import resolve_inputs

    run = load_run(args.run_dir, device=args.device)
    ids, images = resolve_inputs(run, args.inputs)
    logits = run.membership_logits(images)
    probs = 1.0 / (1.0 + __import__("numpy").exp(-logits))
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w", newline="")
    try:
        w = csv.writer(out)
        w.writerow(["id", "membership_probability", "membership_logit"])
        for i, p, l in zip(ids, probs, logits):
            w.writerow([i, f"{p:.6f}", f"{l:.6f}"])
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"scored {len(ids)} samples; mean P(member) {probs.mean():.4f}" + (f"; written to {args.output}" if out is not sys.stdout else ""), file=sys.stderr)
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
    p = argparse.ArgumentParser(prog="activemint", description="Active Membership Inference Test: train auditable classifiers and test which data they were trained on.")
    sub = p.add_subparsers(dest="command", required=True)

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
                                   "or 'dataset:NAME:SPLIT' (a whole split of a registered data set).")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+")
    s.add_argument("-o", "--output", help="CSV file (default: standard output)")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_score)

    sub.add_parser("datasets", help="list the registered data sets").set_defaults(func=lambda a: cmd_list("datasets"))
    sub.add_parser("archs", help="list the architectures and their tap points").set_defaults(func=lambda a: cmd_list("archs"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    from activemint.data import DatasetError
    from activemint.runs import RunError
    from activemint.training.checkpoint import CheckpointError

    try:
        return int(args.func(args) or 0)
    except (DatasetError, RunError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"activemint {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
