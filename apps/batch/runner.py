"""``run_batch``: expand the input, skip resumed items, run an engine, write the results table.

Output layout of ``OUT``::

    OUT/items/<relative path without suffix>/   one folder per photo (mesh.obj, mesh.glb, ..., batch.json)
    OUT/people/<person id>/                      one folder per person of a manifest (photos fitted jointly)
    OUT/results.parquet, OUT/results.csv         one row per item
    OUT/summary.json                             counts, throughput, mean timings/metrics, errors
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import face3d
from face3d.errors import BadInputError

from .manifest import Item, load_items
from .results import summarize, write_results
from .resume import clean_stale_temps, done_record, fingerprint
from .work import ItemResult, WorkFn, check_reconstruct_settings, item_result, reconstruct_work

ENGINES = ("local", "ray")


@dataclass
class BatchReport:
    """What a batch did: one result per item (sorted by key), the summary, and whether Ctrl-C stopped it."""

    results: list[ItemResult]
    summary: dict[str, Any]
    interrupted: bool

    @property
    def exit_code(self) -> int:
        """0 all ok; 130 interrupted; 1 if an item failed with an internal error; 2 if items had bad input."""
        if self.interrupted:
            return 130
        codes = {r.exit_code for r in self.results if r.status == "failed"}
        if not codes:
            return 0
        return 1 if codes - {2, 3} else max(codes)


def run_batch(source: str | Path, out: str | Path, *, workers: int = 1, engine: str = "local",
              address: str | None = None, resume: bool = False, settings: Mapping[str, Any] | None = None,
              work: WorkFn = reconstruct_work, on_result: Callable[[ItemResult], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> BatchReport:
    """Reconstruct every item of ``source`` into ``out`` and write ``results.*`` and ``summary.json``.

    ``settings`` are the keyword arguments of ``work`` (for the default: of ``face3d.reconstruct``,
    default ``{"model": "default", "device": "cpu"}``); they are part of the resume key.
    ``on_start(total, to_run)`` is called once the resumable items are known, ``on_result`` per
    item. Ctrl-C returns a report with ``interrupted=True`` after writing the table.
    """
    if workers < 1:
        raise BadInputError(f"--workers: must be at least 1, got {workers}")
    if engine not in ENGINES:
        raise BadInputError(f"--engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: the output path exists and is not a folder")
    settings = dict(settings if settings is not None else {"model": "default", "device": "cpu"})
    if work is reconstruct_work:
        check_reconstruct_settings(settings)  # a bad model, device or setting fails once, before any item
    notes: list[str] = []
    items = load_items(source, exclude=out, notes=notes)
    if engine == "ray":
        from .ray_engine import check_address, import_ray

        import_ray()
        check_address(address)  # a wrong --address fails in seconds, before any work
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    key_settings = {"settings": settings, "work": f"{work.__module__}.{work.__qualname__}",
                    "face3d": face3d.__version__}

    done: dict[str, ItemResult] = {}
    tasks: list[tuple[Item, str | None]] = []
    for item in items:
        fp = fingerprint(item.paths, key_settings)
        rec = done_record(out / item.key, fp) if resume else None
        if rec is None:
            tasks.append((item, fp))
        else:
            res = ItemResult.from_dict(rec)
            res.resumed = True
            done[item.key] = res
    if on_start is not None:
        on_start(len(items), len(tasks))

    def collect(res: ItemResult) -> None:
        done[res.key] = res
        if on_result is not None:
            on_result(res)

    for res in list(done.values()):
        if on_result is not None:
            on_result(res)

    t0 = time.perf_counter()
    interrupted = False
    try:
        if engine == "local":
            from .local import run_local

            run_local(tasks, out, settings, work, workers, collect)
        else:
            from .ray_engine import run_ray

            run_ray(tasks, out, settings, work, workers, collect, address=address)
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t0
    for item, fp in tasks:
        if item.key not in done:
            rec = done_record(out / item.key, fp)
            done[item.key] = ItemResult.from_dict(rec) if rec else item_result(item, "interrupted", fp)
    results = sorted(done.values(), key=lambda r: r.key)
    summary = summarize(results, wall, {"engine": engine, "workers": workers, "settings": settings,
                                        "input": str(source), "stopped_by_ctrl_c": interrupted, "notes": notes})
    write_results(out, results, summary)
    return BatchReport(results=results, summary=summary, interrupted=interrupted)
