"""The Blender add-on, headless: install the zip into bpy 4.5 (its own venv), import a GLB with
ARKit morph targets and textures, import animations (face3d JSON, Live Link CSV, GLB) and check
shape-key values at given frames, export with Blender's glTF exporter.

The Blender venv is ``.venv-blender`` (made by ``.ci/extra-setup``); ``FACE3D_BLENDER_PYTHON``
overrides its interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from apps.blender.animation_io import AnimationFileError, read_track
from apps.commands.blender_addon import PACKAGE, build_addon_zip
from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError
from face3d.testing import blender_python, require_tool

REPO = Path(__file__).resolve().parents[1]
BLENDER_PY = blender_python()
FPS = 30.0
N_FRAMES = 12
ALBEDO_RGB = (200, 120, 40)


def weights() -> np.ndarray:
    """(T, 52) ARKit weights of the test performance: jawOpen ramps up, mouthSmileLeft oscillates."""
    w = np.zeros((N_FRAMES, 52), np.float32)
    w[:, ARKIT_NAMES.index("jawOpen")] = np.linspace(0.0, 0.9, N_FRAMES)
    w[:, ARKIT_NAMES.index("mouthSmileLeft")] = 0.5 + 0.4 * np.sin(np.arange(N_FRAMES) / 2.0)
    return w


def _png(path: Path, rgb: tuple[int, int, int], size: int) -> Path:
    Image.new("RGB", (size, size), rgb).save(path)
    return path


def sdk_files(d: Path) -> dict[str, Path]:
    """With the SDK: a result folder (animated GLB of the basic model with an albedo texture, plus a
    normal map), the performance as face3d JSON (24 fps), Live Link CSV (60 fps) and GLB (30 fps)."""
    import face3d
    from face3d.animation.avatar import Avatar
    from face3d.io.livelink import write_livelink_csv

    texture = np.ones((64, 64, 3), np.float32) * np.asarray(ALBEDO_RGB, np.float32) / 255.0
    avatar = Avatar(face3d.load_model("basic"), texture=texture, name="head")
    folder = d / "result"
    folder.mkdir()
    face3d.Animation(fps=FPS, arkit=weights()).to_gltf(avatar, folder / "mesh.glb")
    _png(folder / "normal.png", (128, 128, 255), 16)
    face3d.Animation(fps=24.0, arkit=weights()).save(d / "anim.json")
    write_livelink_csv(face3d.Animation(fps=60.0, arkit=weights()), d / "take.csv", start_time=10.9)
    return {"folder": folder, "glb": folder / "mesh.glb", "json": d / "anim.json", "csv": d / "take.csv"}


BLENDER_SCRIPT = r'''
import json, sys
import bpy
import addon_utils

zip_path, folder, anim_glb, anim_json, anim_csv, export_path, report_path = sys.argv[-7:]
out = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
addon_utils.enable("face3d_blender", default_set=True, handle_error=None)
out["panel"] = hasattr(bpy.types, "FACE3D_PT_panel")
out["panel_space"] = getattr(bpy.types, "FACE3D_PT_panel").bl_space_type

out["import"] = list(bpy.ops.face3d.import_result(filepath=folder))
head = bpy.context.view_layer.objects.active
keys = head.data.shape_keys
out["shape_keys"] = [kb.name for kb in keys.key_blocks]
out["has_uv"] = len(head.data.uv_layers) > 0
mat = head.data.materials[0]
imgs = {}
for link in mat.node_tree.links:
    if link.to_socket.name == "Base Color" and link.from_node.type == "TEX_IMAGE":
        imgs["albedo"] = link.from_node.image
    if link.to_node.type == "NORMAL_MAP" and link.from_node.type == "TEX_IMAGE":
        imgs["normal"] = link.from_node.image
al = imgs["albedo"]
out["albedo_size"] = list(al.size)
out["albedo_pixel"] = [round(c, 3) for c in al.pixels[:3]]
out["normal"] = "normal" in imgs

def sample(names, frames):
    res = {}
    for f in frames:
        bpy.context.scene.frame_set(f)
        res[str(f)] = {n: round(keys.key_blocks[n].value, 4) for n in names}
    return res

scene = bpy.context.scene
for label, path in (("json", anim_json), ("csv", anim_csv), ("glb", anim_glb)):
    out[label + "_op"] = list(bpy.ops.face3d.import_animation(filepath=path, start_frame=1))
    out[label + "_fps"] = scene.render.fps / scene.render.fps_base
    out[label + "_range"] = [scene.frame_start, scene.frame_end]
    out[label + "_action"] = keys.animation_data.action.name
    out[label] = sample(["jawOpen", "mouthSmileLeft"], [1, 4, 12])

try:
    bpy.ops.face3d.reconstruct(filepath=anim_glb)
except RuntimeError as exc:
    out["reconstruct_error"] = str(exc)
out["export_op"] = list(bpy.ops.face3d.export(filepath=export_path))
json.dump(out, open(report_path, "w"))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return sdk_files(tmp_path_factory.mktemp("sdk"))


@pytest.fixture(scope="module")
def blender_report(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> dict:
    require_tool("blender")
    d = tmp_path_factory.mktemp("blender")
    zip_path = build_addon_zip(d / "face3d_blender.zip")
    f = files
    args = [zip_path, f["folder"], f["glb"], f["json"], f["csv"], d / "export.glb", d / "report.json"]
    (d / "script.py").write_text(BLENDER_SCRIPT)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(d / "user"), PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(BLENDER_PY), str(d / "script.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=d, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((d / "report.json").read_text())
    report["_dir"] = str(d)
    report["_log"] = proc.stdout + proc.stderr
    return report


def test_zip_is_installable_layout(tmp_path: Path) -> None:
    z = build_addon_zip(tmp_path / "a.zip")
    names = zipfile.ZipFile(z).namelist()
    assert f"{PACKAGE}/__init__.py" in names and f"{PACKAGE}/blender_manifest.toml" in names
    assert all(n.startswith(f"{PACKAGE}/") and "__pycache__" not in n for n in names)
    assert build_addon_zip(tmp_path / "b.zip").read_bytes() == z.read_bytes()
    with pytest.raises(BadInputError, match=r"\.zip"):
        build_addon_zip(tmp_path / "a.tar")


def test_import_result_has_arkit_shape_keys_uvs_and_textures(blender_report: dict) -> None:
    r = blender_report
    assert r["panel"] and r["panel_space"] == "VIEW_3D"
    assert r["import"] == ["FINISHED"]
    assert r["shape_keys"][1:] == list(ARKIT_NAMES) and len(r["shape_keys"]) == 53
    assert r["has_uv"] and r["normal"]
    assert r["albedo_size"] == [64, 64]
    assert r["albedo_pixel"] == pytest.approx([c / 255 for c in ALBEDO_RGB], abs=0.01)


@pytest.mark.parametrize("fmt,fps", [("json", 24.0), ("csv", 60.0), ("glb", FPS)])
def test_imported_animation_plays(blender_report: dict, fmt: str, fps: float) -> None:
    r = blender_report
    assert r[f"{fmt}_op"] == ["FINISHED"]
    assert r[f"{fmt}_fps"] == pytest.approx(fps)
    assert r[f"{fmt}_range"] == [1, N_FRAMES]
    w = weights()
    for frame in (1, 4, 12):
        got = r[fmt][str(frame)]
        assert got["jawOpen"] == pytest.approx(w[frame - 1, ARKIT_NAMES.index("jawOpen")], abs=1e-3)
        assert got["mouthSmileLeft"] == pytest.approx(w[frame - 1, ARKIT_NAMES.index("mouthSmileLeft")], abs=1e-3)


def test_reconstruct_without_sdk_cancels_and_export_uses_gltf(blender_report: dict) -> None:
    r = blender_report
    assert "face3d is not importable from Blender's Python" in r["reconstruct_error"]
    assert "-m pip install face3d" in r["reconstruct_error"]
    exported = pygltflib.GLTF2().load(str(Path(r["_dir"]) / "export.glb"))
    assert r["export_op"] == ["FINISHED"]
    assert len(exported.meshes[0].primitives[0].targets) == 52
    assert exported.meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    assert exported.animations and any(c.target.path == "weights" for c in exported.animations[0].channels)


def test_animation_readers_outside_blender(tmp_path: Path, files: dict[str, Path]) -> None:
    f = files
    w = weights()
    t = read_track(f["csv"])
    assert t.fps == 60.0 and t.names[0] == "eyeBlinkLeft" and "headYaw" in t.names
    assert [t.frame_of(i) for i in (0, 5, 11)] == [1, 6, 12]
    assert t.column("jawOpen") == pytest.approx(w[:, ARKIT_NAMES.index("jawOpen")], abs=1e-5)
    assert t.column("jawLeft") == pytest.approx(w[:, ARKIT_NAMES.index("jawLeft")])
    g = read_track(f["glb"])
    assert g.fps == FPS and g.names == list(ARKIT_NAMES)
    assert g.column("mouthSmileLeft") == pytest.approx(w[:, ARKIT_NAMES.index("mouthSmileLeft")], abs=1e-6)
    j = read_track(f["json"])
    assert j.fps == 24.0 and j.times[3] == pytest.approx(3 / 24) and len(j.values) == N_FRAMES
    trimesh.creation.box().export(tmp_path / "static.glb")
    with pytest.raises(AnimationFileError, match="no morph-target weight animation"):
        read_track(tmp_path / "static.glb")
    (tmp_path / "x.json").write_text('{"fps": 30}')
    with pytest.raises(AnimationFileError, match=r"x\.json: not a face3d animation"):
        read_track(tmp_path / "x.json")
    (tmp_path / "a.bvh").write_text("x")
    with pytest.raises(AnimationFileError, match="unknown animation format"):
        read_track(tmp_path / "a.bvh")


EXTENSION_SCRIPT = r'''
import bpy, json, sys
zip_path, folder, report = sys.argv[-3:]
bpy.ops.wm.read_factory_settings(use_empty=True)
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
bpy.ops.face3d.import_result(filepath=folder)
head = bpy.context.view_layer.objects.active
json.dump({"install": list(res), "addons": list(bpy.context.preferences.addons.keys()),
           "panel": hasattr(bpy.types, "FACE3D_PT_panel"), "keys": len(head.data.shape_keys.key_blocks)},
          open(report, "w"))
'''


def test_installs_as_blender_extension(tmp_path: Path, files: dict[str, Path]) -> None:
    require_tool("blender")
    (tmp_path / "s.py").write_text(EXTENSION_SCRIPT)
    args = [build_addon_zip(tmp_path / "f.zip"), files["folder"], tmp_path / "r.json"]
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    proc = subprocess.run([str(BLENDER_PY), str(tmp_path / "s.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["install"] == ["FINISHED"] and "bl_ext.user_default.face3d" in r["addons"]
    assert r["panel"] and r["keys"] == 53
