"""Audio loading: any WAV/FLAC/OGG/MP3, any rate, mono or stereo -> mono float32 at a target rate.

Decoding uses libsndfile through ``soundfile`` (MP3 needs libsndfile >= 1.1); when
libsndfile cannot open a file, the ffmpeg binary bundled with ``imageio-ffmpeg`` decodes it.
Long files are read in chunks (:func:`stream_audio`) so a 10-minute file never needs a
full-rate float64 copy in memory. Resampling is polyphase (``scipy.signal.resample_poly``),
done per chunk with an overlap so chunk borders leave no clicks.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from face3d.errors import AudioError, BadInputError

CHUNK_SECONDS = 30.0
_PAD = 256  # samples of context kept on each side of a chunk for the resampling filter


@dataclass
class AudioInfo:
    """What a file holds: native ``rate`` (Hz), ``channels``, ``frames`` (samples per channel), ``duration`` (s)."""

    path: str
    rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / float(self.rate) if self.rate else 0.0


def _sf():
    import soundfile

    return soundfile


def audio_info(path: str | Path) -> AudioInfo:
    """Header information; raises AudioError for a missing, empty or undecodable file."""
    from face3d.paths import input_problem

    p = Path(path)
    problem = input_problem(p)
    if problem:
        raise AudioError(p, problem)
    try:
        info = _sf().info(str(p))
        return AudioInfo(str(p), int(info.samplerate), int(info.channels), int(info.frames))
    except Exception:
        data, rate = _ffmpeg_decode(p, None)
        return AudioInfo(str(p), rate, 1, int(data.shape[0]))


def _ffmpeg_decode(path: Path, rate: int | None) -> tuple[np.ndarray, int]:
    """Decode with the bundled ffmpeg to mono float32 (at ``rate`` or 44.1 kHz when None)."""
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a core dependency
        raise AudioError(path, "libsndfile cannot decode this file and imageio-ffmpeg is not installed") from None
    out_rate = int(rate or 44100)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vn",
           "-ac", "1", "-ar", str(out_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True)
    data = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if proc.returncode != 0 or data.size == 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, f"cannot decode audio ({msg[-1] if msg else 'no audio stream'})")
    return data, out_rate


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    fr = Fraction(dst, src).limit_denominator(1000)
    return resample_poly(x, fr.numerator, fr.denominator).astype(np.float32)


def stream_audio(path: str | Path, rate: int = 16000, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 chunks (about ``chunk_seconds`` long) resampled to ``rate``.

    Concatenating the chunks equals :func:`load_audio` up to float rounding. Channels are averaged.
    """
    if rate <= 0 or chunk_seconds <= 0:
        raise BadInputError(f"stream_audio: rate ({rate}) and chunk_seconds ({chunk_seconds}) must be > 0")
    p = Path(path)
    info = audio_info(p)
    sf = _sf()
    try:
        fh = sf.SoundFile(str(p))
    except Exception:
        data, _ = _ffmpeg_decode(p, rate)
        step = int(chunk_seconds * rate)
        for i in range(0, data.shape[0], step):
            yield data[i : i + step]
        return
    src = info.rate
    block = max(int(chunk_seconds * src), 8 * _PAD)
    fr = Fraction(rate, src).limit_denominator(1000)
    num, den = fr.numerator, fr.denominator
    pending = np.zeros(0, np.float32)  # input samples starting at input index p0 (a multiple of den)
    p0 = consumed = emitted = 0
    with fh:
        while True:
            try:
                raw = fh.read(block, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(p, f"decoding failed after {consumed / src:.2f} s ({exc})") from None
            last = raw.shape[0] < block
            mono = raw.mean(axis=1) if raw.shape[1] > 1 else raw[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(p, f"non-finite samples after {consumed / src:.2f} s")
            consumed += mono.shape[0]
            pending = np.concatenate([pending, mono])
            out = _resample(pending, src, rate)
            base = p0 * num // den  # output index of out[0]
            end = -(-consumed * num // den) if last else max((consumed - _PAD) * num // den, emitted)
            piece = out[emitted - base : end - base]
            if piece.size:
                yield piece
                emitted += piece.shape[0]
            if last:
                return
            new_p0 = max(((emitted * den // num - _PAD) // den) * den, 0)
            pending = pending[new_p0 - p0 :]
            p0 = new_p0


def load_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Whole file as mono float32 (N,) at ``rate`` Hz (channels averaged, values as decoded, ~[-1, 1]).

    Raises AudioError (naming the file) when missing, empty, corrupt or without samples.
    """
    chunks = list(stream_audio(path, rate))
    if not chunks:
        raise AudioError(path, "no audio samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def audio_samples(samples: object, rate: object, to_rate: int = 16000) -> np.ndarray:
    """In-memory audio ``samples`` (N,) or (N, C) at ``rate`` Hz as mono float32 (N',) at ``to_rate``.

    Raises BadInputError for a wrong shape, an empty or non-finite signal, or a bad rate.
    """
    x = np.asarray(samples)
    if x.dtype.kind not in "fiu" or x.ndim not in (1, 2) or x.shape[0] == 0:
        raise BadInputError(f"audio samples: expected a non-empty (N,) or (N, channels) numeric array, got {x.dtype} {x.shape}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 1000 <= int(rate) <= 768_000:
        raise BadInputError(f"audio rate: expected an integer number of Hz from 1000 to 768000, got {rate!r}")
    x = x.astype(np.float32)
    if x.dtype.kind in "iu" or np.asarray(samples).dtype.kind in "iu":
        x = x / float(np.iinfo(np.asarray(samples).dtype).max)
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if not np.all(np.isfinite(mono)):
        raise BadInputError("audio samples: contain NaN or infinite values")
    return _resample(mono, int(rate), int(to_rate))


def save_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono/stereo float samples (N,) or (N, C) as 16-bit PCM WAV, atomically."""
    from face3d.io.atomic import atomic_path

    x = np.asarray(samples, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise BadInputError(f"save_wav: samples must be (N,) or (N, C) with N > 0, got {x.shape}")
    with atomic_path(path) as tmp:
        _sf().write(str(tmp), np.clip(x, -1.0, 1.0), int(rate), subtype="PCM_16", format="WAV")
    return Path(path)
