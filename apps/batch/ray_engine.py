"""The Ray engine: the same per-item work (``run_item``) as Ray tasks on a local or remote cluster.

``address=None`` starts a private local Ray instance; otherwise ``ray.init(address=...)`` joins
a running cluster (``"auto"`` or ``"ray://host:10001"``). Every node must have face3d installed
and see the input and output paths (a shared file system), because tasks read the photos and
write their item folders directly. ``RAY_AUTH_MODE`` defaults to ``disabled`` so nothing is
written to ``~/.ray``. Results are identical to the local engine: both call ``run_item``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from apps.batch.manifest import Item
from apps.batch.work import ItemResult, WorkFn, item_result, run_item
from face3d.errors import MissingDependencyError


def import_ray() -> Any:
    """Import ray (``RAY_AUTH_MODE=disabled`` unless set) or raise :class:`MissingDependencyError`."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "dist", "the Ray batch engine (--engine ray)") from None
    return ray


def run_ray(tasks: Sequence[tuple[Item, str | None]], out_root: Path, settings: Mapping[str, Any],
            work: WorkFn, workers: int, on_result: Callable[[ItemResult], None],
            address: str | None = None) -> None:
    """Run ``tasks`` as Ray tasks, at most ``workers`` in flight, each with its share of CPUs.

    A task whose worker dies is recorded as ``WorkerCrashed``; Ctrl-C cancels what is in
    flight and raises ``KeyboardInterrupt``. A Ray instance started here is shut down here.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                     num_cpus=os.cpu_count() or 1)
    try:
        total = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, total // max(1, workers))
        remote = ray.remote(num_cpus=threads, max_retries=0)(run_item)
        queue = list(tasks)
        running: dict[Any, tuple[Item, str | None]] = {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    item, fp = queue.pop(0)
                    running[remote.remote(item, out_root, dict(settings), fp, work, threads)] = (item, fp)
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
