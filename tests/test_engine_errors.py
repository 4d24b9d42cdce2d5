"""Without Ray: the ray engine fails with one clear line (exit 2), the default never needs Ray.

Separate from test_engine.py, whose Ray instance must not run while ``import ray`` is made to fail.
"""
from __future__ import annotations

import sys
import textwrap

import pytest

from activemint import engine, grid
from activemint.cli import main

TINY = """
archs: [small_cnn]
setups: [entry]
datasets:
  digits: {}
profiles:
  tiny:
    datasets: [digits]
    sizes: {members: 200, external: 300, validation: 100, calibration: 100, eval_nonmembers: 200}
    epochs: {default: 1}
"""


@pytest.fixture
def tiny(tmp_path) -> grid.Matrix:
    (tmp_path / "grid.yaml").write_text(textwrap.dedent(TINY))
    return grid.load_matrix(tmp_path / "grid.yaml")


def test_missing_ray_is_one_clear_line_with_exit_2(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    with pytest.raises(engine.UserError, match=r"pip install activemint\[ray\]"):
        engine.run_tasks(abs, [1], engine="ray")
    out = tmp_path / "runs"
    for argv in (["grid", "--matrix", str(tiny.path), "--profile", "tiny", "--out", str(out), "--engine", "ray"],
                 ["compare", "--dataset", "digits", "--engine", "ray", "--out", str(tmp_path / "cmp"),
                  "--cache-dir", str(tmp_path / "cache")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"activemint {argv[0]}: error: {engine.RAY_MISSING}"]
        assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()  # failed before anything ran
    # The default engine never needs Ray.
    assert engine.run_tasks(abs, [-1], workers=1) == [1]


@pytest.mark.parametrize("extra, message", [
    (["--ray-address", "auto"], "--ray-address and --gpus-per-task need --engine ray (the local engine gives each worker one GPU)"),
    (["--engine", "ray", "--cpus-per-task", "0"], "argument --cpus-per-task: must be an integer >= 1, got '0' (see activemint grid --help)"),
    (["--only-index", "1", "--table-only"], "--only-index runs one cell; write the table afterwards with --table-only alone"),
])
def test_engine_options_that_cannot_work_are_one_line_errors(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "runs"
    try:  # a range error is argparse's (SystemExit 2 at parse time); a combination error is main's (returns 2)
        rc = main(["grid", "--matrix", str(tiny.path), "--profile", "tiny", "--out", str(out), *extra])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"activemint grid: error: {message}"
    assert not out.exists()
