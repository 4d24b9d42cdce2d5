"""Calibrated decisions and set-level tests for a data owner: "was my data used?".

* :mod:`~activemint.audit.calibration`: a threshold with a stated false-positive rate
  (:func:`activemint.metrics.calibrate_threshold`, the one rule), conformal p-values, saved with the run (``calibration.json`` + ``calibration.npz``).
* :mod:`~activemint.audit.settest`: set-level tests of H0 "none of these samples were
  members" (exceedance / Mann-Whitney / mixture) and the estimated member fraction.
* :mod:`~activemint.audit.suspect`: reading and checking the suspect images.
* :mod:`~activemint.audit.pipeline`: :func:`audit` = all of it, with files written atomically.
* :mod:`~activemint.audit.power`: false alarms, power and coverage on a run's own scores.
"""
from activemint.audit.calibration import (
    Calibration,
    CalibrationError,
    calibrate_run,
    conformal_pvalues,
    load_calibration,
    make_calibration,
    save_calibration,
)
from activemint.audit.pipeline import AuditError, AuditResult, audit, default_out_dir
from activemint.audit.settest import DEFAULT_TEST, TESTS, MixtureModel, SetTestReport, set_tests
from activemint.audit.suspect import AuditInputError, SuspectSet, load_suspect

__all__ = [
    "AuditError", "AuditInputError", "AuditResult", "Calibration", "CalibrationError", "DEFAULT_TEST", "MixtureModel",
    "SetTestReport", "SuspectSet", "TESTS", "audit", "calibrate_run", "conformal_pvalues",
    "default_out_dir", "load_calibration", "load_suspect", "make_calibration", "save_calibration", "set_tests",
]
