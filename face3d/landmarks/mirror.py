"""Left-right mirror of MediaPipe's 478 landmarks: which point a mirrored face puts where.

MediaPipe's face mesh is left-right symmetric: point ``i`` of a face seen in a mirror is point
``perm[i]`` of the face itself (33 <-> 263 outer eye corners, 61 <-> 291 mouth corners, 468 <-> 473
iris centres, midline points fixed). The permutation is derived by code
(``python -m face3d.landmarks.mirror``) from MediaPipe itself: its 478 points on a frontal render of
the default model's (symmetric) mean face, and its points on the left-right flipped render mirrored
back, matched one-to-one by the Hungarian method (minimum total distance); it ships as
``assets/landmarks/mediapipe478_mirror.json``.
The detector uses it to read landmarks found on a mirrored crop (:func:`unmirror`).
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache

import numpy as np

from face3d.errors import BadInputError, ModelFileError
from face3d.paths import assets_dir

ASSET = assets_dir() / "landmarks" / "mediapipe478_mirror.json"


def build_permutation(points: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Mirror permutation (N,) int64: ``points`` (N, D) of a left-right symmetric face and
    ``mirrored`` (N, D), the same detector's points on the mirror image, mapped back into the
    original's frame; ``perm[i]`` is the point of ``points`` that mirrored point ``i`` lands on
    (one-to-one, least total distance). Raises BadInputError unless it is an involution."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    p, q = np.asarray(points, np.float64), np.asarray(mirrored, np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise BadInputError(f"build_permutation: expected two (N, D) arrays of one shape, got {p.shape} and {q.shape}")
    _, perm = linear_sum_assignment(cdist(q, p))
    if not np.array_equal(perm[perm], np.arange(len(p))):
        raise BadInputError("build_permutation: the matching is not an involution; are the points symmetric about x = 0?")
    return perm.astype(np.int64)


@lru_cache(maxsize=1)
def mirror_permutation() -> np.ndarray:
    """The shipped permutation (478,) int64 (see module docstring)."""
    try:
        perm = np.asarray(json.loads(ASSET.read_text(encoding="utf-8"))["perm"], np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(ASSET, f"cannot read the MediaPipe mirror table ({exc}); rebuild: python -m face3d.landmarks.mirror") from None
    if perm.shape != (478,) or not np.array_equal(np.sort(perm), np.arange(478)):
        raise ModelFileError(ASSET, "not a permutation of the 478 MediaPipe points; rebuild: python -m face3d.landmarks.mirror")
    return perm


def unmirror(points: np.ndarray, width: float) -> np.ndarray:
    """Landmarks (478, 2+) found on an image flipped left-right (``width`` px wide) -> the same
    landmarks on the unflipped image: x -> width - x, points renumbered by :func:`mirror_permutation`
    (other columns, e.g. z, kept)."""
    pts = np.array(points, np.float64, copy=True)
    if pts.ndim != 2 or pts.shape[0] != 478 or pts.shape[1] < 2:
        raise BadInputError(f"unmirror: expected MediaPipe points (478, 2+), got {pts.shape}")
    pts[:, 0] = width - pts[:, 0]
    return pts[mirror_permutation()]


def main(argv: list[str] | None = None) -> int:
    """``python -m face3d.landmarks.mirror``: rebuild the shipped permutation from the default model."""
    import face3d
    from face3d.io.atomic import atomic_path
    from face3d.landmarks.detector import detect_landmarks
    from face3d.models.calibrate import render_view

    img = render_view(face3d.load_model("default"), 0.0, 0.0).image
    pts = detect_landmarks(img, which="largest")[0].points[:, :2].astype(np.float64)
    flipped = detect_landmarks(np.ascontiguousarray(img[:, ::-1]), which="largest")[0].points[:, :2].astype(np.float64)
    flipped[:, 0] = img.shape[1] - flipped[:, 0]
    perm = build_permutation(pts, flipped)
    with atomic_path(ASSET) as tmp:
        tmp.write_text(json.dumps({"perm": perm.tolist(), "made_by": "python -m face3d.landmarks.mirror",
                                   "source": "MediaPipe on a frontal render of the default model's mean face and on its mirror image"}) + "\n")
    print(f"wrote {ASSET}: {int((perm == np.arange(len(perm))).sum())} midline points, {int((perm != np.arange(len(perm))).sum()) // 2} pairs",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
