"""HTML reports of training runs and of method comparisons.

``run_report_html(run_dir)`` reads what the trainer wrote (``metrics.jsonl``, ``metrics.json``,
``scores.npz``, ``config.yaml``) and renders learning curves of both tasks, score histograms
of members vs evaluation non-members, and ROC curves (linear and log-log).

``compare_report_html(methods, ...)`` renders the same plots for several membership
scorers side by side; it takes a plain ``{method: (member_scores, nonmember_scores)}``
dict so any producer of scores can use it.  ``render_report(path)`` picks the right one
for a directory.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from activemint.errors import UserError, not_a_directory
from activemint.io import file_sha256, write_output
from activemint.metrics import fmt_rate, fmt_tpr, fpr_supported, membership_metrics, unsupported_note
from activemint.report import plots
from activemint.report.html import esc, img, keyfigs, page, table
from activemint.report.summary import calibrated_tpr, figures_scope
from activemint.rundir import COMPARE_FILES, LOG, METRICS, MODEL, REPORT, RunDir, RunError


class ReportError(UserError, ValueError):
    """A directory holds nothing a report can be made from."""


def _f(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _membership_table(m: Mapping[str, Any]) -> str:
    rows = [
        ["AUC (95% bootstrap CI)", f"{_f(m.get('auc'))} [{_f(m.get('auc_ci_low'), 3)}, {_f(m.get('auc_ci_high'), 3)}]"],
        ["TPR at 1% FPR [95% CI] (n members / non-members)",
         fmt_tpr(m["tpr_at_1pct_fpr"], m.get("n_members"), m.get("n_nonmembers"), 0.01, 4) if m.get("tpr_at_1pct_fpr") is not None else "n/a"],
        ["TPR at 0.1% FPR [95% CI] (n members / non-members)",
         fmt_tpr(m["tpr_at_0_1pct_fpr"], m.get("n_members"), m.get("n_nonmembers"), 0.001, 4) if m.get("tpr_at_0_1pct_fpr") is not None else "n/a"],
        ["accuracy at P = 0.5 (paper's metric, balanced set)",
         f"{_f(m.get('accuracy_at_0_5'))} (TPR {_f(m.get('tpr_at_0_5'), 3)}, FPR {_f(m.get('fpr_at_0_5'), 3)})"],
    ]
    if m.get("accuracy_at_calibrated") is not None:
        conf = f" with probability >= {1 - m['calibration_delta']:g}" if m.get("calibration_delta") else ""
        rows.append([f"accuracy at a threshold calibrated on held-out non-members for FPR <= {m['calibration_target_fpr']:g}{conf}",
                     f"{_f(m['accuracy_at_calibrated'])} ({calibrated_tpr(m)})"])
    elif m.get("calibration_note"):
        rows.append(["calibrated threshold", m["calibration_note"]])
    rows.append(["oracle best accuracy (threshold tuned on these very scores; optimistic)", _f(m.get("oracle_best_accuracy"))])
    rows.append(["members / evaluation non-members", f"{m.get('n_members')} / {m.get('n_nonmembers')}"])
    note = "" if fpr_supported(m.get("n_nonmembers"), 0.001) else f'<p class="note">{esc(unsupported_note(0.001 if fpr_supported(m.get("n_nonmembers"), 0.01) else 0.01))}</p>'
    return table(["membership figure", "value"], rows) + note


def _tpr_keyfig(m: Mapping[str, Any], key: str, fpr: float) -> tuple[str, str]:
    """A key figure box: ``0.420 [0.398, 0.442]`` over ``TPR at 1% FPR, 95% CI (n = 2000 / 2000)``, ``*`` when unsupported."""
    v, nm, nn = m[key], m.get("n_members"), m.get("n_nonmembers")
    if not nm:
        return f"{v:.3f}", f"TPR at {100 * fpr:g}% FPR"
    mark = "" if fpr_supported(nn, fpr) else " *"
    return f"{fmt_rate(v, nm)}{mark}", f"TPR at {100 * fpr:g}% FPR, 95% CI (n = {nm} members / {nn} non-members)"


def _train_commands(rd: RunDir) -> list[str]:
    """The ``$ activemint train ...`` lines ``train`` wrote at the head of each session of train.log."""
    try:
        with open(rd.train_log, errors="replace") as f:
            return [ln[2:].strip() for ln in f if ln.startswith("$ activemint ")][:5]
    except OSError:
        return []


def run_takeaway(metrics: Mapping[str, Any]) -> str:
    """The run in one sentence: accuracy (against its baseline) and how well its head tells members apart."""
    acc = metrics.get("test_accuracy")
    s = (f"Test accuracy {acc:.4f}" if isinstance(acc, (int, float)) else "No test accuracy")
    if isinstance(metrics.get("baseline_test_accuracy"), (int, float)) and isinstance(acc, (int, float)):
        b = metrics["baseline_test_accuracy"]
        s += f" ({100 * (acc - b):+.2f} points against the same model without aMINT, {b:.4f})"
    m = metrics.get("membership")
    if not metrics.get("mint") or not m:
        return s + ". A plain model (no aMINT): it has no membership head to audit with."
    return (s + f". Its MINT head separates members from unseen non-members with AUC {m['auc']:.3f}; at 1% FPR it catches "
            f"{fmt_tpr(m['tpr_at_1pct_fpr'], m.get('n_members'), m.get('n_nonmembers'), 0.01)} of the members.")


def run_report_html(run_dir: str | os.PathLike) -> str:
    """HTML report of a training run directory."""
    from activemint.training.config import TrainConfig

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} does not exist")
    rd = RunDir(run_dir)
    jsonl, mjson = rd.log, rd.metrics
    if not (jsonl.is_file() or mjson.is_file()):
        raise ReportError(f"{run_dir} has neither {LOG} nor {METRICS}: not a training run directory")
    state = rd.state()
    if state.kind == "inconsistent":  # e.g. a truncated scores.npz beside metrics.json
        raise ReportError(f"run inconsistent: {state.detail}")
    finished = state.kind in ("complete", "model only", "not a run")
    try:
        records = rd.read_log()
        metrics = (rd.read_metrics() or {}) if finished else {}
        saved_scores = rd.read_scores() if finished else None
    except RunError as e:
        raise ReportError(str(e)) from e
    cfg = TrainConfig.from_yaml(rd.config).to_dict() if rd.config.is_file() else {}
    mint = metrics.get("mint", cfg.get("mint"))
    what = f"{cfg.get('dataset', metrics.get('dataset'))} / {cfg.get('arch', metrics.get('arch'))} / " + (
        f"aMINT setup {cfg.get('setup', metrics.get('setup'))}" if mint else "plain training (no aMINT)")
    parts = [f"<h1>Training run: {esc(what)}</h1>", f'<p class="question">Run directory <code>{esc(run_dir)}</code></p>']
    if not metrics:
        why = "it is being trained right now" if state.kind == "in progress" else (
            "it was interrupted; continue it with <code>activemint train --resume</code>" if state.kind == "incomplete" else "")
        parts.append(f'<div class="verdict info">This run has not finished: no {METRICS} yet{"; " + why if why else ""}; '
                     f'learning curves only.</div>')
    m = metrics.get("membership")
    figs = []
    if "test_accuracy" in metrics:
        acc = f"{metrics['test_accuracy']:.4f}"
        label = "audited model test accuracy" if metrics.get("mint") else "plain model (no aMINT) test accuracy"
        if "baseline_test_accuracy" in metrics:
            label += f" (without aMINT {metrics['baseline_test_accuracy']:.4f})"
        figs.append((acc, label))
    if m:
        figs += [(f"{m['auc']:.4f}", "membership AUC (members vs unseen non-members)"),
                 *(_tpr_keyfig(m, k, fpr) for k, fpr in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0_1pct_fpr", 0.001)))]
    if metrics:
        parts.append(f'<div class="verdict info takeaway" id="takeaway">{esc(run_takeaway(metrics))}</div>')
        if mint:
            from activemint.audit.limits import detection_limits

            limits = detection_limits(run_dir, cfg.get("audit_policy"))
            parts.append(f'<p class="limits" id="limits">{esc(limits.sentence())}</p>')
    if figs:
        parts.append(keyfigs(figs))

    if records:
        parts.append("<h2>Learning curves (per epoch)</h2>")
        kept = metrics.get("selected_epoch")
        parts.append(img(plots.learning_curves(records, kept=kept if isinstance(kept, int) else None),
                         "learning curves: task loss, validation accuracy, MINT loss, validation membership AUC; the kept epoch marked"))
        last = records[-1]
        parts.append(f'<p class="note">{len(records)} epochs logged; last: '
                     + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float) and k not in ("seconds", "epoch_seconds"))
                     + (f"; {last['seconds']:.0f} s elapsed" if "seconds" in last else "") + ".</p>")
        if metrics.get("selection"):
            from activemint.report.summary import describe_selection

            parts.append(f'<p class="note">Model evaluated: {esc(describe_selection(metrics["selection"]))}.</p>')
    if m:
        parts.append("<h2>Membership test</h2>")
        parts.append(_membership_table(m))
    if saved_scores is not None:
        scores = saved_scores
        if "members" in scores and "eval_nonmembers" in scores:
            thr = m.get("calibrated_threshold") if m else None
            groups = {"members": scores["members"], "eval non-members": scores["eval_nonmembers"]}
            if "calibration" in scores:
                groups["calibration non-members"] = scores["calibration"]
            parts.append("<h2>Score distributions</h2>")
            parts.append(img(plots.score_histogram(groups, threshold=thr, threshold_label=f"threshold calibrated for {m.get('calibration_target_fpr', 0.01):g} FPR" if thr is not None else "",
                                                   title="membership logits: members vs non-members"), "score histograms"))
            parts.append("<h2>ROC curves</h2>")
            op = (m["fpr_at_calibrated"], m["tpr_at_calibrated"]) if m and m.get("fpr_at_calibrated") is not None else None
            parts.append(img(plots.roc_figure({"aMINT head": (scores["members"], scores["eval_nonmembers"])}, operating_point=op),
                             "ROC curves, linear and log-log"))
    from activemint.report.robustness import robustness_section

    parts.append(robustness_section(RunDir(run_dir).robustness, ids=False))  # empty unless `activemint robustness` ran
    for key, label in (("membership_seen", "members the MINT loss saw"), ("membership_unseen", "held-out members (task loss only)")):
        if key in metrics:
            parts.append(f"<h2>Membership test: {label}</h2>")
            parts.append(_membership_table(metrics[key]))
    if cfg:
        parts.append("<h2>Configuration</h2>")
        keys = [k for k in ("dataset", "arch", "setup", "mint", "taps", "members", "external", "validation", "calibration",
                            "eval_nonmembers", "epochs", "batch_size", "external_batch_size", "recipe", "optimizer", "lr",
                            "lambda_task", "lambda_mint", "select", "target_fpr", "seed") if k in cfg]
        parts.append(table(["key", "value"], [[k, cfg[k]] for k in keys]))
    if finished and rd.model.is_file():
        parts.append(f'<p class="note">Weights SHA-256 ({MODEL}): <span class="hash">{file_sha256(rd.model)}</span></p>')
    commands = _train_commands(rd)
    if commands:
        parts.append('<p class="note">Command' + ("s" if len(commands) > 1 else "") + " (from train.log): "
                     + "; ".join(f"<code>{esc(c)}</code>" for c in commands) + "</p>")
    return page(f"activemint run report: {what}", "\n".join(parts))


def compare_report_html(
    methods: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    title: str = "Membership scorers compared",
    note: str = "",
    bootstrap: int = 200,
    command: str | None = None,
) -> str:
    """HTML comparing membership scorers.

    Args:
        methods: ``{method: (member_scores, nonmember_scores)}``, higher = more member-like;
            may be empty when only ``metrics`` are known.
        metrics: ``{method: {figure: value}}`` already computed (e.g. by ``compare``); for a
            method with scores but no figures, they are computed here.
        title: page title.
        note: a sentence under the title (what was compared, on which run).
        bootstrap: resamples for the AUC interval of methods whose figures are computed here.
        command: the command line that produced the figures (recorded at the foot of the page).
    """
    figs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (metrics or {}).items()}
    for name, (mem, non) in methods.items():
        if name not in figs or "auc" not in figs[name]:
            figs.setdefault(name, {}).update(membership_metrics(mem, non, bootstrap=bootstrap).to_dict())
    if not figs:
        raise ReportError("nothing to compare: no methods with scores or metrics")
    parts = [f"<h1>{esc(title)}</h1>"]
    if note:
        parts.append(f'<div class="verdict info takeaway" id="takeaway">{esc(note)}</div>')
    n_mem = [f["n_members"] for f in figs.values() if f.get("n_members")]
    n_non = [f["n_nonmembers"] for f in figs.values() if f.get("n_nonmembers")]
    scope = figures_scope(min(n_mem, default=None), min(n_non, default=None),
                          "a method that needs reference models or a plain twin was trained once, one seed")
    if scope:
        parts.append(f'<p class="limits" id="limits">{esc(scope)}</p>')
    keys = ["auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "accuracy_at_0_5", "accuracy_at_calibrated", "oracle_best_accuracy"]
    shown = [k for k in keys if any(isinstance(f.get(k), (int, float)) for f in figs.values())]
    extra = ["test_accuracy"] if any(isinstance(f.get("test_accuracy"), (int, float)) for f in figs.values()) else []
    headers = {"tpr_at_1pct_fpr": "TPR@1%FPR [95% CI] (n)", "tpr_at_0_1pct_fpr": "TPR@0.1%FPR [95% CI] (n)", "accuracy_at_0_5": "acc@0.5",
               "accuracy_at_calibrated": "acc@calibrated", "oracle_best_accuracy": "oracle acc (optimistic)",
               "test_accuracy": "model test acc", "auc": "AUC"}
    rows = []
    tprs = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": 0.001}

    def cell(f, k):
        if k in tprs and isinstance(f.get(k), (int, float)) and f.get("n_members"):
            return fmt_tpr(f[k], f["n_members"], f.get("n_nonmembers"), tprs[k])
        return _f(f.get(k), 3)

    for name, f in figs.items():
        auc = _f(f.get("auc"), 3)
        if f.get("auc_ci_low") is not None:
            auc += f" [{f['auc_ci_low']:.3f}, {f['auc_ci_high']:.3f}]"
        rows.append([name, auc] + [cell(f, k) for k in shown + extra if k != "auc"])
    cols = [k for k in shown + extra if k != "auc"]
    parts.append("<h2>Figures</h2>")
    parts.append(table(["method", "AUC [95% CI]"] + [headers.get(k, k) for k in cols], rows, numeric=tuple(range(1, len(cols) + 2))))
    n_non = [f.get("n_nonmembers") for f in figs.values() if f.get("n_nonmembers")]
    if n_non:
        parts.append('<p class="note">TPR cells: value [95% Clopper-Pearson interval over the members, threshold held fixed] '
                     "(n = members / non-members)." + ("" if fpr_supported(min(n_non), 0.001) else " " + esc(unsupported_note(
                         0.001 if fpr_supported(min(n_non), 0.01) else 0.01))) + "</p>")
    parts.append(img(plots.metric_bars(figs, [k for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr") if k in shown],
                                       "membership figures by method (AUC with 95% CI)"), "bar chart of figures by method"))
    if methods:
        drawn = best_per_family(methods, figs)
        parts.append("<h2>ROC curves</h2>")
        if len(drawn) < len(methods):
            parts.append(f'<p class="note">Active MINT and the best method of each family by AUC ({len(drawn)} of '
                         f'{len(methods)}; every method is in the table above).</p>')
        parts.append(img(plots.roc_figure(drawn, title="ROC: members vs non-members, by method"), "ROC curves by method"))
        parts.append("<h2>Score distributions</h2>")
        parts.append(img(plots.histogram_grid(drawn), "score histograms of members vs non-members, by method"))
    if command:
        parts.append(f'<p class="note">Command: <code>{esc(command)}</code></p>')
    return page(title, "\n".join(parts))


def best_per_family(methods: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    figs: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Active MINT and the method with the best AUC of each family (``figs[name]["family"]``).

    Six methods or fewer, or methods without a family: all of them.
    """
    if len(methods) <= 6 or not any(figs.get(n, {}).get("family") for n in methods):
        return dict(methods)
    best: dict[str, str] = {}
    for name in methods:
        fam = figs.get(name, {}).get("family") or name
        auc = figs.get(name, {}).get("auc")
        if fam not in best or (isinstance(auc, (int, float)) and auc > (figs[best[fam]].get("auc") or -1)):
            best[fam] = name
    keep = set(best.values()) | {n for n in methods if n.startswith("Active MINT (active")}
    return {n: v for n, v in methods.items() if n in keep}


