"""Every membership method behind one protocol (:mod:`activemint.scorers.base`).

Importing this package registers the built-in scorers, in the order ``compare`` lists them:
Active MINT, passive MINT (+ cross-fit), gMINT (+ cross-fit), the output attacks, LiRA and RMIA;
then the robustness baselines (exact / perceptual hash lookup, nearest member in features,
post-hoc heads).  A new method is one module with one ``@register`` class (its parameters in a
nested ``Config``), and its module's name in :data:`BUILTIN`.
"""
import importlib

from activemint.scorers.base import (
    EVAL_ROLES,
    MODELS,
    REGISTRY,
    Context,
    EngineOptions,
    Scorer,
    ScorerCache,
    ScorerError,
    Scores,
    Suite,
    Work,
    clean_backbone,
    get_scorers,
    register,
    unregister,
)
from activemint.scorers.crossfit import (
    CROSS_FIT_NOTE,
    CrossFit,
    FittedScorer,
    cross_fit_folds,
    cross_fit_scores,
)
from activemint.scorers.loop import EXACT, View, score_views
from activemint.scorers.neighbourhood import NeighbourhoodScorer, wraps

#: The built-in scorer modules, imported (so registered) in the order ``compare`` lists their rows.
BUILTIN = ("mint", "gradient", "output", "reference", "baselines", "posthoc")
for _name in BUILTIN:
    importlib.import_module(f"activemint.scorers.{_name}")

__all__ = [
    "CROSS_FIT_NOTE", "EXACT", "View", "score_views", "EVAL_ROLES", "MODELS", "REGISTRY", "Context", "EngineOptions", "Work", "CrossFit", "FittedScorer", "NeighbourhoodScorer", "Scorer", "ScorerCache",
    "ScorerError", "Scores", "Suite", "clean_backbone", "cross_fit_folds", "cross_fit_scores", "get_scorers", "register",
    "unregister", "wraps",
]
