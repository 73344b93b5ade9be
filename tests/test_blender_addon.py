"""The Blender add-on in real ``bpy``, newest and oldest supported LTS (their own venvs,
``.venv-blender`` and ``.venv-blender-lts``, see ``face3d.testing.BLENDER_VENVS``): install the zip, import a reconstruction folder (ARKit shape keys in
the fitted identity), import animations (face3d JSON/NPZ, Live Link CSV, animated GLB) and check
shape-key values, frame rate, range, sound strip and that actions replace each other; export a
GLB and validate it; render a Workbench image and compare the head's silhouette with face3d's own
renderer. Without bpy these tests skip (fail under ``CI=true``): ``bash .ci/extra-setup``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from test_gltf import _reconstruction

from face3d.apps.blender.animation_io import AnimationFileError, read_track
from face3d.apps.blender.external import (
    NOT_CONFIGURED,
    Face3dProcessError,
    find_face3d,
    reconstruct_command,
    run_reconstruct,
)
from face3d.apps.commands.blender_addon import PACKAGE, build_addon_zip
from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError
from face3d.testing import blender_python, require_tool, validate_gltf

N_FRAMES = 12
POSE_END = 0.3  # radians of yaw at the last frame of the GLB performance
RENDER = 96  # pixels
CAMERA_DISTANCE = 0.7  # metres in front of the face (+Z in face3d, -Y in Blender)


def weights() -> np.ndarray:
    """(T, 52) ARKit weights of the test performance: jawOpen ramps up, mouthSmileLeft oscillates."""
    w = np.zeros((N_FRAMES, 52), np.float32)
    w[:, ARKIT_NAMES.index("jawOpen")] = np.linspace(0.0, 0.9, N_FRAMES)
    w[:, ARKIT_NAMES.index("mouthSmileLeft")] = 0.5 + 0.4 * np.sin(np.arange(N_FRAMES) / 2.0)
    return w


def sdk_files(d: Path) -> dict[str, Path]:
    """With the SDK: a reconstruction folder of the basic model (texture, normal map, fitted
    expression), speech-length audio, and the performance as face3d JSON (24 fps) and NPZ (25 fps)
    with that audio, Live Link CSV (60 fps), and an animated GLB on the folder's head (30 fps)."""
    import face3d
    from face3d.io.audio import save_wav
    from face3d.animation.livelink import write_livelink_csv

    rec = _reconstruction(True)
    rec.save(d / "out")
    np.save(d / "fitted.npy", rec.vertices())
    save_wav(d / "talk.wav", (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32), 16000)
    face3d.Animation(fps=24.0, arkit=weights(), audio="talk.wav").save(d / "anim.json")
    face3d.Animation(fps=25.0, arkit=weights(), audio="talk.wav").save(d / "anim.npz")
    write_livelink_csv(face3d.Animation(fps=60.0, arkit=weights()), d / "take.csv", start_time=10.9)
    pose = np.stack([np.zeros(N_FRAMES), np.linspace(0, POSE_END, N_FRAMES), np.zeros(N_FRAMES)], 1)
    face3d.Animation(fps=30.0, arkit=weights(), head_pose=pose, audio="talk.wav").to_gltf(d / "out", d / "talk.glb")
    return {"folder": d / "out", "json": d / "anim.json", "npz": d / "anim.npz", "csv": d / "take.csv", "glb": d / "talk.glb",
            "fitted": d / "fitted.npy"}


