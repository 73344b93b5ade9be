"""face3d.reconstruct and `face3d reconstruct`: end to end on real photos, outputs, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import face3d
from face3d.errors import BadInputError, ImageError, NoFaceError, VideoError
from face3d.testing import shared_data

FACES = shared_data() / "faces"


def _cli(*args: str) -> int:
    from face3d.apps.cli import main

    return main(list(args))


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "out dir ü"  # spaces and unicode in the output path
    assert _cli("reconstruct", "--demo", "-o", str(out), "--json", "--texture-resolution", "256") == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ["mesh.obj", "mesh.mtl", "albedo.png", "mesh.glb", "mesh.ply", "params.json", "overlay.png", "astronaut.png"]:
        assert (out / name).is_file(), name
    from face3d.io.mesh import load_mesh

    obj = load_mesh(out / "mesh.obj")
    glb = load_mesh(out / "mesh.glb")
    ply = load_mesh(out / "mesh.ply")
    assert len(obj.vertices) == len(ply.vertices) > 1000 and len(glb.faces) == len(obj.faces)
    assert obj.uvs is not None
    params = json.loads((out / "params.json").read_text())
    assert params["model"]["name"] == "default" and len(params["expression"]) == 52  # the default model
    assert params["image_size"] == {"height": 512, "width": 512}
    from PIL import Image

    assert Image.open(out / "overlay.png").size == (1024, 512)
    assert Image.open(out / "albedo.png").size == (256, 256)
    # the fitted model's landmarks land within 3 % of the eye distance of MediaPipe's
    assert summary["landmark_error_interocular"][0] < 0.03
    assert params["landmarks"]["error_interocular"] < 0.03
    assert {"detect", "landmarks", "photometric", "texture", "save"} <= set(summary["timings_s"])
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_cli_set_passes_fitting_settings(tmp_path, capsys):
    from face3d.apps.commands.reconstruct import parse_settings

    assert parse_settings(["photometric_steps=60", "photometric=false", "photometric_landmark_scale=0.03", "x=a b"]) == {
        "photometric_steps": 60, "photometric": False, "photometric_landmark_scale": 0.03, "x": "a b"}
    with pytest.raises(BadInputError, match="KEY=VALUE"):
        parse_settings(["photometric_steps"])
    photo = str(FACES / "skimage_astronaut.jpg")
    assert _cli("reconstruct", photo, "-o", str(tmp_path / "bad"), "--set", "bogus_setting=1") == 2
    assert "bogus_setting" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "o"
    assert _cli("reconstruct", photo, "-o", str(out), "--json", "--set", "photometric=false", "--set", "texture=false",
                "--set", "detail=false") == 0
    timings = json.loads(capsys.readouterr().out)["timings_s"]
    assert "landmarks" in timings and not {"photometric", "texture", "detail"} & set(timings)
    assert _cli("reconstruct", photo, "-o", str(tmp_path / "bad2"), "--preset", "fastest") == 2
    assert "preset" in capsys.readouterr().err and not (tmp_path / "bad2").exists()
    fast = tmp_path / "fast"
    assert _cli("reconstruct", photo, "-o", str(fast), "--json", "--fast") == 0
    timings = json.loads(capsys.readouterr().out)["timings_s"]
    assert "landmarks" in timings and not {"photometric", "texture", "detail"} & set(timings)
    params = json.loads((fast / "params.json").read_text())
    assert params["settings"]["preset"] == "fast" and params["settings"]["fit"]["landmark_steps"] == 30
    assert (fast / "mesh.obj").is_file() and not (fast / "albedo.png").exists()


@pytest.mark.slow
def test_reconstruct_api_photo():
    rec = face3d.reconstruct(str(FACES / "skimage_astronaut.jpg"), texture=False, photometric_steps=5)
    assert isinstance(rec, face3d.Reconstruction)
    assert rec.landmarks2d("ibug68").shape == (68, 2)
    lm = rec.landmarks2d(rec.landmark_set)
    tgt = rec.landmark_targets
    a, b = (33, 263) if rec.landmark_set == "mediapipe478" else (36, 45)
    assert lm.shape == tgt.shape
    assert np.linalg.norm(lm - tgt, axis=1).mean() < 0.03 * np.linalg.norm(tgt[a] - tgt[b])
    mesh = rec.mesh()
    assert mesh.vertices.shape == (rec.model.n_vertices, 3)
    assert 0.1 < mesh.extents[1] < 0.4  # a head, in metres
    img = rec.render()
    assert img.shape == (rec.image_size[0], rec.image_size[1], 3) and img.dtype == np.float32
    with pytest.raises(BadInputError):
        rec.landmarks2d("mediapipe999")


@pytest.mark.slow
def test_reconstruct_all_faces():
    recs = face3d.reconstruct(str(FACES / "facerec_two_people.jpg"), faces="all", texture=False, photometric_steps=0)
    assert isinstance(recs, list) and len(recs) == 2
    xs = sorted(r.landmark_targets[:, 0].mean() for r in recs)
    assert xs[1] - xs[0] > 50  # two different faces
    assert all(r.landmark_error < 0.05 for r in recs)


@pytest.mark.slow
def test_multi_photo_shares_identity(tmp_path):
    paths = [str(FACES / f"hrn_mv_{k}.jpg") for k in ("10078", "21650", "5932")]
    recs = face3d.reconstruct(paths, texture=False, photometric_steps=5)
    assert len(recs) == 3
    assert all(np.array_equal(recs[0].shape, r.shape) for r in recs)
    assert not np.allclose(recs[0].pose, recs[1].pose)
    from face3d.result import save_many

    save_many(recs, tmp_path / "mv", kind="photos")
    assert (tmp_path / "mv" / "photo_02" / "params.json").is_file()
    assert json.loads((tmp_path / "mv" / "summary.json").read_text())["kind"] == "photos"


def test_user_landmarks_skip_detection(tmp_path):
    from face3d.fitting.synthetic import random_face
    from face3d.reconstruction import get_model

    m = get_model("basic")
    f = random_face(m, np.random.default_rng(0), size=256, yaw_deg=10, pitch_deg=5)
    lm_file = tmp_path / "lm.txt"
    np.savetxt(lm_file, f.landmarks68)
    rec = face3d.reconstruct(f.image, model=m, landmarks=str(lm_file), texture=False, photometric=False)
    assert rec.landmark_set == "ibug68" and rec.landmark_error < 0.03
    with pytest.raises(BadInputError):
        face3d.reconstruct(f.image, model=m, landmarks=np.zeros((5, 2)))


def test_no_face_exit_code(tmp_path, capsys):
    photo = FACES / "skimage_coffee_noface.jpg"
    with pytest.raises(NoFaceError, match="skimage_coffee_noface.jpg"):
        face3d.reconstruct(str(photo))
    out = tmp_path / "o"
    assert _cli("reconstruct", str(photo), "-o", str(out), "--quiet") == 2
    assert "skimage_coffee_noface.jpg" in capsys.readouterr().err
    assert not out.exists()


def test_bad_inputs(tmp_path, capsys):
    corrupt = tmp_path / "broken photo.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="broken photo.jpg"):
        face3d.reconstruct(str(corrupt))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert _cli("reconstruct", str(text), "-o", str(tmp_path / "o")) == 2
    assert _cli("reconstruct", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o")) == 2
    assert not (tmp_path / "o").exists()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError):
        face3d.reconstruct(str(video))
    tiny = np.full((40, 40, 3), 128, np.uint8)
    with pytest.raises((ImageError, NoFaceError)):
        face3d.reconstruct(tiny)
    with pytest.raises(BadInputError, match="method"):
        face3d.reconstruct(tiny, method="nerf")
    with pytest.raises(BadInputError, match="faces"):
        face3d.reconstruct(tiny, faces="some")
    with pytest.raises(BadInputError, match="unknown option"):
        face3d.reconstruct(tiny, bogus_option=1)
    with pytest.raises(BadInputError):
        face3d.reconstruct([])
    assert _cli("reconstruct", "-o", str(tmp_path / "o")) == 2  # no input
    capsys.readouterr()


def test_failed_save_keeps_previous_output(tmp_path):
    from face3d.fitting.synthetic import random_face
    from face3d.reconstruction import get_model

    m = get_model("basic")
    f = random_face(m, np.random.default_rng(1), size=256, yaw_deg=10, pitch_deg=5)
    rec = face3d.reconstruct(f.image, model=m, landmarks=f.landmarks68, texture=False, photometric=False)
    out = tmp_path / "res"
    rec.save(out)
    names = {p.name for p in out.iterdir()}
    assert {"mesh.obj", "mesh.glb", "mesh.ply", "params.json", "overlay.png"} <= names
    params = json.loads((out / "params.json").read_text())
    assert params["format"] == "face3d-reconstruction" and params["pose"]["axis_angle"] == pytest.approx(rec.pose.tolist(), abs=1e-6)
    rec.sh = np.full((9, 3), np.nan)  # rendering the overlay now fails
    rec.image_size = (0, 0)
    with pytest.raises(BadInputError, match="width/height"):
        rec.save(out, overwrite=True)
    assert {p.name for p in out.iterdir()} == names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_video_shared_identity_and_frames(tmp_path):
    from face3d.io.images import demo_image
    from face3d.io.video import write_video
    from face3d.result import save_many

    img = demo_image()[:384, 64:448]
    frames = [np.roll(img, shift=4 * k, axis=1) for k in range(4)]
    clip = write_video(tmp_path / "clip one.mp4", frames, fps=4.0)
    recs = face3d.reconstruct(str(clip), fps=4.0, photometric_steps=3, texture_resolution=128, detail=False)
    assert len(recs) == 4
    assert [r.frame for r in recs] == [0, 1, 2, 3]
    assert all(np.array_equal(recs[0].shape, r.shape) for r in recs)
    xs = [r.translation[0] for r in recs]
    assert xs[-1] > xs[0]  # the face moves right in the image, so does the head
    assert recs[0].texture is not None and recs[1].texture is None
    save_many(recs, tmp_path / "video out", kind="frames")
    anim = json.loads((tmp_path / "video out" / "animation.json").read_text())
    assert len(anim["frames"]) == 4 and len(anim["expression_names"]) == 52
    assert (tmp_path / "video out" / "frame_0000" / "mesh.glb").is_file()
    assert (tmp_path / "video out" / "frame_0003" / "params.json").is_file()


def test_grayscale_and_huge_images():
    from face3d.io.images import demo_image

    img = demo_image()
    gray = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)  # (H, W)
    rec = face3d.reconstruct(gray, texture=False, photometric=False)
    assert rec.image_size == (512, 512) and rec.image.shape == (512, 512, 3)
    huge = np.kron(img, np.ones((3, 3, 1), np.uint8))  # 1536 px: downscaled to max_side
    rec2 = face3d.reconstruct(huge, texture=False, photometric=False, max_side=768)
    assert rec2.image_size == (768, 768)
    assert rec2.landmark_error < 0.05


def test_get_model_never_moves_the_callers_model():
    import torch

    from face3d.models import load_model
    from face3d.reconstruction import get_model

    m = load_model("basic")
    assert get_model(m, "cpu") is m
    moved = get_model(m, "meta")  # any other device: a copy goes there
    assert moved is not m and moved.template.device.type == "meta"
    assert m.template.device.type == "cpu" and torch.isfinite(m.template).all()
    assert get_model("basic", "cpu") is get_model("basic", "cpu")  # names are cached per device
    with pytest.raises(BadInputError, match="model"):
        get_model(3.5)


def test_stage_devices_auto_and_missing_cuda(monkeypatch):
    import torch

    from face3d.reconstruction import stage_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert stage_devices("auto") == ("cpu", "cpu") and stage_devices("cpu") == ("cpu", "cpu")
    with pytest.raises(BadInputError, match="CUDA is not available"):
        stage_devices("cuda:0")
    with pytest.raises(BadInputError, match="CUDA is not available"):
        face3d.reconstruct(np.zeros((8, 8, 3), np.uint8), device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert stage_devices("auto") == ("cpu", "cuda") and stage_devices("cuda:1") == ("cuda:1", "cuda:1")
    assert stage_devices("auto", 7) == ("cpu", "cuda") and stage_devices("auto", 8) == ("cuda", "cuda")
    assert stage_devices("cpu", 100) == ("cpu", "cpu")


def test_params_json_records_the_resolved_settings(tmp_path):
    """params.json says what the fit ran with: the preset, every FitConfig field after the
    caller's settings, and the other options (issue 23)."""
    from face3d.fitting.stages import FitConfig
    from face3d.io.images import demo_image

    rec = face3d.reconstruct(demo_image(), texture=False, detail=False, photometric_steps=7, max_side=512)
    st = rec.to_dict()["settings"]
    assert st["preset"] == "default" and st["method"] == "3dmm"
    assert st["fit"]["photometric_steps"] == 7 and st["fit"]["landmark_steps"] == FitConfig().landmark_steps
    assert st["options"]["texture"] is False and st["options"]["max_side"] == 512
    rec.save(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "params.json").read_text())["settings"] == json.loads(json.dumps(st))
