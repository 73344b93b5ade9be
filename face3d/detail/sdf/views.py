"""Views that supervise the implicit surface: real photos, or synthesised renders of the fit."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from face3d.errors import ShapeError


@dataclass
class View:
    """One supervising image.

    image (H,W,3) float [0,1]; camera a batch-1 ``renderers.PerspectiveCamera`` of the same
    size; sh (9,3) the lighting fitted for this view; weight of its photometric term;
    synthetic marks renders of the 3DMM fit (they regularise unseen regions).
    """

    image: Tensor
    camera: object
    sh: Tensor
    weight: float = 1.0
    synthetic: bool = False

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[-1] != 3:
            raise ShapeError("image", "(H, W, 3)", tuple(self.image.shape))
        if tuple(self.sh.shape) != (9, 3):
            raise ShapeError("sh", "(9, 3)", tuple(self.sh.shape))


def pixel_rays(camera: object) -> tuple[Tensor, Tensor, Tensor]:
    """World-space rays through every pixel centre of a batch-1 perspective camera.

    Returns origins (H*W,3), unit directions (H*W,3) and ``cos`` (H*W,) = the cosine between
    each ray and the viewing axis (depth along the axis = t · cos). Row-major, row 0 at the top.
    """
    K, R, t = camera.K[0].double(), camera.R[0].double(), camera.t[0].double()  # type: ignore[attr-defined]
    H, W = int(camera.height), int(camera.width)  # type: ignore[attr-defined]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    yc = -(ys - cy) / fy
    xc = (xs - cx + s * yc) / fx
    d_cam = torch.stack([xc, yc, -torch.ones_like(xc)], -1).reshape(-1, 3)
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
    dirs = d_cam @ R  # R^T d
    origin = -(R.T @ t)
    return origin.expand_as(dirs).float(), dirs.float(), (-d_cam[:, 2]).float()