BLENDER_SCRIPT = r'''
import json, math, sys
import bpy
import addon_utils

zip_path, folder, anim_json, anim_npz, anim_csv, anim_glb, out_dir, render_size, distance = sys.argv[-9:]
out = {"version": list(bpy.app.version), "audio": bpy.app.build_options.audaspace}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
addon_utils.enable("face3d_blender", default_set=True, handle_error=None)
out["panel"] = hasattr(bpy.types, "FACE3D_PT_panel")
out["menu"] = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize() if f.__module__.startswith("face3d")]
scene = bpy.context.scene
scene.render.fps = 24

# 1. the reconstruction folder: ARKit shape keys + the fitted expression at rest, textures, smooth
out["import"] = list(bpy.ops.face3d.import_result(filepath=folder))
head = bpy.context.view_layer.objects.active
keys = head.data.shape_keys
out["shape_keys"] = [kb.name for kb in keys.key_blocks]
out["fitted_value"] = keys.key_blocks["fittedExpression"].value
out["smooth"] = sum(p.use_smooth for p in head.data.polygons) / len(head.data.polygons)
out["has_uv"] = len(head.data.uv_layers) > 0
imgs = {}
for link in head.data.materials[0].node_tree.links:
    if link.to_socket.name == "Base Color" and link.from_node.type == "TEX_IMAGE":
        imgs["albedo"] = link.from_node.image
    if link.to_node.type == "NORMAL_MAP" and link.from_node.type == "TEX_IMAGE":
        imgs["normal"] = link.from_node.image
out["albedo_size"] = list(imgs["albedo"].size)
out["normal"] = "normal" in imgs

def evaluated_bbox(obj):
    dg = bpy.context.evaluated_depsgraph_get()
    m = obj.evaluated_get(dg).to_mesh()
    co = [obj.matrix_world @ v.co for v in m.vertices]
    box = [[min(c[i] for c in co) for i in range(3)], [max(c[i] for c in co) for i in range(3)]]
    obj.evaluated_get(dg).to_mesh_clear()
    return box
out["bbox_fitted"] = evaluated_bbox(head)

# a Workbench render of the fitted head, camera on the face axis
size, d = int(render_size), float(distance)
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
scene.collection.objects.link(cam)
cam.location = (0.0, -d, 0.0)
cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
cam.data.lens, cam.data.sensor_width, cam.data.sensor_fit = 50.0, 36.0, "HORIZONTAL"
scene.camera = cam
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_x = scene.render.resolution_y = size
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
scene.render.filepath = out_dir + "/render.png"
bpy.ops.render.render(write_still=True)

def sample(names, frames):
    res = {}
    for f in frames:
        scene.frame_set(f)
        res[str(f)] = {n: round(keys.key_blocks[n].value, 4) for n in names}
    return res

def strip_info():
    ed = scene.sequence_editor
    if ed is None:
        return None
    strips = ed.strips if hasattr(ed, "strips") else ed.sequences
    s = strips.get("face3d_audio")
    return None if s is None else {"file": bpy.path.abspath(s.sound.filepath), "start": s.frame_start}

# 2. animations onto the folder's head; each replaces the previous one
for label, path in (("json", anim_json), ("npz", anim_npz), ("csv", anim_csv)):
    out[label + "_op"] = list(bpy.ops.face3d.import_animation(filepath=path))
    out[label + "_fps"] = scene.render.fps / scene.render.fps_base
    out[label + "_range"] = [scene.frame_start, scene.frame_end]
    out[label + "_action"] = keys.animation_data.action.name
    out[label + "_nla"] = len(keys.animation_data.nla_tracks)
    out[label + "_fitted"] = keys.key_blocks["fittedExpression"].value
    out[label + "_sound"] = strip_info()
    out[label] = sample(["jawOpen", "mouthSmileLeft"], [1, 4, 12])
out["orphan_actions"] = sorted(a.name for a in bpy.data.actions if a.users == 0)

# 3. the animated GLB in an emptied scene at another frame rate and start frame
for o in list(scene.objects):
    if o.type == "MESH":
        bpy.data.objects.remove(o)
scene.render.fps, scene.render.fps_base, scene.frame_start = 24, 1.0, 10
out["glb_import"] = list(bpy.ops.face3d.import_result(filepath=anim_glb))
head = bpy.context.view_layer.objects.active
keys = head.data.shape_keys
out["glb_keys"] = len(keys.key_blocks) - 1
out["glb_smooth"] = sum(p.use_smooth for p in head.data.polygons) / len(head.data.polygons)
out["glb_fps"] = scene.render.fps / scene.render.fps_base
out["glb_range"] = [scene.frame_start, scene.frame_end]
out["glb_nla"] = [len(keys.animation_data.nla_tracks), len(head.animation_data.nla_tracks) if head.animation_data else -1]
out["glb_sound"] = strip_info()
out["glb"] = sample(["jawOpen", "mouthSmileLeft"], [10, 13, 21])
angles = {}
for f in (10, 21):
    scene.frame_set(f)
    angles[str(f)] = head.matrix_world.to_quaternion().angle
out["glb_pose_angle"] = angles
out["glb_normal"] = "normal" in {("normal" if l.to_node.type == "NORMAL_MAP" else "") for l in head.data.materials[0].node_tree.links}

# 4. a JSON animation onto the GLB head replaces the GLB's action, then export
out["glb_json_op"] = list(bpy.ops.face3d.import_animation(filepath=anim_json))
out["glb_json"] = sample(["jawOpen"], [10, 21])
out["glb_json_range"] = [scene.frame_start, scene.frame_end]
out["glb_json_nla"] = len(keys.animation_data.nla_tracks)
out["export_op"] = list(bpy.ops.face3d.export(filepath=out_dir + "/export.glb"))

# 5. Reconstruct without a face3d command: a clear message
bpy.context.preferences.addons["face3d_blender"].preferences.face3d_executable = out_dir + "/no-such-face3d"
try:
    bpy.ops.face3d.reconstruct(filepath=anim_glb)
except RuntimeError as exc:
    out["reconstruct_error"] = str(exc)
json.dump(out, open(out_dir + "/report.json", "w"))
sys.stdout.flush()
import os
os._exit(0)  # the bpy 4.2 module segfaults at interpreter exit after an EGL (Workbench) render
'''


