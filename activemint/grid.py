"""The paper's grid (data sets x architectures x setups) as configuration, and a runner for it.

One small matrix file (``configs/grid.yaml``) describes the grid: the data sets with their
paper sizes, the architectures, the setups, the shared optimisation settings, and *profiles*
(``paper``: the paper's protocol; ``cpu``: sizes and epochs shrunk for a CPU).  From it:

* :func:`expand` lists the cells of a profile (one :class:`Cell` per data set x arch x setup,
  plus one plain baseline, ``mint: false``, per data set x arch, so the table can show the
  audited accuracy of the same model trained without aMINT);
* :func:`generate_configs` writes one ``TrainConfig`` YAML per cell
  (``configs/<profile>/<dataset>-<arch>-<setup>.yaml``); the files are generated, never
  edited by hand (a test checks that the committed files equal the generator's output);
* :func:`run_grid` trains a selection of cells, each into ``OUT/<cell name>-<config hash>``:
  a cell whose directory holds ``metrics.json`` is done and skipped; one with a checkpoint is
  resumed (``Trainer.run(resume=True)``); one that died before its first checkpoint is
  restarted.  Cells run in worker processes (one per GPU when there are GPUs, else
  ``workers``, default 1) and a lock per cell keeps two grids from training the same cell;
* :func:`results_table` / :func:`write_table` put the paper's figures (Table 1) beside ours.

Modules: :mod:`activemint.grid_matrix` (matrix, cells, configs), this one (the runner) and
:mod:`activemint.grid_table` (the table); everything is importable from here.

>>> from activemint.grid import load_matrix, expand
>>> cells = expand(load_matrix(), "paper")
>>> len([c for c in cells if c.mint]), len([c for c in cells if not c.mint])
(90, 30)
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from activemint.grid_matrix import (
    DEFAULT_MATRIX,
    GENERATED_HEADER,
    PLAIN,
    Cell,
    GridError,
    Matrix,
    cell_config,
    cell_status,
    config_hash,
    expand,
    generate_configs,
    load_matrix,
    render_config,
)
from activemint.grid_table import (
    TABLE_COLUMNS,
    paper_table,
    results_table,
    table_markdown,
    write_table,
)
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
            summary += f", MINT acc@0.5 {mm['accuracy_at_0_5']:.4f}, AUC {mm['auc']:.4f}, TPR@1%FPR {mm['tpr_at_1pct_fpr']:.4f}"
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


def _worker_init(device_queue, threads: int | None) -> None:
    """Runs in each worker process: pin it to one GPU, or share the CPU cores."""
    _die_with_parent()
    if device_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device_queue.get())
    if threads:
        import torch

        torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the grid process dies, so no orphan keeps training."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_run(cell: Cell, out_dir: str) -> CellOutcome:
    return run_cell(cell, out_dir, log=lambda m: print(m, flush=True))


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001  (a broken CUDA install must not stop a CPU grid)
        return 0


def run_grid(
    cells: Iterable[Cell],
    out_dir: str | Path,
    *,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> list[CellOutcome]:
    """Run ``cells`` into ``out_dir`` in worker processes; returns one outcome per cell.

    ``workers``: parallel processes; default one per visible GPU, or 1 without GPUs.  With
    GPUs each worker sees one GPU (``CUDA_VISIBLE_DEVICES``); on CPU the cores are shared
    equally between the workers.  Cells already done are skipped without starting a worker.
    """
    import multiprocessing as mp

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
    n_gpu = gpu_count()
    workers = workers or max(1, n_gpu)
    if n_gpu:
        workers = min(workers, n_gpu)
    log(f"grid: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run "
        f"({sum(cell_status(c, out_dir) == 'partial' for c in todo)} to resume) with {workers} worker(s)"
        + (f" on {n_gpu} GPU(s)" if n_gpu else " on CPU"))
    if todo:
        # The workers' OpenMP wait policy comes from activemint.threads: they inherit this
        # process's environment and import activemint before torch.
        ctx = mp.get_context("spawn")
        queue = None
        if n_gpu:
            queue = ctx.Queue()
            for i in range(n_gpu):
                queue.put(i)
        threads = None if n_gpu else max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(queue, threads)) as pool:
            futures: dict[Future, Cell] = {pool.submit(_worker_run, c, str(out_dir)): c for c in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cell = futures[fut]
                    try:
                        outcomes[cell.dirname] = fut.result()
                    except Exception as e:  # noqa: BLE001  (a dead worker: report, go on)
                        outcomes[cell.dirname] = CellOutcome(cell.name, str(out_dir / cell.dirname), "failed",
                                                             error=f"{type(e).__name__}: {e}")
                        log(f"[{cell.name}] worker failed: {e}")
    return [outcomes[c.dirname] for c in cells]

__all__ = [
    "DEFAULT_MATRIX",
    "GENERATED_HEADER",
    "PLAIN",
    "TABLE_COLUMNS",
    "Cell",
    "CellOutcome",
    "GridError",
    "Matrix",
    "cell_config",
    "cell_status",
    "config_hash",
    "expand",
    "generate_configs",
    "load_matrix",
    "paper_table",
    "render_config",
    "results_table",
    "run_cell",
    "run_grid",
    "table_markdown",
    "write_table",
]
