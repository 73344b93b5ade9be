"""The Ray engine: the same per-item work (``run_item``) as Ray tasks on a local or remote cluster.

``address=None`` starts a private local Ray instance; otherwise ``ray.init(address=...)`` joins
a running cluster (``"auto"`` or ``"ray://host:10001"``). Every node must have face3d installed
and see the input and output paths (a shared file system), because tasks read the photos and
write their item folders directly. ``RAY_AUTH_MODE`` defaults to ``disabled`` so nothing is
written to ``~/.ray``. Results are identical to the local engine: both call ``run_item``.

Lifetime: an ``--address`` is probed with a TCP connection first (``CONNECT_TIMEOUT_S``), so a
wrong address fails in seconds instead of hanging. Every task watches the driver process (when on
the driver's machine) and exits if it dies; a Ray instance started here is also watched by a small
process that kills its Ray processes if the driver is killed (``kill -9``): nothing keeps running
or writing items after the batch is gone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from face3d.errors import BackendError, BadInputError, MissingDependencyError

from .local import in_flight
from .manifest import Item
from .work import ItemResult, WorkFn, item_result, run_item

CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """Import ray (``RAY_AUTH_MODE=disabled`` unless set) or raise :class:`MissingDependencyError`."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "dist", "the Ray batch engine (--engine ray)") from None
    return ray


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """BadInputError unless something accepts a TCP connection at ``address`` ('host:port',
    '[v6]:port' or 'ray://host:port') within ``timeout`` seconds; None and 'auto' are not probed."""
    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"--address {address!r}: expected 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise BadInputError(f"--address {address}: cannot connect within {timeout:g} s ({why}); is a Ray cluster running "
                            f"there ('ray start --head')? Leave --address out to start a local one") from None


def _watch_driver(driver: int, poll_s: float = 0.5) -> None:
    """Exit this (Ray worker) process as soon as process ``driver`` is gone."""
    while True:
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
        time.sleep(poll_s)


_WATCHED: set[int] = set()


def run_item_watched(driver: tuple[str, int], item: Item, out_root: Path, settings: Mapping[str, Any], fp: str | None,
                     work: WorkFn, threads: int) -> ItemResult:
    """:func:`run_item` in a Ray worker that dies with the driver ``(hostname, pid)`` when on its machine."""
    if driver[0] == socket.gethostname() and driver[1] not in _WATCHED:
        _WATCHED.add(driver[1])
        threading.Thread(target=_watch_driver, args=(driver[1],), daemon=True, name="face3d-driver-watch").start()
    return run_item(item, out_root, settings, fp, work, threads)


_WATCHDOG = """
import os, sys, time
import psutil
driver, me, seen = psutil.Process(int(sys.argv[1])), os.getpid(), {}
def alive():
    try:
        return driver.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
while alive():
    try:
        seen.update((c.pid, c) for c in driver.children(recursive=True) if c.pid != me)
    except psutil.Error:
        pass
    time.sleep(0.5)
for p in list(seen.values()):
    try:
        victims = [p] + p.children(recursive=True)
    except psutil.Error:
        victims = [p]
    for v in victims:
        try:
            v.kill()  # psutil checks the start time: a reused pid is never hit
        except psutil.Error:
            pass
"""


def _start_watchdog() -> subprocess.Popen[bytes] | None:
    """A process that, if this driver dies, kills every process the driver started (the Ray
    instance: GCS, raylet, its agents and workers; collected every 0.5 s while the driver lives)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - ray imports its own copy (ray/thirdparty_files)
        return None
    where = str(Path(psutil.__file__).resolve().parents[1])  # the watchdog does not import ray, which adds this path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (where, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())], start_new_session=True, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_ray(tasks: Sequence[tuple[Item, str | None]], out_root: Path, settings: Mapping[str, Any],
            work: WorkFn, workers: int, on_result: Callable[[ItemResult], None],
            address: str | None = None) -> None:
    """Run ``tasks`` as Ray tasks, ``workers`` running at once with their share of the CPUs and one
    more submitted (:func:`~face3d.apps.batch.local.in_flight`) so that Ray starts it when one ends.

    A task whose worker dies is recorded as ``WorkerCrashed``; Ctrl-C cancels what is in
    flight and raises ``KeyboardInterrupt``. A Ray instance started here is shut down here.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    watchdog = None
    if started:
        check_address(address)
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level="WARNING")
            else:
                ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                         num_cpus=os.cpu_count() or 1)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise BackendError(f"Ray: cannot {'join ' + address if address else 'start a local instance'} "
                               f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})") from None
        if not address:
            watchdog = _start_watchdog()
    driver = (socket.gethostname(), os.getpid())
    try:
        total = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, total // max(1, workers))
        remote = ray.remote(num_cpus=threads, max_retries=0)(run_item_watched)
        queue = list(tasks)
        running: dict[Any, tuple[Item, str | None]] = {}
        try:
            while queue or running:
                while queue and len(running) < in_flight(workers):  # one queued: a freed CPU starts it at once
                    item, fp = queue.pop(0)
                    running[remote.remote(driver, item, out_root, dict(settings), fp, work, threads)] = (item, fp)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    item, fp = running.pop(ref)
                    try:
                        on_result(ray.get(ref))
                    except ray.exceptions.RayError as exc:
                        crashed = isinstance(exc, (ray.exceptions.WorkerCrashedError,
                                                   ray.exceptions.NodeDiedError))
                        on_result(item_result(item, "failed", fp,
                                              error_type="WorkerCrashed" if crashed else type(exc).__name__,
                                              error_message=str(exc).strip().splitlines()[-1] if str(exc) else repr(exc),
                                              exit_code=1))
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
