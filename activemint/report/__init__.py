"""Plain-text, Markdown and HTML reports of runs and audits."""
from activemint.report.summary import run_summary

__all__ = ["run_summary"]
