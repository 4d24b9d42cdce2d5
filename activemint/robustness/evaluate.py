"""``activemint robustness RUN_DIR``: membership figures of every scorer on near-copies.

For every transformation and severity of :mod:`activemint.transforms` (and the exact copies),
the members D, the evaluation non-members and the calibration non-members of a run all go
through the same transformation (same code, same seed); every registered scorer that applies
scores them, and the one metrics engine (:func:`activemint.metrics.membership_metrics`) turns
the scores into AUC, TPR at 1% and 0.1% FPR, and the observed TPR / FPR at a threshold
calibrated for the run's target FPR twice:

* on the *untransformed* calibration non-members (the auditor does not know what was done
  to the image: the deployed threshold), and
* on the *transformed* calibration non-members (the auditor knows and re-calibrates).

Outputs in ``OUT`` (default ``RUN_DIR/robustness``): ``robustness.md``, ``.csv``, ``.json``,
``robustness.png`` (AUC and TPR@1%FPR against severity, one panel per transformation, one line
per scorer) and ``robustness.html``.  ``activemint report RUN_DIR`` includes the section when
``RUN_DIR/robustness/robustness.json`` exists.
"""
from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activemint.io import check_output_dir, csv_cell, output_dir
from activemint.metrics import (
    calibrate_threshold,
    fmt_rate,
    fmt_tpr,
    membership_metrics,
    min_calibration_size,
    unsupported_note,
)
from activemint.neighbourhood import get_view_set, parse_aggregates
from activemint.rundir import ROBUSTNESS_CACHE, ROBUSTNESS_FILES, RunDir
from activemint.runs import Run, load_run
from activemint.scorers import Context, NeighbourhoodScorer, Scorer, ScorerError, View, Work, get_scorers, score_views, wraps
from activemint.scorers.context import check_plain_twin, run_context, run_test_accuracy
from activemint.transforms import apply_transform, parse_spec

ROLES = ("members", "eval_nonmembers", "calibration")

#: A robustness evaluation cannot run as asked (missing manifest, mismatched runs, unknown scorer, ...).
RobustnessError = ScorerError
EXACT = ("none", "exact")


@dataclass
class Row:
    """One scorer on one transformed copy."""

    scorer: str
    method: str
    needs: str
    transform: str
    level: str
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    threshold_exact_cal: float
    tpr_at_exact_cal: float
    fpr_at_exact_cal: float
    threshold_transformed_cal: float
    tpr_at_transformed_cal: float
    fpr_at_transformed_cal: float
    n_members: int
    n_nonmembers: int


def _member_selection(run: Run, which: str) -> np.ndarray:
    n = len(run.data.splits.members)
    if which == "all":
        return np.ones(n, dtype=bool)
    if which not in ("seen", "unseen"):
        raise RobustnessError(f"--members must be all, seen or unseen, got {which!r}")
    if run.config.mint_members >= 1.0:
        raise RobustnessError(f"--members {which}: {run.run_dir} was trained with the MINT loss on all members (mint_members 1)")
    from activemint.training.data import mint_seen_mask

    seen = mint_seen_mask(run.config, n)
    return seen if which == "seen" else ~seen


def load_context(run_dir: str | Path, *, plain_run: str | Path | None = None, members: str = "all",
                 max_samples: int | None = None, cache_dir: Path | None = None,
                 log: Callable[[str], None] = lambda m: None, device: str = "auto",
                 data_root: str | None = None, configs: Mapping[str, Any] | None = None) -> Context:
    """The evaluated roles (a seeded subset with ``max_samples``) and, to fit on, all of D and E.

    ``cache_dir`` holds what the scorers build (the post-hoc heads, the members' features);
    :func:`run_robustness` passes ``OUT/cache`` (the output folder's), so a ``--plain-run`` is only
    read.  Its default here is ``RUN_DIR/robustness/cache``, the default output's."""
    run = load_run(run_dir, device=device, data_root=data_root)
    if not run.dir.manifest.is_file():
        raise RobustnessError(f"{run.run_dir} has no {run.dir.manifest.name}: a robustness evaluation needs "
                              "the run's splits")
    plain = None
    if plain_run is not None:
        plain = load_run(plain_run, device=device, data_root=data_root)
        check_plain_twin(run, plain, "--plain-run")
    s = run.data.splits
    sel = _member_selection(run, members)
    idx = {"members": np.asarray(s.members)[sel], "eval_nonmembers": np.asarray(s.eval_nonmembers),
           "calibration": np.asarray(s.calibration), "external": np.asarray(s.external)}
    if max_samples is not None:  # a seeded subset of each evaluated role (quick looks, tests)
        rng = np.random.default_rng(0)
        # the calibration role keeps at least what the calibrated threshold needs
        keep = {r: max_samples for r in ROLES}
        keep["calibration"] = max(max_samples, min_calibration_size(run.config.target_fpr))
        for r in ROLES:
            if len(idx[r]) > keep[r]:
                idx[r] = np.sort(rng.choice(idx[r], keep[r], replace=False))
    cache = cache_dir or run.dir.robustness_cache
    # the scorers fit on all members (the auditor's D) and E, whatever subset is evaluated
    return run_context(run, plain, cache, indices=idx, roles=ROLES, configs=configs, log=log)


