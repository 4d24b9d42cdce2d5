"""What an audit can and cannot see: which kinds of copies the run's MINT head detects.

An audit tests the suspect images as given.  The MINT head recognises the exact images it
was trained on; transformed copies (shifted, cropped, resized, re-encoded) score lower, some
as low as non-members.  A verdict must say so.  The figures come from, in order:

1. this run's own robustness figures (``RUN_DIR/robustness/robustness.json``, written by
   ``activemint robustness RUN_DIR``), the ``active_mint`` rows;
2. else the project's measurements in ``docs/what-amint-detects.md`` (:data:`DOCS_FIGURES`:
   Fashion-MNIST, ``small_cnn``, 2,000 members, README's main job), for a run trained on
   exact images or with an ``--audit-policy``.

A kind of copy is *detected* when its AUC (members vs non-members, both copied the same
way) is at least :data:`DETECTED_AUC` (the docs' target), *weakly detected* down to
:data:`WEAK_AUC`, else *mostly missed*.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETECTED_AUC = 0.90
WEAK_AUC = 0.75

#: The copies the docs measured, ``(transform, level) -> label``, in the order they are listed.
COPIES = {
    ("none", "exact"): "exact copies",
    ("jpeg", "q50"): "JPEG quality 50",
    ("noise", "8/255"): "noise sigma 8/255",
    ("translate", "2px"): "2-px shifts",
    ("crop", "0.9"): "90% crops",
    ("resize", "0.75"): "resized x0.75",
}

DOCS_SOURCE = ("docs/what-amint-detects.md, second round (Fashion-MNIST, small_cnn, 2,000 members, README's main job "
               "recipe; one seed): not this run's figures")

#: AUC / TPR@1%FPR per copy from docs/what-amint-detects.md ("Second round", the table of
#: near-copies): ``amint17`` (aMINT on exact images) and ``rall30`` (``--audit-policy robust``).
DOCS_FIGURES: dict[str, dict[tuple[str, str], tuple[float, float]]] = {
    "exact-trained": {
        ("none", "exact"): (0.970, 0.42), ("jpeg", "q50"): (0.897, 0.17), ("noise", "8/255"): (0.951, 0.31),
        ("translate", "2px"): (0.647, 0.03), ("crop", "0.9"): (0.542, 0.02), ("resize", "0.75"): (0.593, 0.02),
    },
    "robust": {
        ("none", "exact"): (0.955, 0.35), ("jpeg", "q50"): (0.910, 0.20), ("noise", "8/255"): (0.939, 0.29),
        ("translate", "2px"): (0.701, 0.07), ("crop", "0.9"): (0.596, 0.03), ("resize", "0.75"): (0.698, 0.04),
    },
}


def grade(auc: float) -> str:
    if auc >= DETECTED_AUC:
        return "detected"
    return "weakly detected" if auc >= WEAK_AUC else "mostly missed"


@dataclass
class Limits:
    """Per kind of copy: label, AUC, TPR@1%FPR (and its n members / non-members), grade; and where the figures come from."""

    source: str
    own: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    def labels(self, which: str) -> list[str]:
        return [r["copy"] for r in self.rows if r["grade"] == which]

    def sentence(self) -> str:
        """One sentence: what the head detects and what it misses, with the source named."""
        parts = []
        for which, verb in (("detected", "detects"), ("weakly detected", "weakly detects"), ("mostly missed", "mostly misses")):
            got = [f"{r['copy']} (AUC {r['auc']:.2f})" for r in self.rows if r["grade"] == which]
            if got:
                parts.append(f"{verb} {', '.join(got)}")
        what = "; ".join(parts) if parts else "has no figures for transformed copies"
        return (f"What this audit can see: the head {what}. A set of transformed copies can come out as 'no evidence' "
                f"even if the originals were members. Source: {self.source}.")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "own_figures": self.own, "rows": self.rows,
                "grades": {"detected": f"AUC >= {DETECTED_AUC}", "weakly detected": f"{WEAK_AUC} <= AUC < {DETECTED_AUC}",
                           "mostly missed": f"AUC < {WEAK_AUC}"}}


#: Members / evaluation non-members behind :data:`DOCS_FIGURES` (all of README's main-job splits).
DOCS_N = (2000, 2000)


def _row(key: tuple[str, str], auc: float, tpr: float, n: tuple[int | None, int | None] = (None, None)) -> dict[str, Any]:
    label = COPIES.get(key) or f"{key[0]} {key[1]}"
    return {"copy": label, "transform": key[0], "level": key[1], "auc": float(auc), "tpr_at_1pct_fpr": float(tpr),
            "n_members": n[0], "n_nonmembers": n[1], "grade": grade(float(auc))}


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def own_figures(run_dir: str | Path) -> Limits | None:
    """The ``active_mint`` rows of ``RUN_DIR/robustness/robustness.json``, or None (missing or unreadable)."""
    from activemint.rundir import ROBUSTNESS_FILES, RunDir

    path = RunDir(run_dir).robustness / ROBUSTNESS_FILES["json"]
    try:
        rows = [r for r in json.loads(path.read_text())["rows"] if r.get("scorer") == "active_mint"]
        found = {(str(r["transform"]), str(r["level"])): (float(r["auc"]), float(r["tpr_at_1pct_fpr"]),
                                                           (_int(r.get("n_members")), _int(r.get("n_nonmembers")))) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not found:
        return None
    # the docs' copies when measured (the full table is on the robustness page), else every row
    keys = [k for k in COPIES if k in found] or list(found)
    return Limits(f"this run's robustness figures ({path})", True, [_row(k, *found[k]) for k in keys])


def detection_limits(run_dir: str | Path, audit_policy: str | None = None) -> Limits:
    """This run's own figures when ``activemint robustness`` was run on it, else the docs'."""
    own = own_figures(run_dir)
    if own is not None:
        return own
    kind = "robust" if audit_policy else "exact-trained"
    what = "aMINT trained with --audit-policy robust" if audit_policy else "aMINT trained on exact images"
    return Limits(f"{DOCS_SOURCE}; {what}; run `activemint robustness {run_dir}` for this run's own",
                  False, [_row(k, *v, DOCS_N) for k, v in DOCS_FIGURES[kind].items()])
