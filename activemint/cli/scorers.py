"""The scorers' flags, derived from their registered configs (as ``train``'s are from TrainConfig).

Every field of a registered scorer's ``Config`` that has a ``help`` in its metadata becomes
``--<config key>-<field>`` (``--rmia-a``, ``--lira-min-std``, ``--passive-mint-epochs`` ...) of
each command whose suite holds the scorer (``compare``, ``robustness``); ``aliases`` in the
metadata keep older spellings working (``--passive-epochs``).  The default and the bounds are
the config's own: the flag's default is ``None`` (not given), the help says the config's
default, and a bad value is reported by the flag (:func:`activemint.cli.options.make_config`).
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from typing import Any

from activemint.cli.options import make_config


def _kind(f: dataclasses.Field) -> type | None:
    from activemint.config import _type_spec

    return {"int": int, "float": float, "str": str}.get(_type_spec(str(f.type))[0])


def scorer_fields(suite: str) -> Iterator[tuple[str, type, dataclasses.Field, str]]:
    """(config key, Config class, field, flag) of every flag of the scorers of ``suite``, each config once."""
    from activemint.scorers import Suite

    seen = set()
    view = Suite(suite)
    for key in view:
        cls = view[key]
        ck = cls.config_key()
        if cls.Config is None or ck in seen:
            continue
        seen.add(ck)
        for f in dataclasses.fields(cls.Config):
            if "help" in f.metadata and _kind(f) is not None:
                yield ck, cls.Config, f, f"--{ck.replace('_', '-')}-{f.name.replace('_', '-')}"


def add_scorer_args(p: argparse.ArgumentParser, suite: str) -> None:
    """One group of flags per scorer config of ``suite`` (see the module doc)."""
    groups: dict[str, Any] = {}
    for ck, cfg, f, flag in scorer_fields(suite):
        g = groups.get(ck) or groups.setdefault(ck, p.add_argument_group(f"{cfg.name} ({ck})"))
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = f.metadata["help"] + ("" if default is None else f" (default {default:g})" if isinstance(default, float)
                                      else f" (default {default})")
        g.add_argument(flag, *f.metadata.get("aliases", ()), dest=_dest(ck, f.name), type=_kind(f), default=None,
                       metavar=f.name.upper(), help=help_)


def _dest(config_key: str, name: str) -> str:
    return f"scorer__{config_key}__{name}"


def scorer_configs(args: argparse.Namespace, suite: str) -> dict[str, Any]:
    """The configs of ``suite``'s scorers whose flags were given, by config key (the others: defaults)."""
    import sys

    typed = [a.split("=", 1)[0] for a in (getattr(args, "argv", None) or sys.argv[1:])]
    given: dict[str, dict[str, Any]] = {}
    flags: dict[str, dict[str, str]] = {}
    classes = {}
    for ck, cfg, f, flag in scorer_fields(suite):
        classes[ck] = cfg
        # an error names the flag as the user typed it (an old alias too)
        flags.setdefault(ck, {})[f.name] = next((a for a in f.metadata.get("aliases", ()) if a in typed), flag)
        v = getattr(args, _dest(ck, f.name), None)
        if v is not None:
            given.setdefault(ck, {})[f.name] = v
    return {ck: make_config(classes[ck], flags[ck], **values) for ck, values in given.items()}
