"""CPU seconds per photo in a warm process, default settings (issue 26, batch throughput).

    python benchmarks/photo_cpu.py [--photo PATH] [--runs 6] [--against CHECKOUT]

A child process reconstructs the photo (``face3d.reconstruct``, default settings) and saves it
twice to warm up, then on each request reconstructs and saves it again into a fresh temporary
folder and reports wall and CPU seconds (user + sys of the process, all its threads) of the
reconstruction and of the save, and the stages' wall seconds (``Reconstruction.timings``). The PNG
memo is emptied before each save: the same photo reconstructs to the same maps, which a batch of
different photos never does, and the memo would skip their encoding (≈ 0.2 CPU s). With
``--against`` (another checkout, e.g. ``git worktree add /tmp/base HEAD~3``) a second child runs
that checkout's code and the requests alternate between the two (A = ``--against``, B = this
checkout), so both see the same load. Prints medians and the load average, then how far B's last
result is from A's (largest difference relative to the largest value, per array: the photometric
fit differs in the 7th-8th digit from process to process, see benchmarks/save.py). Run it with
``OMP_NUM_THREADS=1``.
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
import shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
import face3d
from face3d.io import imagefile
photo, dump = sys.argv[1], sys.argv[2]
root = Path(tempfile.mkdtemp(prefix="face3d-photo-cpu-"))
def once(i):
    t, c = time.perf_counter(), time.process_time()
    rec = face3d.reconstruct(photo)
    imagefile._PNG_MEMO.clear()  # a new photo's maps are encoded anew (the same photo gives the same maps)
    t1, c1 = time.perf_counter(), time.process_time()
    rec.save(root / f"r{i}")
    t2, c2 = time.perf_counter(), time.process_time()
    shutil.rmtree(root / f"r{i}")
    return rec, (t1 - t, c1 - c, t2 - t1, c2 - c1)
once(0); once(1)
print("ready", flush=True)
i = 2
for line in sys.stdin:
    rec, r = once(i)
    i += 1
    st = rec.timings
    print(" ".join(f"{x:.4f}" for x in r), " ".join(f"{k}={v:.4f}" for k, v in st.items() if k != "total"), flush=True)
np.savez(dump, **{k: np.asarray(getattr(rec, k)) for k in ("shape", "expression", "pose", "sh", "texture", "displacement", "normal_map", "vertices_detailed")
                  if getattr(rec, k, None) is not None})
shutil.rmtree(root, ignore_errors=True)
"""


def _child(checkout: Path, photo: str, dump: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), FACE3D_SERVE="0")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, photo, str(dump)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=checkout)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", f"{checkout}: the reconstruction failed"
    return proc


def _ask(proc: subprocess.Popen[str]) -> tuple[list[float], dict[str, float]]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("run\n")
    proc.stdin.flush()
    words = proc.stdout.readline().split()
    return [float(x) for x in words[:4]], {k: float(v) for k, v in (w.split("=") for w in words[4:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", default=None, help="default: shared/data/faces/hrn_00016.jpg")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--against", type=Path, default=None, help="another checkout to compare with (runs alternate)")
    a = ap.parse_args()
    if a.photo is None:
        from face3d.testing import shared_data

        a.photo = str(shared_data() / "faces" / "hrn_00016.jpg")
    a.photo = str(Path(a.photo).resolve())  # the children run in their checkouts
    checkouts = ([a.against.resolve()] if a.against else []) + [ROOT]
    names = ([f"A {a.against}"] if a.against else []) + [f"B {ROOT}" if a.against else str(ROOT)]
    tmp = Path(tempfile.mkdtemp(prefix="face3d-photo-cpu-"))
    dumps = [tmp / f"{k}.npz" for k in range(len(checkouts))]
    procs = [_child(c, a.photo, d) for c, d in zip(checkouts, dumps)]
    load0 = os.getloadavg()
    got: list[list[tuple[list[float], dict[str, float]]]] = [[] for _ in procs]
    for _, k in alternating(a.runs, len(procs)):
        got[k].append(_ask(procs[k]))
    finish(procs)
    print(f"{Path(a.photo).name}, default settings, warm process, {a.runs} runs each, alternating, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}; medians\n")
    stages = list(got[0][0][1])
    print("| code | CPU s per photo (reconstruct + save) | reconstruct CPU s | save CPU s | reconstruct wall s | "
          + " | ".join(f"{s} wall s" for s in stages) + " |")
    print("|---" * (5 + len(stages)) + "|")
    for name, g in zip(names, got):
        med = [statistics.median(r[0][j] for r in g) for j in range(4)]
        st = [statistics.median(r[1][s] for r in g) for s in stages]
        print(f"| {name} | {med[1] + med[3]:.3f} | {med[1]:.3f} | {med[3]:.3f} | {med[0]:.3f} | " + " | ".join(f"{x:.3f}" for x in st) + " |")
    if len(dumps) == 2:
        A, B = np.load(dumps[0]), np.load(dumps[1])
        print("\nB's last result against A's (max |B - A| / max |A|): "
              + ", ".join(f"{k} {np.abs(B[k] - A[k]).max() / max(np.abs(A[k]).max(), 1e-30):.2g}" for k in A.files))


if __name__ == "__main__":
    main()
