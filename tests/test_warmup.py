"""First run after install: the background compile of the later stages' numba kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from face3d import warmup

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, cache: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout


@pytest.mark.slow
def test_warmup_compiles_the_kernels_a_real_bake_then_loads(tmp_path):
    cache = tmp_path / "numba"
    before = _run("from face3d.warmup import kernels_cached; print(kernels_cached())", cache)
    assert before.split()[-1] == "False"  # a fresh cache: nothing compiled yet
    _run("from face3d.warmup import compile_later_stage_kernels; compile_later_stage_kernels()", cache)
    # a new process: the same calls now only load (no cache miss), and every sentinel has its index
    out = _run("import json; from face3d import warmup; warmup.compile_later_stage_kernels()\n"
               "from face3d.texture.sampling import _sample; from face3d.texture.uv_raster import _raster2d\n"
               "from face3d.renderers.fused import _aa_forward\n"
               "print(json.dumps({'cached': warmup.kernels_cached(), 'misses': sum(sum(d.stats.cache_misses.values()) "
               "for d in (_sample, _raster2d, _aa_forward)), 'hits': sum(sum(d.stats.cache_hits.values()) "
               "for d in (_sample, _raster2d, _aa_forward))}))", cache)
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {"cached": True, "misses": 0, "hits": 3}


def test_background_compile_is_started_only_when_useful(monkeypatch):
    started = []
    monkeypatch.setattr(warmup.subprocess, "Popen", lambda *a, **k: started.append(a[0]) or "proc")
    monkeypatch.setattr(warmup, "kernels_cached", lambda: False)
    monkeypatch.setattr(warmup, "idle_core", lambda: True)
    monkeypatch.delenv("FACE3D_BACKGROUND_COMPILE", raising=False)
    assert warmup.start_background_compile() == "proc"
    assert started[-1][1:4] == ["-m", "face3d.warmup", str(warmup.WAIT_FOR_FIT_S)]
    monkeypatch.setattr(warmup, "idle_core", lambda: False)  # a busy machine: the second process would only compete
    assert warmup.start_background_compile() is None
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "1")
    assert warmup.start_background_compile() == "proc"
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "0")
    monkeypatch.setattr(warmup, "idle_core", lambda: True)
    assert warmup.start_background_compile() is None
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(warmup, "kernels_cached", lambda: True)  # compiled already: nothing to do
    assert warmup.start_background_compile() is None
    assert len(started) == 2


def test_idle_core_follows_the_load_average(monkeypatch):
    monkeypatch.setattr(warmup.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(warmup.os, "getloadavg", lambda: (0.7, 0.0, 0.0))
    assert warmup.idle_core() is True
    monkeypatch.setattr(warmup.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert warmup.idle_core() is True
    monkeypatch.setattr(warmup.os, "getloadavg", lambda: (1.6, 0.0, 0.0))
    assert warmup.idle_core() is False


def test_index_files_of_the_sentinels_are_where_numba_keeps_them():
    for module, name in warmup.SENTINELS + warmup.FIT_FORWARD:
        p = warmup._index_file(module, name)
        assert p.suffix == ".nbi" and name in p.name
