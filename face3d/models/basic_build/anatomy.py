"""Design constants of the ``basic`` head: where the features of the mean adult head are.

Metres, model convention (+Y up, +Z out of the face, +X toward the subject's left), origin
near the centre of the head (mid-way between the ears, a little below eye level).
Dimensions are rounded adult averages (sexes pooled) of the measurements tabulated in
Farkas, *Anthropometry of the Head and Face*, 2nd ed., 1994 (see ``identity.MEASUREMENTS``):
head breadth eu-eu ~0.148, head length g-op ~0.19, face width zy-zy ~0.135, mandible width
go-go ~0.10, eye fissures ex-ex ~0.09 / en-en ~0.032, mouth width ch-ch ~0.052,
nose width al-al ~0.033, face height n-gn ~0.12 (recalled, not checked against the book's
tables; docs/basic_model_sources.md lists which figures were checked since).
"""

from __future__ import annotations

import numpy as np

#: Ray origin of the radial surface parametrisation (inside the head).
RAY_ORIGIN = np.array([0.0, -0.005, 0.005])

# Midline profile (y, z of the mean face surface).
NASION = np.array([0.0, 0.024, 0.094])
GLABELLA = np.array([0.0, 0.040, 0.099])
PRONASALE = np.array([0.0, -0.022, 0.121])
SUBNASALE = np.array([0.0, -0.038, 0.106])
STOMION = np.array([0.0, -0.060, 0.103])
LABIALE_SUP = np.array([0.0, -0.052, 0.107])
LABIALE_INF = np.array([0.0, -0.069, 0.105])
SUBLABIALE = np.array([0.0, -0.080, 0.097])
POGONION = np.array([0.0, -0.089, 0.100])
MENTON = np.array([0.0, -0.099, 0.088])

# Bilateral features, given for the subject's left side (+X); the right is the mirror.
EYE_CENTER = np.array([0.032, 0.016, 0.072])  # eyeball centre
EYE_RADIUS = 0.0120
EXOCANTHION = np.array([0.045, 0.014, 0.080])
ENDOCANTHION = np.array([0.0165, 0.015, 0.083])
EYE_OPEN_HALF_HEIGHT = 0.0052  # half palpebral fissure height (ps-pi ~ 10.5 mm)
CHEILION = np.array([0.026, -0.058, 0.094])
ALARE = np.array([0.0165, -0.030, 0.103])
ZYGION = np.array([0.068, 0.000, 0.030])
GONION = np.array([0.050, -0.072, 0.000])
TRAGION = np.array([0.072, -0.004, -0.006])
EURION = np.array([0.074, 0.050, -0.010])
BROW_INNER = np.array([0.014, 0.036, 0.095])
BROW_PEAK = np.array([0.033, 0.042, 0.093])
BROW_OUTER = np.array([0.053, 0.034, 0.076])
EAR_CENTER = np.array([0.076, -0.004, -0.018])
JAW_HINGE = np.array([0.0, -0.012, 0.002])  # axis of jaw rotation runs along X through this point
HAIRLINE_Y = 0.078  # trichion height on the midline

MOUTH_HALF_WIDTH = float(CHEILION[0])


def mirror(p: np.ndarray) -> np.ndarray:
    """Mirror points (..., 3) to the other side (x -> -x)."""
    q = np.array(p, dtype=np.float64, copy=True)
    q[..., 0] *= -1
    return q