def run_blender(script: str, args: list, d: Path, tool: str = "blender") -> subprocess.CompletedProcess:
    """Run ``script`` in the Python of ``tool`` (see face3d.testing.BLENDER_VENVS) with ``args``
    (a clean user folder, no PYTHONPATH); skips (fails under CI=true) when that bpy is missing."""
    require_tool(tool)
    (d / "script.py").write_text(script)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(d / "user"), PYTHONNOUSERSITE="1",
               PYTHONWARNINGS="always::DeprecationWarning")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(blender_python(tool)), str(d / "script.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=d, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return sdk_files(tmp_path_factory.mktemp("sdk"))


@pytest.fixture(scope="module", params=["blender", "blender-lts"])
def blender_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> dict:
    d = tmp_path_factory.mktemp(request.param)
    f = files
    args = [build_addon_zip(d / "face3d_blender.zip"), f["folder"], f["json"], f["npz"], f["csv"], f["glb"], d, RENDER,
            CAMERA_DISTANCE]
    proc = run_blender(BLENDER_SCRIPT, args, d, request.param)
    report = json.loads((d / "report.json").read_text())
    report["_dir"] = str(d)
    report["_log"] = proc.stdout + proc.stderr
    return report


def test_zip_is_installable_layout(tmp_path: Path) -> None:
    z = build_addon_zip(tmp_path / "a.zip")
    names = zipfile.ZipFile(z).namelist()
    assert f"{PACKAGE}/__init__.py" in names and f"{PACKAGE}/blender_manifest.toml" in names
    assert f"{PACKAGE}/external.py" in names
    assert all(n.startswith(f"{PACKAGE}/") and "__pycache__" not in n for n in names)
    assert build_addon_zip(tmp_path / "b.zip").read_bytes() == z.read_bytes()
    with pytest.raises(BadInputError, match=r"\.zip"):
        build_addon_zip(tmp_path / "a.tar")


def test_import_folder_has_arkit_shape_keys_fitted_face_and_textures(blender_report: dict, files: dict[str, Path]) -> None:
    r = blender_report
    assert r["version"][:2] in ([4, 2], [5, 0])
    assert r["panel"] and r["menu"] == ["menu_import"]
    assert r["import"] == ["FINISHED"]
    assert r["shape_keys"][1:] == [*ARKIT_NAMES, "fittedExpression"]
    # the importer marks a face flat where its vertex normals equal the face normal (planar spots): same look
    assert r["fitted_value"] == 1.0 and r["smooth"] > 0.95
    assert r["has_uv"] and r["normal"] and r["albedo_size"] == [32, 32]
    # the evaluated head is the fitted face (glTF +Y up, +Z front -> Blender +Z up, -Y front)
    v = np.load(files["fitted"])
    blender = np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1)
    np.testing.assert_allclose(np.asarray(r["bbox_fitted"]), [blender.min(0), blender.max(0)], atol=1e-4)