def run_robustness(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    transforms: str = "all",
    scorers: list[str] | None = None,
    plain_run: str | Path | None = None,
    members: str = "all",
    seed: int = 0,
    max_samples: int | None = None,
    bootstrap: int = 100,
    neighbourhood: str | None = None,
    aggregate: str = "max",
    neighbourhood_seed: int = 0,
    save_scores: bool = False,
    configs: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = lambda m: None,
    device: str = "auto",
    data_root: str | None = None,
    command: str | None = None,
) -> list[Row]:
    """Evaluate every applicable scorer on every transformed copy; write the outputs; return the rows.

    ``neighbourhood`` (a view set of :mod:`activemint.neighbourhood`) adds, for every scorer that
    scores images, one row per aggregation of ``aggregate`` (comma-separated): the scorer over
    the views of each image (members, non-members and calibration alike), keyed
    ``<scorer>@<view set>/<aggregation>``.  The view scores are computed once per role and
    copy and shared by the aggregations.

    ``save_scores`` also writes every row's scores to ``OUT/scores.npz``, one float64 array per
    ``<scorer>|<transform>:<level>|<role>`` (roles: members, eval_nonmembers, calibration).
    """
    t0 = time.time()
    out = Path(out_dir) if out_dir else RunDir(run_dir).robustness
    check_output_dir(out, OUTPUT_NAMES, carry=(ROBUSTNESS_CACHE,))  # before any work
    views = get_view_set(neighbourhood, neighbourhood_seed) if neighbourhood else None  # bad arguments fail first
    aggs = parse_aggregates(aggregate) if neighbourhood else []
    ctx = load_context(run_dir, plain_run=plain_run, members=members, max_samples=max_samples,
                       cache_dir=out / ROBUSTNESS_CACHE, log=log, device=device, data_root=data_root, configs=configs)
    channels = ctx.images["members"].shape[1]
    pairs = [EXACT] + parse_spec(transforms, channels)  # bad arguments fail before any work
    classes = get_scorers(scorers)
    target = ctx.run.config.target_fpr
    prepared: list[Scorer] = []
    skipped = {}
    work = Work()
    for cls in classes:
        why = cls.applies(ctx)
        if why:
            skipped[cls.key] = why
            log(f"skipping {cls.key}: {why}")
            continue
        sc = cls()
        work.add(sc.prepare(ctx))  # scorers learn / index the auditor's D: all members (ctx.known)
        prepared.append(sc)
    if not prepared:
        raise RobustnessError(f"no scorer applies to {run_dir}: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    rowed: list[Scorer] = list(prepared)
    timing = {"seconds": 0.0, "queries": 0, "plain_seconds": 0.0}  # neighbourhood scoring, plain scoring of the same
    if views is not None:
        for sc in prepared:
            why = wraps(sc)
            if why:
                skipped[f"{sc.key}@{views.name}"] = why
                continue
            # the aggregations of one scorer share its view scores (computed once per images)
            shared = {"timing": timing}
            ws = [NeighbourhoodScorer(sc, views, a, shared=shared) for a in aggs]
            sc.score_images = _timed(sc.score_images, timing)  # the plain scoring of the same queries, for the ratio
            if any(a.needs_fit for a in aggs):  # zmax: per-view statistics of external data E, once per scorer
                ref = ws[0].reference_view_scores(ctx)
                for w in ws:
                    w.fit(ref)
            rowed += ws
        log(f"neighbourhood {views.name}: {views.cost()}; aggregations {', '.join(a.name for a in aggs)}")
    transform_views = [View("none", "exact") if p == EXACT else
                       View(p[0], p[1], functools.partial(apply_transform, name=p[0], level=p[1], seed=seed)) for p in pairs]

    scored, _ = score_views(ctx, rowed, transform_views, prepared=True, desc="robustness: transformed copies")
    exact_cal = {sc.key: s["calibration"] for sc, s in zip(rowed, scored[0])}
    rows: list[Row] = []
    saved: dict[str, np.ndarray] = {}
    for view, got in zip(transform_views, scored):
        name, level = view.name, view.level
        for sc, s in zip(rowed, got):
            key = sc.key
            sm, sn, scal = (s[r] for r in ROLES)
            if save_scores:
                saved.update({f"{key}|{name}:{level}|{r}": np.asarray(s[r], dtype=np.float64) for r in ROLES})
            m = membership_metrics(sm, sn, calibration_scores=scal, target_fpr=target, bootstrap=bootstrap, seed=seed)
            t_exact = calibrate_threshold(exact_cal[key], target)
            rows.append(Row(
                key, sc.name, sc.needs, name, level, m.auc, m.auc_ci_low, m.auc_ci_high, m.tpr_at_1pct_fpr,
                m.tpr_at_0_1pct_fpr, t_exact, float((sm > t_exact).mean()), float((sn > t_exact).mean()),
                float(m.calibrated_threshold), float(m.tpr_at_calibrated), float(m.fpr_at_calibrated), len(sm), len(sn),
            ))
        log(f"{name}:{level}  " + "  ".join(f"{r.scorer} {r.auc:.3f}" for r in rows[-len(rowed):]))
    t_nb = [timing["seconds"], timing["queries"], timing["plain_seconds"]]
    info = {"run_dir": str(Path(run_dir)), "plain_run": str(plain_run) if plain_run else None, "members": members,
            "seed": seed, "target_fpr": target, "transforms": transforms, "skipped": skipped,
            "max_samples": max_samples, "seconds": round(time.time() - t0, 1), "command": command,
            "test_accuracy": run_test_accuracy(ctx.run)}
    if views is not None:
        info["neighbourhood"] = {**views.describe(), "seed": neighbourhood_seed, "aggregates": [a.name for a in aggs],
                                 "cost_per_query": views.cost(),
                                 "seconds_per_1000_queries": round(1000 * t_nb[0] / max(1, t_nb[1]), 3),
                                 "seconds_per_1000_queries_plain": round(1000 * t_nb[2] / max(1, t_nb[1]), 3),
                                 "timing_note": "all wrapped scorers together, measured in this run (a shared machine: ratios only)",
                                 "queries_scored": t_nb[1]}
    write_outputs(out, rows, info, scores=saved if save_scores else None)
    return rows


def _timed(score_images: Callable[[torch.Tensor], np.ndarray], timing: dict) -> Callable[[torch.Tensor], np.ndarray]:
    def timed(images: torch.Tensor) -> np.ndarray:
        t = time.time()
        out = score_images(images)
        timing["plain_seconds"] += time.time() - t
        return out
    return timed


# ------------------------------------------------------------------- outputs
COLUMNS = [f for f in Row.__dataclass_fields__]


def markdown_table(rows: list[Row]) -> str:
    head = ("| transformation | scorer (needs) | AUC [95% CI] | TPR@1%FPR | TPR@0.1%FPR | TPR / FPR at exact-cal. threshold "
            "| TPR / FPR at transformed-cal. threshold |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r.transform}:{r.level} | {r.scorer} ({r.needs}) | {r.auc:.3f} [{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}] "
            f"| {fmt_tpr(r.tpr_at_1pct_fpr, r.n_members, r.n_nonmembers, 0.01)} "
            f"| {fmt_tpr(r.tpr_at_0_1pct_fpr, r.n_members, r.n_nonmembers, 0.001)} | {fmt_rate(r.tpr_at_exact_cal, r.n_members)} / "
            f"{fmt_rate(r.fpr_at_exact_cal, r.n_nonmembers)} | {fmt_rate(r.tpr_at_transformed_cal, r.n_members)} / "
            f"{fmt_rate(r.fpr_at_transformed_cal, r.n_nonmembers)} |")
    return "\n".join(lines)


OUTPUT_NAMES = [*ROBUSTNESS_FILES.values(), "scores.npz"]  # scores.npz: with --save-scores


def write_outputs(out: Path, rows: list[Row], info: dict, scores: dict[str, np.ndarray] | None = None) -> None:
    """Write the tables, plot and page (and ``scores``, as scores.npz) into ``out`` as one folder, built
    beside it and renamed into place (its ``cache`` folder moves into the new one)."""
    with output_dir(out, OUTPUT_NAMES, carry=(ROBUSTNESS_CACHE,), what="robustness") as tmp:
        _write_files(tmp, rows, info)
        if scores is not None:
            np.savez(tmp / "scores.npz", **scores)


def _write_files(out: Path, rows: list[Row], info: dict) -> None:
    with open(out / ROBUSTNESS_FILES["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(v) for k, v in asdict(r).items()})
    (out / ROBUSTNESS_FILES["json"]).write_text(json.dumps({"info": info, "rows": [asdict(r) for r in rows]}, indent=2))
    scorers = {r.scorer: (r.method, r.needs) for r in rows}
    md = [f"# Robustness of membership detection: `{info['run_dir']}`", "",
          (f"Members ({info['members']}) vs evaluation non-members, both transformed the same way (seed {info['seed']}); "
          f"thresholds for {info['target_fpr']:g} FPR calibrated on the untransformed and on the transformed calibration "
          "non-members."), "", "Scorers:", ""]
    md += [f"- `{k}`: {m} — needs {n}" for k, (m, n) in scorers.items()]
    md += [f"- skipped `{k}`: {v}" for k, v in info.get("skipped", {}).items()]
    if info.get("command"):
        md += ["", f"Command: `{info['command']}`"]
    from activemint.report.robustness import takeaways

    md += ["", "In short:", ""] + [f"- {t}" for t in takeaways(rows)]
    md += ["", markdown_table(rows), "", unsupported_note(0.001), ""]
    (out / ROBUSTNESS_FILES["markdown"]).write_text("\n".join(md))
    plot_robustness(rows, out / ROBUSTNESS_FILES["plot"])
    from activemint.report.robustness import robustness_page

    (out / ROBUSTNESS_FILES["html"]).write_text(robustness_page(out))


#: Severity units on the chart's x-axis (the levels of translate and rotate carry theirs).
SHORT_UNITS = {"crop": "kept ", "resize": "x", "noise": "sigma ", "brightness_contrast": "+-"}
#: Short names for the chart's labels.
SHORT_NAMES = {"brightness_contrast": "bright./contr."}


#: Copies per row of the chart: more rows, not narrower bars, when many copies were evaluated.
PER_ROW = 10


def plot_robustness(rows: list[Row], path: Path) -> None:
    """One grouped-bar chart: AUC per transformed copy (severity and its unit under each group), a bar per scorer.

    Up to :data:`PER_ROW` copies per row of the chart (``--transforms all`` gives three rows),
    so that the labels stay readable at page width.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from activemint.transforms import TRANSFORMS

    scorers = list(dict.fromkeys(r.scorer for r in rows))
    groups = list(dict.fromkeys((r.transform, r.level) for r in rows))
    by = {(r.scorer, r.transform, r.level): r for r in rows}
    width = 0.8 / max(1, len(scorers))
    n_rows = max(1, -(-len(groups) // PER_ROW))
    per_row = -(-len(groups) // n_rows)
    fig, axes = plt.subplots(n_rows, 1, figsize=(11.0, 1.2 + 3.3 * n_rows), squeeze=False)
    hatches = ["", "//", "..", "xx", "\\\\", "--", "++", "oo"]

    def label(t: str, lv: str) -> str:
        if t == "none":
            return "exact\ncopy"
        unit = SHORT_UNITS.get(t, "")
        name = SHORT_NAMES.get(t, t)
        return f"{name}\n{unit}{lv}" if unit and unit not in lv else f"{name}\n{lv}"

    for row_i in range(n_rows):
        ax = axes[row_i][0]
        mine = groups[row_i * per_row:(row_i + 1) * per_row]
        for k, sc in enumerate(scorers):
            xs = [i + (k - (len(scorers) - 1) / 2) * width for i, (t, lv) in enumerate(mine) if (sc, t, lv) in by]
            ys = [by[sc, t, lv].auc for (t, lv) in mine if (sc, t, lv) in by]
            ax.bar(xs, ys, width=width, label=sc if row_i == 0 else None, color=plt.cm.tab10(k % 10),
                   hatch=hatches[k % len(hatches)], edgecolor="white", linewidth=0.5)
        ax.set_xticks(range(len(mine)), [label(t, lv) for t, lv in mine], fontsize=9)
        ax.set_xlim(-0.6, per_row - 0.4)
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="0.4", lw=0.8, ls=":")
        ax.axhline(0.9, color="0.4", lw=0.8, ls="--")
        ax.set_ylabel("AUC (0.5 = chance)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    used = list(dict.fromkeys(t for t, _ in groups if t in TRANSFORMS))
    fig.suptitle("Membership AUC, members vs non-members copied the same way, per scorer (dashed: 0.90)", fontsize=11)
    fig.legend(fontsize=10, ncol=min(len(scorers), 5), loc="lower center", frameon=False)
    units = "; ".join(f"{t} = {TRANSFORMS[t].parameter}" for t in used)
    fig.text(0.5, 0.055, "severity: " + units, ha="center", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.09 + 0.02 / n_rows, 1, 0.97))
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
