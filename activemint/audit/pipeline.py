"""The audit pipeline: a run + a suspect set -> per-sample decisions, a set-level test, a report.

From Python::

    from activemint.audit import audit
    result = audit("runs/fmnist", ["photos/"], alpha=0.01, target_fpr=0.01)
    print(result.verdict, result.tests.p_value, result.tests.fraction)
    write_audit(result, "audit-out")   # activemint.report.audit: samples.csv, audit.json, report.html, summary.md

The CLI's ``activemint audit RUN_DIR SUSPECT`` does both steps.  Nothing is written to the
output folder unless every step succeeded: files are written into a temporary folder next
to it and moved into place at the end.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import activemint
from activemint import rundir
from activemint.audit.calibration import Calibration, calibrate_run, neighbourhood_calibration
from activemint.audit.limits import Limits, detection_limits
from activemint.audit.settest import DEFAULT_TEST, SetTestReport, set_tests
from activemint.audit.suspect import SuspectSet, load_suspect
from activemint.errors import UserError
from activemint.io import csv_row, file_sha256, hold_lock, make_dir, output_dir
from activemint.progress import counted
from activemint.rundir import RunDir


class AuditError(UserError, ValueError):
    """The audit cannot run (e.g. a plain run without a MINT head)."""


class AuditOutputExistsError(AuditError, FileExistsError):
    """The output folder exists and is not empty (and --force was not given)."""


AUDIT_DIR_FORMAT = "activemint-audit-dir/1"

#: Below this many distinct images a set-level test has little power: the report warns.
SMALL_SET = 10


def fmt_p(p: float) -> str:
    """A p-value for people: 3 decimals, or scientific notation when small."""
    if p >= 0.001:
        return f"{p:.3f}"
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.2e}"


def verdict_sentence(tests: SetTestReport, n_images: int) -> str:
    """The answer in one sentence."""
    f = tests.fraction
    frac = f"estimated member fraction {100 * f.estimate:.0f}% (95% CI {100 * f.ci_low:.0f}-{100 * f.ci_high:.0f}%)"
    if tests.reject:
        return (
            f"Members detected: some of these {n_images} images were very likely used to train this model "
            f"(p = {fmt_p(tests.p_value)} < alpha = {tests.alpha:g}; {frac})."
        )
    return (
        f"No evidence of membership at alpha = {tests.alpha:g} (p = {fmt_p(tests.p_value)}): "
        f"this does not show that none of the {n_images} images were used ({frac})."
    )


@dataclass
class AuditResult:
    """Everything an audit found; :meth:`write` turns it into files."""

    run_dir: Path
    suspect: SuspectSet
    scores: np.ndarray
    pvalues: np.ndarray
    flagged: np.ndarray
    unique: np.ndarray
    calibration: Calibration
    tests: SetTestReport
    model: dict[str, Any]
    created: str
    options: dict[str, Any] = field(default_factory=dict)
    limits: Limits | None = None
    command: str | None = None

    @property
    def small_set_warning(self) -> str | None:
        """A warning when the set is too small for the set-level test to say much (< SMALL_SET distinct images)."""
        n = int(self.unique.sum())
        if n >= SMALL_SET:
            return None
        return (f"Small set: only {n} distinct image{'s' if n != 1 else ''} (fewer than {SMALL_SET}). The member-fraction "
                f"interval is wide and the test can miss members; 'no evidence' here says very little. Audit more images "
                f"of the same source if you can.")

    @property
    def probabilities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.scores))

    @property
    def verdict(self) -> str:
        return verdict_sentence(self.tests, len(self.suspect))

    @property
    def question(self) -> str:
        return (
            f"Were any of these {len(self.suspect)} images ({', '.join(self.suspect.inputs)}) used to train "
            f"the model in {self.run_dir}?"
        )

    def data_identity(self) -> dict[str, Any]:
        return {
            "sha256": self.suspect.data_sha256,
            "how": "SHA-256 over the sorted SHA-256 digests of each image's uint8 CHW pixels, one per line",
            "n_images": len(self.suspect), "n_unique": int(self.unique.sum()),
            "n_duplicates_ignored_by_set_test": int((~self.unique).sum()),
            "inputs": self.suspect.inputs, "n_resized": len(self.suspect.resized),
            "n_channels_converted": len(self.suspect.converted),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (no per-sample rows; those are in the CSV)."""
        return {
            "format": "activemint-audit/1", "activemint": activemint.__version__, "created": self.created,
            "question": self.question, "verdict": self.verdict,
            "decision": "members detected" if self.tests.reject else "no evidence of membership",
            "alpha": self.tests.alpha, "p_value": self.tests.p_value, "default_test": self.tests.default_test,
            "member_fraction": {"estimate": self.tests.fraction.estimate, "ci_low": self.tests.fraction.ci_low,
                                "ci_high": self.tests.fraction.ci_high, "confidence": self.tests.fraction.confidence,
                                "method": self.tests.fraction.method},
            "per_sample": {"n_flagged": int(self.flagged.sum()), "n": len(self.flagged),
                           "target_fpr": self.calibration.target_fpr, "threshold_logit": self.calibration.threshold},
            "tests": self.tests.to_dict()["tests"],
            "calibration": self.calibration.summary(),
            "model": self.model, "data": self.data_identity(), "run_dir": str(self.run_dir), "options": self.options,
            "limits": self.limits.to_dict() if self.limits is not None else None,
            "limits_sentence": self.limits.sentence() if self.limits is not None else None,
            "small_set_warning": self.small_set_warning, "command": self.command,
        }

    def write_csv(self, path: Path) -> None:
        first: dict[str, int] = {}
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "pixel_sha256", "membership_logit", "membership_probability", "conformal_p_value",
                        f"member_at_{self.calibration.target_fpr:g}_fpr", "duplicate_of"])
            for i, (sid, h, s, pr, pv, fl) in enumerate(zip(self.suspect.ids, self.suspect.pixel_sha256, self.scores,
                                                              self.probabilities, self.pvalues, self.flagged)):
                dup = "" if h not in first else self.suspect.ids[first[h]]
                first.setdefault(h, i)
                w.writerow(csv_row([sid, h, f"{s:.6f}", f"{pr:.6f}", f"{pv:.6g}", int(fl), dup]))

    def write(self, out_dir: str | os.PathLike, *, force: bool = False,
              documents: Mapping[str, Callable[[AuditResult], str]] | None = None) -> Path:
        """Write samples.csv, audit.json and ``documents`` into ``out_dir``, atomically.

        ``documents``: file name -> renderer of this result (the report layer's
        :func:`activemint.report.audit.write_audit` passes summary.md and report.html).

        ``out_dir`` must not exist or be empty.  ``force`` replaces it only when it holds a
        previous audit's own files (its ``.activemint-audit`` marker lists them): never the run
        directory, a folder holding it, or a folder with any other file.  The folder is built
        complete beside ``out_dir`` and renamed into place, under a lock beside it.
        """
        out = Path(out_dir)
        make_dir(out.parent)
        with hold_lock(out.parent / f".{out.name}.lock", f"audit into {out}", target=out, remove=lambda: True):
            if out.exists() or out.is_symlink():
                empty = out.is_dir() and not out.is_symlink() and not any(out.iterdir())
                if not empty and not force:
                    raise AuditOutputExistsError(f"output folder {out} already exists and is not empty (--force replaces "
                                                 f"a previous audit's folder)")
                why = None if empty else rundir.audit_dir_replaceable(out, self.run_dir)
                if why is not None:
                    raise AuditError(f"--force will not replace {out}: {why}")
            names = rundir.AUDIT_FILES
            with output_dir(out, [*names.values(), *(documents or {}), rundir.AUDIT_MARKER], what="audit") as tmp:
                self.write_csv(tmp / names["samples"])
                (tmp / names["json"]).write_text(json.dumps(self.to_dict(), indent=2))
                for name, render in (documents or {}).items():
                    (tmp / name).write_text(render(self))
                files = sorted(p.name for p in tmp.iterdir())
                (tmp / rundir.AUDIT_MARKER).write_text(json.dumps({"format": AUDIT_DIR_FORMAT, "files": files}, indent=2))
        return out


