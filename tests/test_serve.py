"""The resident worker (``face3d serve``, ``apps/serve.py``) and the CLI as its client.

Each test uses its own short cache folder (a Unix socket path has at most 107 bytes), starts its
workers with ``--no-warm-up`` and short idle timeouts, and stops them; conftest.py sets
``FACE3D_SERVE=0`` for every other test, here it is turned back on per test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import face3d.apps.cli  # noqa: F401  (sets the logging variables the CLI sets: they are part of the worker key)
from face3d.apps import serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="f3s", dir="/tmp"))
    monkeypatch.setenv("FACE3D_CACHE", str(d))
    monkeypatch.setenv("FACE3D_SERVE", "1")
    monkeypatch.setenv("FACE3D_SERVE_IDLE", "30")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    yield d
    end = time.monotonic() + 20  # also a worker the CLI started a moment ago, before it took its lock
    while time.monotonic() < end:
        serve.stop_all()
        time.sleep(0.3)
        if not any(serve.worker_running(p.stem) for p in d.glob("serve-*/*.lock")):
            break
    shutil.rmtree(d, ignore_errors=True)


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "face3d.apps.cli", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)


def start_worker(cache: Path, *args: str, **env: str) -> subprocess.Popen:
    """``face3d serve --no-warm-up`` in the background; returns once its socket answers."""
    log = open(cache / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "face3d.apps.cli", "serve", "--no-warm-up", *args], cwd=cache,
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if any(info and info.get("pid") == proc.pid for _, info in serve.workers()):
            return proc
        assert proc.poll() is None, (cache / "worker.log").read_text()
        time.sleep(0.05)
    raise AssertionError("the worker did not start")


def status(proc: subprocess.Popen) -> dict:
    (info,) = [i for _, i in serve.workers() if i and i.get("pid") == proc.pid]
    return info


def wait_busy(proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not status(proc)["busy"]:
        assert time.monotonic() < end, "the worker never took the request"
        time.sleep(0.02)


def test_messages_round_trip_and_bad_ones_are_typed_errors():
    a, b = socket.socketpair()
    with a, b:
        serve.send_msg(a, {"op": "run", "argv": ["reconstruct", "é.jpg"]})
        assert serve.recv_msg(b) == {"op": "run", "argv": ["reconstruct", "é.jpg"]}
        a.sendall(struct.pack(">I", serve.MAX_MESSAGE + 1))
        with pytest.raises(serve.ProtocolError, match="limit"):
            serve.recv_msg(b)
        a.sendall(struct.pack(">I", 5) + b"[1,2]")
        with pytest.raises(serve.ProtocolError, match="not a JSON object"):
            serve.recv_msg(b)
        a.sendall(struct.pack(">I", 3) + b"\xff\xfe{")
        with pytest.raises(serve.ProtocolError, match="not JSON"):
            serve.recv_msg(b)
        a.sendall(struct.pack(">I", 10) + b"{}")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(serve.ProtocolError, match="truncated"):
            serve.recv_msg(b)
        assert serve.recv_msg(b) is None  # then a clean end of stream


def test_key_follows_relevant_environment_and_source_files(tmp_path, monkeypatch):
    env = {"FACE3D_DISK_CACHE": "1", "HOME": "/x"}
    k = serve.worker_key(env)
    assert len(k) == 20 and k == serve.worker_key(env)
    assert serve.worker_key({**env, "FACE3D_DISK_CACHE": "0"}) != k
    assert serve.worker_key({**env, "OMP_NUM_THREADS": "2"}) != k
    assert serve.worker_key({**env, "FACE3D_SERVE_IDLE": "5", "HOME": "/y"}) == k  # the client's own settings, unrelated ones
    (tmp_path / "mod.py").write_text("x = 1\n")
    monkeypatch.setattr(serve, "_source_roots", lambda: [tmp_path])
    k1 = serve.worker_key(env)
    os.utime(tmp_path / "mod.py", ns=(0, 10**9))
    assert serve.worker_key(env) != k1  # an edited source file: the old workers are never used


def test_serve_folder_must_be_private(cache):
    d = serve.serve_dir()
    assert d == cache / f"serve-{os.getuid()}" and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert serve.socket_path() is not None
    d.chmod(0o770)
    assert serve.serve_dir() is None and serve.socket_path() is None
    assert serve.run_in_worker(["reconstruct", "-o", "out"]) is None  # no worker: the CLI runs in-process
    d.chmod(0o700)


def test_worker_relays_errors_and_exit_codes_like_an_in_process_run(cache):
    proc = start_worker(cache, "--idle-timeout", "60")
    sock = next(cache.glob("serve-*/*.sock"))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    for args in (["reconstruct", "-o", "out"], ["reconstruct", "photo.jpg", "--bogus"],
                 ["reconstruct", "photo.jpg", "--set", "oops", "-o", "out"]):
        before = status(proc)["requests"]
        here = cli(*args, cwd=cache, FACE3D_SERVE="0")  # never uses the worker
        assert status(proc)["requests"] == before
        there = cli(*args, cwd=cache)
        assert status(proc)["requests"] == before + 1
        assert (there.returncode, there.stdout, there.stderr) == (here.returncode, here.stdout, here.stderr)
        assert there.returncode == 2 and there.stderr.strip()
    assert status(proc)["requests"] == 3
    assert cli("reconstruct", "--help", cwd=cache).returncode == 0 and status(proc)["requests"] == 3  # --help stays here
    # a garbled and a hostile-looking connection do not take the worker down
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"\x00\x00\x00\x03abc")
        assert serve.recv_msg(s) is None  # dropped
    assert serve.request(sock, {"op": "run", "argv": ["models", "list"], "cwd": "/"})["op"] == "error"  # not a served command
    st = cli("serve", "--status", cwd=cache)
    assert st.returncode == 0 and f"pid {proc.pid}" in st.stdout and "compatible" in st.stdout and "3 request(s)" in st.stdout
    assert cli("serve", "--stop", cwd=cache).stdout.startswith(f"stopped worker {proc.pid}")
    assert proc.wait(timeout=10) == 0 and not sock.exists()
    assert cli("serve", "--status", cwd=cache).returncode == 1


def test_incompatible_worker_is_ignored_and_serve_0_starts_none(cache):
    other = start_worker(cache, FACE3D_DISK_CACHE="0")  # another relevant setting: another key
    out = cli("reconstruct", "-o", "out", cwd=cache, FACE3D_SERVE="0")
    assert out.returncode == 2 and "no input" in out.stderr
    time.sleep(1.0)
    assert status(other)["requests"] == 0
    assert [p.stem for p in cache.glob("serve-*/*.lock") if serve.worker_running(p.stem)] == [status(other)["key"]]
    out = cli("reconstruct", "-o", "out", cwd=cache)  # FACE3D_SERVE=1: in-process (no compatible worker), then starts one
    assert out.returncode == 2 and "no input" in out.stderr and status(other)["requests"] == 0
    key = serve.worker_key()
    end = time.monotonic() + 10
    while not serve.worker_running(key):
        assert time.monotonic() < end, "no worker was started"
        time.sleep(0.05)
    assert serve.lock_holder(key) not in (None, other.pid)
    lines = serve.stop_all()
    assert any(f"stopped worker {other.pid}" in line for line in lines) and any("warming up" in line for line in lines)
    assert other.wait(timeout=10) == 0


def test_dead_socket_file_falls_back_in_process(cache, monkeypatch):
    monkeypatch.setenv("FACE3D_SERVE", "0")  # this time no worker is started afterwards
    path = serve.socket_path(serve.worker_key())
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # a socket file nobody listens on: a killed worker's
    t0 = time.monotonic()
    out = cli("reconstruct", "-o", "out", cwd=cache, FACE3D_SERVE="1", FACE3D_SERVE_IDLE="1")
    assert out.returncode == 2 and out.stderr.strip() == "error: no input: give photo(s), a video, or --demo"
    assert time.monotonic() - t0 < 30
    assert "removed" in cli("serve", "--stop", cwd=cache).stdout and not path.exists()


def test_worker_exits_after_its_idle_timeout(cache):
    proc = start_worker(cache, "--idle-timeout", "1")
    sock = next(cache.glob("serve-*/*.sock"))
    assert proc.wait(timeout=15) == 0
    assert not sock.exists() and "idle for 1 s: exiting" in (cache / "worker.log").read_text()


def _params(folder: Path) -> dict:
    p = json.loads((folder / "params.json").read_text())
    p.pop("timings_s", None)
    p.pop("source", None)  # --demo writes the photo to a new temporary folder each run
    return p


@pytest.mark.slow
def test_worker_writes_the_same_files_as_an_in_process_run(cache):
    proc = start_worker(cache, "--idle-timeout", "120")
    there = cli("reconstruct", "--demo", "--fast", "-o", "w", "--json", cwd=cache)
    assert there.returncode == 0, there.stderr
    assert status(proc)["requests"] == 1 and json.loads(there.stdout)["output"] == "w"  # relative to the client's folder
    here = cli("reconstruct", "--demo", "--fast", "-o", "p", cwd=cache, FACE3D_SERVE="0")
    assert here.returncode == 0, here.stderr
    assert _params(cache / "w") == _params(cache / "p")
    for name in ("mesh.obj", "mesh.ply"):
        assert (cache / "w" / name).read_bytes() == (cache / "p" / name).read_bytes()
    missing = [cli("reconstruct", "missing.jpg", "-o", "m", cwd=cache, FACE3D_SERVE=s) for s in ("1", "0")]
    assert missing[0].returncode == missing[1].returncode == 2 and missing[0].stderr == missing[1].stderr
    assert "missing.jpg: file not found" in missing[0].stderr and status(proc)["requests"] == 2


@pytest.mark.slow
def test_busy_worker_ctrl_c_and_a_killed_worker(cache):
    proc = start_worker(cache, "--idle-timeout", "120")
    env = {**os.environ}
    # SIGINT back to its default: a test run started in the background (`cmd &` in a script) ignores
    # SIGINT, children inherit that, and Python then installs no KeyboardInterrupt handler
    long = subprocess.Popen([sys.executable, "-m", "face3d.apps.cli", "reconstruct", "--demo", "-o", "c"], cwd=cache, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_busy(proc)
    other = cli("reconstruct", "-o", "d", cwd=cache)  # the worker is busy: runs here
    assert other.returncode == 2 and "no input" in other.stderr and status(proc)["requests"] == 0
    long.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = long.communicate(timeout=10)
    assert long.returncode == 130 and "interrupted" in err and time.monotonic() - t0 < 5
    assert proc.wait(timeout=30) == 0  # a cancelled request ends the worker (state may be half-made)
    assert not (cache / "c").exists()  # nothing half-written
    # a worker killed mid-request: the client notices and runs the command itself
    proc = start_worker(cache, "--idle-timeout", "120")
    job = subprocess.Popen([sys.executable, "-m", "face3d.apps.cli", "reconstruct", "--demo", "--fast", "-o", "k"], cwd=cache, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_busy(proc)
    proc.kill()
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0 and "stopped answering" in err and (cache / "k" / "params.json").is_file()


def test_release_memory_hands_freed_heap_back():
    junk = [bytes(1000) for _ in range(200_000)]  # ≈ 200 MB of malloc'ed blocks
    keep = bytes(1000)  # allocated last: the heap's top stays in use, so free() alone keeps the pages
    grown = serve.rss_mb()
    del junk
    assert serve.rss_mb() > grown - 50
    serve.release_memory()
    assert serve.rss_mb() < grown - 150 and keep


def test_serve_rejects_bad_options(cache, capsys):
    from face3d.apps.cli import main

    assert main(["serve", "--idle-timeout", "-1"]) == 2
    assert "--idle-timeout must be >= 0 seconds, got -1" in capsys.readouterr().err
    assert main(["serve", "--stop", "--status"]) == 2
    assert main(["serve", "--status"]) == 1 and "no compatible worker is serving" in capsys.readouterr().out


def test_a_request_is_counted_before_its_exit_code_is_sent(tmp_path, monkeypatch):
    """A client that asks for the status right after its exit code arrived sees its request counted
    (it used to be counted only after the worker had restored its process state: a race)."""
    worker = serve.Worker(tmp_path / "w.sock", "key", 0, lambda argv, prog_name: 0)
    seen = []
    restore = worker._restore
    monkeypatch.setattr(worker, "_restore", lambda saved, conn: (seen.append(worker.requests), restore(saved, conn)))
    a, b = socket.socketpair()
    with b:
        worker.busy = True  # as the accept thread marks a request it takes
        worker.serve_one(a, {"op": "run", "argv": ["reconstruct", "--help"], "cwd": str(tmp_path), "prog": "face3d"})
        assert serve.recv_msg(b) == {"op": "exit", "code": 0}
    assert seen == [1]  # counted when the exit code went out, before the restore
    assert worker.requests == 1 and not worker.busy  # and not counted twice
