"""Batch reconstruction: manifests, local engine, results table, resume, crashes, Ctrl-C, progress.

The engines take the per-item work function as a parameter; these tests drive them with
``fake_work`` (deterministic: hashes the photo bytes) so they run in seconds. The real work
(``face3d.reconstruct``) runs in ``test_batch_e2e.py``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from face3d.apps.batch import Item, WorkOutput, load_items, run_batch
from face3d.apps.batch import local
from face3d.apps.batch.local import in_flight, start_method, threads_per_worker
from face3d.apps.batch.progress import BatchProgress, Counts
from face3d.apps.batch.resume import clean_stale_temps, content_hash, fingerprint
from face3d.apps.batch.work import ItemResult
from face3d.errors import BadInputError, FileFormatError, ImageError
from face3d.io.atomic import write_text
from face3d.testing import shared_data

FACES = shared_data() / "faces"


def fake_work(paths: tuple[Path, ...], out_dir: Path, settings: Mapping[str, Any]) -> WorkOutput:
    """Deterministic stand-in for reconstruct: 'bad' in a name -> ImageError, 'crash' -> worker dies."""
    digest = hashlib.sha256()
    for p in paths:
        if "crash" in p.name:
            os._exit(3)
        if "bad" in p.name:
            raise ImageError(p, "cannot decode image")
        digest.update(p.read_bytes())
    if "pid_dir" in settings:
        (Path(settings["pid_dir"]) / str(os.getpid())).write_text(paths[0].name)
    time.sleep(float(settings.get("sleep", 0.0)))
    write_text(out_dir / "result.txt", f"{digest.hexdigest()} {settings.get('scale', 1)}\n")
    size = sum(p.stat().st_size for p in paths)
    return WorkOutput(timings={"read": 0.001 * len(paths)},
                      metrics={"bytes": float(size) * float(settings.get("scale", 1)),
                               "omp_threads": float(os.environ.get("OMP_NUM_THREADS", "0"))})


def _photos(root: Path, names: list[str]) -> Path:
    srcs = sorted(FACES.glob("*.jpg"))
    for i, name in enumerate(names):
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if "bad" in name:
            dest.write_bytes(b"not an image")
        else:
            shutil.copy(srcs[i % len(srcs)], dest)
    return root


# ---------------------------------------------------------------- manifest
def test_folder_items_are_recursive_sorted_and_disambiguated(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["b.jpg", "sub/a.jpg", "x.jpg", "x.png", "sub/deep/c.JPEG"])
    (root / "notes.txt").write_text("ignored")
    items = load_items(root)
    assert [i.key for i in items] == ["items/b", "items/sub/a", "items/sub/deep/c", "items/x_jpg", "items/x_png"]
    assert items[1].paths == (root / "sub" / "a.jpg",)
    assert all(i.person is None for i in items)


def test_glob_and_single_image(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "s/b.jpg", "s/c.png"])
    items = load_items(str(root / "**" / "*.jpg"))
    assert [i.key for i in items] == ["items/a", "items/s/b"]
    assert [i.key for i in load_items(root / "s" / "c.png")] == ["items/c"]
    with pytest.raises(BadInputError, match="matches no images"):
        load_items(str(root / "*.gif"))
    with pytest.raises(BadInputError, match="no such file"):
        load_items(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no images"):
        load_items(tmp_path / "empty")


def test_csv_and_jsonl_manifests_group_people(tmp_path: Path) -> None:
    _photos(tmp_path, ["p/1.jpg", "p/2.jpg", "p/3.jpg", "solo.jpg"])
    (tmp_path / "m.csv").write_text("path,person\np/1.jpg,ann lee\np/2.jpg,ann lee\np/3.jpg,bob\nsolo.jpg,\n")
    items = {i.key: i for i in load_items(tmp_path / "m.csv")}
    assert set(items) == {"people/ann_lee", "people/bob", "items/solo"}
    assert items["people/ann_lee"].paths == (tmp_path / "p/1.jpg", tmp_path / "p/2.jpg")
    assert items["people/ann_lee"].person == "ann lee"
    (tmp_path / "m.jsonl").write_text('{"path": "p/1.jpg", "person_id": "c"}\n\n{"path": "solo.jpg"}\n')
    assert [(i.key, len(i.paths)) for i in load_items(tmp_path / "m.jsonl")] == [("items/solo", 1), ("people/c", 1)]


def test_bad_manifests_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("file,person\nx.jpg,1\n")
    with pytest.raises(FileFormatError, match=r"a\.csv: line 1: .*'path' column"):
        load_items(tmp_path / "a.csv")
    (tmp_path / "b.jsonl").write_text('{"path": "x.jpg"}\n{oops\n')
    with pytest.raises(FileFormatError, match=r"b\.jsonl: line 2: not valid JSON"):
        load_items(tmp_path / "b.jsonl")
    (tmp_path / "c.csv").write_text("path\n\n")
    with pytest.raises(BadInputError, match="lists no images"):
        load_items(tmp_path / "c.csv")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(FileFormatError, match="not an image, folder"):
        load_items(tmp_path / "d.txt")


# ---------------------------------------------------------------- engine + results
def test_local_engine_records_bad_items_and_writes_tables(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg", "bad.png", "sub/c.jpg"])
    out = tmp_path / "out"
    report = run_batch(root, out, workers=2, work=fake_work, settings={"scale": 2})
    by_key = {r.key: r for r in report.results}
    assert [r.key for r in report.results] == ["items/a", "items/b", "items/bad", "items/sub/c"]
    assert by_key["items/bad"].status == "failed" and by_key["items/bad"].error_type == "ImageError"
    assert "bad.png: cannot decode image" in by_key["items/bad"].error_message
    assert report.exit_code == 2
    for key in ("items/a", "items/b", "items/sub/c"):
        r = by_key[key]
        assert r.status == "ok"
        src = Path(r.inputs[0])
        assert (out / key / "result.txt").read_text() == f"{hashlib.sha256(src.read_bytes()).hexdigest()} 2\n"
        assert r.metrics["bytes"] == 2 * src.stat().st_size
        assert r.metrics["omp_threads"] == threads_per_worker(2)
        assert json.loads((out / key / "batch.json").read_text())["fingerprint"] == r.fingerprint
    assert not (out / "items" / "bad").exists()

    table = pq.read_table(out / "results.parquet").to_pylist()
    assert [row["key"] for row in table] == ["items/a", "items/b", "items/bad", "items/sub/c"]
    assert table[2]["status"] == "failed" and table[2]["error_type"] == "ImageError" and table[2]["exit_code"] == 2
    assert table[2]["metric_bytes"] is None
    assert table[0]["metric_bytes"] == by_key["items/a"].metrics["bytes"]
    assert table[0]["time_read"] == pytest.approx(0.001)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["items"], summary["ok"], summary["failed"], summary["errors"]) == (4, 3, 1, {"ImageError": 1})
    assert summary["images_per_minute"] > 0 and summary["workers"] == 2


def test_threads_per_worker() -> None:
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(16, cores=8) == 1


def test_one_item_waits_queued_beyond_the_workers_except_when_retrying_suspects() -> None:
    assert [in_flight(w) for w in (0, 1, 2, 4)] == [2, 2, 3, 5]
    assert in_flight(4, solo=True) == 1


def test_workers_fork_only_from_a_single_threaded_linux_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local.START_ENV, raising=False)
    monkeypatch.setattr(local.sys, "platform", "linux")
    monkeypatch.setattr(local, "os_threads", lambda: 1)
    assert start_method(1) == "fork"
    assert start_method(2) == "spawn"  # workers with an OpenMP pool: never forked
    monkeypatch.setattr(local, "os_threads", lambda: 3)  # e.g. a progress bar's or MediaPipe's threads
    assert start_method(1) == "spawn"
    monkeypatch.setenv(local.START_ENV, "fork")
    assert start_method(2) == "fork"
    monkeypatch.setattr(local.sys, "platform", "darwin")
    monkeypatch.setenv(local.START_ENV, "")
    monkeypatch.setattr(local, "os_threads", lambda: 1)
    assert start_method(1) == "spawn"
    if sys.platform == "linux":
        assert local.os_threads() >= 1


FORK_SCRIPT = """
import os, sys
from pathlib import Path
from face3d.apps.batch import WorkOutput, run_batch

