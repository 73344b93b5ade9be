"""The save stage alone (issue 26): ``Reconstruction.write_files`` of one warm reconstruction.

    python benchmarks/save.py [--photo PATH] [--runs 8] [--against CHECKOUT] [--cli]

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

``--cli``: instead, ``face3d reconstruct PHOTO -o DIR --json`` through the resident worker (each
checkout with its own caches and worker, started by a first in-process run and warmed by a second);
wall s, CPU s of the client plus the worker (its ``cpu_s`` status before and after), and the
save stage as the worker timed it (``timings_s.save`` of the JSON summary).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import alternating, finish  # noqa: E402
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


@functools.cache
def _speed() -> Any:
    from face3d.testing import load_script

    return load_script(Path(__file__).with_name("speed.py"), "face3d_benchmark_speed")


def _environ(env: dict[str, str]) -> contextlib.AbstractContextManager[None]:
    """``os.environ`` is ``env`` inside the block (``benchmarks/speed.py``'s helper)."""
    return _speed().environ(env)


class _Cli:
    """``face3d reconstruct`` of one checkout through its own resident worker."""

    def __init__(self, checkout: Path, photo: str, tmp: Path) -> None:
        self.checkout, self.photo, self.out = checkout, photo, tmp / "out"
        self.env = dict(os.environ, PYTHONPATH=str(checkout), FACE3D_SERVE="1", FACE3D_CACHE=str(tmp / "face3d"),
                        NUMBA_CACHE_DIR=str(tmp / "numba"))

    def worker(self) -> dict[str, Any] | None:
        from face3d.apps import serve

        with _environ(self.env):
            live = [info for _, info in serve.workers() if info and info.get("op") == "status"]
        return live[0] if live else None

    def stop(self) -> None:
        from face3d.apps import serve

        with _environ(self.env):
            serve.stop_all()

    def run(self) -> tuple[float, float, float, bool]:
        """(wall s, CPU s client + worker, save s, went through the worker)."""
        shutil.rmtree(self.out, ignore_errors=True)
        before = self.worker()
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "face3d.apps.cli", "reconstruct", self.photo, "-o", str(self.out), "--json"],
                              env=self.env, capture_output=True, text=True, cwd=self.checkout, check=False)
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise RuntimeError(f"{self.checkout}: reconstruct failed: {proc.stderr[-1500:]}")
        after = self.worker()
        through = before is not None and after is not None and after["requests"] == before["requests"] + 1
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime + (after["cpu_s"] - before["cpu_s"] if through else 0.0)  # type: ignore[index]
        return wall, cpu, float(json.loads(proc.stdout)["timings_s"]["save"]), through

    def start(self) -> None:
        self.run()  # in-process; starts the worker
        t0 = time.perf_counter()
        while self.worker() is None:
            if time.perf_counter() - t0 > 180:
                raise RuntimeError(f"{self.checkout}: no worker started")
            time.sleep(0.2)
        self.run()  # the worker's first request


def cli_ab(checkouts: list[Path], names: list[str], photo: str, runs: int) -> None:
    """Interleaved runs of ``face3d reconstruct`` through each checkout's worker; prints a table."""
    tmp = Path(tempfile.mkdtemp(prefix="face3d-save-cli-"))
    clis = [_Cli(c, photo, tmp / str(k)) for k, c in enumerate(checkouts)]
    try:
        for c in clis:
            c.start()
        load0 = os.getloadavg()
        got: list[list[tuple[float, float, float]]] = [[] for _ in clis]
        for _, k in alternating(runs, len(clis)):
            wall, cpu, save, through = clis[k].run()
            if not through:
                raise RuntimeError(f"{names[k]}: the run did not go through the worker")
            got[k].append((wall, cpu, save))
        print(f"face3d reconstruct {Path(photo).name} -o out/ through the resident worker, {runs} runs each, interleaved, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}\n")
        print("| code | wall s median (min) | CPU s client + worker median | save stage s (worker) median (min) |\n|---|---|---|---|")
        for name, g in zip(names, got):
            w, c, s = ([r[j] for r in g] for j in range(3))
            print(f"| {name} | {statistics.median(w):.2f} ({min(w):.2f}) | {statistics.median(c):.2f} | {statistics.median(s):.3f} ({min(s):.3f}) |")
    finally:
        for c in clis:
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", default=None, help="default: shared/data/faces/hrn_00016.jpg")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--against", type=Path, default=None, help="another checkout to compare with (runs alternate)")
    ap.add_argument("--cli", action="store_true", help="time `face3d reconstruct` through the resident worker instead")
    a = ap.parse_args()
    if a.photo is None:
        from face3d.testing import shared_data

        a.photo = str(shared_data() / "faces" / "hrn_00016.jpg")
    names = ([f"A {a.against}"] if a.against else []) + [f"B {ROOT}" if a.against else str(ROOT)]
    if a.cli:
        cli_ab(([a.against.resolve()] if a.against else []) + [ROOT], names, a.photo, a.runs)
        return
    procs = ([_child(a.against.resolve(), a.photo)] if a.against else []) + [_child(ROOT, a.photo)]
    load0 = os.getloadavg()
    runs: list[list[tuple[float, float]]] = [[] for _ in procs]
    for _, k in alternating(a.runs, len(procs)):
        w, c = map(float, _ask(procs[k], "run").split())
        runs[k].append((w, c))
    digests = [_ask(p, "digest") for p in procs]
    finish(procs)
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
