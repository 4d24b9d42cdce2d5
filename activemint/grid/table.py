"""The paper's Table 1 beside ours: one row per aMINT cell of a grid, Markdown and CSV."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from activemint.grid.matrix import PLAIN, Cell, Matrix, cell_config, cell_status
from activemint.io import csv_cell, make_dir, write_output
from activemint.metrics import fmt_tpr, fpr_supported, unsupported_note
from activemint.rundir import RunDir, RunError


# ------------------------------------------------------------------------- table
def paper_table(matrix: Matrix) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``{(dataset, paper arch name, setup): (MINT accuracy at 0.5, audited accuracy)}``."""
    if matrix.paper_table is None or not matrix.paper_table.is_file():
        return {}
    out = {}
    with open(matrix.paper_table, newline="") as f:
        for row in csv.DictReader(f):
            out[(row["dataset"], row["architecture"], row["setup"])] = (
                float(row["mint_accuracy_at_0.5"]), float(row["audited_accuracy"]))
    return out


TABLE_COLUMNS = [
    "dataset", "arch", "setup", "paper_reference", "paper_mint", "paper_aud",
    "mint_acc_at_0_5", "auc", "tpr_at_1pct_fpr", "n_members", "n_nonmembers", "aud", "aud_without_amint",
    "mint_minus_paper", "aud_minus_paper", "aud_cost_of_amint", "epochs", "train_seconds", "status",
]


def _read_metrics(run_dir: Path) -> dict | None:
    try:
        return RunDir(run_dir).read_metrics()
    except (OSError, RunError):
        return None


def results_table(matrix: Matrix, cells: Sequence[Cell], out_dir: str | Path) -> list[dict[str, Any]]:
    """One row per aMINT cell: the paper's figures, ours, and the differences.

    Ours: MINT accuracy at P(member) = 0.5 on a balanced member / non-member set (the
    paper's metric), AUC, TPR at 1% FPR, the audited model's test accuracy, and the test
    accuracy of the plain baseline of the same data set x arch (``aud_without_amint``).
    Missing figures are ``None`` (cell not run, or no paper figure for it).
    """
    out_dir = Path(out_dir)
    paper = paper_table(matrix)
    baselines: dict[tuple[str, str], dict | None] = {}
    for c in cells:
        if not c.mint:
            baselines[(c.dataset, c.arch)] = _read_metrics(out_dir / c.dirname)
    rows = []
    for c in cells:
        if not c.mint:
            continue
        ref = matrix.datasets[c.dataset].get("paper_reference", c.dataset)
        p = paper.get((ref, matrix.paper_arch_names.get(c.arch, c.arch), c.setup))
        m = _read_metrics(out_dir / c.dirname)
        base = baselines.get((c.dataset, c.arch))
        if base is None:  # a baseline outside the selection may still have been run
            base = _read_metrics(out_dir / _baseline_of(matrix, c).dirname)
        mm = (m or {}).get("membership") or {}
        row = {
            "dataset": c.dataset, "arch": c.arch, "setup": c.setup, "paper_reference": ref if p else None,
            "paper_mint": p[0] if p else None, "paper_aud": p[1] if p else None,
            "mint_acc_at_0_5": mm.get("accuracy_at_0_5"), "auc": mm.get("auc"),
            "tpr_at_1pct_fpr": mm.get("tpr_at_1pct_fpr"), "n_members": mm.get("n_members"),
            "n_nonmembers": mm.get("n_nonmembers"), "aud": (m or {}).get("test_accuracy"),
            "aud_without_amint": (base or {}).get("test_accuracy"),
            "epochs": c.config.epochs, "train_seconds": (m or {}).get("train_seconds"),
            "status": "done" if m else cell_status(c, out_dir),
        }
        row["mint_minus_paper"] = _diff(row["mint_acc_at_0_5"], row["paper_mint"])
        row["aud_minus_paper"] = _diff(row["aud"], row["paper_aud"])
        row["aud_cost_of_amint"] = _diff(row["aud"], row["aud_without_amint"])
        rows.append(row)
    return rows


def _baseline_of(matrix: Matrix, cell: Cell) -> Cell:
    return Cell(cell.profile, cell.dataset, cell.arch, PLAIN, cell_config(matrix, cell.profile, cell.dataset, cell.arch, PLAIN))


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:+.3f}" if signed else f"{v:.3f}"
    return str(v)


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The results table as Markdown (paper's numbers first, then ours, then differences)."""
    head = ("| data set | arch | setup | paper MINT | paper Aud | MINT acc@0.5 | AUC | TPR@1%FPR [95% CI] (n) | Aud | Aud w/o aMINT "
            "| MINT − paper | Aud − paper | Aud − w/o aMINT | epochs | train s |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        ds = r["dataset"] + (f" (paper: {r['paper_reference']})" if r["paper_reference"] not in (None, r["dataset"]) else "")
        lines.append("| " + " | ".join([
            ds, r["arch"], r["setup"], _fmt(r["paper_mint"]), _fmt(r["paper_aud"]), _fmt(r["mint_acc_at_0_5"]),
            _fmt(r["auc"]), _tpr(r), _fmt(r["aud"]), _fmt(r["aud_without_amint"]),
            _fmt(r["mint_minus_paper"], True), _fmt(r["aud_minus_paper"], True), _fmt(r["aud_cost_of_amint"], True),
            str(r["epochs"]), f"{r['train_seconds']:.0f}" if r["status"] == "done" and r["train_seconds"] is not None else r["status"],
        ]) + " |")
    if any(r["tpr_at_1pct_fpr"] is not None and not fpr_supported(r.get("n_nonmembers"), 0.01) for r in rows):
        lines += ["", unsupported_note(0.01)]
    return "\n".join(lines) + "\n"


def _tpr(r: dict[str, Any]) -> str:
    """TPR at 1% FPR with its interval and n (``*``: too few non-members for 1% FPR); ``–`` when not run."""
    v = r["tpr_at_1pct_fpr"]
    return "–" if v is None else fmt_tpr(v, r.get("n_members"), r.get("n_nonmembers"), 0.01)


def write_table(rows: Sequence[dict[str, Any]], md_path: str | Path, csv_path: str | Path | None = None) -> None:
    """Write the table as Markdown (and CSV: one column per :data:`TABLE_COLUMNS`)."""
    make_dir(Path(md_path).parent)
    write_output(md_path, table_markdown(rows))  # each file atomic: a kill leaves the old table or the new one
    if csv_path is not None:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell("" if r.get(k) is None else r[k]) for k in TABLE_COLUMNS})
        write_output(csv_path, buf.getvalue())
