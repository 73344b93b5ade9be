"""`face3d animate` / `face3d track` commands and the MP4 preview."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from face3d.apps.cli import main
from face3d.animation.animation import Animation
from face3d.animation.lipsync.espeak import synthesize
from face3d.io.audio import save_wav


@pytest.fixture()
def speech(tmp_path):
    sp = synthesize("Open the window.")
    return save_wav(tmp_path / "speech.wav", sp.audio, sp.rate)


def test_animate_json_and_glb(tmp_path, speech, capsys):
    assert main(["animate", "--audio", str(speech), "--text", "open the window", "--avatar", "basic",
                 "-o", str(tmp_path / "talk.json"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "align" and summary["frames"] > 20
    anim = Animation.load(tmp_path / "talk.json")
    assert anim.weight("jawOpen").max() > 0.2 and anim.audio == "speech.wav"  # relative to talk.json's folder
    assert main(["animate", "--audio", str(speech), "--avatar", "basic", "-o", str(tmp_path / "talk.glb"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the default 'words' recogniser: espeak-ng's voice is heard as other words, so the classifier's visemes
    assert summary["method"] == "classify" and summary["phonemes"] == 0 and summary["viseme_segments"] >= 5
    assert main(["animate", "--audio", str(speech), "--recognizer", "pocketsphinx", "-o", str(tmp_path / "ps.json"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "recognize" and summary["phonemes"] == summary["viseme_segments"] >= 5
    import pygltflib

    g = pygltflib.GLTF2().load(str(tmp_path / "talk.glb"))
    assert len(g.meshes[0].primitives[0].targets) == 52
    assert main(["animate", "--audio", str(speech), "--avatar", "basic", "-o", str(tmp_path / "take.csv")]) == 0
    assert (tmp_path / "take.csv").read_text().startswith("Timecode,BlendShapeCount,EyeBlinkLeft")


def test_animate_bad_inputs(tmp_path, speech, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert main(["animate", "--audio", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "x.glb")]) == 2
    assert "bad.wav" in capsys.readouterr().err
    assert main(["animate", "--audio", str(speech), "-o", str(tmp_path / "x.txt")]) == 2
    assert main(["animate", "--audio", str(speech), "--recognizer", "nope", "-o", str(tmp_path / "x.glb")]) == 2
    assert "recognizer" in capsys.readouterr().err
    assert main(["animate", "--audio", str(speech), "--avatar", "no_such_model", "-o", str(tmp_path / "x.glb")]) == 2


def test_track_bad_video(tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"not a video")
    assert main(["track", str(tmp_path / "v.mp4"), "--avatar", "basic", "-o", str(tmp_path / "a.json")]) == 2
    assert "v.mp4" in capsys.readouterr().err


@pytest.mark.slow
def test_preview_mp4_has_video_and_audio(tmp_path, speech):
    import imageio_ffmpeg

    from face3d.animation.preview import render_frames, write_preview

    w = np.zeros((6, 52), np.float32)
    w[3:, 17] = 0.8  # jawOpen
    anim = Animation(fps=10, arkit=w, audio=str(speech))
    frames = render_frames(anim, "basic", size=96)
    assert frames.shape == (6, 96, 96, 3) and frames.dtype == np.uint8
    assert np.abs(frames[5].astype(int) - frames[0].astype(int)).sum() > 0  # the mouth opened
    p = write_preview(anim, "basic", tmp_path / "p.mp4", size=96)
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(p)], capture_output=True, text=True).stderr
    assert "Video: h264" in info and "Audio: aac" in info and "10 fps" in info
