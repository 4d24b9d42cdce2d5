"""The task engines (activemint.engine): local processes and Ray tasks give the same runs.

One local Ray instance (2 CPUs) is shared by the module's tests and shut down at the end:
starting Ray costs seconds.  Every test here skips when Ray is not installed (the CI installs
it: ``pip install -e .[test,ray]`` in scripts/setup.sh), except the one of ``--only-index``;
the error without Ray is tested in test_engine_errors.py (no Ray instance may run there).
"""
from __future__ import annotations

import hashlib
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from activemint import engine, grid
from activemint.cli import main
from activemint.training import TrainConfig

# Four cells (3 aMINT setups + the plain baseline) of the tiniest grid that trains for real:
# scikit-learn's digits, small_cnn, 2 epochs (as tests/test_grid.py sizes its cells).
TINY = """
archs: [small_cnn]
setups: [entry, middle, output]
datasets:
  digits: {}
defaults: {recipe: paper, lr: 1.0e-3, batch_size: 32, external_batch_size: 32, seed: 0}
profiles:
  tiny:
    datasets: [digits]
    sizes: {members: 200, external: 300, validation: 100, calibration: 100, eval_nonmembers: 200}
    epochs: {default: 1, small_cnn: 2}
"""
#: metrics.json keys that legitimately differ between two runs of the same config.
# wall times, the path, and the figures digest (over the whole document, these included)
VOLATILE = {"train_seconds", "expected_seconds", "run_dir", "figures_sha256"}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module (2 CPUs), started as run_tasks would start it."""
    ray = pytest.importorskip("ray")
    assert engine.start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """In-process training on one thread, like every task below (cpus_per_task=1): the same
    thread count gives the same float sums, hence bit-identical weights."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny(tmp_path) -> grid.Matrix:
    (tmp_path / "grid.yaml").write_text(textwrap.dedent(TINY))
    return grid.load_matrix(tmp_path / "grid.yaml")


