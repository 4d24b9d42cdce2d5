"""The one owner of a run directory's files: their names, the lock, the state (how files are written: :mod:`activemint.io`).

A run directory (``activemint train --out RUN``)::

    RUN/
      .activemint.lock   flock held by the process writing RUN (train / --resume); it holds
                         that process's pid, host and command, so a second writer can name it
      config.yaml        the resolved TrainConfig
      provenance.yaml    activemint version, git commit, torch version, machine
      manifest.csv       every sample of the run's splits and a SHA-256 of its pixels
      metrics.jsonl      exactly one line per finished epoch
      checkpoints/       epoch-NNNN/ directories (see activemint.training.checkpoint), each
                         written complete into a staging folder and renamed into place
      model.safetensors  the final model (+ model.json metadata)
      scores.npz         the final model's membership scores (records the model's SHA-256)
      metrics.json       the final evaluation, written LAST; it records the SHA-256 of
                         model.safetensors, model.json and scores.npz
      data/              only in a run saved from the user's own loop (activemint.save_run):
                         its data set ``tensors``, train.safetensors and test.safetensors

    What later commands write into it (none of it is bound by metrics.json):

      calibration.json   `activemint audit`'s calibration cache (thresholds by target FPR, the
      calibration.npz    model's SHA-256) and the calibration scores; recomputed when stale
      audits/            `activemint audit`'s default output folders, <UTC time>-<data hash>/
      robustness/        `activemint robustness`'s default output folder (robustness.json ...);
        cache/           its scorers' cache: features.npz, posthoc-heads/, scorers/
      model-edits/       `activemint model-edits`'s default output folder
      report.html        `activemint report`'s default output
      baseline/          `activemint train --baseline`: the utility baseline, itself a run
      train.log          a grid cell's log (`activemint grid`)
      logits.npz         a reference model's class logits (compare's cache of reference models)

:class:`RunDir` has a property for each of these (``RunDir(p).calibration_json``, ``.robustness`` ...).

Every file is written atomically (:mod:`activemint.io`, which also has the kill points for
tests).  A reader sees a file's old content or its new content, never a mix, and after a crash at
any instant the directory is in one of the states of :meth:`RunDir.state`:

* ``in progress``: another process holds the lock (it is training or resuming);
* ``incomplete``: training stopped before the final save finished (resume it with
  ``activemint train --resume --out RUN``);
* ``complete``: metrics.json is there and every file it names has the recorded SHA-256;
* ``inconsistent``: metrics.json is there but a file it names was changed or truncated.

The modules: :mod:`~activemint.rundir.layout` (every file name, the run format),
:mod:`~activemint.rundir.records` (the checks of metrics.json and scores.npz),
:mod:`~activemint.rundir.run` (:class:`RunDir`, its state, audit folders).
"""
from activemint.errors import RunError, RunLockedError, RunWriteError  # noqa: F401  (raised by activemint.io too)
from activemint.io.outputs import REPORT  # noqa: F401
from activemint.rundir.layout import (  # noqa: F401
    AUDIT_FILES,
    AUDIT_MARKER,
    AUDITS,
    BASELINE,
    BOUND_FILES,
    CACHE_KEY,
    CACHE_REFERENCE,
    CACHE_RUNS,
    CACHE_SCORERS,
    CALIBRATION_JSON,
    CALIBRATION_NPZ,
    CHECKPOINTS,
    CKPT_MANIFEST,
    CKPT_META,
    CKPT_STATE,
    CKPT_WEIGHTS,
    COMPARE_FILES,
    CONFIG,
    DATA,
    FEATURES,
    FIGURES_KEY,
    GRID_FILES,
    LOCK,
    LOG,
    LOGITS,
    MANIFEST,
    META_SUFFIX,
    METRICS,
    MODEL,
    MODEL_EDITS,
    MODEL_META,
    PLAN,
    POSTHOC_HEADS,
    PROVENANCE,
    ROBUSTNESS,
    ROBUSTNESS_CACHE,
    ROBUSTNESS_FILES,
    RUN_FORMAT,
    SCORE_ARRAYS_KEY,
    SCORES,
    SCORES_MODEL_KEY,
    TRAIN_LOG,
    WEIGHTS_SUFFIX,
)
from activemint.rundir.records import (  # noqa: F401
    METRICS_NUMBERS,
    METRICS_TEXT,
    SCORE_EXTRAS,
    SCORE_ROLES,
    binding_problem,
    check_metrics_fields,
    figures_digest,
)
from activemint.rundir.run import (  # noqa: F401
    RunDir,
    RunExistsError,
    RunState,
    audit_dir_replaceable,
)
