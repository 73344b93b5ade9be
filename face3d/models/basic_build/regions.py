"""Vertex regions of the ``basic`` head, defined from the design anatomy (soft weights and masks).

Soft weights (0..1, smooth) drive the albedo and the deformation fields; the boolean region
masks stored in the model are the weights thresholded at 0.5.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.mesh import HeadMesh
from face3d.models.basic_build.shape import eye_opening, smoothstep

# Hairline height (y) as a function of |azimuth| around the head (front 0 .. back pi).
_HAIRLINE = PchipInterpolator(
    [0.0, 0.45, 0.85, 1.10, 1.25, 1.45, 1.75, 2.0, 2.4, 2.8, np.pi],
    [A.HAIRLINE_Y, 0.070, 0.052, 0.040, 0.030, 0.028, 0.028, 0.005, -0.035, -0.055, -0.060],
)


def azimuth_of(p: np.ndarray) -> np.ndarray:
    """Azimuth (N,) of points about the vertical axis through the ray origin; 0 at the face."""
    return np.arctan2(p[:, 0] - A.RAY_ORIGIN[0], p[:, 2] - A.RAY_ORIGIN[2])


def lip_weight(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft weights (upper, lower) of the red of the lips (vermilion) at points (N,3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    u = np.clip(np.abs(x) / A.MOUTH_HALF_WIDTH, 0.0, 1.0)
    s = np.sqrt(np.clip(1 - u**2, 0.0, 1.0))
    y0 = A.STOMION[1] + 0.0015 * u**2
    bow = 0.0085 * s * (1 - 0.25 * np.exp(-((x / 0.003) ** 2)))
    upper = smoothstep(0.0016, -0.0008, (y - y0) - bow) * smoothstep(-0.0015, 0.0, y - y0)
    lower = smoothstep(0.0016, -0.0008, (y0 - y) - 0.0105 * s) * smoothstep(-0.0015, 0.0, y0 - y)
    front = smoothstep(0.07, 0.085, z) * smoothstep(1.02, 0.95, np.abs(x) / A.MOUTH_HALF_WIDTH)
    return upper * front, lower * front


def brow_weight(p: np.ndarray) -> np.ndarray:
    """Soft weight of the eyebrows (N,)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    xs = [A.BROW_INNER[0], A.BROW_PEAK[0], A.BROW_OUTER[0]]
    ys = [A.BROW_INNER[1], A.BROW_PEAK[1], A.BROW_OUTER[1]]
    yc = np.interp(ax, xs, ys)
    yc = yc + 0.002 * np.sin(np.pi * np.clip((ax - xs[0]) / (xs[2] - xs[0]), 0, 1))
    half = np.interp(ax, xs, [0.0045, 0.0038, 0.0018])
    band = smoothstep(half + 0.0018, half - 0.0012, np.abs(y - yc))
    span = smoothstep(xs[0] - 0.003, xs[0] + 0.002, ax) * smoothstep(xs[2] + 0.004, xs[2] - 0.002, ax)
    return band * span * smoothstep(0.03, 0.06, z)


def eye_weight(p: np.ndarray) -> np.ndarray:
    """Soft weight (N,) of the visible eyeball (inside the lid opening, on the eyeball)."""
    q = np.abs(p[:, 0])
    d = np.linalg.norm(np.stack([q, p[:, 1], p[:, 2]], 1) - A.EYE_CENTER, axis=1)
    on_ball = smoothstep(A.EYE_RADIUS + 0.0016, A.EYE_RADIUS + 0.0006, d)
    return eye_opening(p[:, 0], p[:, 1], inset=0.0005) * on_ball * (p[:, 2] > 0.05)


def hair_weight(p: np.ndarray) -> np.ndarray:
    """Soft weight (N,) of the scalp hair (above the hairline)."""
    a = np.abs(azimuth_of(p))
    return smoothstep(-0.003, 0.006, p[:, 1] - _HAIRLINE(a)) * (1 - ear_weight(p))


def ear_weight(p: np.ndarray) -> np.ndarray:
    """Soft weight (N,) of the external ears."""
    q = np.stack([np.abs(p[:, 0]), p[:, 1], p[:, 2]], 1)
    d = np.linalg.norm((q - A.EAR_CENTER) / np.array([0.024, 0.036, 0.024]), axis=1)
    return smoothstep(1.05, 0.9, d) * smoothstep(0.064, 0.07, q[:, 0])


def neck_weight(p: np.ndarray) -> np.ndarray:
    """Soft weight (N,) of the neck (below the jaw line)."""
    y, z = p[:, 1], p[:, 2]
    jaw_line = -0.098 + 0.32 * (A.MENTON[2] - z)
    return smoothstep(0.0, -0.008, y - np.minimum(jaw_line, -0.05))


def region_masks(hm: HeadMesh) -> dict[str, np.ndarray]:
    """Boolean vertex masks: face, skin, eyes, eye_left, eye_right, mouth_interior, lips,
    brows, scalp, ears, neck."""
    v = hm.vertices
    pocket = (hm.pocket_t > 0) & (hm.pocket_t < 1)
    up, lo = lip_weight(v)
    lips = ((up + lo) > 0.5) & ~pocket
    eyes = eye_weight(v) > 0.5
    scalp = hair_weight(v) > 0.5
    ears = ear_weight(v) > 0.5
    neck = (neck_weight(v) > 0.5) & ~pocket
    a = np.abs(azimuth_of(v))
    face = (a < 1.25) & ~scalp & ~ears & ~neck & ~pocket & (v[:, 1] < A.HAIRLINE_Y + 0.005)
    return {
        "face": face,
        "skin": ~(eyes | pocket),
        "eyes": eyes,
        "eye_left": eyes & (v[:, 0] > 0),
        "eye_right": eyes & (v[:, 0] < 0),
        "mouth_interior": pocket,
        "lips": lips,
        "brows": (brow_weight(v) > 0.5) & ~pocket,
        "scalp": scalp,
        "ears": ears,
        "neck": neck,
    }
