"""Output folders never lose a user's files (issue: `-o DIR` used to delete DIR's contents).

CLI cases run the installed ``face3d`` entry point in a subprocess and check the exit code, the
one-line message and exactly which files exist afterwards, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face3d.errors import OutputError
from face3d.io.atomic import OWNED_FILES, check_output_dir, output_dir, owned_files

FACE3D = Path(sys.executable).with_name("face3d")
FAST = ["--set", "photometric=false", "--set", "detail=false", "--texture-resolution", "128"]


def _snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and 'link:<target>' of every symlink) below root."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(FACE3D), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _user_files(d: Path) -> dict[str, str]:
    from face3d.io.images import write_demo_image

    d.mkdir(parents=True, exist_ok=True)
    (d / "notes.txt").write_text("my notes\n")
    (d / "sub").mkdir()
    (d / "sub" / "thesis.pdf").write_bytes(b"%PDF-1.4 not ours")
    (d / "mesh.bak").write_bytes(b"\x00\x01")
    write_demo_image(d / "photo.png")  # the input photo lives in the output folder
    return _snapshot(d)


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_cli_output_folder_keeps_every_user_file(tmp_path: Path) -> None:
    d = tmp_path / "my folder"
    before = _user_files(d)

    first = _run("reconstruct", str(d / "photo.png"), "-o", str(d), *FAST, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    after = _snapshot(d)
    assert {k: after[k] for k in before} == before  # every pre-existing file byte-identical
    ours = set(owned_files(d) or [])
    assert {"mesh.obj", "mesh.glb", "params.json", "overlay.png"} <= ours
    assert set(after) == set(before) | ours | {OWNED_FILES}

    # A second run without --overwrite: exit 2 at once, one line, nothing changed.
    again = _run("reconstruct", str(d / "photo.png"), "-o", str(d), *FAST, cwd=tmp_path)
    assert again.returncode == 2
    assert "previous face3d result" in _error_line(again) and "--overwrite" in again.stderr
    assert _snapshot(d) == after

    # --overwrite from inside the folder (-o .): our files replaced, the user's untouched.
    (d / "params.json").write_text("{}")  # stands for an older result of ours
    third = _run("reconstruct", "photo.png", "-o", ".", "--overwrite", *FAST, cwd=d)
    assert third.returncode == 0, third.stderr
    final = _snapshot(d)
    assert {k: final[k] for k in before} == before
    assert set(final) == set(after)
    assert json.loads((d / "params.json").read_text())["format"] == "face3d-reconstruction"
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["file", "symlink", "under_file"])
def test_cli_refuses_file_and_symlink_targets(tmp_path: Path, kind: str) -> None:
    from face3d.io.images import write_demo_image

    photo = write_demo_image(tmp_path / "in.png")
    (tmp_path / "existing_file.txt").write_text("keep me")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.txt").write_text("x")
    (tmp_path / "a_symlink").symlink_to(tmp_path / "real", target_is_directory=True)
    target = {"file": "existing_file.txt", "symlink": "a_symlink", "under_file": "existing_file.txt/sub"}[kind]
    before = _snapshot(tmp_path)
    proc = _run("reconstruct", str(photo), "-o", str(tmp_path / target), cwd=tmp_path)
    assert proc.returncode == 2
    line = _error_line(proc)
    assert str(tmp_path / target) in line
    assert ("symbolic link" in line) if kind == "symlink" else ("file" in line)
    assert _snapshot(tmp_path) == before
    assert (tmp_path / "a_symlink").is_symlink()


def test_output_dir_refuses_to_overwrite_a_foreign_file(tmp_path: Path) -> None:
    d = tmp_path / "out"
    d.mkdir()
    (d / "mesh.obj").write_text("the user's own mesh")
    before = _snapshot(d)
    with pytest.raises(OutputError, match=r"did not write \(mesh.obj\)"):
        with output_dir(d) as tmp:
            (tmp / "mesh.obj").write_text("ours")
            (tmp / "params.json").write_text("{}")
    assert _snapshot(d) == before  # nothing moved, no temporary left


def test_output_dir_overwrite_replaces_only_its_own_files(tmp_path: Path) -> None:
    d = tmp_path / "out"
    with output_dir(d) as tmp:  # a new folder: created whole
        (tmp / "a.txt").write_text("1")
        (tmp / "old").mkdir()
        (tmp / "old" / "b.txt").write_text("2")
    assert owned_files(d) == ["a.txt", "old/b.txt"]
    (d / "mine.txt").write_text("user")
    (d / "old" / "user.txt").write_text("user, inside a folder of ours")
    with pytest.raises(OutputError, match="previous face3d result"):
        check_output_dir(d)
    with output_dir(d, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (d / "a.txt").read_text() == "new"
    assert not (d / "old" / "b.txt").exists()  # ours, and not in the new result
    assert (d / "mine.txt").read_text() == "user" and (d / "old" / "user.txt").is_file()
    assert owned_files(d) == ["a.txt"]


def test_output_dir_failure_leaves_folder_unchanged(tmp_path: Path) -> None:
    d = tmp_path / "out"
    d.mkdir()
    (d / "keep.txt").write_text("k")
    before = _snapshot(d)
    with pytest.raises(RuntimeError):
        with output_dir(d) as tmp:
            (tmp / "mesh.obj").write_text("half")
            raise RuntimeError("writer failed")
    assert _snapshot(d) == before
    with pytest.raises(RuntimeError):
        with output_dir(tmp_path / "new") as tmp:
            raise RuntimeError("writer failed")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sdk_save_and_save_many_keep_user_files(tmp_path: Path) -> None:
    import face3d
    from face3d.fitting.synthetic import random_face
    from face3d.reconstruction import get_model
    from face3d.result import save_many

    m = get_model("basic")
    f = random_face(m, np.random.default_rng(3), size=192, yaw_deg=5, pitch_deg=0)
    rec = face3d.reconstruct(f.image, model=m, landmarks=f.landmarks68, texture=False, photometric=False, detail=False)
    d = tmp_path / "results"
    before = _user_files(d)
    rec.save(d)
    with pytest.raises(OutputError):
        rec.save(d)
    save_many([rec, rec], d / "set", kind="faces")
    rec.save(d, overwrite=True)
    after = _snapshot(d)
    assert {k: after[k] for k in before} == before
    assert {"mesh.obj", "params.json", "set/face_00/mesh.obj", "set/face_01/params.json", "set/summary.json"} <= set(after)