def model_identity(run) -> dict[str, Any]:
    """Architecture, setup, taps and the SHA-256 of the weights file of a loaded run."""
    meta = run.metadata
    return {
        "arch": meta.get("arch"), "setup": meta.get("setup"), "taps": meta.get("taps"), "dataset": meta.get("dataset"),
        "input_shape": meta.get("input_shape"), "num_classes": meta.get("num_classes"), "epoch": meta.get("epoch"),
        "weights_file": rundir.MODEL, "weights_sha256": file_sha256(run.dir.model),
    }


def audit(
    run_dir: str | os.PathLike,
    suspect: list[str],
    *,
    alpha: float = 0.01,
    target_fpr: float = 0.01,
    test: str = DEFAULT_TEST,
    resize: bool = False,
    convert_channels: bool = False,
    device: str = "auto",
    save_calibration: bool = True,
    follow_symlinks: bool = False,
    max_pixels: int | None = None,
    data_root: str | None = None,
    command: str | None = None,
    neighbourhood: str | None = None,
    aggregate: str = "max",
    neighbourhood_seed: int = 0,
) -> AuditResult:
    """Audit ``suspect`` (folders, files, file lists, ``split:ROLE``) against a run.

    Args:
        run_dir: a finished aMINT run (complete: see :mod:`activemint.rundir`; with a calibration split).
        suspect: the suspect inputs (see :func:`activemint.audit.suspect.load_suspect`).
        alpha: significance level of the set-level test.
        target_fpr: false-positive rate of the per-sample decisions (calibrated threshold).
        test: which set-level test decides (``exceedance``, ``mann_whitney``, ``mixture``).
        resize, convert_channels: accept images of another size / channel count.
        save_calibration: save the calibration to the run directory (first audit only).
        follow_symlinks, max_pixels: read links leading out of a suspect folder; the largest
            image opened (default :data:`activemint.data.images.USER_MAX_PIXELS`).
        data_root: read the run's data set from here instead of its config's data_root.
        command: the command line that asked for the audit (recorded in the report).
        neighbourhood: a view set (:mod:`activemint.neighbourhood`): every suspect image, and every
            calibration, member and evaluation non-member sample of the run, is scored over its
            views and the scores aggregated by ``aggregate``; the calibration is recomputed that
            way (never saved).  ``neighbourhood_seed`` seeds a ``random:N`` view set.
    """
    from activemint.neighbourhood import fit_aggregate, get_view_set, neighbourhood_scores, parse_aggregate
    from activemint.runs import load_run

    if not 0 < alpha < 1:
        raise AuditError(f"--alpha must be in (0, 1), got {alpha}")
    views = get_view_set(neighbourhood, neighbourhood_seed) if neighbourhood else None  # bad names fail before any work
    agg = parse_aggregate(aggregate) if neighbourhood else None
    run = load_run(run_dir, device=device, data_root=data_root)
    if not run.is_audited:
        raise AuditError(f"{run_dir} is a plain run (mint off): it has no membership head to audit with")
    sus = load_suspect(run, list(suspect), resize=resize, convert_channels=convert_channels,
                       follow_symlinks=follow_symlinks, max_pixels=max_pixels)
    if views is None:
        cal = calibrate_run(run, target_fpr, save=save_calibration)
        with counted(run.membership_logits, len(sus), "scoring the suspect set") as score:
            scores = score(sus.images)
    else:
        from activemint.neighbourhood import reference_subset

        externals = run.data.split("external").images
        if agg.needs_fit and agg.mu is None:  # zmax: standardised on (a seeded subset of) E only
            n_ref = len(reference_subset(len(externals)))
            with counted(run.membership_logits, n_ref * len(views), f"fitting {agg.name} on externals, {len(views)} views",
                         unit="view") as score:
                agg = fit_aggregate(agg, score, views, externals)
        cal = neighbourhood_calibration(run, target_fpr, views, agg)
        with counted(run.membership_logits, len(sus) * len(views), f"scoring the suspect set, {len(views)} views",
                     unit="view") as score:
            scores = neighbourhood_scores(score, sus.images, views, agg)
    unique = sus.unique_mask()
    tests = set_tests(scores[unique], cal, alpha=alpha, default_test=test)
    created = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    return AuditResult(
        run_dir=Path(run_dir).resolve(), suspect=sus, scores=scores, pvalues=cal.pvalues(scores), flagged=cal.decide(scores),
        unique=unique, calibration=cal, tests=tests, model=model_identity(run), created=created,
        options={"alpha": alpha, "target_fpr": target_fpr, "test": test, "resize": resize,
                 "convert_channels": convert_channels,
                 **({"neighbourhood": {**views.describe(), "seed": neighbourhood_seed, "aggregate": agg.name,
                                       "cost_per_query": views.cost()}} if views is not None else {})},
        limits=detection_limits(run.run_dir, run.config.audit_policy), command=command,
    )


def default_out_dir(result: AuditResult) -> Path:
    """``RUN_DIR/audits/<UTC time>-<first 8 hex of the data hash>``."""
    stamp = result.created.replace(":", "").replace("-", "").replace("+0000", "").replace("T", "-")
    return RunDir(result.run_dir).audits / f"{stamp}-{result.suspect.data_sha256[:8]}"
