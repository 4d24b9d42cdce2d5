"""The names of a run directory's files and the run format (the layout: :mod:`activemint.rundir`)."""
from __future__ import annotations

from activemint.io.outputs import REPORT

# ----------------------------------------------------------------------------- names
CONFIG = "config.yaml"
PROVENANCE = "provenance.yaml"
MANIFEST = "manifest.csv"
LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MODEL = "model.safetensors"
MODEL_META = "model.json"  # save_weights writes the metadata beside the weights with suffix .json
METRICS = "metrics.json"
SCORES = "scores.npz"
AUDITS = "audits"
BASELINE = "baseline"
LOCK = ".activemint.lock"
DATA = "data"  # a run saved from the user's own loop (activemint.save_run): its data as train/test .safetensors
# inside one checkpoint directory (checkpoints/epoch-NNNN/)
CKPT_WEIGHTS = "weights.safetensors"
CKPT_META = "weights.json"
CKPT_STATE = "train_state.pt"
CKPT_MANIFEST = "checkpoint.json"
# an audit output folder's marker (written by `activemint audit`, required by --force)
AUDIT_MARKER = ".activemint-audit"

TRAIN_LOG = "train.log"  # a grid cell's log (the grid appends every message of the cell)
ROBUSTNESS = "robustness"  # `activemint robustness RUN`'s default output folder, in the run
ROBUSTNESS_CACHE = "cache"  # inside it: what its scorers trained or computed (FEATURES, POSTHOC_HEADS, CACHE_SCORERS)
MODEL_EDITS = "model-edits"  # `activemint model-edits RUN`'s default output folder, in the run
POSTHOC_HEADS = "posthoc-heads"  # a scoring cache's post-hoc heads (robustness: RUN/robustness/cache/posthoc-heads)
WEIGHTS_SUFFIX = ".safetensors"

# Files of the caches and outputs beside run directories (every file name lives in this module).
CACHE_RUNS, CACHE_REFERENCE, CACHE_SCORERS = "runs", "reference-models", "scorers"  # folders of ``compare``'s cache
CACHE_KEY = "config.json"  # a cache entry's full key (reference models, trained scorers)
LOGITS = "logits.npz"  # a reference model's class logits of every scored sample
PLAN = "plan.npz"  # the reference models' pool and IN mask
FEATURES = "features.npz"  # robustness: D's penultimate features
COMPARE_FILES = {"markdown": "compare.md", "csv": "compare.csv", "json": "compare.json",
                 "roc_linear": "roc_linear.png", "roc_loglog": "roc_loglog.png", "scores": "scores.npz"}
GRID_FILES = {"markdown": "results.md", "csv": "results.csv"}
ROBUSTNESS_FILES = {"json": "robustness.json", "csv": "robustness.csv", "markdown": "robustness.md",
                    "plot": "robustness.png", "html": "robustness.html"}
AUDIT_FILES = {"json": "audit.json", "samples": "samples.csv", "markdown": "summary.md", "html": REPORT}
CALIBRATION_JSON, CALIBRATION_NPZ = "calibration.json", "calibration.npz"  # an audit's calibration cache
META_SUFFIX = ".json"  # save_weights writes a weights file's metadata beside it with this suffix

RUN_FORMAT = "activemint-run/3"  # 3: metrics.json binds its own figures (FIGURES_KEY)
FIGURES_KEY = "figures_sha256"  # metrics.json entry: SHA-256 of its other entries (all but "files" and itself)
SCORE_ARRAYS_KEY = "score_arrays"  # metrics.json: the names of scores.npz's arrays (under the figures digest)
SCORES_MODEL_KEY = "model_sha256"  # scores.npz entry naming the SHA-256 of the model that made it
#: files that metrics.json binds by SHA-256
BOUND_FILES = (MODEL, MODEL_META, SCORES)

