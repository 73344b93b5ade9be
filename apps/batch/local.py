"""The local engine: a pool of worker processes on this machine.

Each worker runs ``torch.set_num_threads(max(1, cores // workers))`` so N workers share the
cores instead of oversubscribing them. At most ``workers + 1`` items are in flight (:func:`in_flight`):
the extra one waits in the pool's queue, so a worker that finishes an item starts the next at once
instead of waiting for this process to collect its result and submit another. If a worker
process dies (segfault, OOM kill) the items it may have held are retried one at a time, so
the item that kills its worker is identified and recorded as failed while the rest carry on.

Workers start by ``fork`` where that is safe (:func:`start_method`): they then share this
process's imports (torch, face3d: ≈ 2 CPU s per worker that ``spawn`` repeats) and their first
results arrive ≈ 1–2 s sooner (benchmarks/README.md, issue 26).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .manifest import Item
from .work import ItemResult, WorkFn, item_result, run_item, set_worker_threads


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """``max(1, cores // workers)`` with ``cores`` defaulting to the CPUs this process may use."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def in_flight(workers: int, solo: bool = False) -> int:
    """Items submitted at once to a pool of ``workers``: one more than the workers (queued, ready for
    the first worker to finish), or exactly one while suspects of a crash are retried ``solo``."""
    return 1 if solo else max(1, workers) + 1


#: ``FACE3D_BATCH_START``: ``fork`` or ``spawn`` forces that start method; unset, :func:`start_method` decides.
START_ENV = "FACE3D_BATCH_START"


def os_threads() -> int:
    """Threads of this process as the OS counts them (C++ and OpenMP threads included), 0 when unknown."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def start_method(threads: int) -> str:
    """How worker processes start: ``fork`` on Linux when each worker runs one intra-op thread (no
    OpenMP pool state to inherit) and this process has a single thread (no lock another thread could
    hold at the fork: the batch's progress bar starts after the workers, MediaPipe graphs and
    torch's thread pools make this false); ``spawn`` otherwise. ``FACE3D_BATCH_START`` overrides."""
    forced = os.environ.get(START_ENV, "").strip().lower()
    if forced in ("fork", "spawn"):
        return forced
    if sys.platform == "linux" and threads == 1 and os_threads() == 1:
        return "fork"
    return "spawn"


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Exit this worker when process ``parent`` is gone (the batch was killed, not stopped)."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


def init_worker(threads: int, parent: int) -> None:
    """Worker start-up: limit threads, and die with the batch process (no orphans after SIGKILL)."""
    set_worker_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="face3d-parent-watch").start()


def run_local(tasks: Sequence[tuple[Item, str | None]], out_root: Path, settings: Mapping[str, Any],
              work: WorkFn, workers: int, on_result: Callable[[ItemResult], None]) -> None:
    """Run ``tasks`` ((item, fingerprint) pairs) in ``workers`` processes; ``on_result`` per item.

    Raises ``KeyboardInterrupt`` after cancelling queued items (running ones stop with their
    worker or finish atomically).
    """
    threads = threads_per_worker(workers)
    queue = list(tasks)
    suspects: list[tuple[Item, str | None]] = []
    while queue or suspects:
        solo = bool(suspects)
        ctx = multiprocessing.get_context(start_method(threads))  # retries after a crash may find the progress bar's thread
        pool = ProcessPoolExecutor(max_workers=1 if solo else workers, mp_context=ctx,
                                   initializer=init_worker, initargs=(threads, os.getpid()))
        running: dict[Future[ItemResult], tuple[Item, str | None]] = {}
        try:
            source = suspects if solo else queue
            while source or running:
                while source and len(running) < in_flight(workers, solo):
                    task = source.pop(0)
                    running[pool.submit(run_item, task[0], out_root, settings, task[1], work, threads)] = task
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        on_result(fut.result())
                    elif isinstance(exc, KeyboardInterrupt):
                        raise KeyboardInterrupt
                    elif not isinstance(exc, BrokenProcessPool):
                        on_result(item_result(task[0], "failed", task[1], error_type=type(exc).__name__,
                                              error_message=str(exc) or repr(exc), exit_code=1))
                    elif solo:
                        on_result(item_result(task[0], "failed", task[1], error_type="WorkerCrashed",
                                              error_message="the worker process died while processing "
                                                            + ", ".join(map(str, task[0].paths)),
                                              exit_code=1))
                    else:
                        suspects.append(task)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                    suspects.extend(running.values())
                    running.clear()
                    break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
