"""Image files: 8-bit PNG colour maps and 16-bit PNG displacement maps, written atomically.

Arrays follow ``docs/conventions.md``: (H, W, C) or (H, W), row 0 at the top of the picture,
float values in [0, 1] (uint8 arrays are written as they are).

Displacement maps are stored as 16-bit grayscale PNG (no EXR writer ships with our
dependencies: imageio needs the FreeImage binary, a download, for EXR). The metric value of a
texel is ``offset + scale * code / 65535`` metres; ``scale`` and ``offset`` live in the PNG
text chunks ``face3d:displacement_scale`` and ``face3d:displacement_offset`` and are also
returned, so they can be copied into ``params.json``.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from face3d.errors import BadInputError, ImageError, ShapeError
from face3d.io.array_cache import ContentMemo
from face3d.io.atomic import atomic_path

SCALE_KEY = "face3d:displacement_scale"
OFFSET_KEY = "face3d:displacement_offset"


def _to_numpy(array: object) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(array)


def to_uint8(array: object, name: str = "array") -> np.ndarray:
    """(H, W[, C]) float in [0, 1] or uint8 -> uint8 array of the same shape (clipped, rounded)."""
    a = _to_numpy(array)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise ShapeError(name, "float array in [0, 1] or uint8", str(a.dtype))
    if not np.all(np.isfinite(a)):
        raise BadInputError(f"argument '{name}': contains NaN or infinite values")
    t = np.clip(a, 0.0, 1.0)  # the values of np.round(np.clip(a, 0, 1) * 255) with one temporary
    t *= 255.0
    return np.rint(t, out=t).astype(np.uint8)


PNG_COMPRESS_LEVEL = 3
"""zlib level of the photo-like PNGs face3d writes (the overlay; ``photo=True``). Measured on the demo's
1024² albedo map: level 6 (Pillow's default) 0.48 s and 657 kB, level 3 0.18 s and 764 kB, level 1 0.12 s and 834 kB."""

MAP_PNG_STRATEGY = zlib.Z_RLE
"""zlib strategy of the texture-space maps face3d writes (albedo, normal and displacement maps; the
default of :func:`png_bytes`): run-length matches after Pillow's per-row PNG filters. On the 1024² maps
of a photo (benchmarks/README.md, "Issue 26: the save stage, second round") it writes smaller files
than level 3 with zlib's default strategy in ~40 % less time (albedo 819 against 923 kB, normal map
460 against 561 kB); on photos it writes larger ones (the overlay: 701 against 526 kB)."""

_PNG_MEMO_SIZE = 8
_PNG_MEMO: ContentMemo[Future[bytes]] = ContentMemo(_PNG_MEMO_SIZE)  # the last few encodings by content: a result writes its texture into the OBJ and the GLB
_PNG_LOCK = threading.Lock()


def _encode_png(a: np.ndarray, photo: bool) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, **({} if photo else {"compress_type": MAP_PNG_STRATEGY}))
    return buf.getvalue()


def png_future(array: object, name: str = "array", pool: Executor | None = None, photo: bool = False, memo: bool = True) -> Future[bytes]:
    """The PNG bytes of an image (as :func:`png_bytes`) as a future: encoded on ``pool`` (zlib
    releases the GIL, so the caller goes on with other work meanwhile) or at once without one.
    The shape is checked here; an image already encoded or being encoded is not encoded again
    (``memo=False``: encoded without looking for it or remembering it, for a caller that hands the
    future itself to every writer, see :class:`face3d.io.mesh.Material`)."""
    a = to_uint8(array, name)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ShapeError(name, "(H, W), (H, W, 3) or (H, W, 4) image", a.shape)
    fut: Future[bytes]
    if not memo:
        if pool is None:
            fut = Future()
            fut.set_result(_encode_png(a, photo))
            return fut
        return pool.submit(_encode_png, a.copy(), photo)  # a copy: the caller may change its array meanwhile
    key = ContentMemo.key((a,), bool(photo))
    with _PNG_LOCK:
        hit = _PNG_MEMO.get(key, (a,))
        if hit is not None and not hit.cancelled() and not (hit.done() and hit.exception() is not None):
            return hit
        kept = a.copy()  # the caller may change its array meanwhile; the memo compares with it
        if pool is None:
            fut = Future()
            fut.set_result(_encode_png(kept, photo))
        else:
            fut = pool.submit(_encode_png, kept, photo)
        _PNG_MEMO.put(key, (kept,), fut, copies=False)
    return fut