def _figures(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing in the grid catches it."""


@pytest.mark.slow  # Ray's start-up (~20 s on the shared 2-core machine), not training
def test_run_tasks_streams_results_and_reports_failures_on_both_engines(ray_cluster):
    for name in ("local", "ray"):
        seen = []
        # (math.sqrt: the tasks' function must be importable by the workers, which a test module is not.)
        out = engine.run_tasks(math.sqrt, [4, -1, 16], engine=name, workers=2, cpus_per_task=1,
                               on_result=lambda i, r, seen=seen: seen.append(i))
        assert out[0] == 2 and out[2] == 4, name
        assert isinstance(out[1], engine.TaskFailed) and out[1].index == 1, name
        assert out[1].error == "ValueError: math domain error", name
        assert sorted(seen) == [0, 1, 2], name
    assert ray_cluster.is_initialized()  # the caller's Ray instance is left running


@pytest.mark.slow
def test_grid_on_ray_equals_local_and_a_second_call_trains_nothing(ray_cluster, tiny, tmp_path, one_thread, capsys):
    cells = grid.expand(tiny, "tiny")
    assert len(cells) == 4 and sum(not c.mint for c in cells) == 1
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    # Local engine: 2 worker processes, one torch thread each.
    assert [o.status for o in grid.run_grid(cells, local, workers=2, cpus_per_task=1, log=lambda m: None)] == ["trained"] * 4
    # One cell of the Ray grid was killed in its second epoch (after the first checkpoint):
    # the Ray task resumes it.
    killed = next(c for c in cells if c.setup == "middle")

    def kill_in_epoch_2(msg: str) -> None:
        if msg.startswith(f"[{killed.name}] epoch 2/2 "):
            raise Killed

    with pytest.raises(Killed):
        grid.run_cell(killed, on_ray, log=kill_in_epoch_2)
    assert grid.cell_status(killed, on_ray) == "partial"
    argv = ["grid", "--matrix", str(tiny.path), "--profile", "tiny", "--out", str(on_ray),
            "--engine", "ray", "--cpus-per-task", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "on a local Ray instance, 1 CPU(s) per task" in printed and "grid: 4/4 finished" in printed
    for c in cells:
        assert grid.cell_status(c, on_ray) == "done"
        a, b = _figures(local / c.dirname), _figures(on_ray / c.dirname)
        if c is killed:  # resumed from epoch 1's checkpoint: the same run up to float order
            # Bit-identical runs (accuracy is k / n: one flipped prediction is >= 1e-3): every process here trains at one torch thread
            # (one_thread, cpus_per_task 1), and resuming restores the exact state, so the float sums are the same.
            assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
            assert a["membership"]["auc"] == pytest.approx(b["membership"]["auc"], abs=1e-6)
            continue
        # Same seeds, same thread count: bit-identical weights, scores and figures.
        assert a == b, c.name
        assert _sha(local / c.dirname / "model.safetensors") == _sha(on_ray / c.dirname / "model.safetensors")
        if c.mint:
            assert _sha(local / c.dirname / "scores.npz") == _sha(on_ray / c.dirname / "scores.npz")
    # A second call trains nothing (and starts no task).
    stamps = {c.name: (on_ray / c.dirname / "metrics.json").stat().st_mtime_ns for c in cells}
    assert [o.status for o in grid.run_grid(cells, on_ray, engine="ray", log=lambda m: None)] == ["done"] * 4
    assert {c.name: (on_ray / c.dirname / "metrics.json").stat().st_mtime_ns for c in cells} == stamps


@pytest.fixture(scope="module")
def tiny_active_run(tmp_path_factory) -> Path:
    """A finished one-epoch aMINT run on digits: what compare's reference models are planned from."""
    from activemint.training import Trainer

    run_dir = tmp_path_factory.mktemp("active") / "run"
    cfg = TrainConfig(dataset="digits", arch="small_cnn", mint=True, members=200, external=500, validation=100,
                      calibration=300, eval_nonmembers=200, epochs=1, lr=1e-3, seed=0)
    Trainer(cfg, run_dir, progress=False, log=lambda m: None).run()
    return run_dir


@pytest.mark.slow
def test_cli_compare_on_ray_gives_the_local_figures(ray_cluster, tiny_active_run, tmp_path, capsys):
    """`compare --engine ray --reference-models 4`: the reference models train as Ray tasks and
    every row of compare.csv (LiRA and RMIA included) equals the local engine's (2 worker
    processes: its `--workers > 1` path); a second call trains nothing and starts no Ray; and
    model k alone (a SLURM array task) is the same model k."""
    cache = tmp_path / "cache"
    argv = ["compare", "--active-run", str(tiny_active_run), "--reference-models", "4", "--reference-epochs", "1",
            "--population", "100", "--passive-epochs", "1", "--gmint-epochs", "3", "--gmint-external", "300",
            "--cache-dir", str(cache), "--no-progress", "--cpus-per-task", "1"]
    assert main([*argv, "--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert "reference models: training 4 of 4" in capsys.readouterr().err
    # Only the reference models are trained again (everything else is reused from the cache).
    (cache / "reference-models").rename(tmp_path / "reference-models-local")
    assert main([*argv, "--out", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    err = capsys.readouterr().err
    assert "reference models: training 4 of 4" in err and "Ray tasks" in err
    local = (tmp_path / "local" / "compare.csv").read_text().splitlines()
    on_ray = (tmp_path / "ray" / "compare.csv").read_text().splitlines()
    assert sum("LiRA" in line for line in on_ray) == 8 and sum("RMIA" in line for line in on_ray) == 4
    assert on_ray == local
    # The cache: a second call trains nothing, so Ray is not even started.
    assert main([*argv, "--out", str(tmp_path / "ray2"), "--engine", "ray"]) == 0
    err = capsys.readouterr().err
    assert "trained nothing" in err and "ray: started" not in err
    assert (tmp_path / "ray2" / "compare.csv").read_text().splitlines() == local
    # One SLURM array task: model 2 alone, in this process (one thread, as the tasks had).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        slurm = [*argv, "--only-reference-model", "2", "--cache-dir", str(tmp_path / "array")]
        assert main(slurm) == 0
        assert "reference model 2 of 4: trained" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
    (key,) = [p.name for p in (cache / "reference-models").iterdir()]
    mine = np.load(tmp_path / "array" / "reference-models" / key / "model-02" / "logits.npz")
    theirs = np.load(cache / "reference-models" / key / "model-02" / "logits.npz")
    assert sorted(mine.files) == sorted(theirs.files) and len(mine.files) == 12
    for name in mine.files:
        assert np.array_equal(mine[name], theirs[name]), name
    assert not (tmp_path / "array" / "reference-models" / key / "model-01").exists()
    assert main(slurm) == 0 and "2 of 4: reused" in capsys.readouterr().out
    assert main([*argv, "--only-reference-model", "7"]) == 2
    assert "reference model 7 does not exist: the models are 0..3" in capsys.readouterr().err


@pytest.mark.slow
def test_grid_only_index_runs_one_cell_of_the_selection(tiny, tmp_path, one_thread, capsys):
    """--only-index I: one cell in this process (a SLURM array task), nothing else trained."""
    cells = grid.expand(tiny, "tiny")
    out = tmp_path / "runs"
    base = ["grid", "--matrix", str(tiny.path), "--profile", "tiny", "--out", str(out)]
    assert main([*base, "--only-index", "3"]) == 0
    assert f"{cells[3].name}: trained" in capsys.readouterr().out
    assert [grid.cell_status(c, out) for c in cells] == ["todo", "todo", "todo", "done"]
    assert not (out / "results.md").exists()  # the table is written once, after the array
    assert main([*base, "--only-index", "3"]) == 0
    assert f"{cells[3].name}: done" in capsys.readouterr().out
    assert main([*base, "--only-index", "4"]) == 2
    assert "--only-index 4 is outside the selection's 4 cells" in capsys.readouterr().err
