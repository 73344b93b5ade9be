"""A naive dense pure-torch rasterizer: the reference for tests and the speed baseline.

It evaluates every triangle at every pixel (in chunks of triangles, so memory stays bounded)
with the same coverage, clipping and tie rules as the compiled kernel, then reuses the
differentiable barycentric recomputation. Slow by design: O(pixels × triangles).
"""

from __future__ import annotations

import torch

from . import _checks
from .backends.torch_cpu import rast_from_ids


def rasterize_reference(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int], chunk: int = 64) -> torch.Tensor:
    """Same contract as :func:`face3d.renderers.rasterize` (pos (B,V,4), tri (F,3)) → rast (B,H,W,4)."""
    _checks.float_tensor("pos", pos, 3, 4, "float tensor (B,V,4) in clip space")
    _checks.index_tensor("tri", tri, pos.shape[1])
    H, W = _checks.resolution_pair(resolution)
    B = pos.shape[0]
    p = pos.detach().to(torch.float64)
    w = p[..., 3]
    ok_v = w > 0
    safe_w = torch.where(ok_v, w, torch.ones_like(w))
    sx = (p[..., 0] / safe_w * 0.5 + 0.5) * W
    sy = (p[..., 1] / safe_w * 0.5 + 0.5) * H
    sz = p[..., 2] / safe_w
    cy, cx = torch.meshgrid(
        torch.arange(H, dtype=torch.float64, device=pos.device) + 0.5,
        torch.arange(W, dtype=torch.float64, device=pos.device) + 0.5,
        indexing="ij",
    )
    cx = cx.reshape(1, 1, -1)
    cy = cy.reshape(1, 1, -1)
    best_z = torch.full((B, H * W), float("inf"), dtype=torch.float64, device=pos.device)
    best_id = torch.zeros((B, H * W), dtype=torch.long, device=pos.device)
    t = tri.long()
    for start in range(0, t.shape[0], chunk):
        idx = t[start : start + chunk]
        x0, x1, x2 = (sx[:, idx[:, k]].unsqueeze(-1) for k in range(3))
        y0, y1, y2 = (sy[:, idx[:, k]].unsqueeze(-1) for k in range(3))
        z0, z1, z2 = (sz[:, idx[:, k]].unsqueeze(-1) for k in range(3))
        valid = ok_v[:, idx].all(-1).unsqueeze(-1)
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        valid = valid & (area != 0)
        inv = 1.0 / torch.where(area != 0, area, torch.ones_like(area))
        b0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) * inv
        b1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) * inv
        b2 = 1.0 - b0 - b1
        z = b0 * z0 + b1 * z1 + b2 * z2
        inside = valid & (b0 >= 0) & (b1 >= 0) & (b2 >= 0) & (z >= -1) & (z <= 1)
        z = torch.where(inside, z, torch.full_like(z, float("inf")))
        zmin, arg = z.min(dim=1)
        better = zmin < best_z
        best_z = torch.where(better, zmin, best_z)
        best_id = torch.where(better, arg + start + 1, best_id)
    return rast_from_ids(pos, tri, best_id.view(B, H, W))
