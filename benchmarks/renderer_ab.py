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

SCRIPT = r"""
import time, json, sys, torch
torch.set_num_threads(1)
from face3d import renderers as R
from face3d.models import load_model
m = load_model("default")
v = m.template[None].clone()
v = v - v.mean(1, keepdim=True)
cam = R.PerspectiveCamera(K=R.perspective_from_fov(20.0, 256, 256).float()[None], R=torch.eye(3)[None],
                          t=torch.tensor([[0.0, 0.0, -0.7]]), width=256, height=256)
cols = torch.full_like(v, 0.6)
sh = R.ambient_sh(1.0)
times, cpus = [], []
for i in range(int(sys.argv[1])):
    vv = v.clone().requires_grad_(True)
    t0, c0 = time.perf_counter(), time.process_time()
    out = R.render_mesh(R.Mesh(vv, m.faces), cam, vertex_colors=cols, sh=sh)
    out.image.abs().mean().backward()
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
t, c = sorted(times[3:]), sorted(cpus[3:])
print(json.dumps({"ms": t[len(t) // 2] * 1000, "cpu_ms": c[len(c) // 2] * 1000, "min_ms": t[0] * 1000}))
"""


def run_once(root: Path, reps: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(reps)], env=env, capture_output=True, text=True, check=True, cwd=root)
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
