"""Index sets of MediaPipe's 478-point face mesh used by the fitter.

The face-oval ring (MediaPipe ``FACEMESH_FACE_OVAL``) is split into the contour on the
image-left (subject's right) and image-right cheek, from the temple down to beside the chin.
The contour points lie on the silhouette, not on fixed surface points, so they get a lower
weight and a yaw-dependent weight (:func:`face3d.fitting.losses.contour_weights`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MP_CONTOUR_LEFT = (162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148)
MP_CONTOUR_RIGHT = (389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377)
MP_IRISES = tuple(range(468, 478))


#: MediaPipe's measured wander per point (:mod:`face3d.synth.calibrate`): JSON {"spread_mm": [478 floats], ...}.
SPREAD_FILE = "landmarks/mediapipe478_spread.json"
#: Weight range of :func:`spread_weights` (a point that wanders 4x the median one gets 1/16, floored here).
WEIGHT_RANGE = (0.05, 2.0)


def spread_weights(spread_mm: np.ndarray) -> np.ndarray:
    """Inverse-variance landmark weights (478,) float32: ``(median spread / spread)²``, clipped to
    :data:`WEIGHT_RANGE`; ``spread_mm`` (478,) is each point's median distance from its calibrated
    surface point over many faces (NaN or <= 0: weight 1)."""
    s = np.asarray(spread_mm, np.float64)
    ok = np.isfinite(s) & (s > 0)
    w = np.ones(len(s))
    w[ok] = (np.median(s[ok]) / s[ok]) ** 2
    return np.clip(w, *WEIGHT_RANGE).astype(np.float32)


@lru_cache(maxsize=1)
def _shipped_weights() -> np.ndarray | None:
    """:func:`spread_weights` of the shipped :data:`SPREAD_FILE` (read once per process), or None."""
    import json

    from face3d.paths import assets_dir

    path = assets_dir() / SPREAD_FILE
    if not path.is_file():
        return None
    return spread_weights(np.asarray(json.loads(path.read_text())["spread_mm"], np.float64))


def mediapipe_weights() -> np.ndarray:
    """Per-landmark weights (478,) float32 of the fit: :func:`spread_weights` of the shipped
    :data:`SPREAD_FILE` (the contour points, which slide along the silhouette with the pose,
    get 0.05–0.3; eye corners and lips ~1–2); without that file 1, contour 0.5, iris 0.5."""
    shipped = _shipped_weights()
    if shipped is not None:
        return shipped.copy()
    w = np.ones(478, np.float32)
    w[list(MP_CONTOUR_LEFT + MP_CONTOUR_RIGHT)] = 0.5
    w[list(MP_IRISES)] = 0.5
    return w
