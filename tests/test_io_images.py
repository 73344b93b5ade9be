"""face3d.io.images: decoding, orientation, modes, downscaling and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from face3d.errors import ImageError
from face3d.io.images import LoadedImage, demo_image, load_image, read_image, write_demo_image, write_image


def _gradient(h: int = 80, w: int = 120) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 77)], -1).astype(np.uint8)


def test_png_roundtrip_unicode_path_with_spaces(tmp_path):
    arr = _gradient()
    p = tmp_path / "dossier été" / "photo de face ü.png"
    write_image(p, arr)
    out = read_image(p)
    assert isinstance(out, LoadedImage)
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (80, 120, 3)
    np.testing.assert_array_equal(out.pixels, arr)
    assert out.scale == 1.0 and out.original_size == (80, 120) and out.path == str(p)
    np.testing.assert_array_equal(load_image(str(p)), arr)


def test_exif_orientation_is_honoured(tmp_path):
    arr = _gradient(60, 100)  # landscape; orientation 6 = rotate 90 deg clockwise to display
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif, quality=95)
    out = read_image(p)
    assert out.pixels.shape == (100, 60, 3)
    assert out.original_size == (100, 60)
    expected = np.rot90(arr, k=-1)  # clockwise
    assert np.abs(out.pixels.astype(int) - expected.astype(int)).mean() < 6


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK", "1"])
def test_modes_become_rgb(tmp_path, mode):
    base = _gradient()
    if mode == "I;16":
        g16 = (base[..., 0].astype(np.uint16) * 257)
        img = Image.fromarray(g16)
        suffix = ".png"
    elif mode == "LA":
        img = Image.fromarray(base).convert("LA")
        suffix = ".png"
    elif mode == "CMYK":
        img = Image.fromarray(base).convert("CMYK")
        suffix = ".jpg"
    else:
        img = Image.fromarray(base).convert(mode)
        suffix = ".png"
    p = tmp_path / f"m{suffix}"
    img.save(p)
    out = load_image(p)
    assert out.shape == (80, 120, 3) and out.dtype == np.uint8
    if mode == "I;16":  # 16-bit gray -> 8-bit: exact ramp back
        np.testing.assert_array_equal(out[..., 0], base[..., 0])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
    if mode == "L":
        gray = np.asarray(Image.fromarray(base).convert("L"))
        np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))


def test_16bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2")  # Pillow cannot write 48-bit PNGs; OpenCV (a mediapipe dependency) can
    bgr = np.zeros((70, 90, 3), np.uint16)
    bgr[..., 2] = 65535
    bgr[..., 1] = 100 * 257
    p = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(p), bgr)
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], [255, 100, 0])


def test_write_image_unknown_suffix(tmp_path):
    with pytest.raises(ImageError, match="suffix"):
        write_image(tmp_path / "x.notanimage", _gradient())
    assert list(tmp_path.iterdir()) == []


def test_rgba_composited_over_white():
    rgba = np.zeros((70, 70, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:35, :, 3] = 255  # top half opaque red-ish, bottom fully transparent
    out = load_image(rgba)
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])


def test_arrays_pil_and_tensors():
    import torch

    arr = _gradient()
    f = arr.astype(np.float32) / 255
    np.testing.assert_array_equal(load_image(f), arr)
    np.testing.assert_array_equal(load_image(torch.from_numpy(f)[None]), arr)
    np.testing.assert_array_equal(load_image(Image.fromarray(arr)), arr)
    np.testing.assert_array_equal(load_image(arr[..., 0]), np.repeat(arr[..., :1], 3, -1))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(f * 255)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 100, 100, 3), np.uint8))


def test_huge_image_is_downscaled_with_scale_recorded(tmp_path):
    big = np.zeros((3000, 4500, 3), np.uint8)
    big[1000:2000, 1500:3000] = 255  # a white box: corners at (1500,1000)-(3000,2000)
    p = tmp_path / "big.jpg"
    Image.fromarray(big).save(p, quality=90)
    out = read_image(p, max_side=900)
    assert max(out.pixels.shape[:2]) == 900 and out.pixels.shape[:2] == (600, 900)
    assert out.original_size == (3000, 4500)
    assert out.scale == pytest.approx(0.2)
    ys, xs = np.nonzero(out.pixels[..., 0] > 128)
    corner = out.to_original(np.array([[xs.min(), ys.min()]], float))
    np.testing.assert_allclose(corner[0], [1500, 1000], atol=10)
    again = read_image(out, max_side=450)  # re-reading a LoadedImage keeps scales relative to the original
    assert again.pixels.shape[:2] == (300, 450) and again.scale == pytest.approx(0.1)


def test_bad_files_raise_image_error_naming_the_file(tmp_path):
    empty = tmp_path / "empty photo.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    good = tmp_path / "ok.jpg"
    Image.fromarray(_gradient(200, 200)).save(good, quality=90)
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    tiny = tmp_path / "tiny.png"
    Image.fromarray(_gradient(20, 20)).save(tiny)
    cases = {
        empty: "empty",
        text: "not a recognised image",
        trunc: "corrupt or truncated",
        tiny: "at least",
        tmp_path / "missing.jpg": "not found",
        tmp_path: "folder",
    }
    for path, msg in cases.items():
        with pytest.raises(ImageError, match=msg) as ei:
            read_image(path)
        assert str(path) in str(ei.value)


def test_demo_image_is_the_astronaut(tmp_path):
    img = demo_image()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    from skimage import data

    np.testing.assert_array_equal(img, data.astronaut())  # read from the file: the same pixels as skimage.data
    p = write_demo_image(tmp_path / "astronaut.png")
    np.testing.assert_array_equal(load_image(p), img)
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # atomic write left no temp file


# ---------------------------------------------------------------- video (face3d.io.video)
from face3d.errors import BadInputError, VideoError  # noqa: E402
from face3d.io.video import iter_video_frames, read_video_frames, write_video  # noqa: E402


def _clip(n: int = 30, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """Frames whose mean brightness encodes the frame number (robust to H.264 loss)."""
    return [np.full((h, w, 3), 20 + 7 * i, np.uint8) for i in range(n)]


def test_video_roundtrip_sampling_and_limits(tmp_path):
    p = write_video(tmp_path / "clip ü.mp4", _clip(), fps=30)
    clip = read_video_frames(p)
    assert len(clip) == 30 and clip.size == (64, 96) and clip.source_fps == pytest.approx(30)
    assert clip.frames[0].dtype == np.uint8 and clip.frames[0].shape == (64, 96, 3)
    np.testing.assert_allclose(clip.times, np.arange(30) / 30, atol=1e-9)
    levels = np.array([f.mean() for f in clip.frames])
    np.testing.assert_allclose(levels, 20 + 7 * np.arange(30), atol=3)
    sub = read_video_frames(p, fps=10)
    np.testing.assert_array_equal(sub.indices, np.arange(0, 30, 3))
    np.testing.assert_allclose([f.mean() for f in sub.frames], 20 + 7 * np.arange(0, 30, 3), atol=3)
    few = list(iter_video_frames(p, fps=7.5, max_frames=3))
    assert [f.index for f in few] == [0, 4, 8] and few[2].time == pytest.approx(8 / 30)


def test_bad_videos_raise_video_error(tmp_path):
    p = write_video(tmp_path / "ok.mp4", _clip(10), fps=10)
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray(p.read_bytes())
    corrupt.write_bytes(bytes(data[:48]) + bytes(len(data) - 48))  # header kept, payload zeroed
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (corrupt, text, empty, tmp_path / "missing.mp4"):
        with pytest.raises(VideoError) as ei:
            read_video_frames(path)
        assert str(path) in str(ei.value)
    with pytest.raises(BadInputError, match="fps"):
        read_video_frames(p, fps=0)
