"""``activemint model-edits RUN``: does the audit survive fine-tuning, pruning, quantisation, distillation?

For the run itself and each edit and severity (:mod:`activemint.edits.apply`, each edited run
written to ``OUT/runs/<edit>-<level>/``), two label-free scorers rate the members D against
the evaluation non-members (test split):

* ``head``: the aMINT head of the (edited) model, its membership logit;
* ``loss``: the black-box loss attack, minus the cross-entropy of the true class
  (:func:`activemint.attacks.output.output_scores`): it needs only the model's outputs;
* with ``reference_models`` N > 0 also ``lira`` (online, fixed variance) and ``rmia`` (offline,
  a = 0.3): the edited model's outputs against N reference models of the *source* run's
  architecture and recipe, trained once on random halves of its pool
  (:mod:`activemint.attacks.reference`, cached under ``cache_dir``) and shared by every edit.
  The reference models are not edited: they model the population as the source was trained,
  which is what an auditor has who meets an edited model.

On an edited run whose head was re-trained on members of D (``--reattach``, the post-hoc head of
``distill-small``), every scorer is measured on the members that head did not see
(:func:`activemint.edits.apply.scored_members`; the row's ``members_scored``).

Per row: the edited model's test accuracy and the accuracy lost, AUC, TPR at 1% FPR, and the
set-level audit of :mod:`activemint.audit.settest` (its default test, calibrated on the run's
calibration non-members scored by the same scorer) on a suspect set of 100 members drawn
from D; with ``null_draws`` > 0 also the share of ``null_draws`` suspect sets of non-members
(evaluation non-members) flagged at ``alpha`` and of as many member sets detected.
Outputs in ``OUT``: ``model-edits.md``, ``.csv``, ``.json`` and ``model-edits.png`` (AUC and
TPR@1%FPR against accuracy lost).
"""
from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from activemint.attacks.lira import LiraConfig, lira_scores
from activemint.attacks.output import logit_confidence, output_scores, true_label_prob
from activemint.attacks.reference import ReferenceConfig, ReferenceLogits, reference_logits
from activemint.attacks.rmia import RmiaConfig, rmia_from_config
from activemint.audit.calibration import make_calibration
from activemint.audit.settest import DEFAULT_TEST, TESTS, set_tests
from activemint.io import atomic_json, atomic_write, atomic_write_via, csv_cell, make_dir
from activemint.metrics import membership_metrics
from activemint.rundir import RunDir
from activemint.runs import Run, load_run

from .apply import EDITS, EditOptions, edit_label, edit_run, load_source, parse_edits, scored_members

FILES = {"json": "model-edits.json", "csv": "model-edits.csv", "markdown": "model-edits.md", "plot": "model-edits.png"}
SCORERS = ("head", "loss", "lira", "rmia")
#: With few reference models (2 IN / 2 OUT per sample at N = 4) a per-sample variance is noise: one global variance.
LIRA = LiraConfig(variant="online", fixed_variance=True)
RMIA = RmiaConfig(variant="offline", a=0.3)
ROLES = ("members", "eval_nonmembers", "calibration")


@dataclass
class EditRow:
    """One scorer on one (edited) model."""

    edit: str
    level: str
    reattach: int
    scorer: str
    test_accuracy: float
    accuracy_lost: float  # points of test accuracy below the unedited run's
    auc: float
    tpr_at_1pct_fpr: float
    p_value_100: float  # set-level audit of 100 members of D (default test)
    null_draws: int
    null_flag_rate: float | None  # share of non-member suspect sets flagged at alpha
    null_flag_upper95: float | None  # one-sided 95% Clopper-Pearson upper bound on the rate of flagging non-member sets
    member_detect_rate: float | None  # share of member suspect sets flagged at alpha
    edited_run: str
    # Members of D scored (and drawn for the suspect sets): all of D, or on a run whose head was re-trained on
    # part of D (held-out re-attachment, post-hoc head) only the members that head never saw.
    members_scored: int = 0
    all_members_head: bool = False  # the head was re-trained on all of D (reattach_members 1): an upper bound


