"""Index sets of MediaPipe's 478-point face mesh used by the fitter.

The face-oval ring (MediaPipe ``FACEMESH_FACE_OVAL``) is split into the contour on the
image-left (subject's right) and image-right cheek, from the temple down to beside the chin.
The contour points lie on the silhouette, not on fixed surface points, so they get a lower
weight and a yaw-dependent weight (:func:`face3d.fitting.losses.contour_weights`).
"""

from __future__ import annotations

import numpy as np

MP_CONTOUR_LEFT = (162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148)
MP_CONTOUR_RIGHT = (389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377)
MP_IRISES = tuple(range(468, 478))


def mediapipe_weights() -> np.ndarray:
    """Per-landmark weights (478,) float32: 1, contour 0.5, iris 0.5."""
    w = np.ones(478, np.float32)
    w[list(MP_CONTOUR_LEFT + MP_CONTOUR_RIGHT)] = 0.5
    w[list(MP_IRISES)] = 0.5
    return w
