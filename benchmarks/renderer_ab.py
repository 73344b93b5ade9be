"""Interleaved A/B of the renderer workload of ``benchmarks/speed.py`` (default model, 256², vertex
colours, SH, antialiased, forward + L1-style loss + backward, one torch thread) between two
checkouts, each run a fresh process, alternating A B A B ... so a drifting machine load hits both
alike. Prints per-run medians (wall ms and CPU ms per iteration) and a summary table.

    OMP_NUM_THREADS=1 python benchmarks/renderer_ab.py --base /path/to/parent-checkout --runs 5 --reps 40

(make the parent checkout with ``git worktree add --detach /tmp/base <commit>``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import RENDER_SCRIPT  # noqa: E402  (the same workload as benchmarks/speed.py's renderer rows)

WARMUP = 3  # iterations per run not timed


def run_once(root: Path, reps: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(reps), str(WARMUP)], env=env, capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="checkout of the commit to compare against")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=40, help="iterations per run (the first 3 are not timed)")
    a = ap.parse_args()
    trees = {"base": a.base.resolve(), "this": ROOT}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    load0 = os.getloadavg()[0]
    for i in range(a.runs):
        for name, root in trees.items():
            r = run_once(root, a.reps)
            got[name].append(r)
            print(f"run {i + 1} {name}: {r['ms']:.1f} ms wall, {r['cpu_ms']:.1f} ms CPU, min {r['min_ms']:.1f} ms", flush=True)
    print(f"\nload average {load0:.1f} → {os.getloadavg()[0]:.1f}\n")
    print("| checkout | runs | wall ms/iter (median of run medians) | CPU ms/iter | fastest iteration ms |")
    print("|---|---|---|---|---|")
    for name, root in trees.items():
        rs = got[name]
        print(f"| {name} ({root}) | {len(rs)} | {statistics.median(r['ms'] for r in rs):.1f} | "
              f"{statistics.median(r['cpu_ms'] for r in rs):.1f} | {min(r['min_ms'] for r in rs):.1f} |")
    ratio = statistics.median(r["cpu_ms"] for r in got["base"]) / statistics.median(r["cpu_ms"] for r in got["this"])
    print(f"\nCPU speed-up this / base: {ratio:.2f}×")


if __name__ == "__main__":
    main()
