"""iBUG-300W / Multi-PIE 68-point embedding of the ``basic`` head, defined by construction.

Each landmark is placed from the design anatomy (``anatomy``, lid margins, lip borders) as an
(x, y) position in the frontal view, lifted onto the surface along -Z (the upper jaw points
0-3 and 13-16 are taken on the frontal silhouette instead, as 300-W annotates the visible
face contour), and expressed as a
(triangle, barycentric) pair of the radial grid cell its ray falls in. Index order and sides
follow the 300-W annotation: points 0-16 jaw from the subject's right (-X) to left (+X),
17-21 right brow, 22-26 left brow, 27-30 nose bridge, 31-35 nostrils, 36-41 right eye,
42-47 left eye, 48-59 outer lips, 60-67 inner lips.
"""

from __future__ import annotations

import numpy as np

from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.mesh import HeadMesh
from face3d.models.basic_build.shape import eye_margins, frontmost_point, head_field

_JAW_LEFT = np.array([  # (x, y) polyline, subject's left side, from the ear toward the chin
    [0.066, 0.004], [0.065, -0.025], [0.060, -0.050], [0.050, -0.071],
    [0.036, -0.087], [0.018, -0.096], [0.0, -0.0985],
])


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])], 1)


def _lip_borders(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.clip(np.abs(x) / A.MOUTH_HALF_WIDTH, 0, 1)
    s = np.sqrt(1 - u**2)
    y0 = A.STOMION[1] + 0.0015 * u**2
    upper = y0 + 0.0085 * s * (1 - 0.25 * np.exp(-((x / 0.003) ** 2)))
    return upper, y0 - 0.0105 * s


def ibug68_xy() -> np.ndarray:
    """Frontal (x, y) design positions of the 68 landmarks (68, 2), metres."""
    jaw_l = _resample(_JAW_LEFT, 9)  # ear (index 16) .. chin (index 8)
    jaw = np.concatenate([jaw_l * [-1, 1], jaw_l[::-1][1:]])  # 0..8 right side, 9..16 left side
    bx = np.array([A.BROW_OUTER[0], 0.043, A.BROW_PEAK[0], 0.022, A.BROW_INNER[0]])
    by = np.interp(bx, [A.BROW_INNER[0], A.BROW_PEAK[0], A.BROW_OUTER[0]], [A.BROW_INNER[1], A.BROW_PEAK[1], A.BROW_OUTER[1]])
    by = by + 0.002 * np.sin(np.pi * np.clip((bx - A.BROW_INNER[0]) / (A.BROW_OUTER[0] - A.BROW_INNER[0]), 0, 1))
    brow_r = np.stack([-bx, by], 1)  # 17..21 outer -> inner
    brow_l = np.stack([bx[::-1], by[::-1]], 1)  # 22..26 inner -> outer
    top = A.NASION[1] - 0.005  # 300-W point 27: top of the bridge, near the upper-lid level
    nose = np.stack([np.zeros(4), np.linspace(top, A.PRONASALE[1], 4)], 1)
    nostrils = np.array([[-0.0105, -0.0345], [-0.0055, -0.0368], [0.0, A.SUBNASALE[1]], [0.0055, -0.0368], [0.0105, -0.0345]])
    xc = 0.5 * (A.EXOCANTHION[0] + A.ENDOCANTHION[0])
    half = 0.5 * (A.EXOCANTHION[0] - A.ENDOCANTHION[0])
    ux = xc + half * np.array([-1.0, -1 / 3, 1 / 3, 1.0])
    _, yup, ylo = eye_margins(ux)
    yc = 0.5 * (A.EXOCANTHION[1] + A.ENDOCANTHION[1])
    eye_l = np.array([[ux[0], yc], [ux[1], yup[1]], [ux[2], yup[2]], [ux[3], yc], [ux[2], ylo[2]], [ux[1], ylo[1]]])
    eye_r = np.array([[-ux[3], yc], [-ux[2], yup[2]], [-ux[1], yup[1]], [-ux[0], yc], [-ux[1], ylo[1]], [-ux[2], ylo[2]]])
    cx = A.CHEILION[0]
    ox_up = np.array([-0.017, -0.007, 0.0, 0.007, 0.017])
    ox_lo = np.array([0.017, 0.008, 0.0, -0.008, -0.017])
    up, _ = _lip_borders(ox_up)
    _, lo = _lip_borders(ox_lo)
    outer = np.concatenate([[[-cx, A.CHEILION[1]]], np.stack([ox_up, up], 1), [[cx, A.CHEILION[1]]], np.stack([ox_lo, lo], 1)])
    ix = 0.92 * cx
    inner = np.array([[-ix, 0], [-0.011, 0], [0.0, 0], [0.011, 0], [ix, 0], [0.011, 0], [0.0, 0], [-0.011, 0]])
    inner[:, 1] = A.STOMION[1]
    return np.concatenate([jaw, brow_r, brow_l, nose, nostrils, eye_r, eye_l, outer, inner]).astype(np.float64)


def silhouette_point(y: float, side: float, n: int = 181) -> np.ndarray:
    """Outermost point (3,) toward ``side`` (+1 left, -1 right) of the head's horizontal section
    at height y, in front of the ears (z > 0): the face contour seen from the front."""
    a = np.linspace(0.05, 1.45, n)
    o = np.array([0.0, y, A.RAY_ORIGIN[2]])
    dirs = np.stack([side * np.sin(a), np.zeros(n), np.cos(a)], 1)
    lo, hi = np.zeros(n), np.full(n, 0.2)
    for _ in range(40):  # the section is star-shaped about o: bisect the boundary along each ray
        mid = 0.5 * (lo + hi)
        inside = head_field(o + dirs * mid[:, None]) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    pts = o + dirs * lo[:, None]
    pts = pts[pts[:, 2] > 0.0]
    return pts[np.argmax(side * pts[:, 0])]


def _cell_embedding(hm: HeadMesh, az: float, el: float, force_row: int | None = None, lower: bool = False) -> tuple[int, np.ndarray]:
    """Triangle and barycentrics of the grid cell containing direction (az, el)."""
    na = len(hm.azimuth)
    c = int(np.clip(np.searchsorted(hm.azimuth, az) - 1, 0, na - 2))
    s = float(np.clip((az - hm.azimuth[c]) / (hm.azimuth[c + 1] - hm.azimuth[c]), 0, 1))
    if force_row is not None:
        j, t = (force_row - 1, 1.0) if lower else (force_row, 0.0)
    else:
        j = int(np.clip(np.searchsorted(hm.elevation, el) - 1, 0, len(hm.elevation) - 2))
        t = float(np.clip((el - hm.elevation[j]) / (hm.elevation[j + 1] - hm.elevation[j]), 0, 1))
    base = 2 * (j * na + c)
    if c >= na // 2:  # cell split along p00-p11 (see mesh.build_mesh)
        if s >= t:
            return base, np.array([1 - s, s - t, t])
        return base + 1, np.array([1 - t, s, t - s])
    if s + t <= 1:  # cell split along p01-p10
        return base, np.array([1 - s - t, s, t])
    return base + 1, np.array([1 - t, s + t - 1, 1 - s])


def ibug68_embedding(hm: HeadMesh) -> tuple[np.ndarray, np.ndarray]:
    """(tri (68,), bary (68, 3)) of the iBUG-68 landmarks on the head mesh."""
    xy = ibug68_xy()
    pts = frontmost_point(xy[:, 0], xy[:, 1])
    for i in (*range(0, 4), *range(13, 17)):  # upper jaw contour: the frontal silhouette
        pts[i] = silhouette_point(xy[i, 1], np.sign(xy[i, 0]))
    for i in (4, 12):  # transition to the chin contour
        pts[i] = 0.5 * (pts[i] + silhouette_point(xy[i, 1], np.sign(xy[i, 0])))
    d = pts - A.RAY_ORIGIN
    az = np.arctan2(d[:, 0], d[:, 2])
    el = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
    tri = np.zeros(68, dtype=np.int64)
    bary = np.zeros((68, 3))
    for i in range(68):
        if i >= 60:  # inner lips lie on the slit: upper side 60-64, lower side 65-67
            tri[i], bary[i] = _cell_embedding(hm, az[i], el[i], force_row=hm.mouth_row, lower=i >= 65)
        else:
            tri[i], bary[i] = _cell_embedding(hm, az[i], el[i])
    return tri, bary
