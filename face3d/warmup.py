"""First run after install: compile the later stages' numba kernels in a second process.

A fresh install has no compiled kernels; ``face3d reconstruct`` then compiles ≈ 12 CPU s of them,
one after the other, as each stage first needs them (benchmarks/README.md, "Start-up, warm runs
and threads"). The texture stage's kernels (UV/z-buffer rasterizer, texel sampler, SH shading) and
the overlay's antialiasing kernels do not depend on the fit, so while the first process detects and
fits, :func:`start_background_compile` compiles them in a background process on the other core.
Both processes share numba's on-disk cache (``cache=True``): when the first process reaches those
stages it loads them. Nothing is started once they are cached; a failure of the background process
only means the first process compiles them itself.

``face3d warmup`` (:func:`compile_all`) is the install step that makes even the first run warm: it
reconstructs the bundled demo photo once, writing its files to a temporary folder, with the same
background process beside it, so every kernel a ``face3d reconstruct`` needs is in numba's cache.

    python -m face3d.warmup      # compile the later stages' kernels only, in the foreground
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: (module, dispatcher) of one kernel per group compiled here: all cached means nothing to do.
SENTINELS = (("face3d.texture.sampling", "_sample"), ("face3d.texture.sampling", "_mirror_blend"), ("face3d.texture.bake", "_blend_kernel"),
             ("face3d.texture.uv_raster", "_raster2d"), ("face3d.texture.uv_raster", "_interpolate_texels"),
             ("face3d.renderers._kernels", "silhouette_pairs"), ("face3d.renderers.fused", "_aa_forward"),
             ("face3d.detail.sfs", "_pcg_kernel"), ("face3d.detail.sfs", "_upsample_normal_map"))


def _index_file(module: str, name: str) -> Path:
    """The numba cache index of a ``cache=True`` dispatcher (numba's own locator: in-tree
    ``__pycache__``, ``NUMBA_CACHE_DIR`` or the user-wide cache)."""
    import importlib

    disp = getattr(importlib.import_module(module), name)
    return Path(disp._cache._cache_file._index_path)  # numba >= 0.49


def kernels_cached() -> bool:
    """Whether every :data:`SENTINELS` kernel has a cache index (True when numba's cache layout is
    not the expected one: then no background compile is attempted)."""
    try:
        return all(_index_file(m, n).is_file() for m, n in SENTINELS)
    except Exception:  # another numba version's internals: do nothing rather than guess
        return True


WAIT_FOR_FIT_S = 120.0  # the background process gives up on the antialiasing kernels after this


#: A core counts as idle while the other processes use at most this many cores' worth of CPU: on 2
#: cores (benchmarks/README.md, issue 26) at load 1.4–1.6 the background compile cut the first run
#: from 18.0–18.9 to 14.5–16.4 s; at 1.7–2.7 it made no difference; at 4–5 it cost 6 s.
IDLE_MARGIN = 0.5

#: The shortest CPU-time sample :func:`idle_core` trusts, seconds (/proc/stat counts in 10 ms ticks).
MIN_SAMPLE_S = 0.1


def cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) CPU ticks of all CPUs since boot from ``/proc/stat`` (idle includes I/O wait),
    or None where there is no such file."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def idle_core(since: tuple[int, int] | None = None) -> bool:
    """Whether a core is free for a second process: the other processes leave at least
    ``1 - IDLE_MARGIN`` of a core idle. Measured from ``/proc/stat`` between ``since`` (a
    :func:`cpu_ticks` sample; this process, running meanwhile, uses one core) and now, sampling
    again for :data:`MIN_SAMPLE_S` when that is shorter: what the CPUs do now, not the 1-minute load
    average, which stays high for a minute after a finished job (a first run right after a batch
    measured 25 s instead of 14 s). Without ``/proc/stat``: load average ≤ CPUs − ``IDLE_MARGIN``."""
    start = since if since is not None else cpu_ticks()
    now = cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpus = os.cpu_count() or 1  # /proc/stat sums every CPU of the machine
    slept = start is not None and now is not None and now[1] - start[1] < MIN_SAMPLE_S * hz * cpus
    if slept:
        start = now
        time.sleep(MIN_SAMPLE_S)
        now = cpu_ticks()
    if start is None or now is None or now[1] <= start[1]:
        try:
            return os.getloadavg()[0] <= _cores() - IDLE_MARGIN
        except OSError:
            return False
    # while sleeping, this process's own core shows as idle too: it needs that core again afterwards
    free = (now[0] - start[0]) / (now[1] - start[1]) * cpus - (1.0 if slept else 0.0)
    return free >= 1.0 - IDLE_MARGIN


def start_background_compile() -> subprocess.Popen | None:
    """Start ``python -m face3d.warmup`` in the background when the kernels are not cached yet and a
    core is idle (on a busy machine the second process only competes with the first: measured 31 s
    against 25 s at load 4 on 2 cores); returns the process, or None. ``FACE3D_BACKGROUND_COMPILE``:
    0 never, 1 always, unset: by this rule."""
    mode = os.environ.get("FACE3D_BACKGROUND_COMPILE", "auto").strip().lower()
    if mode in ("0", "false", "no", "off"):
        return None
    since = cpu_ticks()  # kernels_cached() imports the kernels' modules (≈ 1.5 s cold): idle_core samples the CPUs meanwhile
    if kernels_cached() or (mode == "auto" and not idle_core(since)):
        return None
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        return subprocess.Popen([sys.executable, "-m", "face3d.warmup", str(WAIT_FOR_FIT_S)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


#: Forward renderer kernels the fit compiles first (in this order, the last ones last): the
#: antialiasing step waits for them rather than compiling them a second time beside the fit.
FIT_FORWARD = (("face3d.renderers._kernels", "visibility"), ("face3d.renderers.fused", "_bary_forward"),
               ("face3d.renderers.fused_shade", "_forward"))


def _wait_for(kernels: tuple[tuple[str, str], ...], timeout_s: float, poll_s: float = 0.25) -> bool:
    """Wait until every kernel of ``kernels`` has a cache index; False after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if all(_index_file(m, n).is_file() for m, n in kernels):
                return True
        except Exception:
            return False
        time.sleep(poll_s)
    return False


