"""Typed scorer configs (LeakPro style): fields with bounds, a one-line description, no unknown keys.

Every scorer in :mod:`activemint.attacks` has a config dataclass derived from
:class:`ScorerConfig`.  Its class attributes say what the method is and what it needs:

* ``name``: the method's display name (a table row),
* ``description``: one line for the report,
* ``needs``: what the auditor must have (``"labels"``, ``"white-box"``, ``"reference models"`` ...),
* ``bounds``: ``{field: (low, high)}``, inclusive; ``None`` fields are not checked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass
class ScorerConfig:
    name: ClassVar[str] = "scorer"
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, its value and its allowed range."""
        for key, (lo, hi) in self.bounds.items():
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"{type(self).__name__}.{key} must be a number in [{lo}, {hi}], got {v!r}")
        for key, allowed in self.choices.items():
            v = getattr(self, key)
            vals = v if isinstance(v, (list, tuple)) else (v,)
            bad = [x for x in vals if x not in allowed]
            if bad or (isinstance(v, (list, tuple)) and not v):
                raise ValueError(f"{type(self).__name__}.{key} must be {'a non-empty subset' if isinstance(v, (list, tuple)) else 'one'} of {allowed}, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScorerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def describe(self) -> dict[str, Any]:
        """Name, description, requirements and parameters, for tables and JSON."""
        return {"name": self.name, "description": self.description, "needs": list(self.needs), "params": self.to_dict()}
