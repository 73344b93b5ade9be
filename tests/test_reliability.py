"""Issue 25, items 4-7: one line and exit 2 instead of tracebacks, checked settings instead of
silent wrong results, warnings in the result's notes and on stderr, clear messages, bounded memory.

CLI cases run the installed ``face3d`` entry point in a subprocess where the point is what a user
sees on stderr (exactly one ``error:`` line); the rest call ``face3d.apps.cli.main`` in-process (the
console script's own function) to keep the suite fast. Everything refused here is refused before
the fit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import face3d
from face3d.apps.cli import main
from face3d.errors import BadInputError, ImageError, ModelFileError, ShapeError
from face3d.fitting.stages import SETTING_RANGES, FitConfig
from face3d.testing import shared_data

FACE3D = Path(sys.executable).with_name("face3d")
FACES = shared_data() / "faces"
FAST = ["--set", "photometric=false", "--set", "detail=false", "--texture-resolution", "128"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(FACE3D), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo, a gray (faceless) photo, a 3-frame video of the photo, a faceless video, speech."""
    from face3d.animation.lipsync.espeak import synthesize
    from face3d.io.audio import save_wav
    from face3d.io.images import demo_image, write_demo_image, write_image
    from face3d.io.video import write_video

    d = tmp_path_factory.mktemp("media")
    img = demo_image()
    gray = np.full((300, 400, 3), 128, np.uint8)
    sp = synthesize("Open the window.")
    return {"photo": write_demo_image(d / "photo.png"), "gray": write_image(d / "gray.png", gray),
            "video": write_video(d / "face.mp4", np.stack([img] * 3), fps=10),
            "novideo": write_video(d / "noface.mp4", np.stack([gray] * 3), fps=10),
            "speech": save_wav(d / "speech.wav", sp.audio, sp.rate), "dir": d}


# ------------------------------------------------------------------ item 5: tracebacks -> exit 2, one line
def test_cli_refusals_are_one_line_exit_2_and_write_nothing(tmp_path: Path, media: dict[str, Path]) -> None:
    cases = [
        (["reconstruct", str(media["photo"]), "-o", "out", "--device", "tpu"],
         "error: argument 'device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["reconstruct", str(media["gray"]), "-o", "out"],  # runs MediaPipe: no INFO lines may precede the error
         f"error: {media['gray']}: no face found (image 400x300 px)"),
    ]
    for argv, expected in cases:
        proc = _run(*argv, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert _one_error(proc.stderr) == expected
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--set", "render_size=0"], "setting 'render_size': 0 is out of range; allowed: an integer from 32 to 1024"),
    (["--set", "seed=abc"], "setting 'seed': expected an integer from 0 to 4294967295, got 'abc'"),
    (["--set", "photometric_steps=many"], "setting 'photometric_steps': expected an integer from 0 to 10000, got 'many'"),
    (["--set", "lr=1e9"], "setting 'lr': 1000000000.0 is out of range; allowed: a number > 0 and <= 1"),
    (["--set", "photometric_steps=-1"], "setting 'photometric_steps': -1 is out of range"),
    (["--set", "threads=0"], "setting 'threads': 0 is out of range; allowed: an integer from 1 to 256"),
    (["--set", "photometric=maybe"], "setting 'photometric': expected true or false, got 'maybe'"),
    (["--texture-resolution", "8192"], "setting 'texture_resolution': 8192 is out of range; allowed: an integer from 16 to 4096"),
    (["--model", "nosuch"], "unknown model 'nosuch'"),
])
def test_cli_bad_settings_are_refused_before_the_fit(tmp_path: Path, media: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                   argv: list[str], expected: str) -> None:
    assert main(["reconstruct", str(media["photo"]), "-o", str(tmp_path / "out"), *argv]) == 2
    assert expected in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_cli_track_and_animate_ranges_and_output_checks(tmp_path: Path, media: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["track", str(media["video"]), "-o", str(tmp_path / "t.json"), "--focal", "0"]) == 2
    assert "argument 'focal': 0.0 is out of range" in _one_error(capsys.readouterr().err)
    assert main(["track", str(media["video"]), "-o", str(tmp_path / "t.json"), "--focal", "-100"]) == 2
    assert _one_error(capsys.readouterr().err) == \
        "error: argument 'focal': -100.0 is out of range; allowed: a number > 0 and <= 1000000"
    assert main(["animate", "--audio", str(media["speech"]), "-o", str(tmp_path / "a.json"), "--fps", "100000"]) == 2
    assert _one_error(capsys.readouterr().err) == "error: argument 'fps': 100000.0 is out of range; allowed: a number > 0 and <= 240"
    (tmp_path / "file").write_text("x")
    for out in (tmp_path, tmp_path / "file" / "sub.json"):  # a folder; a path under a file
        assert main(["track", str(media["video"]), "-o", str(out) + ("/" if out == tmp_path else "")]) == 2
        assert str(out) in _one_error(capsys.readouterr().err)
    assert main(["blender-addon", "-o", str(tmp_path / "file" / "a.zip")]) == 2
    assert "is a file" in _one_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