def compile_later_stage_kernels(wait_s: float = 0.0) -> None:
    """Run the texture bake, the detail stage and the antialiasing on a two-triangle scene: the wrappers convert their
    inputs to fixed dtypes, so this compiles the same kernel signatures as a real photo does. With
    ``wait_s`` > 0 the antialiasing waits (at most that long) until the fit has compiled the renderer's
    forward kernels, and is skipped when they do not appear."""
    import numpy as np
    import torch

    from face3d import renderers
    from face3d.detail import DetailOptions, recover_detail
    from face3d.mesh import View
    from face3d.texture.bake import bake_texture

    torch.set_num_threads(1)
    verts = torch.tensor([[-0.05, -0.05, 0.0], [0.05, -0.05, 0.0], [0.05, 0.05, 0.0], [-0.05, 0.05, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    K = renderers.perspective_from_fov(30.0, 64, 64).float()[None]
    cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.tensor([[0.0, 0.0, -0.4]]), width=64, height=64)
    image = np.full((64, 64, 3), 0.5, np.float32)
    view = View(image, cam, renderers.ambient_sh(1.0)[0])
    tex = bake_texture(renderers.Mesh(verts, faces, uvs, faces), view, albedo_fallback=torch.full((4, 3), 0.5), resolution=32,
                       template=verts, face_mask=torch.ones(2, dtype=torch.bool))
    recover_detail(renderers.Mesh(verts[None], faces, uvs, faces), view, tex.albedo, resolution=32,  # the detail stage's kernels
                   face_mask=torch.ones(2, dtype=torch.bool), options=DetailOptions(solve_resolution=16))
    if wait_s > 0 and not _wait_for(FIT_FORWARD, wait_s):
        return
    renderers.render_mesh(renderers.Mesh(verts[None], faces), cam, vertex_colors=torch.full((1, 4, 3), 0.5), sh=renderers.ambient_sh(1.0))


@dataclass(frozen=True)
class KernelCounts:
    """Kernel signatures of face3d's cached numba dispatchers in this process: ``loaded`` from
    numba's on-disk cache, ``compiled`` here (cache misses)."""

    loaded: int
    compiled: int


def kernel_counts() -> KernelCounts:
    """Count the cache hits and misses of every ``cache=True`` numba dispatcher of the face3d
    modules imported so far (an overload compiled inside another kernel is not counted on its own)."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return KernelCounts(0, 0)
    seen: set[int] = set()
    loaded = compiled = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("face3d") or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and id(value) not in seen and getattr(value, "_cache", None) is not None:
                seen.add(id(value))
                loaded += sum(value.stats.cache_hits.values())
                compiled += sum(value.stats.cache_misses.values())
    return KernelCounts(loaded, compiled)


@dataclass(frozen=True)
class WarmupReport:
    """What :func:`compile_all` did: wall seconds, this process's kernel counts, and whether a
    background process compiled the later stages beside it (it exits before this returns)."""

    seconds: float
    kernels: KernelCounts
    background: bool


def compile_all() -> WarmupReport:
    """Fill numba's cache with every kernel ``face3d reconstruct`` uses (default model and settings):
    reconstruct the bundled demo photo and write its files into a temporary folder, while
    :func:`start_background_compile` compiles the later stages on another core. Kernel signatures
    depend on dtypes, not sizes, so any photo compiles the same ones. Run once after install
    (``face3d warmup``); a second call only loads them."""
    import tempfile

    from face3d.io.images import write_demo_image
    from face3d.reconstruction import reconstruct

    t0 = time.perf_counter()
    proc = start_background_compile()
    try:
        with tempfile.TemporaryDirectory(prefix="face3d-warmup-") as d:
            result = reconstruct(str(write_demo_image(Path(d) / "demo.png")))
            (Path(d) / "out").mkdir()
            result.write_files(Path(d) / "out")
    except BaseException:  # an error or Ctrl-C: the background process would wait for kernels that never come
        if proc is not None:
            proc.kill()
        raise
    if proc is not None:
        proc.wait()
    return WarmupReport(time.perf_counter() - t0, kernel_counts(), proc is not None)


if __name__ == "__main__":
    compile_later_stage_kernels(wait_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
