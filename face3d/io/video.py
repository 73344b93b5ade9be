"""Reading video frames with the ffmpeg binary bundled by ``imageio-ffmpeg``.

Frames come out as (H, W, 3) uint8 RGB with timestamps in seconds. Sampling at ``fps`` keeps,
for every target time k / fps, the first decoded frame at or after it (timestamps are
``index / source_fps``: constant frame rate assumed, as ffmpeg's rawvideo output delivers).
A file that is missing, not a video, or yields no decodable frame raises
:class:`face3d.errors.VideoError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Iterator

import numpy as np

from face3d.errors import BadInputError, VideoError


@dataclass
class VideoFrame:
    """One frame: index in the source stream, time in seconds, pixels (H, W, 3) uint8 RGB."""

    index: int
    time: float
    pixels: np.ndarray


@dataclass
class VideoClip:
    """Sampled frames of a video.

    frames: list of (H, W, 3) uint8; times (N,) seconds; indices (N,) source frame numbers;
    source_fps: the stream's frame rate; size: (H, W); path: the file.
    """

    frames: list[np.ndarray]
    times: np.ndarray
    indices: np.ndarray
    source_fps: float
    size: tuple[int, int]
    path: str

    def __len__(self) -> int:
        return len(self.frames)


def _open(path: Path) -> tuple[Generator[bytes, None, None], dict]:
    import imageio_ffmpeg

    from face3d.paths import input_problem

    name = str(path)
    problem = input_problem(path)
    if problem:
        raise VideoError(name, problem)
    gen = imageio_ffmpeg.read_frames(name, pix_fmt="rgb24")
    try:
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as exc:
        gen.close()
        raise VideoError(name, _why_no_video(path, exc)) from None
    return gen, meta


def _why_no_video(path: Path, exc: BaseException) -> str:
    """A reason in words for a file ffmpeg could not open as video (ffmpeg's own last line says
    'Error opening output files: Invalid argument' for an audio-only or zero-length file)."""
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                           capture_output=True, text=True, errors="replace").stderr
    if "Invalid data found" in probe:
        return "not a video file ffmpeg can read"
    if "Stream #" not in probe:
        return "holds no video or audio stream (a 0-second recording?)"
    if "Video:" not in probe:
        return "has no video stream (audio only?)" if "Audio:" in probe else "has no video stream"
    if "Duration: 00:00:00.00" in probe:
        return "the video is 0 seconds long: no frames"
    msg = str(exc).strip().splitlines()
    return f"cannot decode as video ({msg[-1] if msg else type(exc).__name__})"


def _check_args(fps: float | None, max_frames: int | None) -> None:
    if fps is not None and not fps > 0:
        raise BadInputError(f"argument 'fps': must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise BadInputError(f"argument 'max_frames': must be >= 1, got {max_frames}")


def _stream_info(p: Path, meta: dict, fps: float | None) -> tuple[int, int, float]:
    w, h = (int(v) for v in meta.get("size", (0, 0)))
    if w <= 0 or h <= 0:
        raise VideoError(str(p), "no video stream")
    src_fps = float(meta.get("fps") or 0.0)
    return h, w, src_fps if src_fps > 0 else (fps or 25.0)


def _frames(p: Path, gen: Generator[bytes, None, None], meta: dict, fps: float | None, max_frames: int | None) -> Iterator[VideoFrame]:
    try:
        h, w, src_fps = _stream_info(p, meta, fps)
        n_out = 0
        next_t = 0.0
        try:
            for i, buf in enumerate(gen):
                t = i / src_fps
                if fps is not None and t + 1e-6 < next_t:
                    continue
                arr = np.frombuffer(buf, dtype=np.uint8)
                if arr.size != w * h * 3:
                    break
                yield VideoFrame(i, t, arr.reshape(h, w, 3).copy())
                n_out += 1
                if fps is not None:
                    while next_t <= t + 1e-6:
                        next_t += 1.0 / fps
                if max_frames is not None and n_out >= max_frames:
                    break
        except (OSError, RuntimeError) as exc:
            if n_out == 0:
                msg = str(exc).strip().splitlines()
                raise VideoError(str(p), f"no decodable frames ({msg[-1] if msg else type(exc).__name__})") from None
        if n_out == 0:
            raise VideoError(str(p), "no decodable frames")
    finally:
        gen.close()


def iter_video_frames(
    path: str | os.PathLike[str], fps: float | None = None, max_frames: int | None = None
) -> Iterator[VideoFrame]:
    """Yield :class:`VideoFrame` s of ``path``, sampled at ``fps`` (None: every frame), at most ``max_frames``.

    The file is opened (and a bad file reported) on the first ``next()``.
    """
    _check_args(fps, max_frames)
    p = Path(path)
    gen, meta = _open(p)
    yield from _frames(p, gen, meta, fps, max_frames)


def read_video_frames(path: str | os.PathLike[str], fps: float | None = None, max_frames: int | None = None) -> VideoClip:
    """Decode ``path`` into a :class:`VideoClip` (frames sampled at ``fps``, at most ``max_frames``)."""
    _check_args(fps, max_frames)
    p = Path(path)
    gen, meta = _open(p)
    src_fps = float(meta.get("fps") or 0.0)
    frames = list(_frames(p, gen, meta, fps, max_frames))
    h, w = frames[0].pixels.shape[:2]
    return VideoClip(
        [f.pixels for f in frames], np.array([f.time for f in frames]), np.array([f.index for f in frames], dtype=np.int64),
        src_fps, (h, w), str(p),
    )


def write_video(path: str | os.PathLike[str], frames: list[np.ndarray] | np.ndarray, fps: float = 25.0) -> Path:
    """Atomically encode (N, H, W, 3) uint8 RGB frames as H.264 mp4 (even H, W required by yuv420p)."""
    import imageio_ffmpeg

    from face3d.io.atomic import atomic_path

    arr = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not arr or arr[0].ndim != 3 or arr[0].shape[2] != 3:
        raise BadInputError(f"{path}: frames must be a non-empty list of (H, W, 3) uint8 images")
    h, w = arr[0].shape[:2]
    dest = Path(path)
    with atomic_path(dest) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, macro_block_size=1, quality=8)
        writer.send(None)
        for f in arr:
            writer.send(f)
        writer.close()
    return dest