def work(paths, out_dir, settings):
    (out_dir / "seen.txt").write_text(f"{os.getppid()} {globals().get('MARK', 'none')}")
    return WorkOutput()

if __name__ == "__main__":
    MARK = "parent-state"  # a forked worker has it; a spawned one re-imports this file as __mp_main__ without it
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    report = run_batch(src, out, workers=2, work=work)
    seen = sorted((out / r.key / "seen.txt").read_text() for r in report.results)
    print(report.exit_code, len(report.results), os.getpid(), *seen, sep="|")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="fork start is Linux only")
def test_forked_workers_start_from_the_batch_process_state(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg", "c.jpg"])
    script = tmp_path / "fork_batch.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop(local.START_ENV, None)
    got = {}
    for mode in ("", "spawn"):
        env[local.START_ENV] = mode
        run = subprocess.run([sys.executable, str(script), str(root), str(tmp_path / f"out{mode}")], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        code, n, parent, *seen = run.stdout.strip().splitlines()[-1].split("|")
        assert (code, n) == ("0", "3")
        assert all(s.split()[0] == parent for s in seen)  # workers are children of the batch process
        got[mode] = {s.split()[1] for s in seen}
    assert got == {"": {"parent-state"}, "spawn": {"none"}}


def test_people_are_one_item_with_all_photos(tmp_path: Path) -> None:
    _photos(tmp_path, ["p/1.jpg", "p/2.jpg"])
    (tmp_path / "m.csv").write_text("path,person\np/1.jpg,ann\np/2.jpg,ann\n")
    report = run_batch(tmp_path / "m.csv", tmp_path / "out", work=fake_work)
    (r,) = report.results
    assert (r.key, r.person, r.status, len(r.inputs)) == ("people/ann", "ann", "ok", 2)
    both = hashlib.sha256((tmp_path / "p/1.jpg").read_bytes() + (tmp_path / "p/2.jpg").read_bytes()).hexdigest()
    assert (tmp_path / "out/people/ann/result.txt").read_text().split()[0] == both


def test_resume_skips_done_items_keyed_by_content_and_settings(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg", "bad.png"])
    out = tmp_path / "out"
    first = run_batch(root, out, work=fake_work)
    (out / "items" / ".b.x1.tmp").mkdir()
    shutil.copy(FACES / "skimage_astronaut.jpg", root / "b.jpg")
    second = run_batch(root, out, work=fake_work, resume=True)
    by_key = {r.key: r for r in second.results}
    assert by_key["items/a"].resumed and by_key["items/a"].fingerprint == first.results[0].fingerprint
    assert not by_key["items/b"].resumed and by_key["items/b"].status == "ok"
    assert not by_key["items/bad"].resumed and by_key["items/bad"].status == "failed"
    assert not (out / "items" / ".b.x1.tmp").exists()
    assert json.loads((out / "summary.json").read_text())["resumed"] == 1
    third = run_batch(root, out, work=fake_work, resume=True, settings={"scale": 3})
    assert not any(r.resumed for r in third.results)
    assert (out / "items/a/result.txt").read_text().endswith(" 3\n")


def test_fingerprint_and_content_hash() -> None:
    a, b = FACES / "prnet_1.jpg", FACES / "prnet_2.jpg"
    assert content_hash([a]) == content_hash([a]) != content_hash([b])
    assert content_hash([a, b]) != content_hash([b, a])
    assert content_hash([FACES / "missing.jpg"]) is None
    assert fingerprint([a], {"model": "basic"}) != fingerprint([a], {"model": "ict"})
    assert fingerprint([a], {"x": 1, "y": 2}) == fingerprint([a], {"y": 2, "x": 1})


def test_worker_crash_is_isolated(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "crash.jpg", "c.jpg", "d.jpg"])
    report = run_batch(root, tmp_path / "out", workers=2, work=fake_work)
    status = {r.key: (r.status, r.error_type) for r in report.results}
    assert status == {"items/a": ("ok", None), "items/crash": ("failed", "WorkerCrashed"),
                      "items/c": ("ok", None), "items/d": ("ok", None)}
    assert report.exit_code == 1
    assert not (tmp_path / "out/items/crash").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--workers"):
        run_batch(FACES, tmp_path / "o", workers=0, work=fake_work)
    with pytest.raises(BadInputError, match="--engine"):
        run_batch(FACES, tmp_path / "o", engine="spark", work=fake_work)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="not a folder"):
        run_batch(FACES, tmp_path / "file", work=fake_work)


def test_clean_stale_temps(tmp_path: Path) -> None:
    (tmp_path / "items/sub/.a.abc.tmp").mkdir(parents=True)
    (tmp_path / "people/.bob.old-12").mkdir(parents=True)
    (tmp_path / "items/keep").mkdir()
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".a.abc.tmp", ".bob.old-12"]
    assert (tmp_path / "items/keep").is_dir()