@pytest.mark.parametrize("fmt,fps", [("json", 24.0), ("npz", 25.0), ("csv", 60.0)])
def test_imported_animation_plays_with_sound_and_replaces(blender_report: dict, files: dict[str, Path], fmt: str, fps: float) -> None:
    r = blender_report
    assert r[f"{fmt}_op"] == ["FINISHED"]
    assert r[f"{fmt}_fps"] == pytest.approx(fps)
    assert r[f"{fmt}_range"] == [1, N_FRAMES]
    assert r[f"{fmt}_nla"] == 0 and r[f"{fmt}_action"] == files[fmt].stem
    assert r[f"{fmt}_fitted"] == 0.0  # the photo's expression is switched off under an animation
    w = weights()
    for frame in (1, 4, 12):
        got = r[fmt][str(frame)]
        assert got["jawOpen"] == pytest.approx(w[frame - 1, ARKIT_NAMES.index("jawOpen")], abs=1e-3)
        assert got["mouthSmileLeft"] == pytest.approx(w[frame - 1, ARKIT_NAMES.index("mouthSmileLeft")], abs=1e-3)
    if fmt == "csv" or not r["audio"]:  # no audio in a Live Link take (the earlier strip is removed), or no audio in bpy
        assert r[f"{fmt}_sound"] is None
    else:
        assert r[f"{fmt}_sound"] == {"file": str(files["json"].parent / "talk.wav"), "start": 1}
    assert r["orphan_actions"] == []


def test_animated_glb_sets_scene_and_starts_on_first_frame(blender_report: dict) -> None:
    r = blender_report
    assert r["glb_import"] == ["FINISHED"] and r["glb_keys"] == 52
    assert r["glb_smooth"] > 0.95 and r["glb_normal"]
    assert r["glb_fps"] == pytest.approx(30.0) and r["glb_range"] == [10, 10 + N_FRAMES - 1]
    assert r["glb_nla"] == [0, 0]
    if r["audio"]:
        assert r["glb_sound"]["start"] == 10 and r["glb_sound"]["file"].endswith("talk.wav")
    w = weights()
    for frame in (10, 13, 21):
        assert r["glb"][str(frame)]["jawOpen"] == pytest.approx(w[frame - 10, ARKIT_NAMES.index("jawOpen")], abs=1e-3)
    assert r["glb_pose_angle"]["10"] == pytest.approx(0.0, abs=1e-3)
    assert r["glb_pose_angle"]["21"] == pytest.approx(POSE_END, abs=1e-3)
    # a JSON animation then replaces the GLB's action (24 fps from the scene's first frame)
    assert r["glb_json_op"] == ["FINISHED"] and r["glb_json_nla"] == 0 and r["glb_json_range"] == [10, 21]
    assert r["glb_json"]["21"]["jawOpen"] == pytest.approx(0.9, abs=1e-3)


def test_no_deprecated_api(blender_report: dict) -> None:
    log = blender_report["_log"]
    assert "use_nodes" not in log
    assert [ln for ln in log.splitlines() if "DeprecationWarning" in ln and "face3d" in ln] == []


def test_exported_glb_validates_with_normals_and_the_animation(blender_report: dict) -> None:
    r = blender_report
    assert r["export_op"] == ["FINISHED"]
    path = Path(r["_dir"]) / "export.glb"
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    g = pygltflib.GLTF2().load(str(path))
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.NORMAL is not None and len(prim.targets) == 52
    assert g.meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    weights_channel = next(c for c in g.animations[0].channels if c.target.path == "weights")
    times = g.accessors[g.animations[0].samplers[weights_channel.sampler].input]
    assert times.max[0] - times.min[0] == pytest.approx((N_FRAMES - 1) / 24.0, abs=1e-3)  # the JSON's 12 frames at 24 fps


def test_workbench_render_covers_the_head(blender_report: dict, files: dict[str, Path]) -> None:
    import torch
    from PIL import Image

    from face3d import renderers

    alpha = np.asarray(Image.open(Path(blender_report["_dir"]) / "render.png").convert("RGBA"))[..., 3] > 127
    v = torch.as_tensor(np.load(files["fitted"]), dtype=torch.float32)[None]
    from face3d.models import load_model

    faces = load_model("basic").faces
    f = 50.0 / 36.0 * RENDER
    K = torch.tensor([[[f, 0, RENDER / 2], [0, f, RENDER / 2], [0, 0, 1]]], dtype=torch.float32)
    cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.tensor([[0.0, 0.0, -CAMERA_DISTANCE]]),
                                      width=RENDER, height=RENDER)
    expected = renderers.render_mesh(renderers.Mesh(v, faces), cam, vertex_colors=torch.ones_like(v)).alpha[0, ..., 0].numpy() > 0.5
    iou = (alpha & expected).sum() / (alpha | expected).sum()
    assert expected.sum() > 0.1 * RENDER * RENDER and iou > 0.95, (alpha.sum(), expected.sum(), iou)


