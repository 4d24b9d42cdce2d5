"""The thread policy (activemint.threads): set before torch loads, never over the user's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = "import os, sys\n{pre}\nimport activemint.threads as t\nprint(os.environ.get('OMP_WAIT_POLICY'), t.policy_applied(), 'torch' in sys.modules)"


def probe(pre: str = "", **env: str) -> list[str]:
    e = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    e.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], env=e, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_sets_passive_before_torch_and_keeps_user_choice():
    # Importing activemint sets the policy and does not load torch (so the policy is in place
    # when torch's OpenMP runtime starts).
    assert probe() == ["PASSIVE", "True", "False"]
    # The user's own setting wins.
    assert probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "True", "False"]


def test_torch_imported_first_is_reported():
    assert probe("import torch") == ["PASSIVE", "False", "True"]
    # ... unless the user set the policy in the environment themselves.
    assert probe("import torch", OMP_WAIT_POLICY="PASSIVE") == ["PASSIVE", "True", "True"]


def test_cli_module_applies_policy():
    e = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    e["PYTHONPATH"] = str(ROOT)
    code = "import os, activemint.cli; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