def role_images(run: Run) -> dict[str, torch.Tensor]:
    d, s = run.data, run.data.splits
    src = {"members": (d.train, s.members), "eval_nonmembers": (d.test, s.eval_nonmembers), "calibration": (d.train, s.calibration)}
    return {r: ds.rows(np.asarray(idx)) for r, (ds, idx) in src.items()}


def role_labels(run: Run) -> dict[str, np.ndarray]:
    d, s = run.data, run.data.splits
    src = {"members": (d.train, s.members), "eval_nonmembers": (d.test, s.eval_nonmembers), "calibration": (d.train, s.calibration)}
    return {r: ds.labels[torch.as_tensor(np.asarray(idx))].numpy() for r, (ds, idx) in src.items()}


def scorer_scores(run: Run, images: dict[str, torch.Tensor], labels: dict[str, np.ndarray],
                  refs: ReferenceLogits | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{scorer: {role: scores}} for the head (if any), the loss attack and, given reference models, LiRA and RMIA."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if run.is_audited:
        out["head"] = {r: run.membership_logits(images[r]) for r in ROLES}
    logits = {r: run.class_logits(images[r]).numpy() for r in ROLES}
    out["loss"] = {r: output_scores(logits[r], labels[r], "loss") for r in ROLES}
    if refs is not None:
        n = refs.logits["members"].shape[1]
        phi = {r: np.stack([logit_confidence(refs.logits[r][:, j], refs.labels[r]) for j in range(n)], axis=1) for r in refs.logits}
        ref_p = {r: np.stack([true_label_prob(refs.logits[r][:, j], refs.labels[r]) for j in range(n)], axis=1) for r in refs.logits}
        tz = true_label_prob(run.class_logits(images["population"]).numpy(), refs.labels["population"])
        out["lira"] = {r: lira_scores(logit_confidence(logits[r], labels[r]), phi[r], refs.keep[r], LIRA) for r in ROLES}
        out["rmia"] = {r: rmia_from_config(true_label_prob(logits[r], labels[r]), ref_p[r], refs.keep[r], tz, ref_p["population"],
                                           refs.keep["population"], RMIA) for r in ROLES}
    return out


def source_references(source: Run, n_models: int, epochs: int | None, cache_dir: str | Path,
                      log: Callable[[str], None]) -> tuple[ReferenceLogits, dict]:
    """The source run's reference models (trained once, cached; :func:`reference_logits`), checked against its splits."""
    cfg = ReferenceConfig(n_models=n_models, epochs=epochs)
    data = source.data
    refs = reference_logits(source.config, data.splits, cfg, cache_dir, train=data.train, test=data.test, log=log)
    for r in ROLES:
        if not np.array_equal(refs.indices[r][1], getattr(data.splits, r)):
            raise RuntimeError(f"reference logits of {r} do not belong to the run's {r} split")
    info = {"n_models": n_models, "epochs": epochs or source.config.epochs, "cache_dir": str(refs.cache_dir),
            "training_sizes": refs.training_sizes, "test_accuracy": refs.test_accuracy,
            "population": int(refs.logits["population"].shape[0]), "lira": LIRA.display_name, "rmia": RMIA.display_name}
    return refs, info


def clopper_pearson_upper(x: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a binomial rate from ``x`` successes in ``n`` trials."""
    from scipy import stats

    return 1.0 if x >= n else float(stats.beta.ppf(confidence, x + 1, n - x))


def flag_bound(n: int, alpha: float, false_failure: float = 1e-6) -> int:
    """The most flags of ``n`` null draws a level-``alpha`` test gives, except with probability < ``false_failure``."""
    from scipy import stats

    k = int(stats.binom.isf(false_failure, n, alpha))
    while stats.binom.sf(k, n, alpha) >= false_failure:
        k += 1
    return k


def set_level(scores: dict[str, np.ndarray], *, target_fpr: float, alpha: float, seed: int, suspect: int,
              null_draws: int, test: str = DEFAULT_TEST) -> tuple[float, float | None, float | None]:
    """(p-value of one suspect set of ``suspect`` members, share of null sets flagged, share of member sets flagged).

    A member set is tested against the member scores of the *other* members (the mixture test's
    member density ``f1``): estimated from the suspects themselves, ``f1`` would fit them
    whatever the model kept of membership (with a head that reads chance, all 2,000 members of
    README's main job against themselves gave p 6e-4).  So with the mixture test at most half of D
    is a suspect set; the exceedance and Mann-Whitney tests use no member scores, and a suspect set
    can be all of D.
    """
    m, n = scores["members"], scores["eval_nonmembers"]
    rng = np.random.default_rng([seed, 21])
    k = min(suspect, len(m) // 2 if test == "mixture" else len(m))
    base = make_calibration(scores["calibration"], target_fpr, member_scores=m)  # the threshold, fixed once

    def member_set_p() -> float:
        idx = rng.choice(len(m), k, replace=False)
        # the other tests read no member scores
        cal = replace(base, member_scores=np.delete(m, idx)) if test == "mixture" else base
        return set_tests(m[idx], cal, alpha=alpha, default_test=test).p_value

    p = member_set_p()
    if not null_draws:
        return p, None, None
    # Null sets: each draw permutes the pooled calibration + evaluation non-members and takes a fresh
    # calibration split and a suspect set from it (as tests/test_audit_settest.py does): the draws are
    # then i.i.d. given the pool, and a valid test's flags are stochastically below Binomial(draws, alpha).
    pooled = np.r_[scores["calibration"], n]
    n_cal = len(scores["calibration"])
    kn = min(k, len(pooled) - n_cal)  # null sets as large as the member sets
    null = []
    for _ in range(null_draws):
        perm = rng.permutation(len(pooled))
        c = make_calibration(pooled[perm[:n_cal]], target_fpr, member_scores=m)
        null.append(set_tests(pooled[perm[n_cal:n_cal + kn]], c, alpha=alpha, default_test=test).reject)
    hit = [member_set_p() < alpha for _ in range(null_draws)]
    return p, float(np.mean(null)), float(np.mean(hit))


def run_model_edits(run_dir: str | Path, out_dir: str | Path | None = None, *, edits: str = "all",
                    options: EditOptions | None = None, reattach: tuple[int, ...] = (0,), alpha: float = 0.01,
                    suspect: int = 100, null_draws: int = 0, device: str = "cpu", data_root: str | None = None,
                    reference_models: int = 0, reference_epochs: int | None = None, cache_dir: str | Path = ".cache",
                    test: str = DEFAULT_TEST, log: Callable[[str], None] = lambda m: None) -> list[EditRow]:
    """Edit the run every way asked (each at each ``reattach`` setting), score, write the table; return its rows.

    ``reference_models`` N > 0 (at least 4) adds LiRA and RMIA rows against N reference models of the
    source run (``reference_epochs``: their epochs, default the source's), cached under ``cache_dir``."""
    t0 = time.time()
    opts = options or EditOptions()
    pairs = parse_edits(edits)  # bad names fail before any work
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if test not in TESTS:
        raise ValueError(f"unknown set-level test {test!r}; choose from {', '.join(TESTS)}")
    if suspect < 2 or null_draws < 0:
        raise ValueError(f"the suspect set needs >= 2 samples and null draws >= 0, got {suspect} and {null_draws}")
    source = load_source(run_dir, device, data_root)
    out = Path(out_dir) if out_dir else source.dir.model_edits
    make_dir(out)
    if reference_models and reference_models < 4:
        raise ValueError(f"LiRA and RMIA need at least 4 reference models, got {reference_models}")
    images, labels = role_images(source), role_labels(source)
    refs, ref_info = None, None
    if reference_models:
        refs, ref_info = source_references(source, reference_models, reference_epochs, cache_dir, log)
        split, idx = refs.indices["population"]
        images["population"] = (source.data.test if split == "test" else source.data.train).images[torch.as_tensor(idx)]
    target = source.config.target_fpr
    base_acc = float((source.dir.read_metrics() or {})["test_accuracy"])
    rows: list[EditRow] = []

    def score(run: Run, edit: str, level: str, k: int, acc: float) -> None:
        keep = scored_members(run)
        rec = run.config.extra.get("model_edit") if isinstance(run.config.extra, dict) else None
        seen = rec.get("head_trained_members") if isinstance(rec, dict) else None
        all_d = seen is not None and len(seen) >= len(keep)
        for sc, sc_scores in scorer_scores(run, images, labels, refs).items():
            # only a head can have seen members (re-attached, post-hoc); a black-box scorer is
            # scored on all of D
            kept = keep if sc == "head" else np.ones_like(keep)
            sc_scores = {**sc_scores, "members": sc_scores["members"][kept]}
            m = membership_metrics(sc_scores["members"], sc_scores["eval_nonmembers"], bootstrap=0, seed=opts.seed)
            p, null, hit = set_level(sc_scores, target_fpr=target, alpha=alpha, seed=opts.seed, suspect=suspect,
                                     null_draws=null_draws, test=test)
            upper = None if null is None else clopper_pearson_upper(round(null * null_draws), null_draws)
            rows.append(EditRow(edit, level, k, sc, acc, round(100 * (base_acc - acc), 4), m.auc, m.tpr_at_1pct_fpr, p,
                                null_draws, null, upper, hit, str(run.run_dir), int(kept.sum()), all_d))
            log(f"{edit_label(edit, level, k, all_d)}  {sc} ({int(kept.sum())} members): accuracy {acc:.4f}  AUC {m.auc:.3f}  TPR@1% {m.tpr_at_1pct_fpr:.3f}  "
                f"p {p:.2g}" + ("" if null is None else f"  null flagged {null:.3f}  members flagged {hit:.3f}"))

    score(source, "none", "-", 0, base_acc)
    for name, level in pairs:
        for k in reattach:
            o = EditOptions(**{**asdict(opts), "reattach": k})
            path = edit_run(source.run_dir, name, level, out / "runs" / edit_label(name, level, k, o.reattach_members >= 1), options=o,
                            device=device, log=log)
            edited = load_run(path, device=device)
            score(edited, name, level, k, float((RunDir(path).read_metrics() or {})["test_accuracy"]))
    info = {"run_dir": str(source.run_dir), "edits": edits, "reattach": list(reattach), "options": asdict(opts),
            "alpha": alpha, "suspect": suspect, "test": test, "null_draws": null_draws, "target_fpr": target,
            "base_test_accuracy": base_acc, "reference_models": ref_info, "seconds": round(time.time() - t0, 1),
            "about": {e.name: e.about for e in EDITS.values()}}
    write_outputs(out, rows, info)
    return rows


# ------------------------------------------------------------------- outputs
COLUMNS = list(EditRow.__dataclass_fields__)


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def markdown_table(rows: list[EditRow], suspect: int = 100) -> str:
    lines = ["| edit | scorer | test acc. | acc. lost (points) | members scored | AUC | TPR@1%FPR | "
             f"p ({suspect} members) | "
             "null sets flagged (draws) [95% upper] | member sets flagged |", "|" + "---|" * 10]
    for r in rows:
        def rate(v: float | None, n: int = r.null_draws) -> str:
            return "" if v is None else f"{v:.3f} ({n})"
        lines.append(f"| {edit_label(r.edit, r.level, r.reattach, r.all_members_head)} | {r.scorer} | {r.test_accuracy:.4f} "
                     f"| {r.accuracy_lost:+.2f} | {r.members_scored} | {r.auc:.3f} | {r.tpr_at_1pct_fpr:.3f} | {_fmt_p(r.p_value_100)} | {rate(r.null_flag_rate)}"
                     + ("" if r.null_flag_upper95 is None else f" [{r.null_flag_upper95:.3f}]") + " "
                     f"| {rate(r.member_detect_rate)} |")
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[EditRow], info: dict) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: csv_cell(v) for k, v in asdict(r).items()})  # an --out folder named '=...' is no formula
    atomic_write(out / FILES["csv"], buf.getvalue())
    atomic_json(out / FILES["json"], {"info": info, "rows": [asdict(r) for r in rows]})
    md = [f"# The audit after model edits: `{info['run_dir']}`", "",
          (f"Members D vs evaluation non-members (test split). Set-level audit: the {info.get('test', 'mixture')} test of `activemint audit`, "
           f"calibrated on the run's calibration non-members, on {info['suspect']} members of D (p"
           + ("; at most half of the members scored, each member set tested against the other members' scores as the "
              "member density); " if info.get("test", "mixture") == "mixture" else "); ")
           + (f"{info['null_draws']} suspect sets of {info['suspect']} non-members (each with a fresh calibration split of the "
              f"pooled calibration + evaluation non-members) and of {info['suspect']} members, flagged at alpha {info['alpha']:g}; "
              f"a valid level-{info['alpha']:g} test flags more than {flag_bound(info['null_draws'], info['alpha'])} of "
              f"{info['null_draws']} null sets with probability < 1e-6 (Binomial({info['null_draws']}, {info['alpha']:g}) tail)."
              if info["null_draws"] else "no null draws.")),
          f"Unedited test accuracy {info['base_test_accuracy']:.4f}; edit options {json.dumps(info['options'])}.", "",
          *([] if "reattach_members" not in info["options"] else [
              ("A re-attached (`+reattachK`) or post-hoc head (distill-small) trained on a seeded part of D "
               f"({info['options']['reattach_members']:g} of it) is measured on the other members only (`members scored`); "
               "the black-box scorers on all of D. `-allD`: trained on all of D and scored on it, an upper bound."), ""]),
          *([] if not info.get("reference_models") else [
              (lambda r: f"LiRA ({r['lira']}) and RMIA ({r['rmia']}) against {r['n_models']} reference models of the source run "
                         f"(not edited; {r['epochs']} epochs on {r['training_sizes'][0]} samples each, test accuracy "
                         f"{', '.join(f'{a:.4f}' for a in r['test_accuracy'])}; RMIA population {r['population']}; "
                         f"cache {r['cache_dir']}).")(info["reference_models"]), ""]),
          "Edits:", ""]
    md += [f"- `{k}`: {v}" for k, v in info["about"].items()]
    md += ["", markdown_table(rows, info["suspect"]), ""]
    atomic_write(out / FILES["markdown"], "\n".join(md))
    atomic_write_via(out / FILES["plot"], lambda p: plot_edits(rows, p))


def plot_edits(rows: list[EditRow], path: Path) -> None:
    """AUC and TPR@1%FPR against accuracy lost, one marker per (edited) model, a colour per scorer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    scorers = list(dict.fromkeys(r.scorer for r in rows))
    for k, sc in enumerate(scorers):
        sel = [r for r in rows if r.scorer == sc]
        for ax, attr in zip(axes, ("auc", "tpr_at_1pct_fpr")):
            ax.scatter([r.accuracy_lost for r in sel], [getattr(r, attr) for r in sel], color=plt.cm.tab10(k % 10), s=18,
                       label=sc)
            if k == 0:
                for r in sel:
                    ax.annotate(edit_label(r.edit, r.level, r.reattach, r.all_members_head), (r.accuracy_lost, getattr(r, attr)), fontsize=5,
                                alpha=0.8)
    for ax, name in zip(axes, ("AUC", "TPR @ 1% FPR")):
        ax.set_xlabel("test accuracy lost (points)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
