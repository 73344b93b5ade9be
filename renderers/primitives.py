"""The four differentiable primitives (nvdiffrast semantics), validated and dispatched to a backend.

See docs/renderer_api.md for the exact contract and docs/conventions.md for image orientation.
"""

from __future__ import annotations

import torch

from face3d.errors import ShapeError

from . import _checks
from .backends import get_backend

_FILTERS = ("linear", "nearest")
_BOUNDARIES = ("wrap", "clamp")


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int], backend: str | None = None) -> torch.Tensor:
    """Rasterize clip-space triangles.

    pos (B,V,4) float clip coordinates; tri (F,3) int32/int64; resolution (H, W).
    Returns rast (B,H,W,4) = (u, v, z/w, triangle_id + 1), zeros where empty. Clip y = −1 is
    row 0, clip x = −1 column 0; pixel centres at ((i+0.5)/W·2−1, (j+0.5)/H·2−1); a centre on an
    edge counts as covered. u, v are perspective-correct barycentrics of vertices 0 and 1.
    Triangles with any w <= 0 are culled; pixels with z/w outside [−1, 1] are clipped.
    Gradients w.r.t. pos flow through u, v and z/w (visibility is not differentiable).
    """
    _checks.float_tensor("pos", pos, 3, 4, "float tensor (B,V,4) in clip space")
    _checks.index_tensor("tri", tri, pos.shape[1])
    h, w = _checks.resolution_pair(resolution, pos.shape[0])
    if tri.device != pos.device:
        raise ShapeError("tri", f"tensor on {pos.device} (same device as pos)", f"device {tri.device}")
    return get_backend(backend).rasterize(pos, tri, (h, w))


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """Interpolate vertex attributes: attr (B,V,C)|(V,C), rast (B,H,W,4), tri (F,3) → (B,H,W,C).

    ``tri`` may be a different index buffer with the same F as the rasterized one (e.g. UV faces
    with attr = UVs). Values are u·a0 + v·a1 + (1−u−v)·a2; 0 where empty. Differentiable w.r.t.
    attr and (through rast) pos.
    """
    _checks.rast_tensor(rast)
    if not isinstance(attr, torch.Tensor) or not attr.is_floating_point() or attr.dim() not in (2, 3):
        raise ShapeError("attr", "float tensor (B,V,C) or (V,C)", _checks._desc(attr))
    if attr.dim() == 3:
        _checks.batch_match("attr", attr.shape[0], rast.shape[0])
    _checks.index_tensor("tri", tri, attr.shape[-2])
    return get_backend(backend).interpolate(attr, rast, tri)


def texture(
    tex: torch.Tensor,
    uv: torch.Tensor,
    filter_mode: str = "linear",
    boundary_mode: str = "wrap",
    backend: str | None = None,
) -> torch.Tensor:
    """Sample a texture: tex (B,Ht,Wt,C), uv (B,H,W,2) → (B,H,W,C).

    uv (0, 0) is the outer corner of texel tex[:, 0, 0]; u runs along the width, v along rows
    (nvdiffrast convention). ``filter_mode`` 'linear' (bilinear) or 'nearest'; ``boundary_mode``
    'wrap' or 'clamp'. Differentiable w.r.t. tex and (for 'linear') uv. A tex batch of 1 broadcasts.
    """
    _checks.float_tensor("tex", tex, 4, None, "float tensor (B,Ht,Wt,C)")
    _checks.float_tensor("uv", uv, 4, 2, "float tensor (B,H,W,2)")
    _checks.batch_match("tex", tex.shape[0], uv.shape[0])
    if tex.shape[1] == 0 or tex.shape[2] == 0 or tex.shape[3] == 0:
        raise ShapeError("tex", "non-empty (B,Ht,Wt,C)", tuple(tex.shape))
    if filter_mode not in _FILTERS:
        raise ShapeError("filter_mode", f"one of {_FILTERS}", repr(filter_mode))
    if boundary_mode not in _BOUNDARIES:
        raise ShapeError("boundary_mode", f"one of {_BOUNDARIES}", repr(boundary_mode))
    return get_backend(backend).texture(tex, uv, filter_mode, boundary_mode)


def antialias(
    color: torch.Tensor,
    rast: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    topology_hash: object = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Analytic silhouette antialiasing: color (B,H,W,C), rast, pos (B,V,4), tri (F,3) → (B,H,W,C).

    Colours of pixel pairs straddling a silhouette edge are blended by the sub-pixel position
    where the edge crosses the segment between their centres (nvdiffrast's method), which gives
    gradients w.r.t. the silhouette vertices in ``pos``. ``topology_hash`` optionally names the
    mesh topology so the edge adjacency is cached under that key instead of a content hash.
    """
    _checks.rast_tensor(rast)
    _checks.float_tensor("color", color, 4, None, "float tensor (B,H,W,C)")
    if color.shape[:3] != rast.shape[:3]:
        raise ShapeError("color", f"(B,H,W,C) with (B,H,W) = {tuple(rast.shape[:3])}", tuple(color.shape))
    _checks.float_tensor("pos", pos, 3, 4, "float tensor (B,V,4) in clip space")
    if pos.shape[0] != rast.shape[0]:
        raise ShapeError("pos", f"batch size {rast.shape[0]} (as rast)", tuple(pos.shape))
    _checks.index_tensor("tri", tri, pos.shape[1])
    return get_backend(backend).antialias(color, rast, pos, tri, topology_hash)
