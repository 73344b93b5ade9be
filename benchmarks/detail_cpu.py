"""CPU seconds of the detail stage per photo over different photos, and how far its maps move (issue 26).

    python benchmarks/detail_cpu.py --against CHECKOUT [--runs 3] [--per-folder 6]

A child process per checkout (A = ``--against``, e.g. ``git worktree add /tmp/base main``; B = this
checkout) reconstructs each photo once with default settings (``face3d.reconstruct``), keeping the
fit and the baked texture that its detail stage received (``face3d.pipeline.detail_stage``); then
the children run that detail stage again on request, photo by photo, A and B alternating, and
report its CPU seconds (user + sys, ``torch.set_num_threads(1)``). The photos: every 6th JPEG of
shared ``faces/`` and every 8th of ``faces_more/``, at most ``--per-folder`` each (different people,
poses, lighting; AFLW2000 photos are evaluation data, as here). The fits of the two checkouts are
the same to the bit when only the detail stage differs (the table says so per photo: "same inputs").
Prints per photo the median CPU ms of A and B and max |B - A| / (max A - min A) of the displacement
and normal maps, with the load average. Run it with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import alternating, finish  # noqa: E402

CHILD = r"""
import sys, time
import numpy as np, torch
import face3d
from face3d import pipeline
torch.set_num_threads(1)
photos, dump = sys.argv[2:], sys.argv[1]
got = {}
real = pipeline.detail_stage
def keep(fit, tex, resolution):
    got["args"] = (fit, tex, resolution)
    return real(fit, tex, resolution)
pipeline.detail_stage = keep
args = []
for p in photos:
    got.clear()
    face3d.reconstruct(p)
    args.append(got["args"])
pipeline.detail_stage = real
print("ready", flush=True)
maps = {}
for line in sys.stdin:
    i = int(line)
    fit, tex, res = args[i]
    c = time.process_time()
    det = pipeline.detail_stage(fit, tex, res)
    c = time.process_time() - c
    maps[i] = det
    print(f"{c:.5f}", flush=True)
np.savez(dump, **{f"{k}_{i}": np.asarray(getattr(d, k)) for i, d in maps.items() for k in ("displacement", "normal_map")},
         **{f"inputs_{i}": np.concatenate([np.asarray(a[0].shape, np.float64).ravel(), np.asarray(a[0].expression, np.float64).ravel(),
                                           np.asarray(a[1].texture, np.float64).ravel()[::97]]) for i, a in enumerate(args)})
"""


def photos(per_folder: int) -> list[Path]:
    """Every 6th JPEG of shared faces/ and every 8th of faces_more/, at most ``per_folder`` each."""
    from face3d.testing import shared_data

    root = shared_data()
    return sorted(root.glob("faces/*.jpg"))[::6][:per_folder] + sorted(root.glob("faces_more/*.jpg"))[::8][:per_folder]


def _child(checkout: Path, files: list[Path], dump: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), FACE3D_SERVE="0")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(dump), *map(str, files)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=checkout)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", f"{checkout}: the reconstruction failed"
    return proc


def _ask(proc: subprocess.Popen[str], i: int) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{i}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, required=True, help="the other checkout (A)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--per-folder", type=int, default=6)
    a = ap.parse_args()
    files = photos(a.per_folder)
    tmp = Path(tempfile.mkdtemp(prefix="face3d-detail-cpu-"))
    dumps = [tmp / "A.npz", tmp / "B.npz"]
    procs = [_child(c, files, d) for c, d in zip((a.against.resolve(), ROOT), dumps)]
    load0 = os.getloadavg()
    cpu: list[list[list[float]]] = [[[] for _ in files], [[] for _ in files]]
    for i in range(len(files)):
        for _, k in alternating(a.runs, 2):
            cpu[k][i].append(_ask(procs[k], i))
    finish(procs)
    A, B = np.load(dumps[0]), np.load(dumps[1])
    print(f"detail stage, default settings, {len(files)} photos, {a.runs} runs each, alternating, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| photo | same inputs | A CPU ms (median) | B CPU ms (median) | displacement: max diff / range | normal map: max diff / range |")
    print("|---|---|---|---|---|---|")
    for i, f in enumerate(files):
        diff = [float(np.abs(B[f"{k}_{i}"] - A[f"{k}_{i}"]).max() / max(np.ptp(A[f"{k}_{i}"]), 1e-30)) for k in ("displacement", "normal_map")]
        same = "yes" if np.array_equal(A[f"inputs_{i}"], B[f"inputs_{i}"]) else "no"
        print(f"| {f.parent.name}/{f.name} | {same} | {1e3 * statistics.median(cpu[0][i]):.0f} | {1e3 * statistics.median(cpu[1][i]):.0f} | "
              f"{diff[0]:.1e} | {diff[1]:.1e} |")
    mean = [sum(statistics.median(c) for c in cpu[k]) / len(files) for k in (0, 1)]
    print(f"| mean | | {1e3 * mean[0]:.0f} | {1e3 * mean[1]:.0f} | | |")


if __name__ == "__main__":
    main()
