"""The robustness section of a run's HTML report (written by ``activemint robustness``).

It opens with one takeaway line per scorer and one grouped-bar chart (AUC per transformed
copy, a bar per scorer); the full table follows, folded.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from activemint.metrics import fmt_rate, fmt_tpr, fpr_supported, unsupported_note
from activemint.report.html import esc, img, page, table
from activemint.report.summary import figures_scope
from activemint.rundir import ROBUSTNESS_FILES


def takeaways(rows: list) -> list[str]:
    """One line per scorer: its AUC on exact copies, where it holds (AUC >= 0.90) and where it falls (< 0.75)."""
    def get(r, k):
        return r[k] if isinstance(r, dict) else getattr(r, k)

    out = []
    for sc in dict.fromkeys(get(r, "scorer") for r in rows):
        mine = [r for r in rows if get(r, "scorer") == sc]
        exact = next((r for r in mine if get(r, "transform") == "none"), None)
        copies = [r for r in mine if get(r, "transform") != "none"]
        held = [f"{get(r, 'transform')}:{get(r, 'level')}" for r in copies if get(r, "auc") >= 0.90]
        lost = [f"{get(r, 'transform')}:{get(r, 'level')} ({get(r, 'auc'):.2f})" for r in copies if get(r, "auc") < 0.75]
        line = f"{sc}: exact copies AUC {get(exact, 'auc'):.3f}" if exact else f"{sc}:"
        if copies:
            line += (f"; holds (AUC >= 0.90) on {len(held)} of {len(copies)} copies" + (f" ({', '.join(held)})" if held and len(held) <= 6 else "")
                     + (f"; mostly misses (AUC < 0.75) {', '.join(lost)}" if lost else "; misses none (AUC >= 0.75 on all)"))
        out.append(line)
    return out



def _with_ci(tpr: float, n_members: int) -> str:
    """A TPR at a calibrated threshold with its 95% Clopper-Pearson interval over the members."""
    return fmt_rate(tpr, n_members)


ID_LIMITS, ID_TAKEAWAY = ' id="limits"', ' id="takeaway"'


def _limits(rows: list, ids: bool) -> str:
    """The page's limits sentence: its n, which FPRs they support, one draw per transformed image."""
    nm = min((r["n_members"] for r in rows), default=None)
    nn = min((r["n_nonmembers"] for r in rows), default=None)
    text = figures_scope(nm, nn, "each image transformed once (one random draw per copy), on this run's model only")
    return f'<p class="limits"{ID_LIMITS if ids else ""}>{esc(text)}</p>' if text else ""


def robustness_section(out: Path, *, ids: bool = True) -> str:
    """HTML for ``out/robustness.json`` (+ ``robustness.png``); empty if there is none.

    ``ids=False``: inside another page (the run's), whose own takeaway and limits carry the ids."""
    jpath = Path(out) / ROBUSTNESS_FILES["json"]
    if not jpath.is_file():
        return ""
    d = json.loads(jpath.read_text())
    info, rows = d["info"], d["rows"]
    command = info.get("command") or f"activemint robustness {info['run_dir']}"
    parts = ["<h2>Robustness to near-copies</h2>",
             f'<div class="verdict info takeaway"{ID_TAKEAWAY if ids else ""}>' + "<br>".join(esc(t) for t in takeaways(rows)) + "</div>",
             _limits(rows, ids),
             (f'<p class="note">Members ({esc(info["members"])}) and non-members transformed the same way; AUC 0.5 is '
              f'chance. Thresholds for {info["target_fpr"]:g} FPR calibrated on untransformed and on transformed '
              f'calibration non-members. Command: <code>{esc(command)}</code></p>')]
    png = Path(out) / ROBUSTNESS_FILES["plot"]
    if png.is_file():
        parts.append(img("data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(), "AUC per transformed copy, a bar per scorer"))
    marked = any(not fpr_supported(r["n_nonmembers"], 0.001) or not fpr_supported(r["n_nonmembers"], 0.01) for r in rows)
    full = table(
        ["transformation", "scorer", "needs", "AUC [95% CI]", "TPR@1%FPR [95% CI] (n)", "TPR@0.1%FPR [95% CI] (n)",
         "TPR [95% CI] / FPR, exact-cal.", "TPR [95% CI] / FPR, transformed-cal."],
        [[f"{r['transform']}:{r['level']}", r["scorer"], r["needs"],
          f"{r['auc']:.3f} [{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}]",
          fmt_tpr(r["tpr_at_1pct_fpr"], r["n_members"], r["n_nonmembers"], 0.01),
          fmt_tpr(r["tpr_at_0_1pct_fpr"], r["n_members"], r["n_nonmembers"], 0.001),
          f"{_with_ci(r['tpr_at_exact_cal'], r['n_members'])} / {r['fpr_at_exact_cal']:.3f}",
          f"{_with_ci(r['tpr_at_transformed_cal'], r['n_members'])} / {r['fpr_at_transformed_cal']:.3f}"] for r in rows],
        numeric=(3, 4, 5, 6, 7))
    parts.append(f'<details class="fold"><summary>Full table ({len(rows)} rows)</summary>{full}'
                 + (f'<p class="note">{esc(unsupported_note(0.001))}</p>' if marked else "") + "</details>")
    return "\n".join(parts)


def robustness_page(out: Path) -> str:
    return page("activemint robustness", "<h1>Robustness of membership detection</h1>\n" + robustness_section(out))
