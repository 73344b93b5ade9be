"""A live progress bar for batches: done / failed / remaining, images per minute and ETA (rich)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from .work import ItemResult


@dataclass
class Counts:
    """Running totals of a batch; ``rate`` is photos per minute over the items run in this process."""

    total: int
    done: int = 0
    failed: int = 0
    photos: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def rate(self, now: float | None = None) -> float:
        minutes = ((time.monotonic() if now is None else now) - self.started) / 60.0
        return self.photos / minutes if minutes > 0 else 0.0

    def add(self, res: ItemResult) -> None:
        if res.status == "ok":
            self.done += 1
            if not res.resumed:
                self.photos += len(res.inputs)
        else:
            self.failed += 1

    def describe(self, now: float | None = None) -> str:
        return (f"done {self.done}  failed {self.failed}  remaining {self.remaining}  "
                f"{self.rate(now):.1f} img/min")


class BatchProgress:
    """Context manager showing a rich progress bar; call it with each :class:`ItemResult`.

    ``total`` counts every item, ``to_run`` those not resumed (the bar and its ETA cover these).
    The bar (and rich's refresh thread) starts with the first result or at exit, so the local
    engine's workers can fork from a single-threaded process (:func:`apps.batch.local.start_method`).
    """

    def __init__(self, total: int, to_run: int | None = None, console: Console | None = None,
                 enabled: bool = True) -> None:
        self.counts = Counts(total)
        self._to_run = total if to_run is None else to_run
        self._progress = Progress(TextColumn("[bold]face3d batch"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total}"), TextColumn("{task.description}"),
                                  TextColumn("ETA"), TimeRemainingColumn(),
                                  console=console, disable=not enabled, transient=False)
        self._task: TaskID | None = None

    def __enter__(self) -> "BatchProgress":
        if self._progress.console.is_terminal and not self._progress.disable:
            self._progress.console.print(f"face3d batch: {self._to_run} of {self.counts.total} item(s) to run, starting the workers")
        return self

    def _start(self) -> TaskID:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.counts.describe(), total=self._to_run)
        return self._task

    def __call__(self, res: ItemResult) -> None:
        self.counts.add(res)
        self._progress.update(self._start(), advance=0 if res.resumed else 1, description=self.counts.describe())

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.update(self._start(), description=self.counts.describe())
        self._progress.stop()