def test_reconstruct_without_face3d_says_how_to_configure(blender_report: dict) -> None:
    msg = blender_report["reconstruct_error"]
    assert "configured face3d executable" in msg and "Edit > Preferences > Add-ons > face3d" in msg


def test_external_face3d_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_face3d("") is None
    with pytest.raises(Face3dProcessError, match="face3d is not configured"):
        run_reconstruct("", tmp_path / "a.jpg", tmp_path / "out")
    assert NOT_CONFIGURED.startswith("face3d is not configured")
    exe = tmp_path / "face3d"
    exe.write_text(f"#!/bin/sh\necho \"$PYTHONPATH|$@\" > '{tmp_path}/args.txt'\necho 'error: no face found' >&2\nexit 2\n")
    exe.chmod(0o755)
    assert find_face3d("") == exe and find_face3d(str(exe)) == exe and find_face3d(str(tmp_path / "nope")) is None
    assert reconstruct_command(exe, "a.jpg", "o", "ict") == [str(exe), "reconstruct", "a.jpg", "-o", "o", "--model", "ict"]
    assert reconstruct_command(exe, "a.jpg", "o", "", "--set 'a=b c'")[-2:] == ["--set", "a=b c"]
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.setenv("PYTHONPATH", "/blender/python/lib")
    with pytest.raises(Face3dProcessError, match=r"exit 2\): error: no face found"):
        run_reconstruct(str(exe), tmp_path / "a.jpg", tmp_path / "out")
    assert (tmp_path / "args.txt").read_text().strip() == f"|reconstruct {tmp_path / 'a.jpg'} -o {tmp_path / 'out'}"


def test_animation_readers_outside_blender(tmp_path: Path, files: dict[str, Path]) -> None:
    f = files
    w = weights()
    t = read_track(f["csv"])
    assert t.fps == 60.0 and t.names[0] == "eyeBlinkLeft" and "headYaw" in t.names and t.audio is None
    assert [t.frame_of(i) for i in (0, 5, 11)] == [1, 6, 12]
    assert t.column("jawOpen") == pytest.approx(w[:, ARKIT_NAMES.index("jawOpen")], abs=1e-5)
    g = read_track(f["glb"])
    assert g.fps == 30.0 and g.names == list(ARKIT_NAMES) and g.audio == "talk.wav"
    assert g.column("mouthSmileLeft") == pytest.approx(w[:, ARKIT_NAMES.index("mouthSmileLeft")], abs=1e-6)
    j = read_track(f["json"])
    assert j.fps == 24.0 and j.times[3] == pytest.approx(3 / 24) and len(j.values) == N_FRAMES
    assert j.audio_file() == f["json"].parent / "talk.wav"
    j.audio = str(f["json"].parent / "talk.wav")  # absolute paths are kept
    assert j.audio_file() == f["json"].parent / "talk.wav"
    j.audio = "missing.wav"
    assert j.audio_file() is None
    n = read_track(f["npz"])
    assert n.fps == 25.0 and n.names == list(ARKIT_NAMES) and n.audio == "talk.wav"
    assert n.column("jawOpen") == pytest.approx(w[:, ARKIT_NAMES.index("jawOpen")], abs=1e-6)
    trimesh.creation.box().export(tmp_path / "static.glb")
    with pytest.raises(AnimationFileError, match="no morph-target weight animation"):
        read_track(tmp_path / "static.glb")
    (tmp_path / "x.json").write_text('{"fps": 30}')
    with pytest.raises(AnimationFileError, match=r"x\.json: not a face3d animation"):
        read_track(tmp_path / "x.json")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(AnimationFileError, match="no header_json"):
        read_track(tmp_path / "other.npz")
    (tmp_path / "a.bvh").write_text("x")
    with pytest.raises(AnimationFileError, match="unknown animation format"):
        read_track(tmp_path / "a.bvh")


