"""Typed scorer configs (LeakPro style): fields with bounds, a one-line description, no unknown keys.

Every scorer in :mod:`activemint.attacks` has a config dataclass derived from
:class:`ScorerConfig`.  Its class attributes say what the method is and what it needs:

* ``name``: the method's display name (a table row),
* ``description``: one line for the report,
* ``needs``: what the auditor must have (``"labels"``, ``"white-box"``, ``"reference models"`` ...),
* ``bounds``: ``{field: (low, high)}``, inclusive; ``None`` fields are not checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from activemint.config import ConfigBase


@dataclass
class ScorerConfig(ConfigBase):
    """Bounds, choices, unknown keys and YAML from :class:`activemint.config.ConfigBase`."""

    name: ClassVar[str] = "scorer"
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    check_types: ClassVar[bool] = False  # bounds and choices say what each field holds
    qualify: ClassVar[bool] = True
    number_word: ClassVar[bool] = True

    def describe(self) -> dict[str, Any]:
        """Name, description, requirements and parameters, for tables and JSON."""
        return {"name": self.name, "description": self.description, "needs": list(self.needs), "params": self.to_dict()}
