"""Pinhole camera helpers used by the fitter (pure tensor functions).

Follows docs/conventions.md: camera space is OpenGL-style (looks down −Z, +Y up), pixels
have x right, y down, origin at the top-left image corner, and
``px = fx·X/(−Z) + cx``, ``py = cy − fy·Y/(−Z)``. The fitter keeps the camera rotation at
identity and puts the head rotation into the model pose, so ``X_cam = R_pose·v + t``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def intrinsics(focal: Tensor, width: Tensor | float, height: Tensor | float) -> Tensor:
    """OpenCV intrinsics (B, 3, 3) from focal lengths (B,) in pixels and image sizes (B,) or scalars.

    The principal point is the image centre (``cx = W/2``, ``cy = H/2``).
    """
    B = focal.shape[0]
    w = torch.as_tensor(width, dtype=focal.dtype, device=focal.device).expand(B)
    h = torch.as_tensor(height, dtype=focal.dtype, device=focal.device).expand(B)
    zero = torch.zeros_like(w)
    one = torch.ones_like(w)
    const = torch.stack((zero, zero, w / 2, zero, zero, h / 2, zero, zero, one), 1).view(B, 3, 3)
    # focal on the diagonal by one multiply-add (fewer autograd nodes than five slice assignments)
    return torch.addcmul(const, focal.view(B, 1, 1), _FOCAL_MASK.to(focal))


_FOCAL_MASK = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


def project(points: Tensor, K: Tensor) -> Tensor:
    """Project camera-space points (B, N, 3) (in front: z < 0) to pixels (B, N, 2)."""
    z = (-points[..., 2:]).clamp_min(1e-6)
    f = K[:, [0, 1], [0, 1]].unsqueeze(1)  # (B, 1, 2): fx, fy
    c = K[:, [0, 1], [2, 2]].unsqueeze(1)  # cx, cy
    # px = fx·X/z + cx, py = cy − fy·Y/z (the sign flip is exact)
    return f * points[..., :2] / z * _FLIP_Y.to(points) + c


_FLIP_Y = torch.tensor([1.0, -1.0])


def crop_intrinsics(K: Tensor, box: Tensor, size: int) -> Tensor:
    """Intrinsics (B, 3, 3) of the square crop ``box`` (B, 3) = (x0, y0, side) resampled to ``size``² px."""
    s = size / box[:, 2]
    Kc = K.clone()
    Kc[:, 0, 0] = K[:, 0, 0] * s
    Kc[:, 1, 1] = K[:, 1, 1] * s
    Kc[:, 0, 2] = (K[:, 0, 2] - box[:, 0]) * s
    Kc[:, 1, 2] = (K[:, 1, 2] - box[:, 1]) * s
    return Kc