# ---------------------------------------------------------------- Ctrl-C
_INTERRUPT_SCRIPT = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal; a shell's background job inherits SIG_IGN
sys.path.insert(0, {tests!r})
from face3d.apps.batch import run_batch
from test_batch import fake_work
report = run_batch({inp!r}, {out!r}, workers=1, work=fake_work, settings={{"sleep": 1.0}},
                   on_result=lambda r: print("RESULT", r.key, flush=True))
print("EXIT", report.exit_code, flush=True)
sys.exit(report.exit_code)
"""


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", [f"{c}.jpg" for c in "abcdefgh"])
    out = tmp_path / "out"
    script = _INTERRUPT_SCRIPT.format(tests=str(Path(__file__).parent), inp=str(root), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("RESULT"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    tail, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + tail
    rows = list(csv.DictReader(open(out / "results.csv")))
    status = [r["status"] for r in rows]
    assert len(rows) == 8 and status[0] == "ok" and "interrupted" in status
    assert not [p for p in (out / "items").iterdir() if p.name.startswith(".")]
    done_before = {r["key"] for r in rows if r["status"] == "ok"}
    report = run_batch(root, out, work=fake_work, resume=True, settings={"sleep": 1.0})
    assert all(r.status == "ok" for r in report.results)
    assert done_before <= {r.key for r in report.results if r.resumed}


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from face3d.apps.batch import run_batch
from test_batch import fake_work
run_batch({inp!r}, {out!r}, workers=2, work=fake_work, settings={{"sleep": 60, "pid_dir": {pids!r}}})
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killed_batch_leaves_no_workers_and_no_partial_items(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg", "c.jpg"])
    out, pids = tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), inp=str(root), out=str(out), pids=str(pids))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed batch"
    items = out / "items"
    assert not [p for p in items.iterdir() if not p.name.startswith(".")]
    assert clean_stale_temps(out) and not list(items.iterdir())


# ---------------------------------------------------------------- progress
def test_progress_counts_and_bar() -> None:
    c = Counts(total=5, started=100.0)
    item = Item("items/a", (Path("a.jpg"),))
    for status, resumed in (("ok", False), ("ok", True), ("failed", False)):
        c.add(ItemResult(item.key, ("a.jpg",), None, status, None, resumed=resumed))
    assert (c.done, c.failed, c.remaining, c.photos) == (2, 1, 2, 1)
    assert c.rate(now=130.0) == pytest.approx(2.0)
    buf = io.StringIO()
    with BatchProgress(3, 2, console=Console(file=buf, force_terminal=True, width=120)) as bar:
        bar(ItemResult("items/a", ("a.jpg",), None, "ok", None))
        bar(ItemResult("items/b", ("b.jpg",), None, "failed", None))
    text = buf.getvalue()
    assert "done 1  failed 1  remaining 1" in text and "img/min" in text and "2/2" in text
