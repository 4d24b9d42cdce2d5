"""activemint: Active Membership Inference Test (aMINT) for auditable image classifiers.

The data flows one way: data -> splits -> model + taps -> trainer -> scores -> metrics ->
report / audit decision.  Every method that answers "is this a member?" ends in a score per
sample, higher = more likely member, and :mod:`activemint.metrics` turns any scores into the
same figures.

Importing activemint sets the CPU thread policy (``OMP_WAIT_POLICY=PASSIVE`` unless the
environment sets it) before torch is loaded; see :mod:`activemint.threads`, including what
happens when torch is imported before activemint.
"""
from activemint.threads import apply_policy as _apply_thread_policy

_apply_thread_policy()

__version__ = "0.1.0"

#: The library API (imported on first use: ``import activemint`` alone does not load torch).
_LAZY = {"make_auditable": "activemint.mint", "AuditableModel": "activemint.mint", "pixels_to_input": "activemint.mint",
         "save_run": "activemint.library", "load_run": "activemint.runs", "create_model": "activemint.models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
