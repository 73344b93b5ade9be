"""User-supplied landmarks: 68 (iBUG/Multi-PIE order) or 478 (MediaPipe order) points from a file.

Formats: ``.txt``/``.csv``/``.tsv``/other text (one point per line, ``x y [z]`` separated by
spaces, tabs, commas or semicolons; ``#`` comments and a non-numeric header line are skipped),
``.pts`` (iBUG: ``version``/``n_points`` header, points between braces), ``.npy`` (array
(N, 2|3)), ``.json`` (a list of [x, y(, z)] or {"x":..,"y":..} items, or an object with key
``landmarks``/``points``). Pixels, x right, y down, origin at the image's top-left corner.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from face3d.errors import BadInputError, FileFormatError
from face3d.landmarks.detector import FaceLandmarks, points_bbox

SCHEMES = {68: "ibug68", 478: "mediapipe478"}


def _parse_text(text: str, path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    body = text
    if path.suffix.lower() == ".pts" or "{" in text:
        m = re.search(r"\{(.*?)\}", text, re.S)
        if m is None:
            raise FileFormatError(path, "a .pts file needs its points between '{' and '}'")
        body = m.group(1)
    for lineno, line in enumerate(body.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[\s,;]+", line) if p]
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            if not rows:  # a header line such as "x,y,z"
                continue
            raise FileFormatError(path, f"line {lineno}: not numbers: {line[:60]!r}") from None
    if not rows:
        raise FileFormatError(path, "no landmark rows found")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise FileFormatError(path, f"rows have different numbers of columns {sorted(widths)}")
    return np.asarray(rows, dtype=np.float64)


def _parse_json(text: str, path: Path) -> np.ndarray:
    try:
        obj: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, f"invalid JSON ({exc})") from None
    if isinstance(obj, dict):
        for key in ("landmarks", "points", "lm68", "lm478"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise FileFormatError(path, "JSON object has none of the keys 'landmarks', 'points'")
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = [[p.get("x"), p.get("y")] + ([p["z"]] if "z" in p else []) for p in obj]
    try:
        return np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(path, f"landmarks are not a numeric list of points ({exc})") from None


def load_landmarks_file(path: str | os.PathLike[str], image_size: tuple[int, int] | None = None) -> FaceLandmarks:
    """Read 68 or 478 landmarks -> :class:`FaceLandmarks` (points (N, 3) float32, z = 0 if absent).

    ``image_size`` (H, W), when given, is recorded and points far outside the image raise.
    Raises :class:`FileFormatError` for unreadable files and :class:`BadInputError` for a wrong
    number of points/columns or non-finite values, naming the file.
    """
    from face3d.io.npz import load_error_reason
    from face3d.paths import input_problem

    p = Path(path)
    problem = input_problem(p)
    if problem:
        raise FileFormatError(p, f"landmark {problem}" if problem == "file not found" else problem)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False).astype(np.float64)
        except (ValueError, OSError, EOFError) as exc:
            raise FileFormatError(p, f"not a readable .npy array ({load_error_reason(exc)})") from None
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise FileFormatError(p, f"not a readable text file ({exc})") from None
        arr = _parse_json(text, p) if suffix == ".json" else _parse_text(text, p)
    if arr.ndim == 1 and arr.size in (68 * 2, 68 * 3, 478 * 2, 478 * 3) and suffix == ".npy":
        arr = arr.reshape(-1, 3 if arr.size in (68 * 3, 478 * 3) else 2)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise BadInputError(f"{p}: landmarks must be N rows of 'x y' or 'x y z', got array of shape {arr.shape}")
    if arr.shape[0] not in SCHEMES:
        raise BadInputError(f"{p}: expected 68 (iBUG) or 478 (MediaPipe) landmarks, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise BadInputError(f"{p}: landmarks contain NaN or infinite values")
    pts = np.zeros((arr.shape[0], 3), dtype=np.float32)
    pts[:, : arr.shape[1]] = arr
    if image_size is not None:
        h, w = image_size
        margin = 0.5 * max(h, w)
        if pts[:, 0].min() < -margin or pts[:, 1].min() < -margin or pts[:, 0].max() > w + margin or pts[:, 1].max() > h + margin:
            raise BadInputError(f"{p}: landmarks lie far outside the {w}x{h} image (are they in pixels?)")
    return FaceLandmarks(
        points=pts, scheme=SCHEMES[arr.shape[0]], bbox=points_bbox(pts), score=1.0,
        image_size=(int(image_size[0]), int(image_size[1])) if image_size else (0, 0), source=str(p),
    )
