"""Thread policy: how activemint's CPU threads behave on a machine shared with other work.

This module is the one place that owns it.  ``import activemint`` (which the CLI, the grid's
worker processes and every ``from activemint... import`` run first) calls
:func:`apply_policy`, which sets, **only where the user's environment has not set them**:

* ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep instead of spinning.  torch's CPU
  kernels run on OpenMP; without a policy a thread that finishes its share of an operator
  spins on the CPU for a while waiting for the next one (GNU OpenMP's default; for good with
  ``ACTIVE``).  On an idle machine that saves a few
  microseconds per operator; on a CPU shared with other processes the spinning threads steal
  the cores the other threads (and processes) need, and training became 5-30x slower on the
  2-core machine of ``benchmarks/results/`` (e.g. small_cnn plain training 39 img/s with 2
  spinning threads against 1467 img/s with 2 passive ones, ``throughput-cpu.md``; an aMINT
  step of small_cnn took 3.6-4.6x longer under load when torch was imported before the policy
  was set, ``shared-cpu.md``).  The price: on a machine whose cores are free, spinning can be
  faster (one round of ``shared-cpu.md``: 160 vs 290 ms per step); set ``ACTIVE`` there.

The thread *count* is left to torch (one per physical core) unless the user sets it
(``--threads N``, ``OMP_NUM_THREADS``, ``torch.set_num_threads``): with passive threads, two
threads on the two cores trained faster than one under other sessions' load (small_cnn plain
training 1467 vs 1297 img/s, ``throughput-cpu.md``) and, with one other CPU-bound process
running, were as fast as or faster than one (``shared-cpu.md``: 542 vs 797 and 507 vs 518 ms
per aMINT step), so no lower default is imposed.

Override: export the variable yourself (``OMP_WAIT_POLICY=ACTIVE`` for a dedicated machine
where the last microseconds matter); a value already in the environment is never replaced.

**Caveat: import order.**  OpenMP reads ``OMP_WAIT_POLICY`` once, when torch's OpenMP
runtime is loaded (``import torch``).  A program that imports torch *before* activemint
keeps the runtime's default policy; set the variable in the shell
(``export OMP_WAIT_POLICY=PASSIVE``) or before ``import torch``::

    import os
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

:func:`policy_applied` tells whether the policy is in effect for this process.
"""
from __future__ import annotations

import os
import sys

#: Environment defaults of the policy (set only where absent).
DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}

_torch_loaded_first = False


def apply_policy() -> None:
    """Set the policy's environment defaults; call before torch is imported.

    Idempotent.  Records whether torch was already loaded (then the wait policy of this
    process is whatever the environment said when torch was imported).
    """
    global _torch_loaded_first
    if "torch" in sys.modules and any(k not in os.environ for k in DEFAULTS):
        _torch_loaded_first = True
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


def policy_applied() -> bool:
    """True when this process's OpenMP runtime started with the passive wait policy (or the
    user chose a policy in the environment)."""
    return not _torch_loaded_first