_FS_SCRIPT = r"""
set -u
mount -t tmpfs -o size=1m,ro tmpfs "$RO" && mount -t tmpfs -o size=256k tmpfs "$FULL" || exit 99
head -c 300000 /dev/zero > "$FULL/filler" 2>/dev/null
run() { name=$1; shift; "$FACE3D" "$@" 2> "$LOGS/$name.err"; echo $? > "$LOGS/$name.rc"; }
run ro_reconstruct reconstruct "$PHOTO" -o "$RO/out"
run ro_animate animate --audio "$SPEECH" -o "$RO/a.json"
run ro_track track "$VIDEO" -o "$RO/t.json"
run ro_addon blender-addon -o "$RO/a.zip"
run full_addon blender-addon -o "$FULL/a.zip"
run full_animate animate --audio "$SPEECH" -o "$FULL/a.glb"
run full_reconstruct reconstruct "$PHOTO" -o "$FULL/out" --set photometric=false --set detail=false --texture-resolution 128
ls -A "$FULL" > "$LOGS/full.ls"; ls -A "$RO" > "$LOGS/ro.ls"
"""


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rm (user namespaces) to mount a read-only and a full tmpfs")
def test_cli_read_only_and_full_file_systems_exit_2_with_one_line(tmp_path: Path, media: dict[str, Path]) -> None:
    ro, full, logs = tmp_path / "ro", tmp_path / "full", tmp_path / "logs"
    for d in (ro, full, logs):
        d.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RO": str(ro), "FULL": str(full), "LOGS": str(logs),
           "FACE3D": str(FACE3D), "PHOTO": str(media["photo"]), "SPEECH": str(media["speech"]), "VIDEO": str(media["video"])}
    proc = subprocess.run(["unshare", "-rm", "bash", "-c", _FS_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in ("ro_reconstruct", "ro_animate", "ro_track", "ro_addon"):
        assert (logs / f"{name}.rc").read_text().strip() == "2", name
        assert "Read-only file system" in _one_error((logs / f"{name}.err").read_text()), name
    for name in ("full_addon", "full_animate", "full_reconstruct"):
        assert (logs / f"{name}.rc").read_text().strip() == "2", name
        assert "No space left on device" in _one_error((logs / f"{name}.err").read_text()), name
    assert (logs / "ro.ls").read_text().split() == []
    assert (logs / "full.ls").read_text().split() == ["filler"]  # no half-written file or temporary left


def test_sdk_wrong_types_and_sizes_raise_typed_errors(media: dict[str, Path]) -> None:
    from face3d import renderers
    from face3d.animation.lipsync import animate_audio
    from face3d.io.audio import load_audio

    from face3d.errors import ModelNotFoundError
    from face3d.models.registry import check_model, model_info

    for bad in (None, 3):
        with pytest.raises(BadInputError, match="model: expected a model name"):
            face3d.load_model(bad)  # type: ignore[arg-type]
        with pytest.raises(BadInputError, match="model: expected a model name"):
            check_model(bad)
    check_model("basic")
    if not model_info("bfm").installed:
        with pytest.raises(ModelNotFoundError, match=r"model 'bfm' is not installed here \(looked in .*\); to get it: request it"):
            check_model("bfm")
        with pytest.raises(ModelNotFoundError, match="'bfm' is not installed"):
            face3d.reconstruct(np.zeros((64, 64, 3), np.uint8), model="bfm")  # before decoding or detection
    with pytest.raises(BadInputError, match=r"animate_audio: expected an audio file path or \(samples, rate\), got NoneType"):
        animate_audio(None)  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="got ndarray"):
        animate_audio(np.zeros(16000, np.float32))  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="audio rate"):
        animate_audio((np.zeros(16000, np.float32), 0))
    samples = load_audio(media["speech"], 22050)
    anim = animate_audio((np.stack([samples, samples], 1), 22050), fps=25, blink=False)  # in-memory stereo
    ref = animate_audio(media["speech"], fps=25, blink=False)
    assert anim.audio is None and anim.n_frames == ref.n_frames and anim.meta["phoneme_method"] == "classify"
    assert np.abs(anim.arkit - ref.arkit).mean() < 0.02
    pos = torch.tensor([[[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [0, 0.5, 0, 1]]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(ShapeError, match="torch.float16"):
        renderers.rasterize(pos.half(), tri, (8, 8))
    with pytest.raises(ShapeError, match="16384"):
        renderers.rasterize(pos, tri, (100000, 100000))
    with pytest.raises(ShapeError, match="batch x H x W"):
        renderers.rasterize(pos.expand(64, 3, 4).contiguous(), tri, (4096, 4096))
    assert renderers.rasterize(pos, tri, (8, 8))[0, 4, 4, 3] == 1  # valid calls unchanged


# ------------------------------------------------------------------ item 6: every setting's range
def _config(name: str, value: object) -> FitConfig:
    """A FitConfig with setting ``name`` (dotted for a nested one: 'landmark_stage.lr_shape') at ``value``."""
    top, _, sub = name.partition(".")
    return FitConfig(**{top: {sub: value} if sub else value})


def _value(cfg: FitConfig, name: str) -> object:
    top, _, sub = name.partition(".")
    return getattr(getattr(cfg, top), sub) if sub else getattr(cfg, top)


def test_every_fit_setting_has_a_checked_range() -> None:
    from face3d.fitting.stages import CONFIG_PARTS

    names = {f.name for f in dataclasses.fields(FitConfig) if f.name not in CONFIG_PARTS}
    names |= {f"{key}.{f.name}" for key, part in CONFIG_PARTS.items() for f in dataclasses.fields(part)}
    assert names == set(SETTING_RANGES) and len(names) > 40
    for name, (kind, lo, hi) in SETTING_RANGES.items():
        if kind == "bool":
            _config(name, False)
            with pytest.raises(BadInputError, match=f"setting '{name}': expected true or false"):
                _config(name, 1)
            continue
        cast = int if kind == "int" else float
        if kind != "positive" and not name.endswith("_max"):  # a _max below its _min is refused
            assert _value(_config(name, cast(lo)), name) == cast(lo)
        if not name.endswith("_min"):
            assert _value(_config(name, cast(hi)), name) == cast(hi)
        step = 1 if kind == "int" else max(abs(hi) * 1e-3, 1e-6)
        for bad in (cast(lo - step) if kind != "positive" else cast(lo), cast(hi + step)):
            with pytest.raises(BadInputError, match=f"setting '{name}': .* is out of range; allowed: "):
                _config(name, bad)
        with pytest.raises(BadInputError, match=f"setting '{name}': expected"):
            _config(name, "many")
    with pytest.raises(BadInputError, match="'lr': nan"):
        FitConfig(lr=float("nan"))
    assert FitConfig(threads=None).threads is None
    with pytest.raises(BadInputError, match="render_size"):
        dataclasses.replace(FitConfig(), render_size=0)  # replace runs the checks too
    with pytest.raises(BadInputError, match="render_size"):
        face3d.reconstruct(np.zeros((64, 64, 3), np.uint8), render_size=0)  # before decoding or detection


def test_faces_all_notes_the_faces_left_out_and_is_refused_on_a_video(media: dict[str, Path]) -> None:
    from face3d.landmarks.detector import detect_landmarks

    photo = str(FACES / "facerec_two_people.jpg")
    notes: list[str] = []
    assert len(detect_landmarks(photo, which="all", notes=notes)) == 2 and notes == []
    assert len(detect_landmarks(photo, which="all", max_faces=1, notes=notes)) == 1
    assert notes == [f"{photo}: 1 face(s) reconstructed; detected faces left out: 1 beyond the first 1 (max_faces)"]
    with pytest.raises(BadInputError, match="faces='all' works on a single photo; a video"):
        face3d.reconstruct(str(media["video"]), faces="all")


def test_landmarks_of_another_photo_are_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo, own, other = (FACES / "aflw2000_image00251.jpg", FACES / "aflw2000_image00251.lm68.txt",
                         FACES / "aflw2000_image00430.lm68.txt")
    kw = dict(texture=False, photometric=False, landmark_steps=10)
    assert face3d.reconstruct(str(photo), landmarks=str(own), **kw).notes == []
    rec = face3d.reconstruct(str(photo), landmarks=str(other), **kw)
    assert len(rec.notes) == 1 and "the given landmarks do not match the face detected" in rec.notes[0]
    assert main(["reconstruct", str(photo), "--landmarks", str(other), "-o", str(tmp_path / "o"), "--quiet", *FAST]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert warnings == [f"warning: {rec.notes[0]}"]


def test_transcripts_that_are_empty_too_long_or_wrong_are_noted(media: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from face3d.animation.lipsync import animate_audio

    good = animate_audio(media["speech"], text="open the window", blink=False)
    assert good.meta["phoneme_method"] == "align" and good.meta["notes"] == []
    empty = animate_audio(media["speech"], text="  ", blink=False)
    # without a usable transcript the default 'words' recogniser, which hears espeak-ng as other words: the classifier's visemes
    assert empty.meta["phoneme_method"] == "classify" and "transcript is empty" in empty.meta["notes"][0]
    long = animate_audio(media["speech"], text="word " * 5000, blink=False)
    assert long.meta["phoneme_method"] == "classify" and "has 5000 words for" in long.meta["notes"][0]
    wrong = animate_audio(media["speech"], text="she sells sea shells by the sea shore", blink=False)
    assert any("does not match the audio" in n or "could not be aligned" in n for n in wrong.meta["notes"]), wrong.meta
    out = media["dir"] / "talk.json"
    assert main(["animate", "--audio", str(media["speech"]), "--text", "", "-o", str(out)]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2 and "transcript is empty" in warnings[0] and "recognised words" in warnings[1]


# ------------------------------------------------------------------ item 7: messages
def test_messages_name_the_file_and_say_what_is_wrong(tmp_path: Path, media: dict[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    audio_only, empty_video = tmp_path / "audio_only.mp4", tmp_path / "zero.mp4"
    subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", str(audio_only)], check=True)
    subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=0.1", "-frames:v", "0",
                    str(empty_video)], check=True)
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    big_gray = tmp_path / "big.png"
    from face3d.io.images import write_image

    write_image(big_gray, np.full((1500, 3000, 3), 128, np.uint8))
    out = str(tmp_path / "out")
    cases = [
        (["reconstruct", str(audio_only), "-o", out], f"{audio_only}: has no video stream (audio only?)"),
        (["reconstruct", str(empty_video), "-o", out], f"{empty_video}: holds no video or audio stream (a 0-second recording?)"),
        (["track", str(media["novideo"]), "-o", str(tmp_path / "t.json")], f"{media['novideo']}: no face found"),
        (["animate", "--audio", str(tmp_path / "loop1"), "-o", str(tmp_path / "a.json")], "loop1: is a symbolic link loop"),
        (["animate", "--audio", str(tmp_path), "-o", str(tmp_path / "a.json")], f"{tmp_path}: is a folder, not a file"),
        (["reconstruct", str(media["photo"]), "--landmarks", str(tmp_path / "obj.npy"), "-o", out],
         "obj.npy: not a readable .npy array (it holds pickled Python objects, which face3d never loads"),
        (["reconstruct", str(big_gray), "-o", out], f"{big_gray}: no face found (image 3000x1500 px, searched at 1024x512)"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        line = _one_error(capsys.readouterr().err)
        assert expected in line, line
        assert "allow_pickle" not in line and "Error opening output files" not in line and "<array>" not in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.json").exists()


# ------------------------------------------------------------------ item 4: huge images, memory caps
def test_huge_images_are_decoded_reduced_or_refused_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import face3d.io.images as images
    from face3d.io.images import demo_image, read_image

    src = Image.fromarray(demo_image()).resize((2400, 1600), Image.Resampling.BICUBIC)
    src.save(tmp_path / "big.jpg", quality=90)
    src.save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)  # Pillow alone would call both files decompression bombs
    want = np.asarray(src.resize((512, 341), Image.Resampling.LANCZOS), np.float32)
    for name in ("big.jpg", "big.png"):
        im = read_image(tmp_path / name, max_side=512)
        assert im.size == (341, 512) and im.original_size == (1600, 2400)
        assert np.abs(im.pixels.astype(np.float32) - want).mean() < 4.0
    assert Image.MAX_IMAGE_PIXELS == 500_000  # restored after decoding
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 3_000_000)
    with pytest.raises(ImageError, match=r"big.jpg: image declares 2400x1600 px \(4 megapixels\); face3d decodes up to 3"):
        read_image(tmp_path / "big.jpg")
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 400_000_000)
    monkeypatch.setattr(images, "MAX_DECODE_BYTES", 10_000_000)
    with pytest.raises(ImageError, match=r"big.png: image declares 2400x1600 px; decoding it would need 0.0 GiB"):
        read_image(tmp_path / "big.png")


def test_flame_pickle_declaring_a_huge_sparse_matrix_is_refused_before_allocating(tmp_path: Path) -> None:
    import pickle

    import scipy.sparse

    from face3d.models.flame import read_pickle

    with open(tmp_path / "bomb.pkl", "wb") as fh:
        pickle.dump({"v_template": np.zeros((3, 3)), "J_regressor": scipy.sparse.csc_matrix((100000, 100000))}, fh, protocol=4)
    with pytest.raises(ModelFileError, match=r"'J_regressor' declares a 100000x100000 sparse matrix \(74.5 GiB"):
        read_pickle(tmp_path / "bomb.pkl")
    with open(tmp_path / "ok.pkl", "wb") as fh:
        pickle.dump({"J_regressor": scipy.sparse.csc_matrix(np.eye(5, 20))}, fh, protocol=4)
    assert np.array_equal(read_pickle(tmp_path / "ok.pkl")["J_regressor"], np.eye(5, 20))


def test_poor_fits_are_noted_unless_the_preset_leaves_the_landmarks() -> None:
    from face3d.fitting.synthetic import random_face
    from face3d.pipeline import poor_fit_notes
    from face3d.reconstruction import get_model

    m = get_model("basic")
    f = random_face(m, np.random.default_rng(1), size=192, yaw_deg=5, pitch_deg=0)
    rec = face3d.reconstruct(f.image, model=m, landmarks=f.landmarks68, texture=False, photometric=False, landmark_steps=30)
    assert rec.landmark_error < 0.1 and not any("poor fit" in n for n in rec.notes)
    rec.landmark_error = 2.26  # what lr=1e9 produced before settings were checked
    assert poor_fit_notes(rec, FitConfig(photometric_landmark_scale=0.0)) == []
    assert poor_fit_notes(rec, FitConfig()) == ["image: poor fit, landmark error 226% of the eye distance (the default settings give 2-18% on "
                         "real photos); check the settings and the landmarks"]


def test_texture_maps_that_cannot_fit_in_memory_are_refused_before_the_fit() -> None:
    from face3d.settings import available_memory, check_texture_memory

    assert available_memory() is None or available_memory() > 0
    check_texture_memory({"texture_resolution": 4096}, available=8_000_000_000)  # 4.9 GB needed: fits
    with pytest.raises(BadInputError, match=r"texture_resolution 4096: .* about 4.9 GB, and this machine has 3.0 GB available; "
                                            r"use 2048 or less"):
        check_texture_memory({"texture_resolution": 4096}, available=3_000_000_000)
    check_texture_memory({"texture_resolution": 4096, "texture": False}, available=1_000_000_000)
    check_texture_memory({"texture_resolution": 2048, "detail": False}, available=2_000_000_000)
