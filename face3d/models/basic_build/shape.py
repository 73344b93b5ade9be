"""The mean head as an implicit function: smooth unions of simple solids plus feature fields.

``head_field(p)`` is negative inside the head, positive outside, and roughly a distance in
metres near the surface. Solids: cranium (superellipsoid), front-of-face slab bounded by a
profile height field (forehead, mid-face, jaw), neck (elliptic cylinder), ears (tilted
ellipsoids), eyeballs with lids. Feature fields add outward offsets for the nose, brow
ridge, cheekbones, lips and chin. Everything is smooth (C1), so shading is clean.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from face3d.models.basic_build import anatomy as A


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union) with blend width ``k`` metres (Quilez)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (intersection)."""
    return -smin(-a, -b, k)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _pchip(xs: list[float], ys: list[float]) -> PchipInterpolator:
    """Monotone cubic through (xs, ys) given in any order of x."""
    order = np.argsort(xs)
    return PchipInterpolator(np.asarray(xs)[order], np.asarray(ys)[order])


def gauss(d: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-((d / s) ** 2))


# Midline profile of the face surface without nose, lips and chin (y -> z).
_ZMID = _pchip(
    [0.10, 0.075, 0.055, 0.040, 0.024, 0.000, -0.020, -0.040, -0.060, -0.075, -0.090, -0.105, -0.13],
    [0.060, 0.086, 0.093, 0.095, 0.089, 0.093, 0.097, 0.099, 0.097, 0.094, 0.093, 0.080, 0.03],
)
# Lateral fall-off of the face surface (z drop = a(y) x^2 + b x^4).
_LAT_A = _pchip([0.10, 0.04, 0.0, -0.03, -0.06, -0.08, -0.11], [16.0, 13.5, 12.0, 13.5, 18.0, 24.0, 32.0])
# Nose: midline protrusion above the face surface and half-width, as functions of y.
_NOSE_P = _pchip(
    [0.034, 0.024, 0.010, -0.005, -0.016, -0.023, -0.030, -0.036, -0.043],
    [0.000, 0.004, 0.0075, 0.0135, 0.020, 0.0235, 0.019, 0.009, 0.000],
)
# Half-width limit of the front-of-face solid (zygomatic arches down to the mandible).
_SLAB_HALF_WIDTH = _pchip([0.08, 0.02, 0.0, -0.03, -0.06, -0.08, -0.11], [0.070, 0.068, 0.066, 0.061, 0.053, 0.047, 0.035])
_NOSE_W = _pchip([0.034, 0.024, 0.0, -0.02, -0.03, -0.043], [0.008, 0.0065, 0.0075, 0.0095, 0.011, 0.012])


def face_surface_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z of the front-of-face height field (without the features) at (x, y)."""
    yc = np.clip(y, -0.13, 0.10)
    return _ZMID(yc) - _LAT_A(yc) * x**2 - 60.0 * x**4


def eye_margins(ax: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lid margins of the left eye at |x| = ax: (u in [-1, 1] inner..outer, y_upper, y_lower)."""
    xc = 0.5 * (A.EXOCANTHION[0] + A.ENDOCANTHION[0])
    half = 0.5 * (A.EXOCANTHION[0] - A.ENDOCANTHION[0])
    yc = 0.5 * (A.EXOCANTHION[1] + A.ENDOCANTHION[1])
    u = np.clip((ax - xc) / half, -1.0, 1.0)
    s = np.sqrt(np.clip(1 - u * u, 0.0, 1.0))
    up = yc + A.EYE_OPEN_HALF_HEIGHT * s * (1.0 + 0.15 * u) + 0.0008 * s
    lo = yc - 0.8 * A.EYE_OPEN_HALF_HEIGHT * s
    return (ax - xc) / half, up, lo


def eye_opening(x: np.ndarray, y: np.ndarray, inset: float = 0.0) -> np.ndarray:
    """Soft mask (0..1) of the palpebral fissure of either eye, in the (x, y) plane; ``inset``
    (metres) shrinks it away from the lid margins."""
    u, up, lo = eye_margins(np.abs(x))
    inside = np.minimum(up - y, y - lo)
    inside = np.where(np.abs(u) < 1.0, inside, -0.01)
    return smoothstep(-0.0004 + inset, 0.0006 + inset, inside)


