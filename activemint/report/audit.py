"""The audit report: one self-contained HTML file and a Markdown summary.

Both take an :class:`activemint.audit.pipeline.AuditResult`.
"""
from __future__ import annotations

import numpy as np

from activemint.audit.pipeline import fmt_p
from activemint.metrics import NONMEMBERS_PER_FPR, fmt_tpr, fpr_supported, tpr_interval
from activemint.report import plots
from activemint.report.html import esc, img, keyfigs, page, table
from activemint.rundir import AUDIT_FILES

TEST_TITLES = {
    "exceedance": "Exceedance test: suspect samples above the calibrated threshold vs a beta-binomial null (exact)",
    "mann_whitney": "Mann-Whitney U, one-sided: suspect scores vs calibration non-members (rank test)",
    "mixture": "Mixture likelihood-ratio test: suspect scores as a mix of non-member and member score distributions (exact, calibrated on the pooled scores)",
}


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _test_rows(result) -> tuple[list[list[str]], list[str]]:
    t = result.tests
    rows, classes = [], []
    for name, r in t.tests.items():
        stat = f"{r.statistic:.4g}"
        if name == "exceedance":
            stat = f"{int(r.statistic)} of {r.detail['n_suspect']} above threshold (expected under H0: {r.detail['expected_under_h0']:.2f})"
        elif name == "mann_whitney":
            stat = f"AUC {r.statistic:.3f} (0.5 under H0)"
        elif name == "mixture":
            stat = f"LR {r.statistic:.2f}, member fraction {100 * r.detail['pi_hat']:.1f}%"
        label = TEST_TITLES.get(name, name) + (" [decides]" if name == t.default_test else "")
        rows.append([label, fmt_p(r.p_value), "reject H0" if r.p_value < t.alpha else "keep H0", stat])
        classes.append("default" if name == t.default_test else "")
    return rows, classes


#: "How to read this", first on the page: (what it says, for the HTML and the Markdown).
HOW_TO_READ = (
    "A small p-value means the suspect set scores higher than known non-members do, more than chance explains: "
    "some of it was very likely in the training data.",
    "A large p-value is not proof of non-use: a few members in a large set, a small set, transformed copies of members "
    "(see 'What this audit can see') or a weakly auditable model can go undetected. The upper end of the member-fraction "
    "interval bounds how many could hide.",
    "The tests assume the suspect images that are not members resemble the calibration non-members "
    "(same source distribution, same preprocessing).",
)


def limits_table(limits) -> str:
    """The limits as an HTML table: kind of copy, AUC, TPR at 1% FPR with its interval and n, grade."""
    rows = [[r["copy"], f"{r['auc']:.3f}", fmt_tpr(r["tpr_at_1pct_fpr"], r.get("n_members"), r.get("n_nonmembers"), 0.01, 2),
             r["grade"]] for r in limits.rows]
    return table(["kind of copy", "AUC (members vs non-members)", "TPR at 1% FPR [95% CI] (n = members / non-members)", "the head"],
                 rows, numeric=(1, 2))


def catches(cal) -> str:
    """``catches 42.0% [38.9%, 45.1%] of the run's 1000 members (threshold set on 1000 calibration non-members)``.

    The TPR at the calibrated threshold with its 95% Clopper-Pearson interval over the members and
    both n; ``*`` and a reason when the calibration non-members are too few for the target FPR
    (fewer than 10 / FPR: the threshold rests on the few highest of them).  Empty when the
    run's member scores are unknown.
    """
    tpr = cal.tpr()
    if tpr is None:
        return ""
    n = len(cal.member_scores)
    lo, hi = tpr_interval(tpr, n)
    text = (f"catches {_pct(tpr)} [95% CI {_pct(lo)}, {_pct(hi)}] of the run's {n} members (threshold set on {cal.n} "
            f"calibration non-members)")
    if not fpr_supported(cal.n, cal.target_fpr):
        text += (f" * (fewer than {NONMEMBERS_PER_FPR / cal.target_fpr:.0f} calibration non-members for FPR {cal.target_fpr:g}: "
                 f"the threshold rests on their few highest scores; a rough figure)")
    return text


