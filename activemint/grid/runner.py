"""The grid's runner: trains the cells of a profile as engine tasks (see :mod:`activemint.grid`)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from activemint.grid.matrix import (
    Cell,
    cell_status,
)
from activemint.metrics import fmt_tpr
from activemint.rundir import RunDir


# ----------------------------------------------------------------------- running
@dataclass
class CellOutcome:
    """What happened to one cell in :func:`run_grid`."""

    cell: str
    run_dir: str
    status: str  # done (skipped), trained, resumed, busy (locked by another grid), failed
    seconds: float = 0.0
    error: str | None = None


def run_cell(cell: Cell, out_dir: str | Path, *, log: Callable[[str], None] = print) -> CellOutcome:
    """Train one cell unless it is done; resume it when it has a checkpoint (:func:`activemint.runs.ensure_run`).

    A lock file (``OUT/.locks/<dirname>.lock``, ``flock``) makes a second grid on the same
    folder skip a cell that is being trained (status ``busy``); the lock dies with its process.
    """
    from activemint.runs import ensure_run

    out_dir = Path(out_dir)
    run_dir = out_dir / cell.dirname
    if RunDir(run_dir).is_done(cell.mint):
        return CellOutcome(cell.name, str(run_dir), "done")
    (out_dir / ".locks").mkdir(parents=True, exist_ok=True)
    lock = open(out_dir / ".locks" / f"{cell.dirname}.lock", "w")
    try:
        if not _try_lock(lock):
            return CellOutcome(cell.name, str(run_dir), "busy")
        t0 = time.time()

        def cell_log(msg: str) -> None:
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(RunDir(run_dir).train_log, "a") as f:
                f.write(msg + "\n")
            log(f"[{cell.name}] {msg}")

        try:
            done = ensure_run(cell.config, run_dir, log=cell_log)
        except Exception as e:  # noqa: BLE001  (one bad cell must not stop the grid)
            log(f"[{cell.name}] FAILED: {type(e).__name__}: {e}")
            return CellOutcome(cell.name, str(run_dir), "failed", time.time() - t0, f"{type(e).__name__}: {e}")
        if not done.trained:  # finished by another grid while we waited
            return CellOutcome(cell.name, str(run_dir), "done")
        m = done.metrics or {}
        summary = f"test accuracy {m['test_accuracy']:.4f}"
        if "membership" in m:
            mm = m["membership"]
            summary += (f", MINT acc@0.5 {mm['accuracy_at_0_5']:.4f}, AUC {mm['auc']:.4f}, TPR@1%FPR "
                        f"{fmt_tpr(mm['tpr_at_1pct_fpr'], mm.get('n_members'), mm.get('n_nonmembers'), 0.01, 4)}")
        log(f"[{cell.name}] done in {time.time() - t0:.0f} s: {summary}")
        return CellOutcome(cell.name, str(run_dir), "resumed" if done.resumed else "trained", time.time() - t0)
    finally:
        lock.close()


def _try_lock(f) -> bool:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _cell_task(task: tuple[Cell, str]) -> CellOutcome:
    """One grid cell as an engine task (runs in a worker process or a Ray task)."""
    cell, out_dir = task
    return run_cell(cell, out_dir, log=lambda m: print(m, flush=True))


def run_grid(
    cells: Iterable[Cell],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float = 0,
    log: Callable[[str], None] = print,
) -> list[CellOutcome]:
    """Run ``cells`` into ``out_dir`` as tasks of an engine; returns one outcome per cell.

    ``engine`` (:mod:`activemint.engine`): ``local`` runs worker processes on this machine
    (``workers``, default one per visible GPU, or 1 without GPUs; with GPUs each worker sees
    one GPU, on CPU the cores are shared equally between the workers); ``ray`` runs one Ray
    task per cell on a local Ray instance or the cluster at ``ray_address``, each with
    ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs.  Cells already done are skipped
    without starting a task; the cache and lock rules of :func:`run_cell` hold on both.
    """
    from activemint.engine import TaskFailed, check_options, engine_summary, run_tasks

    check_options(engine, workers, cpus_per_task, gpus_per_task, ray_address)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = list(cells)
    outcomes: dict[str, CellOutcome] = {}
    todo = []
    for cell in cells:
        if cell_status(cell, out_dir) == "done":
            outcomes[cell.dirname] = CellOutcome(cell.name, str(out_dir / cell.dirname), "done")
        else:
            todo.append(cell)
    log(f"grid: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run "
        f"({sum(cell_status(c, out_dir) == 'partial' for c in todo)} to resume) "
        + engine_summary(engine, workers, cpus_per_task, gpus_per_task, ray_address))

    def finished(i: int, res: CellOutcome | TaskFailed) -> None:
        cell = todo[i]
        if isinstance(res, TaskFailed):  # a dead worker or task: report, go on
            res = CellOutcome(cell.name, str(out_dir / cell.dirname), "failed", error=res.error)
            log(f"[{cell.name}] worker failed: {res.error}")
        outcomes[cell.dirname] = res
        n = sum(c.dirname in outcomes for c in todo)
        log(f"grid: {n}/{len(todo)} finished ({cell.name}: {res.status})")

    run_tasks(_cell_task, [(c, str(out_dir)) for c in todo], engine=engine, workers=workers, ray_address=ray_address,
              cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, on_result=finished, log=log)
    return [outcomes[c.dirname] for c in cells]
