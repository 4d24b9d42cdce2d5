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


def estimate_grid(cells: list[Cell], *, workers: int | None, threads: int | None,
                  log: Callable[[str], None] = print) -> tuple[dict[str, float], float | None]:
    """Each cell's expected seconds and the grid's expected wall time (None: not known), timed here before it starts.

    One probe (:func:`activemint.training.cost.time_config`: the run prepared, a few steps
    and a validation timed, nothing kept) per data set x architecture x aMINT-or-plain, with
    ``threads`` torch threads (a worker's); the other setups of an architecture are assumed to
    cost what the probed one does, each cell's epochs and steps counted.  With ``workers``
    (the local engine) the grid's wall time is the cells in order, each on the first free
    worker; with None (Ray: workers not known here) only the cells' sum is known.
    """
    from activemint.training.cost import time_config
    from activemint.training.timing import _duration, run_seconds

    t0 = time.time()
    probes: dict[tuple, dict] = {}
    per_cell: dict[str, float] = {}
    for cell in cells:
        cfg = cell.config
        key = (cell.dataset, cell.arch, cell.mint, cfg.members, cfg.batch_size)  # (one per data set x arch x mint in a profile)
        if key not in probes:
            probes[key] = time_config(cfg, threads=threads)
        per_cell[cell.dirname] = run_seconds(probes[key], cfg.epochs, probes[key]["steps_per_epoch"])
    wall = None
    if workers:
        free = [0.0] * workers  # when each worker is next free: cells are handed out in order
        for cell in cells:
            i = free.index(min(free))
            free[i] += per_cell[cell.dirname]
        wall = max(free, default=0.0)
    total = sum(per_cell.values())
    log(f"grid: expected wall time about {_duration(wall) if wall is not None else '(not known: Ray)'}"
        f" ({len(cells)} cells, {_duration(total)} of training in all"
        + (f" on {workers} worker{'s' if workers > 1 else ''}" if workers else "") + "); "
        f"timed by {len(probes)} probe{'s' if len(probes) != 1 else ''} ({_duration(time.time() - t0)}), one per data set x "
        f"architecture x aMINT/plain on {threads or 'default'} thread{'s' if threads != 1 else ''}, the other setups "
        f"assumed to cost the same; the machine as it is now")
    return per_cell, wall


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
    estimate: bool = False,
) -> list[CellOutcome]:
    """Run ``cells`` into ``out_dir`` as tasks of an engine; returns one outcome per cell.

    ``engine`` (:mod:`activemint.engine`): ``local`` runs worker processes on this machine
    (``workers``, default one per visible GPU, or 1 without GPUs; with GPUs each worker sees
    one GPU, on CPU the cores are shared equally between the workers); ``ray`` runs one Ray
    task per cell on a local Ray instance or the cluster at ``ray_address``, each with
    ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs.  Cells already done are skipped
    without starting a task; the cache and lock rules of :func:`run_cell` hold on both.
    ``estimate``: time the cells to run and print the grid's expected wall time first
    (:func:`estimate_grid`), then each finished cell's line says about how long is left.
    """
    from activemint.engine import TaskFailed, check_options, engine_summary, local_plan, run_tasks
    from activemint.training.timing import _duration

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
    expected: dict[str, float] = {}
    lanes = 1
    if estimate and todo:
        if engine == "local":
            lanes, _, threads = local_plan(workers, cpus_per_task)
            lanes = min(lanes, len(todo))
        else:
            lanes, threads = 0, cpus_per_task or 1
        expected, _ = estimate_grid(todo, workers=lanes or None, threads=threads, log=log)
    t_start = time.time()

    def left() -> str:
        """About how long the unfinished cells will take: their expected seconds, scaled by how the finished cells went."""
        if not expected or not lanes:  # not estimated (the default) or Ray's lanes unknown
            return ""
        done = [c for c in todo if c.dirname in outcomes and outcomes[c.dirname].seconds > 0]
        rest = [expected[c.dirname] for c in todo if c.dirname not in outcomes]
        if not rest:
            return ""
        ratio = sum(outcomes[c.dirname].seconds for c in done) / max(1e-9, sum(expected[c.dirname] for c in done)) if done else 1.0
        return f"; about {_duration(ratio * sum(rest) / min(lanes, len(rest)))} left (elapsed {_duration(time.time() - t_start)})"

    def finished(i: int, res: CellOutcome | TaskFailed) -> None:
        cell = todo[i]
        if isinstance(res, TaskFailed):  # a dead worker or task: report, go on
            res = CellOutcome(cell.name, str(out_dir / cell.dirname), "failed", error=res.error)
            log(f"[{cell.name}] worker failed: {res.error}")
        outcomes[cell.dirname] = res
        n = sum(c.dirname in outcomes for c in todo)
        log(f"grid: {n}/{len(todo)} finished ({cell.name}: {res.status}){left()}")

    run_tasks(_cell_task, [(c, str(out_dir)) for c in todo], engine=engine, workers=workers, ray_address=ray_address,
              cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, on_result=finished, log=log)
    return [outcomes[c.dirname] for c in cells]