def audit_markdown(result) -> str:
    """Markdown summary for terminals and pull requests."""
    t, cal, f = result.tests, result.calibration, result.tests.fraction
    s = cal.summary()
    lines = [
        "## activemint audit", "",
        "**How to read this.** " + " ".join(HOW_TO_READ), "",
        f"**Question.** {result.question}", "",
        f"**Verdict.** {result.verdict}", "",
    ]
    if result.small_set_warning:
        lines += [f"**Warning.** {result.small_set_warning}", ""]
    if result.limits is not None:
        lines += [f"**Limits.** {result.limits.sentence()}", ""]
    lines += [
        f"| test (H0: none of the {t.n_suspect} distinct images were members) | p-value | at alpha = {t.alpha:g} |",
        "|---|---|---|",
    ]
    for name, r in t.tests.items():
        mark = " (decides)" if name == t.default_test else ""
        lines.append(f"| {name}{mark} | {fmt_p(r.p_value)} | {'reject H0' if r.p_value < t.alpha else 'keep H0'} |")
    lines += [
        "",
        f"- **Estimated member fraction:** {_pct(f.estimate)} (95% CI {_pct(f.ci_low)} - {_pct(f.ci_high)}; {f.method})",
        f"- **Per-sample decisions:** {int(result.flagged.sum())} of {len(result.flagged)} images flagged as members at the "
        f"calibrated threshold (logit > {cal.threshold:.3f}; FPR <= {cal.target_fpr:g} with probability >= {1 - cal.delta:g}, expected FPR on fresh non-members "
        f"{_pct(s['expected_fpr_on_fresh_nonmembers'], 2)} from {cal.n} calibration non-members"
        + (f", observed {_pct(s['observed_fpr_eval_nonmembers'], 2)} on the run's {s['n_eval_nonmembers']} evaluation non-members" if s["observed_fpr_eval_nonmembers"] is not None else "")
        + (f"; {catches(cal)}" if s["tpr_members"] is not None else "") + ")",
        f"- **Model:** {result.model['arch']} / setup {result.model['setup']} / {result.model['dataset']} "
        f"{tuple(result.model['input_shape'])}; weights SHA-256 `{result.model['weights_sha256']}`",
        f"- **Data:** {len(result.suspect)} images ({int(result.unique.sum())} distinct); set SHA-256 `{result.suspect.data_sha256}`",
    ]
    if (~result.unique).any():
        lines.append(f"- {int((~result.unique).sum())} duplicate images were left out of the set-level test (each image counts once).")
    if result.suspect.resized or result.suspect.converted:
        lines.append(f"- {len(result.suspect.resized)} images were resized and {len(result.suspect.converted)} converted to the model's channels.")
    if result.command:
        lines.append(f"- **Command:** `{result.command}`")
    return "\n".join(lines) + "\n"


