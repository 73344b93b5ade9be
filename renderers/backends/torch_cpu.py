"""The built-in backend: numba visibility + differentiable torch recomputation.

Works on CPU and CUDA tensors (on CUDA the integer visibility maps are computed on the CPU and
everything differentiable runs on the tensor's device). Never imports nvdiffrast or pytorch3d.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .. import _kernels
from ..fused import antialias_blend2_cpu, antialias_blend_cpu, barycentrics_cpu, use_fused
from ..rows import take_rows
from ..topology import cached_neighbours

NAME = "torch"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").contiguous().numpy()


class Visibility(NamedTuple):
    """What the visibility pass found, kept for antialiasing the same rast: ids (B,H,W) int32
    (triangle id + 1), screen positions scr (B,V,4) float64 (``_kernels.screen_positions``) and
    the triangles' orientation signs facing (B,F) int8 (``_kernels.tri_facing``)."""

    ids: np.ndarray
    scr: np.ndarray
    facing: np.ndarray


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """(B,V,4) clip, (F,3) → rast (B,H,W,4) = (u, v, z/w, id+1); see docs/renderer_api.md."""
    return rasterize_visible(pos, tri, resolution)[0]


def rasterize_visible(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> tuple[torch.Tensor, Visibility]:
    """:func:`rasterize` and its :class:`Visibility` (for :func:`antialias`'s ``visibility``)."""
    H, W = resolution
    vis = Visibility(*_kernels.visibility(_np(pos), _np(tri.long()), H, W))
    return rast_from_ids(pos, tri, torch.from_numpy(vis.ids).to(pos.device)), vis


def rast_from_ids(pos: torch.Tensor, tri: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Differentiable (u, v, z/w) for pixels with known triangle ids (B,H,W) (id + 1, 0 empty).

    Perspective-correct barycentrics from 2D homogeneous edge functions (Olano & Greer 1997):
    with v_i = (x_i, y_i, w_i) and the pixel centre p = (x_ndc, y_ndc, 1),
    λ_i ∝ (v_j × v_k) · p, and z/w = Σ λ_i z_i / Σ λ_i w_i. CPU tensors use the fused kernel
    :func:`face3d.renderers.fused.barycentrics_cpu`; other devices :func:`rast_from_ids_torch`.
    """
    if use_fused(pos):
        return barycentrics_cpu(pos, tri, ids)
    return rast_from_ids_torch(pos, tri, ids)


def rast_from_ids_torch(pos: torch.Tensor, tri: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """:func:`rast_from_ids` as torch ops (any device)."""
    B, H, W = ids.shape
    V = pos.shape[1]
    flat = ids.reshape(-1).long()
    sel = torch.nonzero(flat).squeeze(1)
    f = flat[sel] - 1
    b = torch.div(sel, H * W, rounding_mode="floor")
    pix = sel - b * (H * W)
    py = torch.div(pix, W, rounding_mode="floor")
    px = pix - py * W
    dt = pos.dtype
    xn = (px.to(dt) + 0.5) * (2.0 / W) - 1.0
    yn = (py.to(dt) + 0.5) * (2.0 / H) - 1.0
    vi = tri.long().index_select(0, f) + (b * V).unsqueeze(1)
    v = take_rows(pos.reshape(B * V, 4), vi.reshape(-1)).view(-1, 3, 4)
    c = v.permute(2, 1, 0).contiguous()
    x, y, z, w = c[0], c[1], c[2], c[3]
    xj, yj, wj = x.roll(-1, 0), y.roll(-1, 0), w.roll(-1, 0)
    xk, yk, wk = x.roll(-2, 0), y.roll(-2, 0), w.roll(-2, 0)
    e = xn * (yj * wk - wj * yk) + yn * (wj * xk - xj * wk) + (xj * yk - yj * xk)
    lam = e / e.sum(0, keepdim=True)
    zw = (lam * z).sum(0) / (lam * w).sum(0)
    vals = torch.stack((lam[0], lam[1], zw, (f + 1).to(dt)), 1)
    out = pos.new_zeros(B * H * W, 4).index_copy(0, sel, vals)
    return out.view(B, H, W, 4)


def covered(rast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices of covered pixels, their batch index and triangle index."""
    B, H, W, _ = rast.shape
    ids = rast[..., 3].reshape(-1)
    sel = torch.nonzero(ids > 0).squeeze(1)
    f = ids.index_select(0, sel).long() - 1
    b = torch.div(sel, H * W, rounding_mode="floor")
    return sel, b, f


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """attr (B,V,C)|(V,C) → (B,H,W,C): u·a0 + v·a1 + (1−u−v)·a2, 0 where empty."""
    B, H, W, _ = rast.shape
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    Ba, V, C = attr.shape
    sel, b, f = covered(rast)
    vi = tri.long().index_select(0, f)
    if Ba > 1:
        vi = vi + (b * V).unsqueeze(1)
    a = take_rows(attr.reshape(Ba * V, C), vi.reshape(-1)).view(-1, 3, C)
    r = rast.reshape(B * H * W, 4).index_select(0, sel)
    u = r[:, 0:1]
    v = r[:, 1:2]
    val = a[:, 2] + u * (a[:, 0] - a[:, 2]) + v * (a[:, 1] - a[:, 2])
    dt = torch.promote_types(attr.dtype, rast.dtype)
    out = torch.zeros(B * H * W, C, dtype=dt, device=rast.device).index_copy(0, sel, val.to(dt))
    return out.view(B, H, W, C)


def _wrap_or_clamp(i: torch.Tensor, n: int, boundary_mode: str) -> torch.Tensor:
    return torch.remainder(i, n) if boundary_mode == "wrap" else i.clamp(0, n - 1)


def texture(tex: torch.Tensor, uv: torch.Tensor, filter_mode: str = "linear", boundary_mode: str = "wrap") -> torch.Tensor:
    """Sample tex (B,Ht,Wt,C) at uv (B,H,W,2); uv (0,0) = outer corner of texel [0,0], u along width."""
    Bt, Ht, Wt, C = tex.shape
    B, H, W, _ = uv.shape
    texf = tex.reshape(Bt * Ht * Wt, C)
    base = None
    if Bt > 1:
        base = (torch.arange(B, device=uv.device) * (Ht * Wt)).view(B, 1, 1)
    u = uv[..., 0]
    v = uv[..., 1]
    if filter_mode == "nearest":
        ix = _wrap_or_clamp(torch.floor(u.detach() * Wt).long(), Wt, boundary_mode)
        iy = _wrap_or_clamp(torch.floor(v.detach() * Ht).long(), Ht, boundary_mode)
        idx = iy * Wt + ix
        if base is not None:
            idx = idx + base
        return texf.index_select(0, idx.reshape(-1)).view(B, H, W, C)
    x = u * Wt - 0.5
    y = v * Ht - 0.5
    x0f = torch.floor(x.detach())
    y0f = torch.floor(y.detach())
    fx = (x - x0f).unsqueeze(-1)
    fy = (y - y0f).unsqueeze(-1)
    x0 = x0f.long()
    y0 = y0f.long()
    xa = _wrap_or_clamp(x0, Wt, boundary_mode)
    xb = _wrap_or_clamp(x0 + 1, Wt, boundary_mode)
    ya = _wrap_or_clamp(y0, Ht, boundary_mode) * Wt
    yb = _wrap_or_clamp(y0 + 1, Ht, boundary_mode) * Wt
    if base is not None:
        ya = ya + base
        yb = yb + base

    def g(i: torch.Tensor) -> torch.Tensor:
        return texf.index_select(0, i.reshape(-1)).view(B, H, W, C)

    top = g(ya + xa) + fx * (g(ya + xb) - g(ya + xa))
    bot = g(yb + xa) + fx * (g(yb + xb) - g(yb + xa))
    return top + fy * (bot - top)


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, topology_hash: object = None,
              visibility: Visibility | None = None) -> torch.Tensor:
    """Analytic silhouette antialiasing (after nvdiffrast, Laine et al. 2020).

    For each horizontal/vertical pixel pair straddling a silhouette edge of the nearer pixel's
    triangle, the edge crosses the segment between the two centres at t ∈ [0,1] (0 at the covered
    pixel A). If t > 1/2 the triangle covers t − 1/2 of pixel B: B += (t − 1/2)(c_A − c_B);
    otherwise A lacks 1/2 − t: A += (1/2 − t)(c_B − c_A). t is computed differentiably from pos
    (fused kernel on CPU, torch ops otherwise), so gradients reach the silhouette vertices.
    ``visibility``: what :func:`rasterize_visible` returned with ``rast`` (saves recomputing it).
    """
    pairs = _silhouette_pairs(rast, pos, tri, topology_hash, visibility).to(color.device)
    if pairs.shape[0] == 0:
        return color * 1.0
    if use_fused(color):
        return antialias_blend_cpu(color, pos, pairs)
    return antialias_blend_torch(color, pos, pairs)


class AAInputs(NamedTuple):
    """What :func:`antialias_with_coverage` blends: image (B,H,W,C), its coverage (B,H,W,1), and
    whether both are fresh contiguous tensors (not views) that nothing else needs unblended, so that
    CPU tensors may be blended in place."""

    image: torch.Tensor
    coverage: torch.Tensor
    in_place: bool = False


def antialias_with_coverage(images: AAInputs, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
                            visibility: Visibility | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`antialias` of an image (B,H,W,C) and its coverage (B,H,W,1) blended alike, returned
    as two images (what antialiasing their concatenation gives). CPU tensors take one fused pass
    (``fused.antialias_blend2_cpu``) with no interleaved 4-channel copy to slice apart again (in
    place when ``images.in_place``)."""
    image, coverage = images.image, images.coverage
    if not use_fused(image):
        both = antialias(torch.cat((image, coverage.to(image.dtype)), -1), rast, pos, tri, visibility=visibility)
        return both[..., :-1], both[..., -1:]
    pairs = _silhouette_pairs(rast, pos, tri, None, visibility)
    if pairs.shape[0] == 0:
        return image * 1.0, coverage * 1.0
    return antialias_blend2_cpu(image, coverage, pos, pairs, in_place=images.in_place)


def _silhouette_pairs(rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, topology_hash: object,
                      visibility: Visibility | None) -> torch.Tensor:
    """(n,6) int64 CPU rows of ``_kernels.silhouette_pairs`` for rast (B,H,W,4) of pos (B,V,4), tri (F,3)."""
    H, W = rast.shape[1:3]
    tri_np = _np(tri.long())
    if visibility is None:
        pos_np = _np(pos)
        scr = _kernels.screen_positions(pos_np, H, W)
        ids = _np(rast[..., 3]).astype(np.int32)
        facing = _kernels.tri_facing(scr, pos_np, tri_np)
    else:
        ids, scr, facing = visibility
    zw = rast.detach().numpy()[..., 2] if rast.device.type == "cpu" else _np(rast[..., 2])  # z/w (B,H,W), a view on CPU
    nbr = cached_neighbours(tri, topology_hash)
    return torch.from_numpy(_kernels.silhouette_pairs(ids, zw, scr, tri_np, nbr, facing))


def antialias_blend_torch(color: torch.Tensor, pos: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The blend step of :func:`antialias` for known pairs, as torch ops (any device)."""
    B, H, W, C = color.shape
    V = pos.shape[1]
    colorf = color.reshape(B * H * W, C)
    b, pa, pb, ip, iq, axis = pairs.unbind(1)
    posf = pos.reshape(B * V, 4)
    P = posf.index_select(0, b * V + ip)
    Q = posf.index_select(0, b * V + iq)
    dt = pos.dtype
    psx = (P[:, 0] / P[:, 3] * 0.5 + 0.5) * W
    psy = (P[:, 1] / P[:, 3] * 0.5 + 0.5) * H
    qsx = (Q[:, 0] / Q[:, 3] * 0.5 + 0.5) * W
    qsy = (Q[:, 1] / Q[:, 3] * 0.5 + 0.5) * H
    la = pa - b * (H * W)
    lb = pb - b * (H * W)
    ay = torch.div(la, W, rounding_mode="floor")
    ax = la - ay * W
    by = torch.div(lb, W, rounding_mode="floor")
    bx = lb - by * W
    horiz = axis == 0
    direction = ((bx - ax) + (by - ay)).to(dt)
    c_along = torch.where(horiz, ax, ay).to(dt) + 0.5
    c_ortho = torch.where(horiz, ay, ax).to(dt) + 0.5
    p_al = torch.where(horiz, psx, psy)
    p_or = torch.where(horiz, psy, psx)
    q_al = torch.where(horiz, qsx, qsy)
    q_or = torch.where(horiz, qsy, qsx)
    t = (p_al + (c_ortho - p_or) * (q_al - p_al) / (q_or - p_or) - c_along) * direction
    ca = colorf.index_select(0, pa)
    cb = colorf.index_select(0, pb)
    into_b = (t > 0.5).unsqueeze(1)
    coeff = torch.where(into_b.squeeze(1), t - 0.5, 0.5 - t).unsqueeze(1).to(color.dtype)
    delta = coeff * torch.where(into_b, ca - cb, cb - ca)
    target = torch.where(into_b.squeeze(1), pb, pa)
    return colorf.index_add(0, target, delta).view(B, H, W, C)
