"""End to end: ``face3d batch`` with the real ``face3d.reconstruct`` (local and Ray), resume, and
the Blender add-on importing a batch output folder (the SDK's mesh.glb + albedo.png)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from face3d.testing import blender_python, require_tool, shared_data

FACES = shared_data() / "faces"
FACE3D = [sys.executable, "-m", "face3d.apps.cli"]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _batch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    return subprocess.run(FACE3D + ["batch", *args, "--no-progress"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=1200)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in csv.DictReader(open(out / "results.csv"))}


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("e2e")
    (d / "m.csv").write_text(
        "path,person\n"
        f"{FACES / 'skimage_astronaut.jpg'},\n"
        f"{FACES / 'skimage_coffee_noface.jpg'},\n")
    proc = _batch(str(d / "m.csv"), "-o", str(d / "out"), "--workers", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return d


def test_real_batch_outputs_table_and_bad_image(batch_out: Path) -> None:
    out = batch_out / "out"
    rows = _rows(out)
    assert set(rows) == {"items/skimage_astronaut", "items/skimage_coffee_noface"}
    ok = rows["items/skimage_astronaut"]
    assert ok["status"] == "ok"
    assert 0 < float(ok["metric_landmark_error"]) < 0.5
    assert float(ok["time_total"]) > 0
    for name in ("mesh.glb", "mesh.obj", "albedo.png", "params.json", "overlay.png", "batch.json"):
        assert (out / "items/skimage_astronaut" / name).is_file(), name
    bad = rows["items/skimage_coffee_noface"]
    assert (bad["status"], bad["error_type"], bad["exit_code"]) == ("failed", "NoFaceError", "2")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"], summary["errors"]) == (1, 1, {"NoFaceError": 1})


def test_resume_skips_real_items(batch_out: Path) -> None:
    before = (batch_out / "out/items/skimage_astronaut/mesh.glb").stat().st_mtime_ns
    proc = _batch(str(batch_out / "m.csv"), "-o", str(batch_out / "out"), "--resume")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = _rows(batch_out / "out")
    assert rows["items/skimage_astronaut"]["resumed"] == "True"
    assert rows["items/skimage_coffee_noface"]["resumed"] == "False"
    assert (batch_out / "out/items/skimage_astronaut/mesh.glb").stat().st_mtime_ns == before


FAST = {"model": "basic", "device": "cpu", "photometric": False, "texture": False}


def test_person_photos_fitted_jointly(tmp_path: Path) -> None:
    from face3d.apps.batch import run_batch

    (tmp_path / "m.jsonl").write_text(f'{{"path": "{FACES / "hrn_mv_10078.jpg"}", "person": "mv_a"}}\n'
                                      f'{{"path": "{FACES / "hrn_mv_5932.jpg"}", "person": "mv_a"}}\n')
    report = run_batch(tmp_path / "m.jsonl", tmp_path / "out", settings=FAST)
    (r,) = report.results
    assert (r.key, r.status, len(r.inputs)) == ("people/mv_a", "ok", 2), r.error_message
    assert 0 < r.metrics["landmark_error"] <= r.metrics["landmark_error_max"] < 0.5
    folder = tmp_path / "out/people/mv_a"
    assert {p.name for p in folder.iterdir()} >= {"photo_00", "photo_01", "summary.json", "batch.json"}
    shapes = [json.loads((folder / f"photo_0{i}/params.json").read_text())["shape"] for i in (0, 1)]
    assert shapes[0] == shapes[1]


def test_ray_engine_real_work_matches_local(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from face3d.apps.batch import run_batch

    img = FACES / "skimage_astronaut.jpg"
    local = run_batch(img, tmp_path / "local", settings=FAST)
    distributed = run_batch(img, tmp_path / "ray", engine="ray", settings=FAST)
    (a,), (b,) = local.results, distributed.results
    assert a.status == b.status == "ok" and a.fingerprint == b.fingerprint
    assert math.isclose(a.metrics["landmark_error"], b.metrics["landmark_error"], rel_tol=1e-5)
    pa = json.loads((tmp_path / "local/items/skimage_astronaut/params.json").read_text())
    pb = json.loads((tmp_path / "ray/items/skimage_astronaut/params.json").read_text())
    assert pa["shape"] == pytest.approx(pb["shape"], abs=1e-5)
    assert distributed.summary["engine"] == "ray"


BLENDER_IMPORT = r'''
import bpy, json, sys
import addon_utils
zip_path, folder, report = sys.argv[-3:]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
addon_utils.enable("face3d_blender", default_set=True)
bpy.ops.face3d.import_result(filepath=folder)
head = bpy.context.view_layer.objects.active
mat = head.data.materials[0]
albedo = [l.from_node.image for l in mat.node_tree.links if l.to_socket.name == "Base Color" and l.from_node.type == "TEX_IMAGE"]
json.dump({"verts": len(head.data.vertices), "uv": len(head.data.uv_layers), "albedo": list(albedo[0].size)}, open(report, "w"))
'''


def test_blender_imports_batch_output_folder(batch_out: Path, tmp_path: Path) -> None:
    import trimesh
    from PIL import Image

    from face3d.apps.commands.blender_addon import build_addon_zip

    require_tool("blender")
    folder = batch_out / "out/items/skimage_astronaut"
    (tmp_path / "s.py").write_text(BLENDER_IMPORT)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    proc = subprocess.run([str(blender_python()), str(tmp_path / "s.py"), str(build_addon_zip(tmp_path / "a.zip")),
                           str(folder), str(tmp_path / "r.json")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["uv"] == 1
    assert r["albedo"] == list(Image.open(folder / "albedo.png").size)
    glb = trimesh.load(folder / "mesh.glb", force="mesh", process=False)
    assert r["verts"] >= len(glb.vertices) > 100
