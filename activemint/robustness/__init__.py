"""What the audit detects on near-copies: transformed members vs non-members, every scorer.

* :mod:`activemint.robustness.scorers`: the scorer protocol (``prepare`` / ``score``), its
  registry and the baselines (exact SHA-256 lookup, perceptual hash, nearest member in the
  model's features, the post-hoc head);
* :func:`run_robustness`: the table, plot and HTML of ``activemint robustness RUN_DIR``.
"""
from activemint.robustness.evaluate import Row, run_robustness
from activemint.robustness.scorers import (
    SCORERS,
    Context,
    RobustnessError,
    Scorer,
    get_scorers,
    register,
)

__all__ = ["SCORERS", "Context", "RobustnessError", "Row", "Scorer", "get_scorers", "register", "run_robustness"]
