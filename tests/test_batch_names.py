"""Batches that survive real folder names (issue 25, item 2): Unicode names kept, collisions
disambiguated deterministically, hidden files and the output folder skipped, cp1252 manifests,
settings checked once before any item, ``--resume`` redoing items whose outputs were deleted.

Engine cases use ``fake_work`` from test_batch.py (seconds); the CLI cases run the real ``face3d``
entry point and fail before any fit.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from face3d.apps.batch import load_items, run_batch
from face3d.errors import FileFormatError

sys.path.insert(0, str(Path(__file__).parent))
from test_batch import _photos, fake_work  # noqa: E402

FACE3D = Path(sys.executable).with_name("face3d")


def _keys(items: list) -> list[str]:
    return [i.key for i in items]


def test_unicode_and_colliding_names_get_distinct_stable_keys(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["张伟.jpg", "李娜.jpg", "a b.jpg", "a_b.jpg", "sub/x y.png", "sub/x?y.png"])
    keys = _keys(load_items(root))
    assert "items/张伟" in keys and "items/李娜" in keys and "items/a_b" in keys  # Unicode kept, exact name kept
    hashed = [k for k in keys if k.startswith(("items/a_b-", "items/sub/x_y-"))]
    assert len(keys) == 6 and len(set(keys)) == 6 and len(hashed) == 3
    assert all(len(k.rsplit("-", 1)[1]) == 8 for k in hashed)
    assert _keys(load_items(root)) == keys  # deterministic: --resume finds the same folders
    report = run_batch(root, tmp_path / "out", work=fake_work)
    assert report.exit_code == 0 and report.summary["ok"] == 6
    assert sorted(p.name for p in (tmp_path / "out/items").iterdir() if p.is_dir() and p.name != "sub")[:2] == ["a_b", sorted(
        k.split("/")[-1] for k in hashed if "/sub/" not in k)[0]]
    again = run_batch(root, tmp_path / "out", work=fake_work, resume=True)
    assert all(r.resumed for r in again.results)


def test_manifest_same_name_in_two_folders_cjk_people_and_repeated_rows(tmp_path: Path) -> None:
    _photos(tmp_path / "d1", ["p.jpg", "q.jpg"])
    _photos(tmp_path / "d2", ["p.jpg"])
    m = tmp_path / "lists" / "m.csv"
    m.parent.mkdir()
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    rows = [("path", "person"), (d1 / "p.jpg", ""), (d2 / "p.jpg", ""), (d1 / "p.jpg", ""),
            (d1 / "q.jpg", "王芳"), (d2 / "p.jpg", "王芳"), (d2 / "p.jpg", "王 芳"), (d1 / "q.jpg", "王_芳")]
    m.write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n", encoding="utf-8")
    notes: list[str] = []
    items = load_items(m, notes=notes)
    keys = _keys(items)
    assert len(keys) == 5 and len(set(keys)) == 5
    assert sum(k.startswith("items/p-") for k in keys) == 2  # both outside the manifest's folder: hashed
    assert "people/王芳" in keys and "people/王_芳" in keys and any(k.startswith("people/王_芳-") for k in keys)
    assert len(next(i for i in items if i.key == "people/王芳").paths) == 2
    assert len(notes) == 1 and "line 4 repeats" in notes[0] and "line 2" in notes[0]


def test_hidden_files_and_output_inside_input_are_skipped(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "._a.jpg", ".hidden/b.jpg", "c.png"])
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    out = root / "out"
    first = run_batch(root, out, work=fake_work)
    assert [r.key for r in first.results] == ["items/a", "items/c"]
    (out / "items/a/preview.png").write_bytes((root / "c.png").read_bytes())  # an output PNG inside the input folder
    second = run_batch(root, out, work=fake_work, resume=True)
    assert [(r.key, r.resumed) for r in second.results] == [("items/a", True), ("items/c", True)]


def test_resume_redoes_an_item_whose_outputs_were_deleted_or_truncated(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "out"
    run_batch(root, out, work=fake_work)
    assert json.loads((out / "items/a/batch.json").read_text())["files"] == {"result.txt": 67}
    (out / "items/a/result.txt").unlink()
    with open(out / "items/b/result.txt", "r+") as fh:
        fh.truncate(10)
    again = run_batch(root, out, work=fake_work, resume=True)
    assert {r.key: r.resumed for r in again.results} == {"items/a": False, "items/b": False, "items/c": True}
    assert (out / "items/a/result.txt").stat().st_size == 67 and (out / "items/b/result.txt").stat().st_size == 67


def test_cp1252_manifest_is_read_with_a_note_and_garbage_is_refused(tmp_path: Path) -> None:
    _photos(tmp_path, ["José.jpg", "Zoë.jpg"])
    m = tmp_path / "m.csv"
    m.write_bytes("path,person\nJosé.jpg,\nZoë.jpg,Zoë\n".encode("cp1252"))
    notes: list[str] = []
    items = load_items(m, notes=notes)
    assert _keys(items) == ["items/José", "people/Zoë"] and items[1].paths[0].is_file()
    assert len(notes) == 1 and "Windows-1252" in notes[0]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"path\nok.jpg\n\x81\x8d.jpg\n")  # neither UTF-8 nor cp1252
    with pytest.raises(FileFormatError, match=r"bad.csv: line 3: not UTF-8"):
        load_items(bad)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(FACE3D), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_batch_checks_model_device_preset_and_settings_once_before_any_item(tmp_path: Path) -> None:
    root = _photos(tmp_path / "in", ["a.jpg", "b.jpg"])
    cases = {"--device": ("tpu", "argument 'device'"), "--model": ("nosuchmodel", "unknown model 'nosuchmodel'"),
             "--preset": ("nope", "fit preset")}
    for flag, (value, expected) in cases.items():
        proc = _run("batch", str(root), "-o", "out", flag, value, "--no-progress", cwd=tmp_path)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
        assert not (tmp_path / "out").exists()  # refused before any work: nothing written


def test_cli_batch_prints_the_cp1252_note_as_a_warning(tmp_path: Path) -> None:
    """The manifest lists only a bad image, so the run is short; the note still reaches stderr."""
    (tmp_path / "Renée.png").write_bytes(b"not an image")
    (tmp_path / "m.csv").write_bytes("path\nRenée.png\n".encode("cp1252"))
    proc = _run("batch", "m.csv", "-o", "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")] == [
        "warning: m.csv: not UTF-8; read as Windows-1252 (Latin-1). Save it as UTF-8 to be sure of the names"]
    rows = list(csv.DictReader(open(tmp_path / "out/results.csv", encoding="utf-8")))
    assert [(r["key"], r["status"]) for r in rows] == [("items/Renée", "failed")]
