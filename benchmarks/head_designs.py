"""Issue 20 item 2: compare MINT-head designs (``--head-pool``, ``--view-curriculum-epochs``) on near-copies.

Two steps, so that a design is **chosen on validation data** and only then reported on the
evaluation non-members:

``validate``: for each run, its members against its *validation* split (training-split samples
outside D and E, never the evaluation non-members nor the test split), both transformed the
same way (the six copies of acceptance 1, seed 0), scored by the run's head; AUC and TPR@1%FPR
per copy and the mean AUC over the copies, which ranks the designs::

    python benchmarks/head_designs.py validate base=runs/hd/base34 blur=runs/hd/blur ...

``table``: the evaluation table from ``activemint robustness --save-scores`` outputs (members
against the evaluation non-members): per copy AUC [95% interval] / TPR@1%FPR [interval] /
TPR@0.1%FPR [interval] (TPR intervals: 200 bootstrap resamples, seed 0, as
``benchmarks/neighbourhood_table.py``), the run's test accuracy, its plain twin's, and the
training time relative to the first run::

    python benchmarks/head_designs.py table --twin runs/hd/base34/baseline \\
        base=runs/hd/base34:runs/hd/rb-base34 blur=runs/hd/blur:runs/hd/rb-blur ...

``steptime``: the cost of each ``head_pool`` in one process: README's model (small_cnn, Entry,
64 members + 64 externals a step), one aMINT training step (forward, loss, backward, Adam)
per design in turn, rounds interleaved; the process's CPU time (one thread), which other jobs
on a shared machine move far less than wall time; the median per step and its ratio to ``max``::

    python benchmarks/head_designs.py steptime --rounds 7 --steps 10
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

COPIES = ("none:exact", "translate:2px", "crop:0.9", "resize:0.75", "jpeg:q50", "noise:8/255")
NAMES = {"none:exact": "exact", "translate:2px": "2-px shift", "crop:0.9": "crop 90%", "resize:0.75": "resize 0.75",
         "jpeg:q50": "JPEG 50", "noise:8/255": "noise 8/255"}


def _pairs(specs: list[str], ap: argparse.ArgumentParser) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if not sep:
            ap.error(f"expected LABEL=..., got {spec!r}")
        out.append((label, rest))
    return out


def validate(runs: list[tuple[str, str]], max_samples: int) -> int:
    from activemint.metrics import membership_metrics
    from activemint.runs import load_run
    from activemint.transforms import apply_transform

    print("Members against the validation split, both transformed alike (seed 0); cells AUC / TPR@1%FPR\n")
    print("| run | " + " | ".join(NAMES[c] for c in COPIES) + " | mean AUC |")
    print("|---|" + "---|" * (len(COPIES) + 1))
    for label, path in runs:
        run = load_run(path, device="cpu")
        mem = run.data.split("members").images[:max_samples]
        val = run.data.split("validation").images[:max_samples]
        cells, aucs = [], []
        for copy in COPIES:
            name, level = copy.split(":")
            m, v = (x if name == "none" else apply_transform(x, name, level, seed=0) for x in (mem, val))
            r = membership_metrics(run.membership_logits(m), run.membership_logits(v), bootstrap=0)
            cells.append(f"{r.auc:.3f} / {r.tpr_at_1pct_fpr:.2f}")
            aucs.append(r.auc)
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean(aucs):.3f} |", flush=True)
    return 0


def table(runs: list[tuple[str, str]], twin: str | None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from neighbourhood_table import tpr_interval

    twin_file = Path(twin) / "metrics.json" if twin and Path(twin).is_dir() else twin
    twin_acc = json.loads(Path(twin_file).read_text())["test_accuracy"] if twin_file else None
    base_seconds = None
    other: list[tuple[str, list]] = []
    print("Members against the evaluation non-members (2,000 each), both transformed alike (seed 0).")
    print("Cells: AUC [95% CI] / TPR@1%FPR [95% CI] / TPR@0.1%FPR [95% CI]\n")
    header = "| run | test acc. (twin) | train time (ratio) | " + " | ".join(NAMES[c] for c in COPIES) + " |"
    print(header)
    print("|---|---|---|" + "---|" * len(COPIES))
    for label, spec in runs:
        run_dir, _, rb = spec.partition(":")
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        rows = {f"{r['transform']}:{r['level']}": r for r in json.loads((Path(rb) / "robustness.json").read_text())["rows"]
                if r["scorer"] == "active_mint"}
        with np.load(Path(rb) / "scores.npz", allow_pickle=False) as z:
            scores = {k: z[k] for k in z.files}
        secs = float(metrics["train_seconds"])
        base_seconds = base_seconds or secs
        cells = []
        for c in COPIES:
            r = rows.get(c)
            if r is None:
                cells.append("")
                continue
            m, n = scores[f"active_mint|{c}|members"], scores[f"active_mint|{c}|eval_nonmembers"]
            a, b = tpr_interval(m, n, 0.01)
            e, f = tpr_interval(m, n, 0.001)
            cells.append(f"{r['auc']:.3f} [{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}] / {r['tpr_at_1pct_fpr']:.2f} "
                         f"[{a:.2f}, {b:.2f}] / {r['tpr_at_0_1pct_fpr']:.3f} [{e:.3f}, {f:.3f}]")
        acc = f"{metrics['test_accuracy']:.4f}" + (f" ({twin_acc:.4f})" if twin_acc is not None else "")
        print(f"| {label} | {acc} | {secs / 60:.1f} min ({secs / base_seconds:.2f}x) | " + " | ".join(cells) + " |", flush=True)
        other.append((label, [(c, r) for c, r in rows.items() if c not in COPIES]))
    if any(o for _, o in other):
        print("\nCopies outside the audit policy's views (unseen transformations, compositions): AUC [95% CI] / TPR@1%FPR\n")
        names = list(dict.fromkeys(c for _, o in other for c, _ in o))
        print("| run | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for label, o in other:
            got = dict(o)
            print(f"| {label} | " + " | ".join(f"{r['auc']:.3f} [{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}] / "
                                             f"{r['tpr_at_1pct_fpr']:.2f}" if (r := got.get(c)) else "" for c in names) + " |")
    return 0


def steptime(rounds: int, steps: int) -> int:
    import time

    import torch

    from activemint.mint import MultitaskLoss
    from activemint.mint.head import HEAD_POOLS
    from activemint.training import TrainConfig
    from activemint.training.batches import to_input
    from activemint.training.build import build_model

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    xm = to_input(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g))
    xe = to_input(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g))
    y = torch.randint(0, 10, (64,), generator=g)
    setups = {}
    for pool in HEAD_POOLS:
        model = build_model(TrainConfig(head_pool=pool), (1, 28, 28), 10).train()
        setups[pool] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), MultitaskLoss())
    times: dict[str, list[float]] = {p: [] for p in HEAD_POOLS}
    for _ in range(rounds):
        for pool, (model, opt, loss_fn) in setups.items():
            t0 = time.process_time()  # CPU time of this one-thread process: little moved by other jobs
            for _ in range(steps):
                logits, mm, me = model.forward_train(xm, xe)
                loss, _ = loss_fn(logits, y, mm, me)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[pool].append((time.process_time() - t0) / steps)
    ref = float(np.median(times["max"]))
    print("| head_pool | median CPU ms / step | ratio to max | head parameters |\n|---|---|---|---|")
    for pool, (model, _, _) in setups.items():
        med = float(np.median(times[pool]))
        print(f"| {pool} | {1000 * med:.1f} | {med / ref:.2f} | {sum(p.numel() for p in model.head.parameters()):,} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="rank designs on the validation split")
    v.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    v.add_argument("--max-samples", type=int, default=2000)
    t = sub.add_parser("table", help="the evaluation table from robustness --save-scores outputs")
    t.add_argument("runs", nargs="+", help="LABEL=RUN_DIR:ROBUSTNESS_DIR")
    t.add_argument("--twin", help="the plain twin's run directory or its metrics.json (its test accuracy)")
    st = sub.add_parser("steptime", help="the step cost of each head_pool, interleaved in one process")
    st.add_argument("--rounds", type=int, default=7)
    st.add_argument("--steps", type=int, default=10)
    a = ap.parse_args(argv)
    if a.cmd == "steptime":
        return steptime(a.rounds, a.steps)
    if a.cmd == "validate":
        return validate(_pairs(a.runs, ap), a.max_samples)
    return table(_pairs(a.runs, ap), a.twin)


if __name__ == "__main__":
    sys.exit(main())
