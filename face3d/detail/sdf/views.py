"""Views that supervise the implicit surface (:class:`face3d.mesh.View`: real photos, or
synthesised renders of the fit, ``synthetic=True``, weighted by ``weight``) and their pixel rays."""

from __future__ import annotations

import torch
from torch import Tensor

from face3d.mesh import Camera, View

__all__ = ["View", "pixel_rays"]


def pixel_rays(camera: Camera) -> tuple[Tensor, Tensor, Tensor]:
    """World-space rays through every pixel centre of a batch-1 perspective camera.

    Returns origins (H*W,3), unit directions (H*W,3) and ``cos`` (H*W,) = the cosine between
    each ray and the viewing axis (depth along the axis = t · cos). Row-major, row 0 at the top.
    """
    K, R, t = camera.K[0].double(), camera.R[0].double(), camera.t[0].double()  # type: ignore[union-attr]
    H, W = int(camera.height), int(camera.width)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    yc = -(ys - cy) / fy
    xc = (xs - cx + s * yc) / fx
    d_cam = torch.stack([xc, yc, -torch.ones_like(xc)], -1).reshape(-1, 3)
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
    dirs = d_cam @ R  # R^T d
    origin = -(R.T @ t)
    return origin.expand_as(dirs).float(), dirs.float(), (-d_cam[:, 2]).float()
