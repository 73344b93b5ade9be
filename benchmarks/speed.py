"""Speed where users feel it (issue 26): the CLI end to end, cold and warm, with and without a busy
neighbour process, the renderer under torch's default threads, and batch throughput.

    python benchmarks/speed.py [--runs 3] [--sections cli,busy,renderer,batch] [--batch-limit 20] [--batch-folders faces] [--json out.json]

Every command runs as a child process; wall seconds and the child's CPU seconds (user + sys, from
``getrusage(RUSAGE_CHILDREN)``) are printed, medians over ``--runs``. CPU time is the fairer figure
on a shared machine (other processes steal wall time, not CPU time); the load average before and
after each row is printed too.

- ``cli``: ``face3d --help``; ``face3d reconstruct PHOTO -o DIR`` and ``face3d animate --audio WAV -o
  talk.glb`` cold (a fresh ``FACE3D_CACHE`` and ``NUMBA_CACHE_DIR``: the first run after install, numba
  kernels compiled, UV raster and mirror map computed) and warm (the same caches, the next runs);
  ``face3d warmup`` (README's install step) in fresh caches, then the first ``reconstruct`` after it.
  Default configuration: the environment's OMP/MKL thread variables are removed.
  These rows run in-process (``FACE3D_SERVE=0``). Then the same commands with the resident worker
  (``apps/serve.py``, the default): the first ``reconstruct`` runs in-process and starts the worker,
  later ``reconstruct`` and ``animate`` runs go through it; their CPU seconds are the client's plus
  the worker's (its ``cpu_s`` status before and after each run).
- ``busy``: the warm ``reconstruct`` of ``cli`` alone and beside a busy neighbour
  (``python -c 'while 1: pass'``), runs interleaved, default configuration and ``OMP_NUM_THREADS=1``;
  the ratios of the median wall and CPU times. The neighbour runs in its own session (another
  terminal's program); one row puts it in the benchmark's own session, where Linux's autogroup
  scheduler halves the session's CPU share whatever the measured program does (ratio ~2 on a
  loaded machine by construction).
- ``renderer``: ``face3d.renderers.render_mesh`` of the default model (48,836 triangles) at 256², forward
  + backward, torch's default threads, alone and beside a busy neighbour, with the OpenMP wait policy
  face3d sets (PASSIVE), unset (libgomp's default, what a process got before face3d set it: the
  script imports torch before renderers) and ACTIVE (always spinning).
- ``batch``: ``face3d.apps.batch.run_batch`` over the first ``--batch-limit`` photos of shared/data/faces
  (``--batch-folders faces,faces_more`` for both folders) with the default settings (default model,
  texture, detail), local engine with 1 and 2 workers (``--batch-runs`` adds Ray), photos/min and the
  warm rate without the workers' start-up (``benchmarks/batch.py`` does the timing).

The stage-by-stage breakdown of one reconstruction is ``benchmarks/reconstruct.py --section speed``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "NUMBA_NUM_THREADS")
BUSY = "while 1: pass"
RENDER_SCRIPT = r"""
import time, json, sys, torch
from face3d import renderers as R
from face3d.models import load_model
m = load_model("default")
v = m.template[None].clone()
v = v - v.mean(1, keepdim=True)
cam = R.PerspectiveCamera(K=R.perspective_from_fov(20.0, 256, 256).float()[None], R=torch.eye(3)[None],
                          t=torch.tensor([[0.0, 0.0, -0.7]]), width=256, height=256)
