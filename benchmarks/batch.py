"""Batch throughput: images per minute with the local engine at 1 and 2 workers, and the Ray
engine at 2 workers, over the photos of ``../shared/data/faces`` (real ``face3d.reconstruct``).

    python benchmarks/batch.py [--limit N] [--option photometric=false] [--runs local:1,local:2,ray:2] [--write]

Prints a markdown table: wall seconds, items/min (every item, failed ones included: a photo
without a face costs a detection), ok images/min, the 2-vs-1 worker scaling ratio and the Ray
overhead (Ray wall / local wall at the same worker count, Ray start-up included), and the warm
rate: ok photos per minute between the moment every worker has finished its first photo and the
last photo (:func:`warm_rate`, from the finish times of the result folders), i.e. without the
workers' start-up (imports, model, MediaPipe graphs, cached kernels); and that start-up itself
(:func:`start_up`: until every worker has finished its first photo). The load
average is printed because the machine may be shared. ``--write`` also saves the table to
``benchmarks/results/batch.md`` (appended, so runs in different orders sit side by side).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from face3d.apps.batch import run_batch
from face3d.apps.batch.resume import MARKER
from face3d.io.atomic import write_text
from face3d.testing import shared_data


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def warm_rate(finish_times: list[float], workers: int) -> float:
    """Photos per minute after start-up: ``(n - w) / (t_n - t_w) * 60`` over the sorted finish
    times (seconds) of the ok items, ``w`` = ``workers`` (every worker has finished one photo by
    ``t_w``); NaN when fewer than ``workers + 2`` items finished."""
    t = sorted(finish_times)
    w = max(1, workers)
    if len(t) < w + 2 or t[-1] <= t[w - 1]:
        return float("nan")
    return 60.0 * (len(t) - w) / (t[-1] - t[w - 1])


def start_up(finish_times: list[float], start: float, workers: int) -> float:
    """Seconds from ``start`` until every worker has finished its first photo (the ``workers``-th
    finish time): the workers' start-up plus one photo; NaN with fewer finished photos."""
    t = sorted(finish_times)
    w = max(1, workers)
    return t[w - 1] - start if len(t) >= w else float("nan")


def run(photos: list[Path], workers: int, engine: str, settings: dict[str, Any]) -> dict[str, Any]:
    src = Path(tempfile.mkdtemp(prefix="face3d_bench_in_"))
    out = Path(tempfile.mkdtemp(prefix="face3d_bench_out_"))
    try:
        for p in photos:
            os.symlink(p, src / p.name)
        load0 = os.getloadavg()[0]
        t0, start = time.perf_counter(), time.time()
        report = run_batch(src, out, workers=workers, engine=engine, settings=settings)
        wall = time.perf_counter() - t0
        s = report.summary
        finished = [m.stat().st_mtime for m in out.rglob(MARKER)]
        return {"engine": engine, "workers": workers, "items": s["items"], "ok": s["ok"], "failed": s["failed"],
                "wall": wall, "items_per_min": 60 * s["items"] / wall, "ok_per_min": 60 * s["ok"] / wall,
                "load": (load0, os.getloadavg()[0]), "fit_mean": s["timings_mean"].get("reconstruct", float("nan")),
                "warm_per_min": warm_rate(finished, workers), "start_up": start_up(finished, start, workers)}
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="use the first N photos (sorted by name); 0 = all")
    ap.add_argument("--option", action="append", default=[], help="reconstruct option key=value (repeatable)")
    ap.add_argument("--runs", default="local:1,local:2,ray:2",
                    help="comma-separated engine:workers in the order to run them (default local:1,local:2,ray:2)")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/results/batch.md")
    args = ap.parse_args()
    photos = sorted((shared_data() / "faces").glob("*.jpg"))
    photos = photos[: args.limit] if args.limit else photos
    settings: dict[str, Any] = {"model": "basic", "device": "cpu"}
    settings.update({k: _value(v) for k, v in (o.split("=", 1) for o in args.option)})
    order = [(e, int(w)) for e, w in (r.split(":") for r in args.runs.split(","))]
    runs = [run(photos, w, e, settings) for e, w in order]
    by = {(r["engine"], r["workers"]): r for r in runs}
    lines = [f"Photos: {len(photos)} from shared/data/faces; settings {settings}; "
             f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}.",
             "",
             "| engine | workers | items | ok | failed | wall s | items/min | ok images/min | warm ok images/min | start-up s | mean fit s | load avg start→end |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['engine']} | {r['workers']} | {r['items']} | {r['ok']} | {r['failed']} | {r['wall']:.1f} | "
                     f"{r['items_per_min']:.2f} | {r['ok_per_min']:.2f} | {r['warm_per_min']:.2f} | {r['start_up']:.1f} | {r['fit_mean']:.1f} | "
                     f"{r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    lines.append("")
    if ("local", 1) in by and ("local", 2) in by:
        lines.append(f"Scaling 2 vs 1 workers (local): {by['local', 1]['wall'] / by['local', 2]['wall']:.2f}x")
    if ("local", 2) in by and ("ray", 2) in by:
        ray, loc = by["ray", 2], by["local", 2]
        lines.append(f"Ray vs local wall, 2 workers (Ray start-up included): {ray['wall'] / loc['wall']:.2f}x "
                     f"({ray['wall'] - loc['wall']:+.1f} s)")
    table = "\n".join(lines)
    print(table)
    if args.write:
        dest = Path(__file__).parent / "results" / "batch.md"
        cmd = "python benchmarks/batch.py " + " ".join(
            [f"--limit {args.limit}"] * bool(args.limit) + [f"--option {o}" for o in args.option]
            + [f"--runs {args.runs}", "--write"])
        old = dest.read_text() if dest.is_file() else "# Batch throughput\n"
        write_text(dest, f"{old.rstrip()}\n\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                         f"Command: `{cmd}`\n\n{table}\n")


if __name__ == "__main__":
    main()
