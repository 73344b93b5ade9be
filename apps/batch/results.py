"""The results of a batch: ``results.parquet`` and ``results.csv`` (one row per item) + ``summary.json``.

Columns: ``key, person, inputs`` (``;``-joined), ``n_inputs, status, error_type,
error_message, exit_code, seconds, resumed, fingerprint``, then ``time_<stage>`` (seconds) and
``metric_<name>`` for every stage/metric any item reported (empty where an item has none).
Parquet needs pyarrow (``face3d[dist]``); CSV and JSON are always written. All atomically.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from face3d.io.atomic import atomic_path, write_text

from .work import ItemResult

BASE_COLUMNS: tuple[str, ...] = ("key", "person", "inputs", "n_inputs", "status", "error_type", "error_message",
                                 "exit_code", "seconds", "resumed", "fingerprint")


def result_rows(results: Sequence[ItemResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flatten results (sorted by key) into (columns, rows) with ``time_*`` and ``metric_*`` columns."""
    stages = sorted({s for r in results for s in r.timings})
    metrics = sorted({m for r in results for m in r.metrics})
    columns = list(BASE_COLUMNS) + [f"time_{s}" for s in stages] + [f"metric_{m}" for m in metrics]
    rows = []
    for r in sorted(results, key=lambda r: r.key):
        row: dict[str, Any] = {"key": r.key, "person": r.person, "inputs": ";".join(r.inputs),
                               "n_inputs": len(r.inputs), "status": r.status, "error_type": r.error_type,
                               "error_message": r.error_message, "exit_code": r.exit_code,
                               "seconds": float(r.seconds), "resumed": bool(r.resumed), "fingerprint": r.fingerprint}
        row.update({f"time_{s}": r.timings.get(s) for s in stages})
        row.update({f"metric_{m}": r.metrics.get(m) for m in metrics})
        rows.append(row)
    return columns, rows


def summarize(results: Sequence[ItemResult], wall_seconds: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Counts, throughput (photos per minute over the items run now), mean timings and metrics, errors."""
    status = Counter(r.status for r in results)
    ran = [r for r in results if r.status == "ok" and not r.resumed]
    photos = sum(len(r.inputs) for r in ran)
    ok = [r for r in results if r.status == "ok"]
    summary: dict[str, Any] = {
        "items": len(results),
        "ok": status.get("ok", 0),
        "failed": status.get("failed", 0),
        "interrupted": status.get("interrupted", 0),
        "resumed": sum(1 for r in results if r.resumed),
        "wall_seconds": round(wall_seconds, 3),
        "images_per_minute": round(60.0 * photos / wall_seconds, 3) if wall_seconds > 0 and photos else 0.0,
        "timings_mean": _means([r.timings for r in ok]),
        "metrics_mean": _means([r.metrics for r in ok]),
        "errors": dict(sorted(Counter(r.error_type for r in results if r.error_type).items())),
    }
    summary.update(extra or {})
    return summary


def _means(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = sorted({k for d in dicts for k in d})
    return {k: round(statistics.fmean(d[k] for d in dicts if k in d), 6) for k in keys}


def write_results(out: Path, results: Sequence[ItemResult], summary: Mapping[str, Any]) -> list[Path]:
    """Write ``results.csv``, ``summary.json`` and (with pyarrow) ``results.parquet``; returns paths."""
    columns, rows = result_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    written = [write_text(out / "results.csv", buf.getvalue()),
               write_text(out / "summary.json", json.dumps(dict(summary), indent=2, sort_keys=True) + "\n")]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    types = {"n_inputs": pa.int64(), "exit_code": pa.int64(), "seconds": pa.float64(), "resumed": pa.bool_()}
    schema = pa.schema([(c, types.get(c, pa.float64() if c.startswith(("time_", "metric_")) else pa.string()))
                        for c in columns])
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(out / "results.parquet") as tmp:
        pq.write_table(table, tmp)
    written.append(out / "results.parquet")
    return written
