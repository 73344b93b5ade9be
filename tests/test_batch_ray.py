"""The Ray engine gives the same results (rows and files) as the local engine, on a local Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from face3d.apps.batch import run_batch
from face3d.apps.cli import main
from face3d.errors import BadInputError
from test_batch import _photos, fake_work

ray = pytest.importorskip("ray", reason="ray is an optional dependency (face3d[dist])")


def _comparable(report) -> list[tuple]:
    return [(r.key, r.inputs, r.person, r.status, r.error_type, r.error_message, r.exit_code, r.fingerprint,
             r.metrics.get("bytes"), sorted(r.timings)) for r in report.results]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (run_ray then joins it instead of starting its own)."""
    import ray.cloudpickle

    from face3d.apps.batch.ray_engine import import_ray

    import_ray()
    ray.cloudpickle.register_pickle_by_value(sys.modules[fake_work.__module__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_results_identical_to_local(tmp_path: Path, local_ray) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "bad.png", "s/b.jpg", "c.png"])
    local = run_batch(root, tmp_path / "local", workers=2, work=fake_work)
    distributed = run_batch(root, tmp_path / "ray", workers=2, engine="ray", work=fake_work)
    assert _comparable(local) == _comparable(distributed)
    assert [r.status for r in distributed.results] == ["ok", "failed", "ok", "ok"]
    for r in local.results:
        if r.status == "ok":
            assert (tmp_path / "ray" / r.key / "result.txt").read_bytes() == \
                (tmp_path / "local" / r.key / "result.txt").read_bytes()
    assert distributed.summary["engine"] == "ray" and distributed.exit_code == local.exit_code == 2
    resumed = run_batch(root, tmp_path / "ray", workers=2, engine="ray", work=fake_work, resume=True)
    assert [r.resumed for r in resumed.results] == [True, False, True, True]


def test_ray_keeps_one_task_queued_beyond_its_workers(tmp_path: Path, local_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers: three tasks are submitted at once (the third starts when one ends), never more."""
    pending: list[int] = []
    real_wait = local_ray.wait

    def wait(refs, **kw):
        pending.append(len(refs))
        return real_wait(refs, **kw)

    monkeypatch.setattr(local_ray, "wait", wait)
    root = _photos(tmp_path / "in", [f"p{i}.jpg" for i in range(6)])
    report = run_batch(root, tmp_path / "ray", workers=2, engine="ray", work=fake_work)
    assert [r.status for r in report.results] == ["ok"] * 6
    assert max(pending) == 3 and pending[0] == 3


def test_missing_ray_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    (tmp_path / "x.jpg").write_bytes(b"")
    code = main(["batch", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"), "--engine", "ray"])
    assert code == 3
    assert 'pip install "face3d[dist]"' in capsys.readouterr().err


def test_unreachable_address_fails_in_seconds_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import time

    from face3d.apps.batch.ray_engine import check_address

    root = _photos(tmp_path / "in", ["a.jpg"])
    t0 = time.monotonic()
    code = main(["batch", str(root), "-o", str(tmp_path / "o"), "--engine", "ray", "--address", "127.0.0.1:1", "--no-progress"])
    assert code == 2 and time.monotonic() - t0 < 30
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --address 127.0.0.1:1: cannot connect within 5 s"), lines
    assert not (tmp_path / "o").exists()
    for bad in ("nohost", "host:port", "ray://h:99999"):
        with pytest.raises(BadInputError, match="expected 'auto', 'host:port'"):
            check_address(bad)
    with pytest.raises(BadInputError, match="cannot connect"):
        check_address("[::1]:1")
    check_address("auto")
    check_address(None)


_RAY_KILL_SCRIPT = """
import json, os, sys
from face3d.apps.batch import run_batch
from test_batch import fake_work
run_batch({inp!r}, {out!r}, workers=2, engine="ray", work=fake_work, settings={{"sleep": 3, "pid_dir": {pids!r}}})
"""


@pytest.mark.slow
def test_killed_ray_batch_leaves_no_ray_process_and_resumes_consistently(tmp_path: Path) -> None:
    """kill -9 of the driver halfway: its Ray processes and in-flight tasks die with it (nothing
    keeps writing items); --resume keeps every finished item byte-identical and redoes the rest."""
    import csv
    import os
    import signal
    import subprocess
    import time

    import psutil

    from face3d.apps.batch.resume import clean_stale_temps

    root = _photos(tmp_path / "in", [f"{c}.jpg" for c in "abcdef"])
    out, pids = tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    script = _RAY_KILL_SCRIPT.format(inp=str(root), out=str(out), pids=str(pids))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 240
    items = out / "items"
    while time.monotonic() < deadline and not (items.is_dir() and [p for p in items.iterdir() if not p.name.startswith(".")]):
        time.sleep(0.2)
    assert proc.poll() is None, "the batch ended before it could be killed"
    ray_procs = psutil.Process(proc.pid).children(recursive=True)
    assert ray_procs
    workers = [int(p.name) for p in pids.iterdir()]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(ray_procs, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], f"Ray processes outlived the driver: {alive}"
    assert not [w for w in workers if psutil.pid_exists(w) and psutil.Process(w).status() != psutil.STATUS_ZOMBIE]
    done = {p.name: (p / "result.txt").read_bytes() for p in items.iterdir() if not p.name.startswith(".")}
    assert done and all((items / k / "batch.json").is_file() for k in done)  # no half-written item
    time.sleep(4)  # longer than one item: nothing may still be writing
    assert sorted(p.name for p in items.iterdir() if not p.name.startswith(".")) == sorted(done)
    clean_stale_temps(out)
    report = run_batch(root, out, workers=2, work=fake_work, resume=True, settings={"sleep": 3, "pid_dir": str(pids)})
    assert report.exit_code == 0
    assert {r.key.split("/")[-1] for r in report.results if r.resumed} == set(done)
    assert all((items / k / "result.txt").read_bytes() == v for k, v in done.items())
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert sorted(r["key"] for r in rows if r["status"] == "ok") == sorted(f"items/{p.name}" for p in items.iterdir())