cols = torch.full_like(v, 0.6)
sh = R.ambient_sh(1.0)
skip = int(sys.argv[2]) if len(sys.argv) > 2 else 2  # warm-up iterations, not timed
times, cpus = [], []
for i in range(int(sys.argv[1])):
    vv = v.clone().requires_grad_(True)
    t0, c0 = time.perf_counter(), time.process_time()
    out = R.render_mesh(R.Mesh(vv, m.faces), cam, vertex_colors=cols, sh=sh)
    out.image.abs().mean().backward()
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
t, c = sorted(times[skip:]), sorted(cpus[skip:])
print(json.dumps({"threads": torch.get_num_threads(), "ms": t[len(t) // 2] * 1000, "cpu_ms": c[len(c) // 2] * 1000,
                  "min_ms": t[0] * 1000}))
"""
"""The renderer workload (``python -c RENDER_SCRIPT REPS [WARMUP]``): the default model at 256², vertex
colours, SH, antialiased, forward + L1-style loss + backward; prints JSON with the torch threads and the
median wall and CPU ms and the fastest wall ms per iteration (also ``benchmarks/renderer_ab.py``'s workload)."""


def alternating(runs: int, n: int) -> Iterator[tuple[int, int]]:
    """(run, checkout) pairs for A/B runs of ``n`` checkouts: all of them each run, every other run in
    reverse order (A B, B A, A B, ...), so a drifting machine load hits each alike."""
    for i in range(runs):
        for k in (range(n) if i % 2 == 0 else reversed(range(n))):
            yield i, k


def finish(procs: list[subprocess.Popen]) -> None:
    """Close each A/B child's stdin (its request loop ends) and wait for it to exit."""
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()


def default_env(**extra: str) -> dict[str, str]:
    """This environment without the thread variables (a user's default configuration), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, child CPU s user+sys, stdout) of one run of ``cmd``; raises with stderr on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def face3d_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "face3d.apps.cli", *args]


class Neighbour:
    """A busy process (``python -c 'while 1: pass'``) for the duration of the block, in its own session
    (``own_session``: as a program started from another terminal; Linux's autogroup scheduler then
    gives it its own share of the CPU) or in this benchmark's session (it then takes half of this
    session's share, whatever the measured program does)."""

    def __init__(self, own_session: bool = True) -> None:
        self.own_session = own_session

    def __enter__(self) -> "Neighbour":
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=self.own_session)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait()


def row(name: str, runs: list[tuple[float, float]], load: tuple[float, float], note: str = "") -> dict[str, Any]:
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    return {"row": name, "n": len(runs), "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "wall_all": walls, "cpu_all": cpus, "load": load, "note": note}


def measure(name: str, make_cmd: Any, env: dict[str, str], n: int, note: str = "", fresh: Any = None) -> dict[str, Any]:
    """Median of ``n`` runs of ``make_cmd(i)``; ``fresh(i)`` runs before each (e.g. clears a folder)."""
    load0 = os.getloadavg()[0]
    runs = []
    for i in range(n):
        if fresh:
            fresh(i)
        w, c, _ = timed(make_cmd(i), env)
        runs.append((w, c))
    return row(name, runs, (load0, os.getloadavg()[0]), note)


def cli_rows(photo: Path, audio: Path, runs: int, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows = [measure("face3d --help", lambda i: face3d_cmd("--help"), default_env(), runs)]
    out = tmp / "out"
    caches = {}

    def cold_env(i: int, what: str) -> dict[str, str]:
        d = tmp / f"cold-{what}-{i}"
        caches[what] = d
        return default_env(FACE3D_CACHE=str(d / "face3d"), NUMBA_CACHE_DIR=str(d / "numba"), **no_worker)

    def clear(i: int) -> None:
        shutil.rmtree(out, ignore_errors=True)

    recon = lambda i: face3d_cmd("reconstruct", str(photo), "-o", str(out), "-q")  # noqa: E731
    no_worker = {"FACE3D_SERVE": "0"}
    # cold: each run in its own fresh caches (the first run after install)
    cold = []
    load0 = os.getloadavg()[0]
    for i in range(max(1, runs // 2)):
        clear(i)
        w, c, _ = timed(recon(i), cold_env(i, "reconstruct"))
        cold.append((w, c))
    rows.append(row(f"face3d reconstruct {photo.name} -o out/ (cold: fresh caches)", cold, (load0, os.getloadavg()[0])))
    # the install step of README's first command, then the first run after it (fresh caches each time)
    steps: dict[str, list[tuple[float, float]]] = {"warmup": [], "first": []}
    load0 = os.getloadavg()[0]
    for i in range(max(1, runs // 2)):
        clear(i)
        env = cold_env(i, "warmup")
        w, c, _ = timed(face3d_cmd("warmup", "-q"), env)
        steps["warmup"].append((w, c))
        w, c, _ = timed(recon(i), env)
        steps["first"].append((w, c))
    load = (load0, os.getloadavg()[0])
    rows.append(row("face3d warmup (the install step; fresh caches)", steps["warmup"], load))
    rows.append(row(f"face3d reconstruct {photo.name} -o out/ (first run after face3d warmup)", steps["first"], load))
    warm_env = default_env(FACE3D_CACHE=str(caches["reconstruct"] / "face3d"), NUMBA_CACHE_DIR=str(caches["reconstruct"] / "numba"),
                           **no_worker)
    rows.append(measure(f"face3d reconstruct {photo.name} -o out/ (warm)", recon, warm_env, runs, fresh=clear))
    talk = tmp / "talk.glb"
    anim = lambda i: face3d_cmd("animate", "--audio", str(audio), "-o", str(talk))  # noqa: E731
    cold = []
    load0 = os.getloadavg()[0]
    for i in range(max(1, runs // 2)):
        w, c, _ = timed(anim(i), cold_env(i, "animate"))
        cold.append((w, c))
    rows.append(row(f"face3d animate --audio {audio.name} -o talk.glb (cold)", cold, (load0, os.getloadavg()[0])))
    anim_env = default_env(FACE3D_CACHE=str(caches["animate"] / "face3d"), NUMBA_CACHE_DIR=str(caches["animate"] / "numba"),
                           **no_worker)
    rows.append(measure(f"face3d animate --audio {audio.name} -o talk.glb (warm)", anim, anim_env, runs))
    rows += worker_rows(recon, anim, {**warm_env, "FACE3D_SERVE": "1"}, runs, clear)
    return rows, warm_env


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Any:
    """``os.environ`` is ``env`` inside the block (for face3d.apps.serve's folder and key look-ups)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def worker_info(env: dict[str, str]) -> dict[str, Any] | None:
    """The status of the (one) live worker in ``env``'s cache folder, or None."""
    from face3d.apps import serve

    with environ(env):
        live = [info for _, info in serve.workers() if info and info.get("op") == "status"]
    return live[0] if live else None


def worker_rows(recon: Any, anim: Any, env: dict[str, str], runs: int, clear: Any) -> list[dict[str, Any]]:
    """The CLI with its resident worker: the first run in-process (it starts the worker), then runs
    through the worker; CPU = the client's + the worker's."""
    from face3d.apps import serve

    with environ(env):
        serve.stop_all()
    try:
        return _worker_rows(recon, anim, env, runs, clear)
    finally:
        with environ(env):
            serve.stop_all()


def _worker_rows(recon: Any, anim: Any, env: dict[str, str], runs: int, clear: Any) -> list[dict[str, Any]]:
    clear(0)
    load0 = os.getloadavg()[0]
    w, c, _ = timed(recon(0), env)
    t0 = time.perf_counter()
    while worker_info(env) is None:
        if time.perf_counter() - t0 > 120:
            raise RuntimeError("the CLI started no worker")
        time.sleep(0.1)
    rows = [row("face3d reconstruct, worker on: first run (in-process; then starts the worker)", [(w, c)], (load0, os.getloadavg()[0]),
                note=f"worker serving {time.perf_counter() - t0:.1f} s later, {worker_info(env)['rss_mb']:.0f} MB resident")]

    def through_worker(name: str, make_cmd: Any, n: int, fresh: Any = None) -> dict[str, Any]:
        load0 = os.getloadavg()[0]
        got, split = [], []
        for i in range(n):
            if fresh:
                fresh(i)
            before = worker_info(env)
            w, c, _ = timed(make_cmd(i), env)
            after = worker_info(env)
            if before is None or after is None or after["requests"] != before["requests"] + 1:
                raise RuntimeError(f"{name}: the run did not go through the worker")
            cw = after["cpu_s"] - before["cpu_s"]
            got.append((w, c + cw))
            split.append((c, cw))
        note = f"CPU = client {statistics.median(a for a, _ in split):.2f} + worker {statistics.median(b for _, b in split):.2f} (medians)"
        return row(name, got, (load0, os.getloadavg()[0]), note)

    rows.append(through_worker("face3d reconstruct, through the resident worker (warm)", recon, runs, clear))
    rows.append(through_worker("face3d animate, through the worker: its first animate request", anim, 1))
    rows.append(through_worker("face3d animate, through the worker (warm)", anim, runs))
    info = worker_info(env)
    rows[-1]["note"] += f"; worker then {info['rss_mb']:.0f} MB resident" if info else ""
    return rows


def _ratios(alone: dict[str, Any], busy: dict[str, Any], key: str = "wall_s") -> None:
    busy["ratio"] = busy[key] / alone[key]
    if alone["cpu_s"] == alone["cpu_s"] and alone["cpu_s"] > 0:
        busy["cpu_ratio"] = busy["cpu_s"] / alone["cpu_s"]


def busy_rows(photo: Path, runs: int, tmp: Path, warm_env: dict[str, str]) -> list[dict[str, Any]]:
    """Alone and busy-neighbour runs interleaved (A B A B ...), so a drifting machine load hits both alike."""
    out = tmp / "busy-out"
    cmd = face3d_cmd("reconstruct", str(photo), "-o", str(out), "-q")
    rows = []
    cases = (("default threads", warm_env, True), ("OMP_NUM_THREADS=1", {**warm_env, "OMP_NUM_THREADS": "1"}, True),
             ("default threads", warm_env, False))
    for label, env, own in cases:
        got: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        load0 = os.getloadavg()[0]
        for _ in range(runs):
            for busy in (False, True):
                shutil.rmtree(out, ignore_errors=True)
                with Neighbour(own) if busy else contextlib.nullcontext():
                    w, c, _ = timed(cmd, env)
                got[busy].append((w, c))
        load = (load0, os.getloadavg()[0])
        where = "its own session" if own else "the same session"
        alone = row(f"reconstruct warm, {label}, alone", got[False], load)
        busy_r = row(f"reconstruct warm, {label}, busy neighbour in {where}", got[True], load)
        _ratios(alone, busy_r)
        rows += [alone, busy_r]
    return rows


def renderer_rows(reps: int, runs: int) -> list[dict[str, Any]]:
    """render_mesh forward+backward in a fresh process (median ms over ``reps`` iterations), alone and
    beside a busy neighbour, interleaved ``runs`` times, for OMP_WAIT_POLICY PASSIVE and ACTIVE."""
    rows = []
    cases = {"PASSIVE": default_env(OMP_WAIT_POLICY="PASSIVE"), "unset": default_env(), "ACTIVE": default_env(OMP_WAIT_POLICY="ACTIVE"),
             "PASSIVE, OMP_NUM_THREADS=1": default_env(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")}
    for policy, env in cases.items():  # unset: libgomp's default, spin a while then sleep (before face3d set it)
        got: dict[bool, list[tuple[float, float, float, int]]] = {False: [], True: []}
        load0 = os.getloadavg()[0]
        for _ in range(runs):
            for busy in (False, True):
                with Neighbour() if busy else contextlib.nullcontext():
                    w, c, out = timed([sys.executable, "-c", RENDER_SCRIPT, str(reps)], env)
                res = json.loads(out.strip().splitlines()[-1])
                got[busy].append((w, c, res["ms"], res["threads"]))
        load = (load0, os.getloadavg()[0])
        pair = {}
        for busy in (False, True):
            r = row(f"render_mesh default model 256² fwd+bwd, {got[busy][0][3]} torch threads, OMP_WAIT_POLICY={policy}, "
                    f"{'busy neighbour (own session)' if busy else 'alone'}", [(w, c) for w, c, _, _ in got[busy]], load)
            r["ms"] = statistics.median(m for _, _, m, _ in got[busy])
            pair[busy] = r
        _ratios(pair[False], pair[True], "ms")
        rows += [pair[False], pair[True]]
    return rows


def batch_rows(limit: int, runs_spec: str, folders: str = "faces") -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from benchmarks.batch import run  # noqa: E402
    from face3d.testing import shared_data

    photos = sorted(p for f in folders.split(",") for p in (shared_data() / f).glob("*.jpg"))[:limit]
    out = []
    for spec in runs_spec.split(","):
        engine, workers = spec.split(":")
        r = run(photos, int(workers), engine, {"device": "cpu"})
        out.append({"row": f"batch {engine}, {workers} worker(s), {len(photos)} photos, default settings", "n": 1,
                    "wall_s": r["wall"], "cpu_s": float("nan"), "load": r["load"], "note": f"{r['ok']} ok, {r['failed']} failed",
                    "per_min": r["items_per_min"], "ok_per_min": r["ok_per_min"], "warm_per_min": r["warm_per_min"],
                    "start_up": r["start_up"]})
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | runs | wall s (median) | CPU s (median) | other | load avg start→end |", "|---|---|---|---|---|---|"]
    for r in rows:
        other = []
        if "ms" in r:
            other.append(f"{r['ms']:.1f} ms/iter")
        if "ratio" in r:
            other.append(f"**{r['ratio']:.2f}×** vs alone" + (f" (CPU {r['cpu_ratio']:.2f}×)" if "cpu_ratio" in r else ""))
        if "per_min" in r:
            other.append(f"{r['per_min']:.1f} photos/min ({r['ok_per_min']:.1f} ok/min, warm {r['warm_per_min']:.1f} ok/min; "
                         f"every worker's first photo after {r['start_up']:.1f} s)")
        if r.get("note"):
            other.append(r["note"])
        cpu = "" if r["cpu_s"] != r["cpu_s"] else f"{r['cpu_s']:.2f}"
        lines.append(f"| {r['row']} | {r['n']} | {r['wall_s']:.2f} | {cpu} | {'; '.join(other)} | {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per row (cold rows: half as many)")
    ap.add_argument("--sections", default="cli,busy,renderer,batch")
    ap.add_argument("--photo", type=Path, default=None, help="default: shared/data/faces/hrn_00016.jpg")
    ap.add_argument("--audio", type=Path, default=None, help="default: shared/data/audio/sadtalker_RD_Radio31_000.wav")
    ap.add_argument("--render-reps", type=int, default=12)
    ap.add_argument("--batch-limit", type=int, default=20)
    ap.add_argument("--batch-folders", default="faces", help="comma-separated folders of shared/data, e.g. faces,faces_more")
    ap.add_argument("--batch-runs", default="local:1,local:2", help="engine:workers list, e.g. local:1,local:2,ray:2")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from face3d.testing import shared_data

    photo = a.photo or shared_data() / "faces" / "hrn_00016.jpg"
    audio = a.audio or shared_data() / "audio" / "sadtalker_RD_Radio31_000.wav"
    sections = set(a.sections.split(","))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs, {platform.machine()}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="face3d-speed-") as t:
        tmp = Path(t)
        warm_env = None
        if "cli" in sections:
            cli, warm_env = cli_rows(photo, audio, a.runs, tmp)
            rows += cli
            print(table(rows), flush=True)
        elif "busy" in sections:  # warm the caches with one run
            warm_env = default_env(FACE3D_CACHE=str(tmp / "warm" / "face3d"), NUMBA_CACHE_DIR=str(tmp / "warm" / "numba"),
                                   FACE3D_SERVE="0")
            timed(face3d_cmd("reconstruct", str(photo), "-o", str(tmp / "warm-out"), "-q"), warm_env)
        if "busy" in sections:
            rows += busy_rows(photo, a.runs, tmp, warm_env)
            print(table(rows[-6:]), flush=True)
        if "renderer" in sections:
            rows += renderer_rows(a.render_reps, a.runs)
            print(table(rows[-8:]), flush=True)
        if "batch" in sections:
            rows += batch_rows(a.batch_limit, a.batch_runs, a.batch_folders)
    print()
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
