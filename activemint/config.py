"""One base for every config: typed fields, bounds, choices, unknown keys, YAML in and out.

A config is a dataclass deriving from :class:`ConfigBase`.  Its class attributes say what
each field may hold, and everything else is derived from them: validation, the error
messages, the command line's ``choices`` and the YAML round trip.

* field annotations (``int``, ``float | None``, ``list[str] | None`` ...): the type checked;
* ``bounds``: ``{field: Range(...)}`` or ``{field: (low, high)}`` (inclusive); ``None`` values
  are not checked;
* ``choices``: ``{field: (allowed, ...)}`` or a function returning them (for registries that
  fill at import time); a list field must be a non-empty subset;
* :meth:`ConfigBase.from_dict` refuses unknown keys (with a "did you mean"), :meth:`from_yaml`
  reads a file with the safe loader, :meth:`to_dict` / :meth:`to_yaml` write one back.

Used by :class:`activemint.training.TrainConfig`, the scorer configs
(:class:`activemint.attacks.config.ScorerConfig`) and the grid matrix (:func:`check_keys`).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from activemint.errors import UserError

__all__ = ["ConfigBase", "ConfigError", "Range", "check_keys", "read_yaml_mapping"]


class ConfigError(UserError, ValueError):
    """A config value (from ``--config`` YAML or an option) is of the wrong type or out of range.

    Also a ``ValueError``, so callers that caught the old ``ValueError`` keep working.
    """


@dataclass(frozen=True)
class Range:
    """Allowed numeric values: ``lo`` / ``hi`` (None: unbounded), each end open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in (0, 1]`` ..."""
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


def check_keys(d: Any, known: Iterable[str], where: str = "", *, what: str = "keys",
               error: type[Exception] = ConfigError) -> dict:
    """``d`` if it is a mapping of known string keys; else ``error`` naming the bad keys.

    The message: ``WHERE: unknown WHAT: k (did you mean key?); known keys: ...``.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(d, dict):
        raise error(f"{where or 'a config'} must be a mapping, got {type(d).__name__}")
    known = list(known)
    bad = [k for k in d if not isinstance(k, str)]
    if bad:
        raise error(f"{prefix}keys must be strings, got {bad[:5]!r}")
    unknown = sorted(set(d) - set(known))
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, n=1)) else k for k in unknown]
        raise error(f"{prefix}unknown {what}: {', '.join(hints)}; known keys: {', '.join(known)}")
    return d


# ------------------------------------------------------------------------ types
def _type_spec(annotation: str) -> tuple[str, bool]:
    """('int' | 'float' | 'str' | 'bool' | 'list' | 'dict' | 'tuple', optional?) of a field annotation."""
    optional = "None" in annotation
    base = annotation.replace("| None", "").replace("None |", "").strip()
    for kind in ("list", "dict", "tuple"):
        if base.startswith(kind):
            return kind, optional
    return base, optional


_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "list": "a list of strings", "dict": "a mapping", "tuple": "a list"}


