"""Tiny HTML building blocks for self-contained reports (inline CSS, no scripts, no fetches)."""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #dde1e7; padding-bottom: 4px; }
p, li { line-height: 1.45; }
.question { font-size: 1.05em; color: #3a4254; }
.verdict { font-size: 1.15em; font-weight: 600; padding: 14px 18px; border-radius: 6px; margin: 16px 0; }
.verdict.reject { background: #fdecea; border-left: 6px solid #c62828; }
.verdict.keep { background: #e8f5e9; border-left: 6px solid #2e7d32; }
.verdict.info { background: #e8eef9; border-left: 6px solid #1f4e9c; }
.verdict.none { background: #f0f2f5; border-left: 6px solid #6b7280; }
.warning { background: #fff8e1; border-left: 6px solid #b26a00; padding: 8px 14px; }
.limits { border-left: 6px solid #1f4e9c; padding: 6px 14px; background: #f5f8fd; }
.verdict.takeaway { font-weight: 400; font-size: 1.0em; line-height: 1.5; }
details.howto { font-size: 0.92em; color: #3a4254; margin: 4px 0 8px; }
details.howto ul { margin: 4px 0; }
details.fold summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
.keyfigs { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.keyfig { flex: 1 1 200px; border: 1px solid #dde1e7; border-radius: 6px; padding: 10px 14px; }
.keyfig .v { font-size: 1.35em; font-weight: 600; }
.keyfig .l { font-size: 0.85em; color: #5a6272; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #dde1e7; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table { max-width: 100%; }
tr.default td { font-weight: 600; }
code, .hash { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.88em; word-break: break-all; }
img.plot { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.note { color: #5a6272; font-size: 0.9em; }
footer { margin-top: 2em; color: #7a8292; font-size: 0.85em; }
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML document with the report CSS inlined."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def table(header: Sequence[str], rows: Iterable[Sequence], *, numeric: Sequence[int] = (), row_class: Sequence[str] | None = None) -> str:
    """An HTML table; cells are escaped; columns in ``numeric`` are right-aligned."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{esc(row_class[i])}"' if row_class and row_class[i] else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if j in numeric else f"<td>{esc(c)}</td>" for j, c in enumerate(r))
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def img(data_uri: str, alt: str) -> str:
    return f'<img class="plot" src="{data_uri}" alt="{esc(alt)}">'


def keyfigs(items: Sequence[tuple[str, str]]) -> str:
    """A row of boxed key figures: (value, label)."""
    return '<div class="keyfigs">' + "".join(
        f'<div class="keyfig"><div class="v">{esc(v)}</div><div class="l">{esc(lbl)}</div></div>' for v, lbl in items
    ) + "</div>"