def audit_html(result) -> str:
    """The self-contained HTML report of an audit."""
    t, cal, f = result.tests, result.calibration, result.tests.fraction
    s = cal.summary()
    parts = ["<h1>Membership audit</h1>",
             '<details class="howto" id="how-to-read" open><summary>How to read this</summary><ul>'
             + "".join(f"<li>{esc(x)}</li>" for x in HOW_TO_READ) + "</ul></details>",
             f'<p class="question"><b>What was asked.</b> {esc(result.question)}</p>']
    # red when members were detected; neutral (never green) otherwise: no evidence is not evidence of absence
    parts.append(f'<div class="verdict {"reject" if t.reject else "none"}" id="verdict">{esc(result.verdict)}</div>')
    if result.small_set_warning:
        parts.append(f'<p class="warning" id="small-set">{esc(result.small_set_warning)}</p>')
    if result.limits is not None:
        parts.append(f'<p class="limits" id="limits">{esc(result.limits.sentence())}</p>')
    parts.append(keyfigs([
        (fmt_p(t.p_value), f"p-value ({t.default_test} test); H0: none were members"),
        (f"{_pct(f.estimate, 0)} [{_pct(f.ci_low, 0)}, {_pct(f.ci_high, 0)}]", "estimated member fraction, 95% CI"),
        (f"{int(result.flagged.sum())} / {len(result.flagged)}", f"images flagged at the calibrated threshold (target FPR {cal.target_fpr:g})"),
        (f"{t.alpha:g}", "significance level alpha"),
    ]))

    parts.append("<h2>Set-level tests</h2>")
    parts.append(f"<p>H0: none of the {t.n_suspect} distinct suspect images were members, i.e. their scores come from the "
                 f"same distribution as the {cal.n} calibration non-members'. Each test's p-value is uniform (or "
                 f"conservative) under H0; the one marked [decides] was fixed before looking at the data.</p>")
    rows, classes = _test_rows(result)
    parts.append(table(["test", "p-value", f"at alpha = {t.alpha:g}", "statistic"], rows, numeric=(1,), row_class=classes))
    parts.append(f"<p>Estimated fraction of members in the set: <b>{_pct(f.estimate)}</b> "
                 f"(95% confidence interval {_pct(f.ci_low)} to {_pct(f.ci_high)}; {esc(f.method)}, {f.n_bins} bins).</p>")
    if (~result.unique).any():
        parts.append(f'<p class="note">{int((~result.unique).sum())} duplicate images (same pixels) were counted once in the set-level tests.</p>')

    parts.append("<h2>Score distributions</h2>")
    groups = {"suspect": result.scores[result.unique], "calibration non-members": cal.scores}
    parts.append(img(plots.score_histogram(groups, threshold=cal.threshold,
                                           title="suspect set vs calibration non-members"), "histogram of suspect vs calibration scores"))
    if cal.member_scores is not None:
        parts.append('<p class="note">For reference, the run\'s own members and fresh evaluation non-members:</p>')
        ref = {"members": cal.member_scores}
        if cal.eval_nonmember_scores is not None:
            ref["eval non-members"] = cal.eval_nonmember_scores
        parts.append(img(plots.score_histogram(ref, threshold=cal.threshold, title="the run: members vs evaluation non-members"),
                         "histogram of the run's member and non-member scores"))

    parts.append("<h2>Per-sample decisions</h2>")
    parts.append(
        f"<p>A sample is flagged as a member when its membership logit exceeds <b>{cal.threshold:.4f}</b> "
        f"(P(member) {s['threshold_probability']:.4f}). The threshold is set on {cal.n} known non-members (the run's "
        f"calibration split, never used in training) so that the false-positive rate on fresh non-members is at most "
        f"{cal.target_fpr:g} with probability at least {1 - cal.delta:g} over the draw of the calibration set "
        f"(the threshold is an order statistic of the calibration scores; see activemint.metrics.calibrate_threshold): "
        f"expected {_pct(s['expected_fpr_on_fresh_nonmembers'], 2)}"
        + (f", observed {_pct(s['observed_fpr_eval_nonmembers'], 2)} on the run's {s['n_eval_nonmembers']} evaluation non-members" if s["observed_fpr_eval_nonmembers"] is not None else "")
        + (f"; it {esc(catches(cal))}." if s["tpr_members"] is not None else ".")
        + " Each sample's conformal p-value, (1 + #calibration scores &ge; its score) / (n + 1), is in <code>samples.csv</code>.</p>"
    )
    order = np.argsort(-result.scores)[:15]
    parts.append(table(["id", "logit", "P(member)", "conformal p", "flagged"],
                       [[result.suspect.ids[i], f"{result.scores[i]:.3f}", f"{result.probabilities[i]:.4f}",
                         f"{result.pvalues[i]:.4g}", "yes" if result.flagged[i] else "no"] for i in order],
                       numeric=(1, 2, 3)))
    parts.append(f'<p class="note">The {len(order)} highest-scoring of {len(result.scores)} images; all are in samples.csv.</p>')

    if cal.member_scores is not None and cal.eval_nonmember_scores is not None:
        parts.append("<h2>How well this model separates members (ROC of the run)</h2>")
        op = (s["observed_fpr_eval_nonmembers"], s["tpr_members"])
        parts.append(img(plots.roc_figure({"aMINT head": (cal.member_scores, cal.eval_nonmember_scores)}, operating_point=op),
                         "ROC curve of the run with the operating point"))
        parts.append(f'<p class="note">Members D ({len(cal.member_scores)}) vs evaluation non-members from the test split '
                     f"({len(cal.eval_nonmember_scores)}); the dot is the calibrated threshold used above.</p>")

    if result.limits is not None:
        parts.append("<h2>What this audit can see</h2>")
        parts.append(f'<p class="note">Members vs non-members, both copied the same way. Detected: AUC &ge; 0.90; weakly: '
                     f'0.75-0.90; mostly missed: below 0.75. Source: {esc(result.limits.source)}.</p>')
        parts.append(limits_table(result.limits))

    parts.append("<h2>Identity</h2>")
    m = result.model
    parts.append(table(["what", "identity"], [
        ["run directory", str(result.run_dir)],
        ["architecture", f"{m['arch']} (aMINT setup {m['setup']}, taps {', '.join(m['taps'] or [])})"],
        ["trained on", f"{m['dataset']}, input {tuple(m['input_shape'])}, {m['num_classes']} classes, epoch {m['epoch']}"],
        ["weights SHA-256 (model.safetensors)", m["weights_sha256"]],
        ["suspect data", f"{len(result.suspect)} images ({int(result.unique.sum())} distinct) from {', '.join(result.suspect.inputs)}"],
        ["suspect data SHA-256", result.suspect.data_sha256],
        ["how the data hash is made", "SHA-256 over the sorted SHA-256 digests of each image's uint8 CHW pixels (one per line)"],
        ["calibration", f"{cal.n} non-members ({cal.source}); rule saved in the run directory (calibration.json)"],
        *([["command", result.command]] if result.command else []),
    ]))
    if result.suspect.resized or result.suspect.converted:
        parts.append(f'<p class="note">{len(result.suspect.resized)} images were resized (--resize) and '
                     f"{len(result.suspect.converted)} converted to the model's channels (--convert-channels).</p>")
    parts.append(f"<footer>activemint audit, {esc(result.created)}</footer>")
    return page("activemint audit", "\n".join(parts))


def write_audit(result, out_dir, *, force: bool = False):
    """Write an audit's folder: samples.csv, audit.json, summary.md and report.html (see ``AuditResult.write``)."""
    return result.write(out_dir, force=force, documents={AUDIT_FILES["markdown"]: audit_markdown, AUDIT_FILES["html"]: audit_html})
