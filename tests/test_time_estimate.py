"""The time estimate printed before training (activemint.training.timing): its arithmetic, the
handshake with a baseline trained beside the run, and that train and grid print it.

No assertion here rests on how fast this machine is: the arithmetic gets injected step costs,
and the runs are only checked for printing and storing an estimate.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activemint.training import timing
from activemint.training.timing import Beside, alone_seconds, two_phase, with_beside

COSTS = {"step": 0.1, "validation": 1.0, "checkpoint": 0.5, "evaluation": 2.0}


def test_alone_seconds_counts_every_epoch_and_the_final_evaluation():
    # 10 epochs x (10 steps x 0.1 s + 1 s validation + 0.5 s checkpoint) + 2 s evaluation = 27 s
    assert alone_seconds(COSTS, 10, 10) == pytest.approx(27.0, rel=1e-12)


def test_two_phase_with_injected_costs():
    # done while the process beside it still runs: every second of its work at the slow rate
    assert two_phase(100.0, 2.0, 300.0) == pytest.approx(200.0, rel=1e-12)
    # 50 s at half speed (25 s of its work), then the other 75 s of work alone: 125 s
    assert two_phase(100.0, 2.0, 50.0) == pytest.approx(125.0, rel=1e-12)
    assert two_phase(100.0, 2.0, 0.0) == pytest.approx(100.0, rel=1e-12)  # nothing beside it
    assert two_phase(100.0, 2.0, -5.0) == pytest.approx(100.0, rel=1e-12)  # the other is (expected) done already
    with pytest.raises(ValueError):
        two_phase(100.0, 0.5, 10.0)


@given(alone=st.floats(0.0, 1e5), slowdown=st.floats(1.0, 20.0), shared=st.floats(0.0, 1e6))
def test_two_phase_lies_between_alone_and_all_contended_and_grows_with_the_shared_time(alone, slowdown, shared):
    t = two_phase(alone, slowdown, shared)
    eps = 1e-9 * max(1.0, alone * slowdown, shared)  # float error of a few operations on values of this size
    assert alone - eps <= t <= alone * slowdown + eps
    assert t <= two_phase(alone, slowdown, shared * 1.5 + 1.0) + eps
    if shared >= alone * slowdown:
        assert t == pytest.approx(alone * slowdown, rel=1e-9, abs=eps)


def test_with_beside_combines_the_timed_steps_with_the_baseline_s_own_estimate():
    # The run: 27 s of work alone (above); a step takes 0.1 s alone, 0.25 s beside the baseline (2.5x);
    # 5 s have passed; the baseline expects to be done 20 s from now.  20 s at 2.5x do 8 s of its work,
    # the other 19 s run alone: 5 + 20 + 19 = 44 s for the run; both are done when it is.
    total, both, slowdown = with_beside(27.0, 0.1, 0.25, 5.0, 20.0)
    assert slowdown == pytest.approx(2.5, rel=1e-12)
    assert total == pytest.approx(44.0, rel=1e-12) and both == pytest.approx(44.0, rel=1e-12)
    # a long baseline: the run is slow all along (5 + 67.5 s) and the command lasts until the baseline is done
    total, both, _ = with_beside(27.0, 0.1, 0.25, 5.0, 100.0)
    assert total == pytest.approx(72.5, rel=1e-12) and both == pytest.approx(105.0, rel=1e-12)
    # steps timed faster beside it than alone (noise): no speed-up is assumed
    total, _, slowdown = with_beside(27.0, 0.1, 0.08, 0.0, 10.0)
    assert slowdown == 1.0 and total == pytest.approx(27.0, rel=1e-12)


class FakeChild:
    """A stand-in for the baseline process: writes its stages to the signal file as the real one does."""

    def __init__(self, path, steps_before_estimate: int | None, expected_end: float | None = 1234.5):
        self.path, self.n, self.end = path, steps_before_estimate, expected_end
        self.steps = 0
        self.dead = False

    def start(self) -> None:
        if self.n is None:  # dies before it times itself
            self.dead = True
            return
        threading.Thread(target=self._stage, args=({"stage": "timing"},)).start()

    def _stage(self, doc) -> None:
        self.path.write_text(json.dumps(doc))

    def step(self, n: int) -> None:  # the run's probe step; the child estimates after its own n-th
        self.steps += n
        if self.n is not None and self.steps == self.n:
            self._stage({"stage": "estimated", "expected_end": self.end})


def beside_for(child: FakeChild, path) -> Beside:
    child.start()  # (the run lets it go, then times its steps while it times its own)
    return Beside(alive=lambda: not child.dead, signal=path)


def test_time_beside_times_steps_from_the_child_s_timing_until_its_estimate(tmp_path):
    path = tmp_path / "signal.json"
    path.write_text("")  # as mkstemp leaves it
    child = FakeChild(path, steps_before_estimate=timing.BESIDE_MIN_STEPS + 4)
    got = timing.time_beside(beside_for(child, path), child.step, wait=60)
    assert got["contended_steps"] == timing.BESIDE_MIN_STEPS + 4 == child.steps
    assert got["expected_end"] == 1234.5 and got["contended_step"] > 0 and got["why"] == ""


def test_time_beside_takes_at_least_the_minimum_steps_and_passes_an_untimed_child_on(tmp_path):
    path = tmp_path / "signal.json"
    child = FakeChild(path, steps_before_estimate=1, expected_end=None)  # estimated (not timed) after 1 step
    got = timing.time_beside(beside_for(child, path), child.step, wait=60)
    assert got["contended_steps"] == timing.BESIDE_MIN_STEPS and got["expected_end"] is None
    assert got["why"] == "it was too short to time"


def test_time_beside_gives_up_on_a_child_that_dies_before_timing_itself(tmp_path):
    path = tmp_path / "signal.json"
    child = FakeChild(path, steps_before_estimate=None)
    got = timing.time_beside(beside_for(child, path), child.step, wait=60)
    assert got == {"contended_step": None, "contended_steps": 0, "expected_end": None, "why": "it ended before timing itself"}
    assert child.steps == 0


def test_the_child_says_it_is_ready_and_waits_for_the_run_s_go(tmp_path, monkeypatch):
    path = tmp_path / "signal.json"
    monkeypatch.setenv(timing.BESIDE_SIGNAL, str(path))
    run = Beside(alive=lambda: True, signal=path)
    child = threading.Thread(target=timing.wait_for_go, kwargs={"wait": 120})
    child.start()
    assert run.wait_ready(wait=120)  # the child wrote "ready"
    assert child.is_alive()  # and waits
    run.go()
    child.join(timeout=120)
    assert not child.is_alive() and timing.go_file(path).exists()
    assert json.loads(path.read_text()) == {"stage": "ready"}


def test_a_run_does_not_wait_for_a_child_that_ended(tmp_path):
    assert not Beside(alive=lambda: False, signal=tmp_path / "never.json").wait_ready(wait=120)


def test_signal_beside_writes_only_under_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    monkeypatch.delenv(timing.BESIDE_SIGNAL, raising=False)
    timing.signal_beside("timing")
    assert not path.exists()
    monkeypatch.setenv(timing.BESIDE_SIGNAL, str(path))
    timing.signal_beside("estimated", expected_end=12.5)
    assert json.loads(path.read_text()) == {"stage": "estimated", "expected_end": 12.5}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


# ---------------------------------------------------------------- real (tiny) runs
#: 640 members in batches of 64 for 4 epochs: 40 steps, enough to be timed (MIN_TIMED_RUN_STEPS).
TIMED = ["train", "--dataset", "fashion-mnist", "--arch", "small_cnn", "--setup", "entry", "--members", "640", "--external", "640",
         "--validation", "200", "--calibration", "300", "--eval-nonmembers", "200", "--epochs", "4", "--lr", "1e-3"]


def test_train_with_the_baseline_beside_prints_both_phases_and_stores_the_estimates(tmp_path, capsys):
    from conftest import FASHION_ROOT, require_fashion_mnist

    from activemint.cli import main

    require_fashion_mnist()
    assert 4 * math.ceil(640 / 64) >= timing.MIN_TIMED_RUN_STEPS
    out = tmp_path / "run"
    rc = main([*TIMED, "--data-root", str(FASHION_ROOT), "--baseline", "--threads", "2", "--out", str(out)])
    assert rc == 0
    got = capsys.readouterr()
    err = got.out + got.err  # the plan and epoch lines go to stdout (tqdm.write), the bars to stderr
    plan = err[err.index("plan:"):err.index("epoch 1/4")]
    assert "expected wall time about" in plan and "with the baseline beside it, both done in about" in plan
    assert "while the baseline trains beside it" in plan and "this run alone would take: training" in plan
    assert any(line.startswith("run:") and "/40" in line for line in err.splitlines())  # the bar over all 40 steps (lines in a log)
    m = json.loads((out / "metrics.json").read_text())
    assert m["baseline_beside"] is True
    assert m["expected_seconds"] > 0 and m["expected_seconds_with_baseline"] >= m["expected_seconds"]
    assert m["seconds_with_baseline"] >= m["train_seconds"] > 0
    base = json.loads((out / "baseline" / "metrics.json").read_text())
    assert base["expected_seconds"] > 0  # the child timed itself (and told the run: the line above)
    assert "expected wall time about" in (out / "baseline" / "train.log").read_text()


def test_train_alone_prints_the_estimate_and_stores_it(tmp_path, capsys):
    from conftest import FASHION_ROOT, require_fashion_mnist

    from activemint.cli import main

    require_fashion_mnist()
    out = tmp_path / "run"
    assert main([*TIMED, "--data-root", str(FASHION_ROOT), "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    got = capsys.readouterr()
    err = got.out + got.err
    assert "expected wall time about" in err[err.index("plan:"):err.index("epoch 1/4")]
    assert not any(line.startswith("run:") for line in err.splitlines())  # --no-progress: no bar
    m = json.loads((out / "metrics.json").read_text())
    assert m["expected_seconds"] > 0 and "expected_seconds_with_baseline" not in m


def test_grid_prints_its_expected_wall_time_before_it_starts(tmp_path):
    from conftest import FASHION_ROOT, require_fashion_mnist

    from activemint import grid

    require_fashion_mnist()
    cells = grid.expand(grid.load_matrix(), "cpu", archs=["small_cnn"], setups=["entry", "plain"])
    cells = [dataclasses.replace(c, config=dataclasses.replace(c.config, epochs=1, data_root=str(FASHION_ROOT))) for c in cells]
    lines: list[str] = []
    per_cell, wall = grid.estimate_grid(cells, workers=1, threads=1, log=lines.append)
    assert set(per_cell) == {c.dirname for c in cells} and all(v > 0 for v in per_cell.values())
    assert wall == pytest.approx(sum(per_cell.values()), rel=1e-12)  # one worker: one cell after the other
    per_cell2, wall2 = grid.estimate_grid(cells, workers=2, threads=1, log=lines.append)
    assert wall2 == max(per_cell2.values())  # two workers, two cells: one each
    assert len(lines) == 2 and all(line.startswith("grid: expected wall time about") for line in lines)
    assert "2 probes" in lines[0]  # one per arch x aMINT/plain

    out, log = tmp_path / "grid", []
    outcomes = grid.run_grid(cells[:1], out, workers=1, cpus_per_task=1, log=log.append, estimate=True)
    assert [o.status for o in outcomes] == ["trained"]
    first = [i for i, m in enumerate(log) if m.startswith("grid: expected wall time about")]
    started = [i for i, m in enumerate(log) if "finished" in m]
    assert first and started and first[0] < started[0]

    # Without the estimate (run_grid's default) a finished cell's line says nothing of time left,
    # with cells still to run (before: a KeyError from the empty estimate after the first cell).
    log2: list[str] = []
    outcomes = grid.run_grid(cells, tmp_path / "grid2", workers=1, cpus_per_task=1, log=log2.append)
    assert [o.status for o in outcomes] == ["trained"] * 2
    assert not any("expected wall time" in m or "left (elapsed" in m for m in log2)
    assert sum("finished" in m for m in log2) == 2
