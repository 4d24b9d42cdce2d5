"""Baselines that turn a model (and what they need) into membership scores, higher = member.

Every scorer returns a float64 array with one score per sample; the figures all come from
:func:`activemint.metrics.membership_metrics`.  Each method has a typed config (bounds, a
one-line description, what it needs).  The LiRA and RMIA math are pure functions of arrays
of reference-model statistics, separate from training the reference models
(:mod:`activemint.attacks.reference`, cached).  :func:`activemint.compare.run_compare` runs
them all on the same splits.
"""
from activemint.attacks.config import ScorerConfig
from activemint.attacks.gradient import (
    GradientMintConfig,
    gradient_features,
    per_sample_gradients,
    reduce_per_filter,
    tapped_parameter_names,
    train_gradient_mlp,
)
from activemint.attacks.lira import LiraConfig, fit_gaussians, lira_offline, lira_online, lira_scores
from activemint.attacks.output import (
    SIGNALS,
    OutputAttackConfig,
    confidence_score,
    entropy_score,
    logit_confidence,
    loss_score,
    modified_entropy_score,
    output_scores,
    true_label_prob,
)
from activemint.attacks.passive import PassiveMintConfig, train_passive_head, wrap_frozen
from activemint.attacks.reference import ReferenceConfig, ReferenceLogits, ReferencePlan, make_plan, reference_logits
from activemint.attacks.rmia import RmiaConfig, reference_probability, rmia_scores

__all__ = [
    "ScorerConfig", "GradientMintConfig", "gradient_features", "per_sample_gradients", "reduce_per_filter",
    "tapped_parameter_names", "train_gradient_mlp", "LiraConfig", "fit_gaussians", "lira_offline", "lira_online",
    "lira_scores", "SIGNALS", "OutputAttackConfig", "confidence_score", "entropy_score", "logit_confidence", "loss_score",
    "modified_entropy_score", "output_scores", "true_label_prob", "PassiveMintConfig", "train_passive_head", "wrap_frozen",
    "ReferenceConfig", "ReferenceLogits", "ReferencePlan", "make_plan", "reference_logits", "RmiaConfig",
    "reference_probability", "rmia_scores",
]