EXTENSION_SCRIPT = r'''
import bpy, json, sys
import addon_utils
zip_path, folder, report = sys.argv[-3:]
bpy.ops.wm.read_factory_settings(use_empty=True)
res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
bpy.ops.face3d.import_result(filepath=folder)
head = bpy.context.view_layer.objects.active
out = {"install": list(res), "addons": sorted(bpy.context.preferences.addons.keys()),
       "panel_module": bpy.types.FACE3D_PT_panel.__module__, "keys": len(head.data.shape_keys.key_blocks)}
# the legacy add-on cannot be enabled beside the extension
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
mod = addon_utils.enable("face3d_blender", default_set=True, handle_error=lambda exc: out.__setitem__("legacy_error", str(exc)))
out["legacy_enabled"] = mod is not None and "face3d_blender" in bpy.context.preferences.addons.keys()
out["panel_module_after"] = bpy.types.FACE3D_PT_panel.__module__
out["still_works"] = list(bpy.ops.face3d.import_result(filepath=folder))
json.dump(out, open(report, "w"))
'''


@pytest.mark.parametrize("tool", ["blender", "blender-lts"])
def test_installs_as_extension_and_refuses_a_second_registration(tmp_path: Path, files: dict[str, Path], tool: str) -> None:
    args = [build_addon_zip(tmp_path / "f.zip"), files["folder"], tmp_path / "r.json"]
    run_blender(EXTENSION_SCRIPT, args, tmp_path, tool)
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["install"] == ["FINISHED"] and "bl_ext.user_default.face3d" in r["addons"]
    assert r["panel_module"] == "bl_ext.user_default.face3d.operators" and r["keys"] == 54
    assert "already enabled as 'bl_ext.user_default.face3d'" in r["legacy_error"] and not r["legacy_enabled"]
    assert r["panel_module_after"] == r["panel_module"] and r["still_works"] == ["FINISHED"]


RECONSTRUCT_SCRIPT = r'''
import bpy, json, os, sys
import addon_utils
zip_path, exe, photo, report = sys.argv[-4:]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
addon_utils.enable("face3d_blender", default_set=True)
prefs = bpy.context.preferences.addons["face3d_blender"].preferences
prefs.face3d_executable = exe
prefs.extra_args = "--texture-resolution 128 --set photometric_steps=10"
res = list(bpy.ops.face3d.reconstruct(filepath=photo))
head = bpy.context.view_layer.objects.active
keys = [kb.name for kb in head.data.shape_keys.key_blocks]
images = [n.image.size[:] for n in head.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE"]
json.dump({"op": res, "keys": keys, "images": [list(s) for s in images], "numpy": __import__("numpy").__version__},
          open(report, "w"))
sys.stdout.flush()
os._exit(0)
'''


@pytest.mark.slow
def test_reconstruct_operator_runs_face3d_as_a_separate_process(tmp_path: Path) -> None:
    """The Reconstruct operator runs this checkout's face3d CLI (a wrapper script standing for the
    installed ``face3d`` command) on the astronaut photo and imports the result."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    exe = tmp_path / "face3d"
    repo = Path(__file__).resolve().parents[1]
    exe.write_text(f"#!/bin/sh\nPYTHONPATH='{repo}' OMP_NUM_THREADS=1 exec '{sys.executable}' -m face3d.apps.cli \"$@\"\n")
    exe.chmod(0o755)
    args = [build_addon_zip(tmp_path / "a.zip"), exe, tmp_path / "astronaut.png", tmp_path / "r.json"]
    run_blender(RECONSTRUCT_SCRIPT, args, tmp_path)
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["op"] == ["FINISHED"]
    assert r["keys"][1:] == [*ARKIT_NAMES, "fittedExpression"]
    assert [128, 128] in r["images"]  # the albedo written with --texture-resolution 128
    assert r["numpy"].startswith("1.") and r["numpy"] == _blender_numpy()  # bpy keeps its numpy 1.x; face3d needs 2


def _blender_numpy() -> str:
    """The numpy version installed in Blender's Python (never replaced by face3d's)."""
    out = subprocess.run([str(blender_python()), "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()
