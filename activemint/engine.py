"""Engines that run independent tasks (grid cells, reference models): one interface, two engines.

:func:`run_tasks` calls ``fn(item)`` for every item and hands each result back as soon as its
task finishes (``on_result``), so callers can print progress while the rest still run.

* ``local`` (default, nothing to install): a pool of ``spawn``-ed worker processes on this
  machine.  Default workers: one per visible GPU (each worker sees one GPU through
  ``CUDA_VISIBLE_DEVICES``), or 1 without GPUs; on CPU each worker gets
  ``cores // workers`` torch threads unless ``cpus_per_task`` says otherwise.  Workers die
  with the parent process (Linux ``PR_SET_PDEATHSIG``), so a killed run leaves no orphan
  training.
* ``ray``: one Ray remote task per item (``pip install activemint[ray]``).  ``ray_address``
  (or ``$RAY_ADDRESS``) joins an existing cluster (``ray start --head`` on one machine,
  ``ray start --address ...`` on the others; ``"auto"`` finds the one this machine belongs
  to); without it a new local Ray instance is started with ``workers`` CPUs (default: all
  cores).  Each task asks for ``cpus_per_task``
  CPUs (default 1, also its torch thread count) and ``gpus_per_task`` GPUs (Ray sets
  ``CUDA_VISIBLE_DEVICES``).  A Ray instance this function started is shut down at the end;
  one that was already running (``ray.init`` by the caller) is left running.

The engines know nothing of training: tasks are plain picklable callables and arguments,
and every cache / resume rule lives in the task itself, so a task that finds its work done
returns at once on either engine.  A task that raises (or whose worker dies) yields a
:class:`TaskFailed` in its slot; the other tasks go on.

>>> run_tasks(abs, [-1, 2, -3], engine="local", workers=1)
[1, 2, 3]
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activemint.errors import UserError

ENGINES = ("local", "ray")
RAY_MISSING = "the ray engine needs Ray, which is not installed: pip install activemint[ray]"


@dataclass
class TaskFailed:
    """The result slot of a task that raised, or whose worker process died."""

    index: int
    error: str  # "TypeName: message"


def gpu_count() -> int:
    """Visible CUDA GPUs (0 when torch has no CUDA or the CUDA install is broken)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001  (a broken CUDA install must not stop a CPU run)
        return 0


def check_options(engine: str, workers: int | None = None, cpus_per_task: int | None = None,
                  gpus_per_task: float = 0, ray_address: str | None = None) -> None:
    """Raise :class:`UserError` (one line) on options that cannot work."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise UserError(f"--cpus-per-task must be >= 1, got {cpus_per_task}")
    if gpus_per_task < 0:
        raise UserError(f"--gpus-per-task must be >= 0, got {gpus_per_task}")
    if engine == "local" and (ray_address or gpus_per_task):
        raise UserError("--ray-address and --gpus-per-task need --engine ray (the local engine gives each worker one GPU)")


def run_tasks(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_task: float = 0,
    on_result: Callable[[int, Any], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run ``fn(item)`` for every item on ``engine``; return the results in the items' order.

    Args:
        fn: a module-level function (it is pickled by reference into the workers).
        workers: local: worker processes (default one per GPU, else 1); ray without
            ``ray_address``: the CPUs of the local Ray instance (default: all cores).
        ray_address: join this Ray cluster instead of starting a local instance.
        cpus_per_task: torch threads per task (local default ``cores // workers``; ray
            default 1, and the CPUs each Ray task reserves).
        gpus_per_task: GPUs each Ray task reserves (ray only).
        on_result: ``on_result(index, result)`` in the caller's process as each task ends
            (``result`` is a :class:`TaskFailed` when the task failed).
    """
    items = list(items)
    check_options(engine, workers, cpus_per_task, gpus_per_task, ray_address)
    if not items:
        return []
    if engine == "ray":
        return _run_ray(fn, items, workers=workers, ray_address=ray_address, cpus_per_task=cpus_per_task or 1,
                        gpus_per_task=gpus_per_task, on_result=on_result, log=log or (lambda m: None))
    return _run_local(fn, items, workers=workers, cpus_per_task=cpus_per_task, on_result=on_result,
                      log=log or (lambda m: None))


