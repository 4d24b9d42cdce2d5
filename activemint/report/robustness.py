"""The robustness section of a run's HTML report (written by ``activemint robustness``)."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from activemint.report.html import esc, img, page, table
from activemint.rundir import ROBUSTNESS_FILES


def robustness_section(out: Path) -> str:
    """HTML for ``out/robustness.json`` (+ ``robustness.png``); empty if there is none."""
    jpath = Path(out) / ROBUSTNESS_FILES["json"]
    if not jpath.is_file():
        return ""
    d = json.loads(jpath.read_text())
    info, rows = d["info"], d["rows"]
    parts = ["<h2>Robustness to near-copies</h2>",
             (f'<p class="note">Members ({esc(info["members"])}) and non-members transformed the same way; thresholds for '
             f'{info["target_fpr"]:g} FPR calibrated on untransformed and on transformed calibration non-members. '
             f'Command: <code>activemint robustness {esc(info["run_dir"])}</code></p>')]
    png = Path(out) / ROBUSTNESS_FILES["plot"]
    if png.is_file():
        parts.append(img("data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(), "AUC and TPR@1%FPR vs severity"))
    parts.append(table(
        ["transformation", "scorer", "needs", "AUC", "TPR@1%FPR", "TPR@0.1%FPR", "TPR/FPR exact-cal.", "TPR/FPR transformed-cal."],
        [[f"{r['transform']}:{r['level']}", r["scorer"], r["needs"], f"{r['auc']:.3f}", f"{r['tpr_at_1pct_fpr']:.3f}",
          f"{r['tpr_at_0_1pct_fpr']:.3f}", f"{r['tpr_at_exact_cal']:.3f} / {r['fpr_at_exact_cal']:.3f}",
          f"{r['tpr_at_transformed_cal']:.3f} / {r['fpr_at_transformed_cal']:.3f}"] for r in rows],
        numeric=(3, 4, 5, 6, 7)))
    return "\n".join(parts)


def robustness_page(out: Path) -> str:
    return page("activemint robustness", robustness_section(out))
