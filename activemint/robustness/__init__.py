"""What the audit detects on near-copies: transformed members vs non-members, every scorer.

* :mod:`activemint.scorers`: the scorer protocol (``prepare`` / ``score_images``), its
  registry and the baselines (exact SHA-256 lookup, perceptual hash, nearest member in the
  model's features, the post-hoc head); ``robustness`` runs the scorers of the suite
  ``"robustness"`` (:data:`SCORERS`);
* :func:`run_robustness`: the table, plot and HTML of ``activemint robustness RUN_DIR``; the
  scorers run through the scoring loop ``compare`` uses (:func:`activemint.scorers.score_views`),
  one view per transformed copy.
"""
from activemint.robustness.evaluate import RobustnessError, Row, run_robustness
from activemint.scorers import Context, Scorer, Suite, get_scorers, register

#: The registered scorers that ``activemint robustness`` runs (a live view, by key).
SCORERS = Suite("robustness")

__all__ = ["SCORERS", "Context", "RobustnessError", "Row", "Scorer", "get_scorers", "register", "run_robustness"]