# ------------------------------------------------------------------------- local
def _worker_init(device_queue, threads: int | None) -> None:
    """Runs in each worker process: pin it to one GPU, or share the CPU cores."""
    _die_with_parent()
    if device_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device_queue.get())
    if threads:
        import torch

        torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the parent process dies, so no orphan keeps training."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def local_plan(workers: int | None, cpus_per_task: int | None = None) -> tuple[int, int, int | None]:
    """``(workers, gpus, threads per worker)`` of the local engine on this machine."""
    n_gpu = gpu_count()
    workers = workers or max(1, n_gpu)
    if n_gpu:
        workers = min(workers, n_gpu)
    threads = cpus_per_task or (None if n_gpu else max(1, (os.cpu_count() or 1) // workers))
    return workers, n_gpu, threads


def _run_local(fn, items: Sequence[Any], *, workers, cpus_per_task, on_result, log) -> list[Any]:
    import multiprocessing as mp

    workers, n_gpu, threads = local_plan(workers, cpus_per_task)
    # The workers' OpenMP wait policy comes from activemint.threads: they inherit this
    # process's environment and import activemint before torch.
    ctx = mp.get_context("spawn")
    queue = None
    if n_gpu:
        queue = ctx.Queue()
        for i in range(n_gpu):
            queue.put(i)
    results: list[Any] = [None] * len(items)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(queue, threads)) as pool:
        futures: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=futures.__getitem__):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except Exception as e:  # noqa: BLE001  (a task that raised or a dead worker: report, go on)
                    results[i] = TaskFailed(i, f"{type(e).__name__}: {e}")
                if on_result is not None:
                    on_result(i, results[i])
    return results


# --------------------------------------------------------------------------- ray
def require_ray() -> None:
    """Raise the one-line :class:`UserError` unless Ray is installed (without importing it: seconds)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError(RAY_MISSING)


def import_ray():
    """``ray``, or a one-line :class:`UserError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise UserError(RAY_MISSING) from e
    return ray


def _source_root() -> str | None:
    """The folder holding the ``activemint`` package when it runs from a source checkout."""
    root = Path(__file__).resolve().parent.parent
    return str(root) if (root / "pyproject.toml").is_file() else None


def ray_runtime_env() -> dict[str, Any]:
    """What Ray workers need to import activemint as this process does.

    From a source checkout (not pip-installed) the checkout goes on the workers'
    ``PYTHONPATH``; on a remote cluster whose nodes lack that path, install activemint there
    (``pip install activemint[ray]``).  The thread policy (``OMP_WAIT_POLICY``) is passed on.
    """
    env: dict[str, str] = {}
    root = _source_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    for key in ("OMP_WAIT_POLICY", "HF_HUB_OFFLINE"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {"env_vars": env}


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to Ray: join ``address`` (or ``$RAY_ADDRESS``), else start a new local instance
    with ``num_cpus`` CPUs (default: all cores).

    Returns True when this call connected (the caller then owns the connection and shuts it
    down), False when Ray was already initialised in this process (it is used as it is).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"runtime_env": ray_runtime_env(), "include_dashboard": False, "log_to_driver": True}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        kw["address"] = address
    else:  # "local": a new instance, never a `ray start` cluster that happens to run on this machine
        kw.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1)
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise UserError(f"cannot join the Ray cluster at {address}: {e}") from e
    return True


def _ray_task(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    """A Ray task: ``fn(item)`` with ``threads`` torch threads (Ray's workers are reused)."""
    import torch

    torch.set_num_threads(threads)
    return fn(item)


def _run_ray(fn, items: Sequence[Any], *, workers, ray_address, cpus_per_task, gpus_per_task, on_result, log) -> list[Any]:
    ray = import_ray()
    t0 = time.time()
    owned = start_ray(ray_address, workers)
    if owned:
        joined = ray_address or os.environ.get("RAY_ADDRESS")
        log(f"ray: {'joined ' + joined if joined else 'started a local instance'} in {time.time() - t0:.1f} s "
            f"({ray.cluster_resources().get('CPU', 0):.0f} CPUs, {ray.cluster_resources().get('GPU', 0):.0f} GPUs)")
    try:
        remote = ray.remote(_ray_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)
        refs = {remote.remote(fn, item, cpus_per_task): i for i, item in enumerate(items)}
        results: list[Any] = [None] * len(items)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    results[i] = ray.get(ref)
                except Exception as e:  # noqa: BLE001  (RayTaskError, a dead worker: report, go on)
                    cause = getattr(e, "cause", None) or e
                    results[i] = TaskFailed(i, f"{type(cause).__name__}: {cause}")
                if on_result is not None:
                    on_result(i, results[i])
        return results
    finally:
        if owned:
            ray.shutdown()


def engine_summary(engine: str, workers: int | None, cpus_per_task: int | None, gpus_per_task: float,
                   ray_address: str | None) -> str:
    """One line for logs: where the tasks run."""
    if engine == "ray":
        joined = ray_address or os.environ.get("RAY_ADDRESS")
        where = f"Ray cluster {joined}" if joined else "a local Ray instance"
        return f"on {where}, {cpus_per_task or 1} CPU(s)" + (f" and {gpus_per_task:g} GPU(s)" if gpus_per_task else "") + " per task"
    workers, n_gpu, _ = local_plan(workers, cpus_per_task)
    return f"with {workers} worker(s)" + (f" on {n_gpu} GPU(s)" if n_gpu else " on CPU")


__all__ = ["ENGINES", "RAY_MISSING", "TaskFailed", "check_options", "engine_summary", "gpu_count", "import_ray",
           "local_plan", "ray_runtime_env", "require_ray", "run_tasks", "start_ray"]
