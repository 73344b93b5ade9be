"""Per-vertex skin albedo model of the ``basic`` head: mean + linear modes with std.

Colours are display RGB in [0, 1] (the SDK treats images as sRGB-ish linear, see
docs/conventions.md). The mean is a light-medium skin with redder lips and cheeks, dark
brows and hair, white sclera with a brown iris, and a dark red mouth interior.
Modes (``ALBEDO_MODES``): each basis vector is the per-vertex RGB change for one unit of the
raw coefficient, ``albedo_std`` the prior standard deviation of that coefficient.
"""

from __future__ import annotations

import numpy as np

from face3d.models.basic_build import anatomy as A
from face3d.models.basic_build.mesh import HeadMesh
from face3d.models.basic_build.regions import brow_weight, ear_weight, eye_weight, hair_weight, lip_weight
from face3d.models.basic_build.shape import eye_margins, gauss, smoothstep

SKIN = np.array([0.80, 0.60, 0.50])
SKIN_DARK = np.array([0.36, 0.23, 0.16])  # tone mode end point (Fitzpatrick V-VI-like)
LIPS = np.array([0.70, 0.38, 0.37])
HAIR = np.array([0.20, 0.14, 0.10])
BROWS = np.array([0.22, 0.15, 0.11])
SCLERA = np.array([0.90, 0.88, 0.85])
IRIS = np.array([0.33, 0.21, 0.12])
PUPIL = np.array([0.03, 0.03, 0.03])
MOUTH = np.array([0.45, 0.16, 0.16])
LASHES = np.array([0.12, 0.08, 0.06])  # lash line along the lid margins

#: (name, prior std) of each albedo mode, in basis order.
ALBEDO_MODES: tuple[tuple[str, float], ...] = (
    ("skin_tone", 0.35),  # 0 = mean skin, +1 = SKIN_DARK on the skin
    ("redness", 0.04),  # erythema: +R, -G, -B on the skin, strongest on cheeks/nose/ears
    ("yellowness", 0.03),  # olive/yellow: +R +G -B on the skin
    ("lip_colour", 0.06),  # lips redder/darker
    ("hair_darkness", 0.12),  # hair and brows: +1 = lighter (toward blond)
    ("cheek_flush", 0.05),  # regional: cheeks, nose tip and ears redder
    ("iris_colour", 0.12),  # brown (-) to blue-grey (+)
)


def _skin_weight(hm: HeadMesh, v: np.ndarray) -> np.ndarray:
    pocket = ((hm.pocket_t > 0) & (hm.pocket_t < 1)).astype(float)
    return (1 - eye_weight(v)) * (1 - pocket)


def albedo_model(hm: HeadMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (V,3), basis (K,V,3), std (K,)) of the per-vertex albedo."""
    v = hm.vertices
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax = np.abs(x)
    skin_w = _skin_weight(hm, v)
    up, lo = lip_weight(v)
    lips = np.clip(up + lo, 0, 1)
    brows = brow_weight(v)
    hair = hair_weight(v)
    eyes = eye_weight(v)
    ears = ear_weight(v)
    pocket = np.clip(np.where(hm.pocket_t >= 0, np.sin(np.pi * np.clip(hm.pocket_t, 0, 1)), 0.0) * 3, 0, 1)
    cheeks = gauss(ax - 0.045, 0.014) * gauss(y + 0.02, 0.014) * smoothstep(0.03, 0.06, z)
    nose_tip = gauss(x, 0.01) * gauss(y - A.PRONASALE[1], 0.01) * smoothstep(0.09, 0.11, z)
    nostril = gauss(ax - 0.0085, 0.0035) * gauss(y + 0.036, 0.0025) * smoothstep(0.095, 0.105, z)

    u, up, lo = eye_margins(ax)
    on_lid = (np.abs(u) < 1.05) & (z > 0.06)
    lashes = on_lid * smoothstep(0.0016, 0.0004, np.abs(y - up - 0.0004)) * smoothstep(1.05, 0.7, np.abs(u) - 0.1 * (u > 0))
    lower_line = on_lid * smoothstep(0.0012, 0.0003, np.abs(y - lo + 0.0003)) * 0.5

    mean = np.tile(SKIN, (len(v), 1))
    mean = mean * (1 - 0.06 * cheeks[:, None]) + 0.06 * cheeks[:, None] * np.array([0.85, 0.5, 0.45])
    mean = mean * (1 - 0.5 * nostril[:, None]) + 0.5 * nostril[:, None] * np.array([0.3, 0.15, 0.12])
    for w, col in ((lips, LIPS), (brows, BROWS), (hair, HAIR), (lashes, LASHES), (lower_line, LASHES)):
        mean = mean * (1 - w[:, None]) + w[:, None] * col
    # eyes: iris and pupil around the forward gaze direction of each eyeball
    ex = np.where(x >= 0, A.EYE_CENTER[0], -A.EYE_CENTER[0])
    r = np.hypot(x - ex, y - A.EYE_CENTER[1])
    iris = smoothstep(0.0062, 0.0054, r)
    pupil = smoothstep(0.0026, 0.0020, r)
    eye_col = SCLERA * (1 - iris[:, None]) + IRIS * iris[:, None]
    eye_col = eye_col * (1 - pupil[:, None]) + PUPIL * pupil[:, None]
    mean = mean * (1 - eyes[:, None]) + eyes[:, None] * eye_col
    mean = mean * (1 - pocket[:, None]) + pocket[:, None] * MOUTH

    bare = skin_w * (1 - hair) * (1 - brows)
    base = mean.copy()
    basis = np.zeros((len(ALBEDO_MODES), len(v), 3))
    basis[0] = bare[:, None] * (SKIN_DARK - SKIN) / SKIN * base
    red = 0.5 + 0.5 * np.clip(cheeks + nose_tip + ears, 0, 1)
    basis[1] = (bare * red)[:, None] * np.array([1.0, -0.55, -0.45])
    basis[2] = bare[:, None] * np.array([0.6, 0.5, -1.0])
    basis[3] = lips[:, None] * np.array([1.0, -0.6, -0.5])
    basis[4] = np.clip(hair + brows, 0, 1)[:, None] * np.array([1.0, 0.85, 0.55])
    basis[5] = (bare * np.clip(cheeks + nose_tip + 0.7 * ears, 0, 1))[:, None] * np.array([1.0, -0.4, -0.3])
    basis[6] = (eyes * iris * (1 - pupil))[:, None] * np.array([0.25, 0.6, 1.0])
    std = np.array([s for _, s in ALBEDO_MODES])
    return mean, basis, std
