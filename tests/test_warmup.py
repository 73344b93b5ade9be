"""First run after install: the background compile of the later stages' numba kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
    monkeypatch.setattr(warmup, "idle_core", lambda since=None: True)
    monkeypatch.delenv("FACE3D_BACKGROUND_COMPILE", raising=False)
    assert warmup.start_background_compile() == "proc"
    assert started[-1][1:4] == ["-m", "face3d.warmup", str(warmup.WAIT_FOR_FIT_S)]
    monkeypatch.setattr(warmup, "idle_core", lambda since=None: False)  # a busy machine: the second process would only compete
    assert warmup.start_background_compile() is None
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "1")
    assert warmup.start_background_compile() == "proc"
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "0")
    monkeypatch.setattr(warmup, "idle_core", lambda since=None: True)
    assert warmup.start_background_compile() is None
    monkeypatch.setenv("FACE3D_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(warmup, "kernels_cached", lambda: True)  # compiled already: nothing to do
    assert warmup.start_background_compile() is None
    assert len(started) == 2


def test_idle_core_follows_the_load_average_without_proc_stat(monkeypatch):
    monkeypatch.setattr(warmup, "cpu_ticks", lambda: None)
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


def test_idle_core_measures_what_the_cpus_do_now(monkeypatch):
    """/proc/stat ticks (idle, total) of a 2-CPU machine, 100 ticks a second: while this process
    ran (one core), the other core idle → free; busy → not free, whatever the load average says."""
    monkeypatch.setattr(warmup.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(warmup.os, "getloadavg", lambda: (2.2, 0.0, 0.0))  # a batch just ended: high, stale
    samples = iter([(1000 + 95, 2000 + 200)])  # 1 s later: 95 of 200 ticks idle (the other core free)
    monkeypatch.setattr(warmup, "cpu_ticks", lambda: next(samples))
    assert warmup.idle_core(since=(1000, 2000)) is True
    samples = iter([(1000 + 30, 2000 + 200)])  # 0.3 core free: another process is busy
    assert warmup.idle_core(since=(1000, 2000)) is False
    # too short a sample: sleep MIN_SAMPLE_S and count this process's own (sleeping) core as busy
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    samples = iter([(1000, 2002), (1000 + 19, 2002 + 20)])  # both cores idle while sleeping → one free for each
    assert warmup.idle_core(since=(1000, 2000)) is True and slept == [warmup.MIN_SAMPLE_S]
    samples = iter([(1000, 2002), (1000 + 10, 2002 + 20)])  # one core idle while sleeping: this process needs it
    assert warmup.idle_core(since=(1000, 2000)) is False


def test_cpu_ticks_reads_proc_stat():
    ticks = warmup.cpu_ticks()
    if not Path("/proc/stat").is_file():
        assert ticks is None
        return
    idle, total = ticks
    assert 0 <= idle <= total and total > 0
    later = warmup.cpu_ticks()
    assert later[1] >= total


@pytest.mark.slow
def test_face3d_warmup_leaves_nothing_for_the_first_run_to_compile(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "FACE3D_CACHE": str(tmp_path / "cache"),
           "FACE3D_SERVE": "0", "OMP_NUM_THREADS": "1"}
    cli = subprocess.run([sys.executable, "-m", "face3d.apps.cli", "warmup"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    line = cli.stderr.strip().splitlines()[-1]
    assert line.startswith("face3d kernels ready in ") and " compiled here" in line
    assert int(line.split(": ")[1].split(" compiled")[0]) > 0  # a fresh cache: this process compiled kernels
    # a new process: the same reconstruction (what a first `face3d reconstruct` runs) compiles nothing, loads everything
    code = ("import json; from face3d import warmup; r = warmup.compile_all()\n"
            "print(json.dumps({'compiled': r.kernels.compiled, 'loaded': r.kernels.loaded, 'background': r.background}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["compiled"] == 0 and got["loaded"] >= 20 and got["background"] is False


def test_kernel_counts_sees_the_compiles_of_face3d_dispatchers(monkeypatch, tmp_path):
    import importlib.util

    source = tmp_path / "probe.py"  # a file of its own: numba caches next to it (a fresh folder: nothing cached yet)
    source.write_text("import numba\n\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    spec = importlib.util.spec_from_file_location("face3d._kernel_count_probe", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = warmup.kernel_counts()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert module.twice(3) == 6 and module.twice(1.5) == 3.0  # two signatures, both compiled here
    after = warmup.kernel_counts()
    assert (after.compiled - before.compiled, after.loaded - before.loaded) == (2, 0)


@pytest.mark.parametrize("compiled", [3, 0])
def test_reconstruct_names_face3d_warmup_only_after_compiling(compiled, monkeypatch, tmp_path, capsys):
    from face3d.apps.cli import main

    monkeypatch.setattr(warmup, "kernel_counts", lambda: warmup.KernelCounts(loaded=10, compiled=compiled))
    assert main(["reconstruct", "--demo", "--fast", "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "wrote " in err and ("`face3d warmup` does that once" in err) == (compiled > 0)


def test_compile_all_stops_the_background_process_when_the_reconstruction_fails(monkeypatch):
    import face3d.reconstruction

    class Proc:
        killed = waited = False

        def kill(self):
            Proc.killed = True

        def wait(self):
            Proc.waited = True

    monkeypatch.setattr(warmup, "start_background_compile", lambda: Proc())

    def broken(*a, **k):
        raise RuntimeError("no photo")

    monkeypatch.setattr(face3d.reconstruction, "reconstruct", broken)
    with pytest.raises(RuntimeError, match="no photo"):
        warmup.compile_all()
    assert Proc.killed and not Proc.waited
