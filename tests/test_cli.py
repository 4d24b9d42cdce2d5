"""The command line as a user starts it: ``python -m activemint``, every command listed, ``power``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from activemint.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("train", "evaluate", "score", "grid", "audit", "report", "compare", "robustness", "datasets", "archs", "power")


def test_python_dash_m_activemint_runs_the_cli():
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "activemint", "--help"], capture_output=True, text=True, env=env, check=False,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert command in out.stdout
    bad = subprocess.run([sys.executable, "-m", "activemint", "train", "--setup", "middel"], capture_output=True, check=False,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'middel'" in bad.stderr and "Traceback" not in bad.stderr


def test_archs_lists_every_architecture_with_its_taps(capsys):
    from activemint.models import list_archs, tap_points

    assert main(["archs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list_archs()
    small = next(ln for ln in lines if ln.startswith("small_cnn"))
    assert f"middle={','.join(tap_points('small_cnn', 'middle'))}" in small


def test_power_study_command(audited_run_dir, tmp_path, capsys):
    out = tmp_path / "power.json"
    rc = main(["power", str(audited_run_dir), "--draws", "20", "--size", "50", "--fractions", "0,1", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "members in set" in text and out.is_file()
    import json

    study = json.loads(out.read_text())
    assert [r["n_members"] for r in study["rows"]] == [0, 50]
