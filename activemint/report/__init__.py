"""Plain-text, Markdown and HTML reports of runs and audits.

* :func:`run_summary`: the few lines printed at the end of training.
* :func:`render_report` / :func:`write_report`: HTML of a training run or a comparison.
* :func:`compare_report_html`: HTML from ``{method: (member_scores, nonmember_scores)}``.
* :mod:`activemint.report.audit`: the audit's HTML and Markdown (``activemint audit``).
"""
from activemint.report.summary import run_summary


def __getattr__(name):  # lazy: matplotlib is only imported when a report is rendered
    if name in ("render_report", "write_report", "run_report_html", "compare_report_html", "ReportError"):
        from activemint.report import run

        return getattr(run, name)
    raise AttributeError(name)


__all__ = ["run_summary", "render_report", "write_report", "run_report_html", "compare_report_html", "ReportError"]