def check_type(name: str, value: Any, kind: str, optional: bool, error: type[Exception] = ConfigError) -> Any:
    """``value`` checked (and for numbers, normalised) against ``kind``; raises ``error``."""
    if value is None and optional:
        return None
    ok = False
    if kind == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif kind == "float":
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                raise error(f"{name} must be a finite number, got {value!r}")
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = list(value) if ok else value
    elif kind == "tuple":
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    elif kind == "dict":
        ok = isinstance(value, dict)
    else:
        ok = True  # a type this base does not check
    if not ok:
        raise error(
            f"{name} must be {_TYPE_WORDS.get(kind, kind)}{' or null' if optional else ''}, "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


# ------------------------------------------------------------------------- base
class ConfigBase:
    """Mixin of config dataclasses; see the module doc.  Subclasses are ``@dataclass``-es.

    Class attributes:
        bounds: ``{field: Range | (low, high)}``.
        choices: ``{field: tuple | () -> tuple}``.
        check_types: whether :meth:`validate` checks the field annotations.
        error: the exception raised (a ``ValueError``).
        qualify: prefix messages with the class name (``PassiveMintConfig.epochs must ...``).
        number_word: say "must be a number in [0, 1]" rather than "must be in [0, 1]".
    """

    bounds: ClassVar[Mapping[str, Range | tuple[float, float]]] = {}
    choices: ClassVar[Mapping[str, tuple[Any, ...] | Callable[[], Iterable[Any]]]] = {}
    check_types: ClassVar[bool] = True
    error: ClassVar[type[Exception]] = ConfigError
    qualify: ClassVar[bool] = False
    number_word: ClassVar[bool] = False
    unknown_what: ClassVar[str] = "keys"

    def __post_init__(self) -> None:
        self.validate()

    # -------------------------------------------------------------- checks
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def choices_of(cls, name: str) -> tuple[Any, ...]:
        """The allowed values of ``name`` (for a command line's ``choices``)."""
        c = cls.choices[name]
        return tuple(c() if callable(c) else c)

    @classmethod
    def range_of(cls, name: str) -> Range:
        b = cls.bounds[name]
        return b if isinstance(b, Range) else Range(b[0], b[1])

    def _label(self, name: str) -> str:
        return f"{type(self).__name__}.{name}" if self.qualify else name

    def validate(self) -> None:
        """Types, bounds and choices of every field; raises :attr:`error`. Subclasses add rules."""
        if self.check_types:
            for f in fields(self):  # type: ignore[arg-type]
                kind, optional = _type_spec(str(f.type))
                setattr(self, f.name, check_type(self._label(f.name), getattr(self, f.name), kind, optional, self.error))
        for name in self.bounds:
            v = getattr(self, name)
            if v is None:
                continue
            r = self.range_of(name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in r:
                what = f"a number {r.describe()}" if self.number_word else r.describe()
                raise self.error(f"{self._label(name)} must be {what}, got {v!r}")
        for name in self.choices:
            v = getattr(self, name)
            if v is None or self.skip_choice(name):
                continue
            allowed = self.choices_of(name)
            many = isinstance(v, (list, tuple))
            vals = v if many else (v,)
            if [x for x in vals if x not in allowed] or (many and not v):
                raise self.error(f"{self._label(name)} must be {'a non-empty subset' if many else 'one'} of {allowed}, got {v!r}")

    def skip_choice(self, name: str) -> bool:
        """Whether this config's value of ``name`` is exempt from ``choices`` (a subclass's rule)."""
        return False

    # -------------------------------------------------------------- dicts and YAML
    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), in field order."""
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """A validated config from a mapping; unknown keys and bad values raise :attr:`error`."""
        check_keys(d, cls.field_names(), cls.__name__ if cls.qualify else "", what=cls.unknown_what, error=cls.error)
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path):
        """Read a YAML config file (safe loader: no Python tags); errors name the file."""
        d = read_yaml_mapping(path, "config")
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"config {path}: {e}") from e

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


# ------------------------------------------------------------------------ YAML
def read_yaml_mapping(path: str | Path, what: str = "YAML file") -> dict[str, Any]:
    """A YAML mapping read with ``yaml.safe_load``; every failure is one :class:`ConfigError` line.

    A missing file, a folder, a permission problem, bad UTF-8, a YAML syntax error (with its
    line and column), a ``!!python/...`` tag (refused by the safe loader) and a document that
    is not a mapping all name ``path``.  An empty file is ``{}``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; expected a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{what} {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} cannot be read: {getattr(e, 'strerror', None) or e}") from e
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {_yaml_problem(e)}") from e
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # odd scalars the resolver cannot build
        raise ConfigError(f"{what} {path} is not valid YAML: {e}") from e
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of keys to values, got a {type(d).__name__}")
    return d


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line from a PyYAML error: what went wrong and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in str(problem):
        problem = f"{problem.strip()}; only plain YAML values are accepted (Python tags are refused)"
    return " ".join(str(problem).split()) + where