def png_channels(data: bytes) -> int:
    """The number of channels of an 8-bit PNG's pixels (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) from its
    header; 0 when ``data`` is not a PNG or holds a palette."""
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return 0
    return {0: 1, 4: 2, 2: 3, 6: 4}.get(data[25], 0)


@contextlib.contextmanager
def png_pool(workers: int | None = None) -> Iterator[Executor | None]:
    """A thread pool for :func:`png_future` (``workers`` threads, default one per core beyond the
    first, at most 2), or None on a single core, where encoding beside other work gains nothing.
    Leaving the block waits for the encodings started in it."""
    from concurrent.futures import ThreadPoolExecutor

    n = min(2, (os.cpu_count() or 1) - 1) if workers is None else workers
    if n < 1:
        yield None
        return
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="face3d-png") as pool:
        yield pool


def png_bytes(array: object, name: str = "array", photo: bool = False) -> bytes:
    """Encode an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image as PNG bytes (8 bit; a texture-space
    map with zlib's :data:`MAP_PNG_STRATEGY`, a ``photo`` with zlib level :data:`PNG_COMPRESS_LEVEL`);
    the same content twice is encoded once."""
    return png_future(array, name, photo=photo).result()


def save_png(path: str | os.PathLike[str], array: object, photo: bool = False) -> Path:
    """Atomically write an 8-bit PNG from (H, W[, 1|3|4]) float [0, 1] or uint8 (encoded as
    :func:`png_bytes`); returns the path."""
    data = png_bytes(array, "array", photo)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def load_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 (H, W, C) in [0, 1]; raises ImageError if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            a = np.asarray(im)
            mode = im.mode
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises many types for corrupt files
        raise ImageError(path, f"cannot decode image ({e})") from None
    if mode.startswith("I;16") or a.dtype == np.uint16:
        out = a.astype(np.float32) / 65535.0
    else:
        out = a.astype(np.float32) / 255.0
    return out[..., None] if out.ndim == 2 else out


@dataclass
class DisplacementFile:
    """Where a displacement map was written and how to decode it (metres = offset + scale*code/65535)."""

    path: Path
    scale: float
    offset: float


def save_exr_or_png16(path: str | os.PathLike[str], disp: object) -> DisplacementFile:
    """Atomically write a displacement map (H, W) metres as a 16-bit grayscale PNG.

    A ``.exr`` suffix is replaced by ``.png`` (no EXR writer is available offline). The
    returned scale/offset are also stored in the PNG text chunks. Quantisation error is at
    most ``scale / 131070`` metres.
    """
    d = _to_numpy(disp).astype(np.float64)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    if d.ndim != 2 or min(d.shape) < 1:
        raise ShapeError("disp", "(H, W) displacement map", d.shape)
    if not np.all(np.isfinite(d)):
        raise BadInputError("argument 'disp': contains NaN or infinite values")
    dest = Path(path)
    if dest.suffix.lower() != ".png":
        dest = dest.with_suffix(".png")
    lo, hi = float(d.min()), float(d.max())
    scale = hi - lo if hi > lo else 1.0
    code = np.round((d - lo) / scale * 65535.0).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text(SCALE_KEY, repr(scale))
    info.add_text(OFFSET_KEY, repr(lo))
    with atomic_path(dest) as tmp:
        Image.fromarray(code).save(tmp, format="PNG", pnginfo=info)
    return DisplacementFile(dest, scale, lo)


def load_displacement(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a map written by :func:`save_exr_or_png16` back as float64 (H, W) metres."""
    try:
        with Image.open(path) as im:
            im.load()
            code = np.asarray(im).astype(np.float64)
            text = dict(getattr(im, "text", {}) or {})
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ImageError(path, f"cannot decode displacement map ({e})") from None
    if SCALE_KEY not in text or OFFSET_KEY not in text or code.ndim != 2:
        raise ImageError(path, "not a face3d 16-bit displacement PNG (scale/offset text chunks missing)")
    return float(text[OFFSET_KEY]) + float(text[SCALE_KEY]) * code / 65535.0
