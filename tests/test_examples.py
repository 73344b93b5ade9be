"""Every script in examples/ runs (on small settings) and does what its docstring says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from face3d.testing import load_script

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TESTED = {"reconstruct_turntable", "multi_photo", "talking_head", "livelink_to_head", "fit_silhouette", "batch_ray"}


def _example(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py", f"example_{name}")


def test_every_example_is_tested_and_documented() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts == TESTED
    readme = (REPO / "README.md").read_text()
    for name in scripts:
        assert f"examples/{name}.py" in readme, f"README does not list examples/{name}.py"
        proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_fit_silhouette_recovers_the_hidden_ellipsoid(tmp_path: Path) -> None:
    r = _example("fit_silhouette").main(["-o", str(tmp_path / "s.png")])
    assert r["iou_start"] < 0.6 and r["iou"] > 0.95
    np.testing.assert_allclose(r["radii"], r["true_radii"], atol=0.004)
    np.testing.assert_allclose(r["shift"], r["true_shift"], atol=0.004)
    assert (tmp_path / "s.png").stat().st_size > 500


def test_livelink_take_onto_a_head(tmp_path: Path) -> None:
    import pygltflib

    import face3d

    ex = _example("livelink_to_head")
    out = ex.main(["--avatar", "basic", "-o", str(tmp_path / "take.glb"), "--video", str(tmp_path / "take.mp4"),
                   "--size", "64"])
    made = ex.made_up_take()
    back = face3d.Animation.load(tmp_path / "take.csv")
    assert back.n_frames == made.n_frames and back.fps == made.fps
    np.testing.assert_allclose(back.arkit, made.arkit, atol=1e-3)      # Live Link keeps the curves
    np.testing.assert_allclose(back.head_pose, made.head_pose, atol=1e-3)
    glb = pygltflib.GLTF2().load(str(out))
    assert len(glb.animations) == 1 and len(glb.meshes[0].primitives[0].targets) >= 52
    assert (tmp_path / "take.mp4").stat().st_size > 1000


def test_talking_head_mp4_from_text(tmp_path: Path) -> None:
    import imageio_ffmpeg

    import face3d

    out = _example("talking_head").main(["--text", "Open the window.", "--avatar", "basic", "--size", "64",
                                         "-o", str(tmp_path / "talk.mp4")])
    anim = face3d.Animation.load(tmp_path / "talk.json")
    assert anim.meta["phoneme_method"] == "align" and anim.weight("jawOpen").max() > 0.2
    n_frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert abs(n_frames - anim.n_frames) <= 1 and abs(seconds - anim.duration) < 0.2
    assert out.stat().st_size > 1000 and (tmp_path / "talk.wav").is_file()


@pytest.mark.slow
def test_reconstruct_turntable_gif(tmp_path: Path) -> None:
    from PIL import Image

    gif = _example("reconstruct_turntable").main(["-o", str(tmp_path), "--model", "basic", "--frames", "8",
                                                  "--size", "64", "--texture-resolution", "128"])
    with Image.open(gif) as im:
        assert im.n_frames == 8 and im.size == (64, 64)
        im.seek(0)
        first = np.asarray(im.convert("RGB")).astype(int)
        im.seek(2)
        turned = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(first - turned).mean() > 3                      # the head turned
    assert (tmp_path / "head" / "mesh.glb").is_file()


@pytest.mark.slow
def test_multi_photo_one_identity(tmp_path: Path) -> None:
    from face3d.result import euler_degrees

    recs = _example("multi_photo").main(["-o", str(tmp_path / "p"), "--model", "basic", "--texture-resolution", "128"])
    assert len(recs) == 3
    yaw = [euler_degrees(r.pose)[1] for r in recs]
    assert abs(yaw[0] + yaw[1]) < 0.5 * abs(yaw[0] - yaw[1]) + 2.0  # the mirror image turns the other way
    assert len(list((tmp_path / "p").glob("photo_*/mesh.glb"))) == 3


@pytest.mark.slow
def test_batch_ray_two_photos(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is an optional dependency (face3d[dist])")
    report = _example("batch_ray").main(["-o", str(tmp_path / "b"), "--model", "basic", "--texture-resolution", "128"])
    assert report.exit_code == 0 and [r.status for r in report.results] == ["ok", "ok"]
    assert report.summary["engine"] == "ray" and (tmp_path / "b" / "results.csv").is_file()
