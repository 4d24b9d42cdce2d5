"""Output attacks: fixed functions of a model's class outputs (loss, confidence, entropy, ...)."""
from __future__ import annotations

import dataclasses
from typing import Any

from activemint.attacks.output import SIGNALS, OutputAttackConfig, output_scores
from activemint.scorers.base import Context, Scorer, Scores, register


@register
class OutputAttackScorer(Scorer):
    key = "output"
    name = "Output attacks"
    family = "output"
    Config = OutputAttackConfig

    def __init__(self, model: str = "active", config: OutputAttackConfig | None = None) -> None:
        super().__init__(model)
        self.config = config or OutputAttackConfig()
        self.method = self.config.display_name

    @classmethod
    def instances(cls, ctx: Context) -> list[Scorer]:
        base = ctx.config(cls)
        return [cls(m, dataclasses.replace(base, signal=s)) for s in SIGNALS for m in cls.models]

    def describe(self) -> dict[str, Any]:
        return self.config.describe()

    def score(self, ctx: Context) -> Scores:
        return ctx.wrap({r: output_scores(ctx.logits(self.model, r), ctx.labels_np(r), self.config.signal) for r in ctx.roles})