def load_compare_dir(path: str | os.PathLike) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, dict[str, Any]], str, str,
                                                       str | None] | None:
    """Read an ``activemint compare`` output directory; ``None`` if ``path`` is not one.

    Reads ``compare.json`` (``{"headline", "rows": [{"method", "model", "metrics", "test_accuracy"}...],
    "info"}``) and ``scores.npz`` (keys ``"<method>|<model>|<role>"``, roles ``members`` and
    ``eval_nonmembers``).  Returns ``(scores, metrics, title, note, command)``, the first two keyed by
    ``"<method> (<model> model)"``.
    """
    path = Path(path)
    jpath = path / COMPARE_FILES["json"]
    if not jpath.is_file():
        return None
    try:
        doc = json.loads(jpath.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{jpath} is not JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ReportError(f"{jpath} has no 'rows' list: not written by `activemint compare`")
    metrics: dict[str, dict[str, Any]] = {}
    keys: dict[str, tuple[str, str]] = {}
    for row in doc["rows"]:
        name = f"{row['method']} ({row['model']} model)"
        metrics[name] = {**row.get("metrics", {}), "test_accuracy": row.get("test_accuracy"), "family": row.get("family")}
        keys[name] = (row["method"], row["model"])
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if (path / COMPARE_FILES["scores"]).is_file():
        with np.load(path / COMPARE_FILES["scores"]) as z:
            files = set(z.files)
            for name, (method, model) in keys.items():
                mk, nk = f"{method}|{model}|members", f"{method}|{model}|eval_nonmembers"
                if mk in files and nk in files:
                    scores[name] = (z[mk], z[nk])
    info = doc.get("info", {})
    title = "Membership scorers compared"
    if info:
        title += f": {info.get('dataset')} / {info.get('arch')} / aMINT setup {info.get('setup')}"
    return scores, metrics, title, str(doc.get("headline", "")), info.get("command") if isinstance(info.get("command"), str) else None


def render_report(path: str | os.PathLike) -> str:
    """HTML for a training run or a ``compare`` output directory."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(not_a_directory(path, "run or compare directory"))
    comp = load_compare_dir(path)
    if comp is not None and not RunDir(path).log.is_file():
        scores, metrics, title, note, command = comp
        return compare_report_html(scores, metrics=metrics, title=title, note=note, command=command)
    return run_report_html(path)


def write_report(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render :func:`render_report` into ``out`` (default ``<path>/report.html``), atomically (0644)."""
    out = Path(out) if out else RunDir(path).report
    if out.is_dir():
        raise ReportError(f"--out {out} is a folder; give the HTML file to write (e.g. {out / REPORT})")
    html = render_report(path)
    write_output(out, html)  # atomic; removes what a killed earlier writer of it left
    return out
