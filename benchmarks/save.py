"""The save stage alone (issue 26): ``Reconstruction.write_files`` of one warm reconstruction.

    python benchmarks/save.py [--photo PATH] [--runs 8] [--against CHECKOUT]

A child process reconstructs the photo once (default settings), writes the result twice to warm
up, then writes it ``--runs`` times into fresh temporary folders, each time with the PNG memo
emptied (a new photo's textures are encoded anew). With ``--against`` (another checkout of the
repository, e.g. ``git worktree add /tmp/base HEAD~2``) a second child runs that checkout's code and
the runs alternate between the two (A = ``--against``, B = this checkout), so both see the same
load. Prints the median and minimum wall and CPU seconds (user + sys of the child, all its threads)
and the load average. The names of the files byte-identical in A's and B's last run are printed
(the photometric fit itself differs in the 8th digit from process to process, which shows as
different mesh files; the writers are compared byte for byte by tests/test_io_save_bytes.py).
Run it with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import hashlib, shutil, sys, tempfile, time
from pathlib import Path
import face3d
from face3d.io import imagefile
from face3d.io.atomic import output_dir
rec = face3d.reconstruct(sys.argv[1])
root = Path(tempfile.mkdtemp(prefix="face3d-save-bench-"))
def once(i):
    imagefile._PNG_MEMO.clear()
    t, c = time.perf_counter(), time.process_time()
    with output_dir(root / f"r{i}") as tmp:
        rec.write_files(tmp)
    return time.perf_counter() - t, time.process_time() - c
once(0); once(1)
print("ready", flush=True)
i = 2
for line in sys.stdin:
    if line.strip() == "digest":
        print(" ".join(f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}" for p in sorted((root / f"r{i - 1}").iterdir())), flush=True)
        continue
    w, c = once(i)
    shutil.rmtree(root / f"r{i - 1}")
    i += 1
    print(f"{w:.4f} {c:.4f}", flush=True)
shutil.rmtree(root, ignore_errors=True)
"""


def _child(checkout: Path, photo: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), FACE3D_SERVE="0")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, photo], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=checkout)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", f"{checkout}: the reconstruction failed"
    return proc


def _ask(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", default=str(ROOT.parent / "shared" / "data" / "faces" / "hrn_00016.jpg"))
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--against", type=Path, default=None, help="another checkout to compare with (runs alternate)")
    a = ap.parse_args()
    names = ([f"A {a.against}"] if a.against else []) + [f"B {ROOT}" if a.against else str(ROOT)]
    procs = ([_child(a.against.resolve(), a.photo)] if a.against else []) + [_child(ROOT, a.photo)]
    load0 = os.getloadavg()
    runs: list[list[tuple[float, float]]] = [[] for _ in procs]
    for i in range(a.runs):
        for k in (range(len(procs)) if i % 2 == 0 else reversed(range(len(procs)))):
            w, c = map(float, _ask(procs[k], "run").split())
            runs[k].append((w, c))
    digests = [_ask(p, "digest") for p in procs]
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    print(f"save stage of {Path(a.photo).name}, {a.runs} runs each, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| code | wall s median (min) | CPU s median (min) |\n|---|---|---|")
    for name, r in zip(names, runs):
        w, c = [x for x, _ in r], [y for _, y in r]
        print(f"| {name} | {statistics.median(w):.3f} ({min(w):.3f}) | {statistics.median(c):.3f} ({min(c):.3f}) |")
    if len(digests) == 2:
        same = [x.split(":")[0] for x, y in zip(digests[0].split(), digests[1].split()) if x == y]
        print(f"\nfiles identical in A and B: {', '.join(same) or 'none'}")


if __name__ == "__main__":
    main()
