"""Reading photos: any path, PIL image or array -> (H, W, 3) uint8 RGB, upright and bounded.

What :func:`read_image` does, in order:

1. decode (Pillow), honouring the EXIF ``Orientation`` tag (the picture comes out the way a
   viewer shows it);
2. convert every mode to 8-bit RGB: grayscale, palette, CMYK, 16-bit (``I;16``, ``I``) and
   float (``F``) grayscale, and alpha (composited over white);
3. downscale (Lanczos) so that the longer side is at most ``max_side`` pixels, recording the
   scale. Pixel coordinates follow docs/conventions.md (origin at the top-left *corner*), so a
   point ``p`` in the loaded image is ``p / scale`` in the original image.

Every failure (missing, empty, corrupt or non-image file, too small, too large to decode)
raises :class:`face3d.errors.ImageError` naming the file.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union, cast

import numpy as np

from face3d.errors import ImageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_MAX_SIDE = 2048
DEFAULT_MIN_SIDE = 32
MAX_DECODE_PIXELS = 400_000_000
"""Largest image (width x height) a file may declare. Pillow calls anything over 179 megapixels a
'decompression bomb', which refused 200-megapixel phone photos; face3d decodes such files reduced
(JPEG: DCT scaling in the decoder; other formats: an integer box reduction right after decoding)."""
MAX_DECODE_BYTES = 2 << 30
"""Largest full-resolution buffer a non-JPEG file may need to decode (width x height x bytes per pixel)."""


@dataclass
class LoadedImage:
    """A decoded photo.

    pixels: (H, W, 3) uint8 RGB, upright. path: the source file (None for in-memory input).
    scale: loaded size / original size (<= 1; 1.0 when not resized).
    original_size: (H, W) of the upright original, before downscaling.
    """

    pixels: np.ndarray
    path: str | None
    scale: float
    original_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of ``pixels``."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def name(self) -> str:
        """What error messages call this image: the path, or '<array>'."""
        return self.path if self.path is not None else "<array>"

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map pixel coordinates (..., 2+) of ``pixels`` to the original image (x, y divided by scale)."""
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., :2] /= self.scale
        return out


#: What :func:`read_image` decodes: a path, a :class:`LoadedImage`, a PIL image, a numpy array or a torch tensor.
ImageSource = Union[str, "os.PathLike[str]", np.ndarray, LoadedImage, "Image.Image", "torch.Tensor"]


