"""Audio loading for lip sync: formats, rates, channels, streaming, corrupt files."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from face3d.errors import AudioError, BadInputError
from face3d.io.audio import audio_info, load_audio, save_wav, stream_audio


def _tone(rate: int, seconds: float, f: float = 300.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["flac", "ogg", "mp3"])
def test_formats_via_ffmpeg_encode(tmp_path, ext):
    import imageio_ffmpeg

    save_wav(tmp_path / "x.wav", _tone(22050, 1.0), 22050)
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp_path / "x.wav"), str(tmp_path / f"x.{ext}")])
    assert r.returncode == 0
    a = load_audio(tmp_path / f"x.{ext}", 16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert abs(a.shape[0] - 16000) < 2000  # codec padding
    assert 0.2 < np.sqrt(np.mean(a[2000:14000] ** 2)) / 0.4 * np.sqrt(2) < 1.2


def test_stereo_average_and_rate(tmp_path):
    left, right = _tone(44100, 0.5), np.zeros(22050, np.float32)
    save_wav(tmp_path / "st.wav", np.stack([left, right], 1), 44100)
    info = audio_info(tmp_path / "st.wav")
    assert (info.rate, info.channels, info.frames) == (44100, 2, 22050) and info.duration == pytest.approx(0.5)
    a = load_audio(tmp_path / "st.wav", 8000)
    assert a.shape == (4000,)
    assert np.abs(a[500:3500]).max() == pytest.approx(0.2, abs=0.01)


def test_streaming_equals_whole(tmp_path):
    x = np.random.default_rng(0).normal(0, 0.1, 44100 * 3).astype(np.float32)
    save_wav(tmp_path / "n.wav", x, 44100)
    whole = load_audio(tmp_path / "n.wav", 16000)
    chunks = list(stream_audio(tmp_path / "n.wav", 16000, chunk_seconds=0.37))
    assert len(chunks) >= 8
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-6)


def test_corrupt_missing_empty(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "none.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="junk.mp3"):
        load_audio(tmp_path / "junk.mp3")
    save_wav(tmp_path / "ok.wav", _tone(16000, 1.0), 16000)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:30])
    with pytest.raises(AudioError, match="cut.wav"):
        load_audio(tmp_path / "cut.wav")
    with pytest.raises(BadInputError, match="rate"):
        list(stream_audio(tmp_path / "ok.wav", 0))


@pytest.mark.slow
def test_ten_minute_file_streams(tmp_path):
    rate = 8000
    x = np.tile(_tone(rate, 1.0), 600)
    save_wav(tmp_path / "long.wav", x, rate)
    n = 0
    peak = 0.0
    for chunk in stream_audio(tmp_path / "long.wav", 16000):
        assert chunk.shape[0] <= 16000 * 31
        n += chunk.shape[0]
        peak = max(peak, float(np.abs(chunk).max()))
    assert n == 600 * 16000 and peak == pytest.approx(0.4, abs=0.02)