def feature_offsets(p: np.ndarray) -> np.ndarray:
    """Outward offsets (N,) in metres of the facial features at points p (N,3)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    front = smoothstep(0.02, 0.07, z)
    yn = np.clip(y, -0.043, 0.034)
    nose = np.where((y < 0.034) & (y > -0.043), _NOSE_P(yn), 0.0) * np.exp(-((x / _NOSE_W(yn)) ** 2) ** 1.2)
    alae = 0.0065 * gauss(ax - 0.0135, 0.0055) * gauss(y + 0.031, 0.0055)
    brow = 0.0055 * gauss(y - 0.041, 0.009) * np.exp(-((x / 0.05) ** 4))
    cheek = 0.0065 * gauss(ax - 0.048, 0.015) * gauss(y + 0.004, 0.014)
    socket = -0.004 * gauss(ax - 0.031, 0.014) * gauss(y - 0.016, 0.010)
    mx = np.exp(-((x / A.MOUTH_HALF_WIDTH) ** 6))
    upper_lip = 0.0055 * gauss(y + 0.0535, 0.0055) * mx
    lower_lip = 0.0080 * gauss(y + 0.0680, 0.0060) * mx
    lip_line = -0.0025 * gauss(y - A.STOMION[1], 0.0020) * np.exp(-((x / (A.MOUTH_HALF_WIDTH + 0.002)) ** 6))
    philtrum = 0.0012 * (gauss(ax - 0.005, 0.002)) * gauss(y + 0.045, 0.006)
    sulcus = -0.0035 * gauss(y + 0.081, 0.005) * gauss(x, 0.02)
    chin = 0.0055 * gauss(y + 0.091, 0.008) * gauss(x, 0.017)
    nasolabial = -0.0025 * gauss(ax - (0.024 + 0.35 * (-0.03 - y)), 0.004) * smoothstep(-0.02, -0.028, y) * smoothstep(-0.075, -0.055, y)
    total = nose + alae + brow + cheek + socket + upper_lip + lower_lip + lip_line + philtrum + sulcus + chin + nasolabial
    return total * front


def _front_slab(p: np.ndarray) -> np.ndarray:
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    zf = face_surface_z(x, y)
    f = (z - zf) / np.sqrt(1.0 + (2 * 16.0 * x) ** 2 * 0.25)
    ybot = -0.101 + 0.30 * (A.MENTON[2] - z) + 4.0 * x**2
    f = smax(f, ybot - y, 0.012)
    f = smax(f, -0.035 - z, 0.02)
    f = smax(f, y - 0.065, 0.035)
    f = smax(f, np.abs(x) - _SLAB_HALF_WIDTH(np.clip(y, -0.11, 0.08)), 0.015)
    return f


def _cranium(p: np.ndarray) -> np.ndarray:
    c = np.array([0.0, 0.030, -0.006])
    r = np.array([0.074, 0.096, 0.090])
    q = np.abs(p - c) / r
    e = 2.4
    horiz = (q[:, 0] ** e + q[:, 2] ** e) ** (2.0 / e)
    return (np.sqrt(horiz + q[:, 1] ** 2) - 1.0) * 0.074


def _neck(p: np.ndarray) -> np.ndarray:
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    d = np.sqrt((x / 0.056) ** 2 + ((z + 0.014) / 0.054) ** 2) - 1.0
    f = d * 0.055
    f = np.maximum(f, -0.18 - y)
    return np.maximum(f, y + 0.02)


def _ears(p: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[:, 0] = np.abs(q[:, 0])
    d = q - A.EAR_CENTER
    t = np.deg2rad(15.0)  # ear tilted back
    dy = np.cos(t) * d[:, 1] - np.sin(t) * d[:, 2]
    dz = np.sin(t) * d[:, 1] + np.cos(t) * d[:, 2]
    dx = d[:, 0] - 0.004 + 0.12 * dz  # the back of the ear stands off the head
    f = (np.sqrt((dx / 0.010) ** 2 + (dy / 0.031) ** 2 + (dz / 0.017) ** 2) - 1.0) * 0.010
    concha = 0.005 * gauss(dy + 0.004, 0.009) * gauss(dz - 0.003, 0.006) * smoothstep(0.0, 0.008, d[:, 0])
    return f + concha


def _eyes(p: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[:, 0] = np.abs(q[:, 0])
    d = np.linalg.norm(q - A.EYE_CENTER, axis=1)
    lid = 0.0024 * (1.0 - eye_opening(p[:, 0], p[:, 1]))
    return d - (A.EYE_RADIUS + lid)


def head_field(p: np.ndarray) -> np.ndarray:
    """Implicit function of the mean head at points p (N,3): < 0 inside."""
    f = smin(_cranium(p), _front_slab(p), 0.02)
    f = smin(f, _neck(p), 0.03)
    f = f - feature_offsets(p)
    f = smin(f, _ears(p), 0.010)
    f = smin(f, _eyes(p), 0.0025)
    return f


def frontmost_point(x: np.ndarray, y: np.ndarray, z_max: float = 0.2, step: float = 0.001) -> np.ndarray:
    """The first surface point (N,3) met going along -Z from z = z_max at each (x, y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    hi = np.full(x.shape, z_max)
    lo = np.full(x.shape, np.nan)
    active = np.ones(x.shape, dtype=bool)
    z = z_max
    while active.any() and z > -0.2:
        z -= step
        f = head_field(np.stack([x, y, np.full(x.shape, z)], -1))
        hit = active & (f < 0)
        lo[hit] = z
        hi[active & ~hit] = z
        active &= ~hit
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        inside = head_field(np.stack([x, y, mid], -1)) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return np.stack([x, y, 0.5 * (lo + hi)], -1)
