"""Side by side: Active MINT against passive MINT, gMINT and membership inference attacks.

One call answers "how much better is the jointly trained head than what I could get from the
model alone?" on equal terms: the same audited run (and the same architecture trained
plainly, on the same splits), the same members D vs. evaluation non-members, the same
calibration split for thresholds, and one metrics engine
(:func:`activemint.metrics.membership_metrics`) for every method.

Every method is a scorer that returns one float64 score per sample, higher = member:

=====================  ===============  =========================================================
method                 models           what it needs
=====================  ===============  =========================================================
Active MINT            active           the Enhanced Audited Model's membership logit
Passive MINT           plain            MINT head on the frozen plain model, trained on D / E
gMINT                  plain, active    per-sample gradients (labels, white-box), MLP on D / E
... (cross-fit)        as above         the same, each member scored by a head trained on the
                                        other half of D (never by one that saw it)
loss, confidence,      plain, active    the model's softmax outputs (loss, modified entropy
entropy, mod. entropy                   also need the label)
LiRA on/offline,       plain, active    N reference models (cached), logit-scaled confidence
fixed variance
RMIA offline / online  plain, active    the same reference models, population z from E
=====================  ===============  =========================================================

``run_compare`` writes to ``out_dir``: ``compare.md`` and ``compare.csv`` (one row per method x
model), ``compare.json`` (the same plus configs and descriptions), ``roc_linear.png`` and
``roc_loglog.png`` (all methods on one plot each), ``scores.npz`` (every row's scores).

Every method is a registered scorer (:mod:`activemint.scorers`): ``compare`` runs the scorers
of the suite ``"compare"`` (:data:`COMPARE_SCORERS`, in registration order) through the one
scoring loop it shares with ``robustness`` (:func:`activemint.scorers.score_views`), plus the
headline; a scorer registered anywhere (one file, one ``@register`` class) gets its rows in the
table, the files and the plots with every metric.  Its parameters are its nested ``Config``'s
(``run_compare(configs={"rmia": RmiaConfig(a=0.5)})``; on the command line ``--rmia-a 0.5``).

Everything expensive is cached under ``cache_dir`` (default ``.cache``): the active and plain
runs (``runs/<TrainConfig.fingerprint()>``), the reference models and their per-sample logits
(``reference-models/``), and the trained passive-MINT / gMINT heads with their scores
(``scorers/``, keyed by SHA-256 of the scorer's full key).  A second call with the same
configuration trains nothing and gives the same numbers.

Modules: :mod:`~activemint.compare.run` (the loop), :mod:`~activemint.compare.results` (rows,
headline, table, files), :mod:`~activemint.compare.plots` (ROC curves).
"""
from activemint.compare.results import (
           COLUMNS,
           CompareResult,
           MethodResult,
           headline_line,
           markdown_table,
           write_outputs,
)
from activemint.compare.run import (
           COMPARE_SCORERS,
           compare_context,
           run_compare,
           score_rows,
)
from activemint.scorers import EVAL_ROLES, MODELS

__all__ = ["COLUMNS", "COMPARE_SCORERS", "EVAL_ROLES", "MODELS", "CompareResult", "MethodResult", "compare_context",
           "headline_line", "markdown_table", "run_compare", "score_rows", "write_outputs"]