def _to_rgb8(arr: np.ndarray, name: str) -> np.ndarray:
    """Array (H,W), (H,W,1|2|3|4) of uint8/uint16/bool/int/float([0,1]) -> (H,W,3) uint8."""
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(name, f"expected an image array (H, W), (H, W, 1|3|4), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"image is empty (shape {tuple(arr.shape)})")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ImageError(name, "image array contains NaN or infinite values")
        if a.min() < -1e-3 or a.max() > 1.0 + 1e-3:
            raise ImageError(name, f"float image values must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
        a = np.clip(a, 0.0, 1.0) * 255.0
    elif arr.dtype == np.uint8:
        a = arr.astype(np.float32)
    elif arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise ImageError(name, f"integer image values out of the 16-bit range: [{arr.min()}, {arr.max()}]")
        a = arr.astype(np.float32) / 257.0
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min(initial=0) < 0:
            raise ImageError(name, "integer image has negative values")
        a = arr.astype(np.float32)
    else:
        raise ImageError(name, f"unsupported image dtype {arr.dtype}")
    c = a.shape[-1]
    if c in (2, 4):  # colour + alpha: composite over white
        alpha = a[..., -1:] / 255.0
        a = a[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _pil_to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    """A decoded PIL image of any mode -> (H, W, 3) uint8 RGB."""
    mode = img.mode
    if mode in ("RGB", "L", "RGBA", "LA"):
        return _to_rgb8(np.asarray(img), name)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _to_rgb8(np.asarray(img).astype(np.uint16), name)
    if mode in ("I", "F"):
        a = np.asarray(img).astype(np.float64)
        hi = 65535.0 if a.max(initial=0) > 255 else 255.0
        return _to_rgb8(np.clip(a / hi, 0, 1).astype(np.float32), name)
    if mode == "P" and "transparency" in img.info:
        return _to_rgb8(np.asarray(img.convert("RGBA")), name)
    if mode in ("PA",):
        return _to_rgb8(np.asarray(img.convert("RGBA")), name)
    try:
        return _to_rgb8(np.asarray(img.convert("RGB")), name)
    except (ValueError, OSError) as exc:
        raise ImageError(name, f"cannot convert image mode {mode!r} to RGB ({exc})") from None


def _decode_file(path: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path``: upright (H,W,3) uint8 (possibly pre-shrunk by the JPEG decoder), original (H,W)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from face3d.paths import input_problem

    name = str(path)
    problem = input_problem(path)
    if problem:
        raise ImageError(name, "is a folder, not an image file" if problem.startswith("is a folder") else problem)
    try:
        with _pixel_limit(MAX_DECODE_PIXELS), Image.open(path) as img:
            w0, h0 = img.size
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            transposed = orientation in (5, 6, 7, 8)
            orig_hw = (w0, h0) if transposed else (h0, w0)
            _check_decode_size(img, name)
            if img.format == "JPEG" and max(w0, h0) > 2 * max_side:
                img.draft("RGB", (max(1, w0 * max_side // max(w0, h0)), max(1, h0 * max_side // max(w0, h0))))
            img.load()
            factor = max(img.size) // (2 * max_side)
            decoded: Image.Image = img
            if factor >= 2 and img.mode in ("RGB", "RGBA", "L", "LA", "I", "F", "I;16"):
                decoded = img.reduce(factor)  # box-average to about 2x max_side; Lanczos finishes the job
            upright = ImageOps.exif_transpose(decoded)
            pixels = _pil_to_rgb8(upright, name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image file (wrong file type or corrupt data)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"image too large to decode safely ({exc})") from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(name, f"corrupt or truncated image data ({exc})") from None
    return pixels, (int(orig_hw[0]), int(orig_hw[1]))


class _pixel_limit:
    """Within the block, Pillow's decompression-bomb limit is ``pixels`` (restored afterwards)."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __enter__(self) -> None:
        import warnings

        from PIL import Image

        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = self.pixels  # Pillow warns above this and raises above twice it
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)

    def __exit__(self, *exc: object) -> None:
        from PIL import Image

        self.warnings.__exit__(*exc)
        Image.MAX_IMAGE_PIXELS = self.saved


def _check_decode_size(img: Image.Image, name: str) -> None:
    """ImageError, before any pixel is decoded, for a file too large to decode here."""
    w, h = img.size
    if w * h > MAX_DECODE_PIXELS:
        raise ImageError(name, f"image declares {w}x{h} px ({w * h / 1e6:.0f} megapixels); face3d decodes up to "
                               f"{MAX_DECODE_PIXELS / 1e6:.0f} megapixels")
    if img.format == "JPEG":
        return  # decoded reduced by the JPEG decoder itself
    bands = len(img.getbands())
    depth = 4 if img.mode in ("I", "F") else (2 if img.mode.startswith("I;16") else 1)
    need = w * h * bands * depth
    if need > MAX_DECODE_BYTES:
        raise ImageError(name, f"image declares {w}x{h} px; decoding it would need {need / 2**30:.1f} GiB "
                               f"(limit {MAX_DECODE_BYTES / 2**30:.0f} GiB); save it smaller or as JPEG")


def _resize(pixels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((hw[1], hw[0]), Image.Resampling.LANCZOS))


def read_image(
    source: ImageSource,
    max_side: int = DEFAULT_MAX_SIDE,
    min_side: int = DEFAULT_MIN_SIDE,
) -> LoadedImage:
    """Decode a photo into a :class:`LoadedImage` ((H, W, 3) uint8 RGB, upright, longer side <= ``max_side``).

    ``source``: a path (str/PathLike, spaces and unicode fine), a ``LoadedImage``, a PIL image,
    a numpy array (H,W[,C]) of uint8/uint16 or float in [0,1], or a torch tensor of the same
    layouts ((1,H,W,C) accepted). Raises :class:`ImageError` (naming the file) when it cannot
    be decoded or its shorter side is below ``min_side``.
    """
    if max_side < 1:
        raise ImageError("<argument>", f"max_side must be positive, got {max_side}")
    if isinstance(source, LoadedImage):
        pixels, path, orig, prior = source.pixels, source.path, source.original_size, source.scale
    elif isinstance(source, (str, os.PathLike)):
        path = str(source)
        pixels, orig = _decode_file(Path(source), max_side)
        prior = 1.0
    else:
        path, prior = None, 1.0
        if type(source).__module__.startswith("PIL."):
            from PIL import ImageOps

            pil = cast("Image.Image", source)
            pixels = _pil_to_rgb8(ImageOps.exif_transpose(pil) or pil, "<PIL image>")
        elif hasattr(source, "detach") and hasattr(source, "cpu"):
            pixels = _to_rgb8(source.detach().cpu().numpy(), "<tensor>")
        elif isinstance(source, np.ndarray):
            pixels = _to_rgb8(source, "<array>")
        elif isinstance(source, (bytes, bytearray)):
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(io.BytesIO(source)) as img:
                    img.load()
                    pixels = _pil_to_rgb8(img, "<bytes>")
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise ImageError("<bytes>", f"not a decodable image ({exc})") from None
        else:
            raise ImageError("<argument>", f"cannot read an image from a {type(source).__name__}")
        orig = (int(pixels.shape[0]), int(pixels.shape[1]))
    name = path if path is not None else "<array>"
    h, w = pixels.shape[:2]
    if min(orig) < min_side:
        raise ImageError(name, f"image is {orig[1]}x{orig[0]} px; at least {min_side} px per side is needed")
    s_target = min(prior, max_side / max(orig))
    new_hw = (max(1, round(orig[0] * s_target)), max(1, round(orig[1] * s_target)))
    if new_hw != (h, w):
        pixels = _resize(pixels, new_hw)
    scale = pixels.shape[1] / orig[1]
    return LoadedImage(pixels=pixels, path=path, scale=float(scale), original_size=orig)


def load_image(source: ImageSource, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode a photo to (H, W, 3) uint8 RGB (see :func:`read_image`, which also returns the scale)."""
    return read_image(source, max_side=max_side).pixels


def demo_image() -> np.ndarray:
    """The public-domain NASA portrait of astronaut Eileen Collins bundled with scikit-image, (512, 512, 3) uint8.

    Read from scikit-image's data folder with Pillow (``skimage.data`` would import ``skimage.io``, 0.15 s)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png" if spec and spec.submodule_search_locations else None
    if path is not None and path.is_file():
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def write_image(path: str | os.PathLike[str], pixels: np.ndarray) -> Path:
    """Atomically write (H, W, 3|4) uint8 (or float [0,1]) pixels; the format follows the suffix (png/jpg/...)."""
    from PIL import Image

    from face3d.io.atomic import atomic_path
    from face3d.io.imagefile import PNG_COMPRESS_LEVEL

    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        arr = _to_rgb8(arr, str(path))
    dest = Path(path)
    try:
        with atomic_path(dest) as tmp:
            fmt = Image.registered_extensions().get(dest.suffix.lower())
            Image.fromarray(arr).save(tmp, format=fmt, **({"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {}))
    except (KeyError, ValueError) as exc:
        raise ImageError(dest, f"cannot write an image with suffix {dest.suffix!r} ({exc})") from None
    return dest


def write_demo_image(path: str | os.PathLike[str]) -> Path:
    """Write :func:`demo_image` to ``path`` (atomically; PNG/JPEG by suffix) and return the path."""
    return write_image(path, demo_image())
