"""Shape-from-shading detail: a UV displacement map on top of a fitted mesh.

Image formation (the renderer's, ``face3d.renderers.sh_shade``): colour = albedo × E(n), E the
Lambertian SH irradiance of the fitted lighting. A displacement map D (metres along the smooth
normal N) tilts the normal to first order by its surface gradient::

    n' = normalize(N - grad_S D),   grad_S D = [T_u T_v] g^-1 [dD/du, dD/dv]^T

with T_u = dP/du, T_v = dP/dv the tangents of the UV parameterisation and g their metric.
We minimise, over D on the texel grid,

    sum_texels w · rho(albedo · E(n'(D)) - target)  +  lambda_s |Laplacian D|^2  +  lambda_m |D|^2

by Gauss-Newton (IRLS for the robust loss; steps by Jacobi-preconditioned conjugate gradients; backtracking), where w is the photo visibility weight of each texel (z-buffer + viewing angle, as in
texture baking) and the photo is sampled at each texel's projection. The colours, their forward-difference
Jacobian and the energy are numba passes over the seen texels; the Gauss-Newton matrix is never
assembled: the conjugate-gradient loop (one numba kernel) applies it stencil by stencil on the
unknowns. The comparison is done
in texture space (inverse rendering at the texels, the same image formation as rendering the
mesh, without re-rasterizing per step; parallax of sub-millimetre displacements is ignored).
By default the target keeps only the high-frequency part of the photo's shading
(``target = C0 · r / lowpass(r)``, r = photo / C0, C0 the render at D = 0), so errors of the
fitted albedo and lighting at large scales are not turned into bulges.

Normal maps are tangent-space, OpenGL convention (as glTF): RGB = (n·T, n·B, n·N)/2 + 1/2 with
T along +u, B along +v (v up), N the smooth normal; a flat texel is (0.5, 0.5, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F

from face3d.errors import BadInputError, ShapeError
from face3d.mesh import Mesh, View
from face3d.texture.bake import _blur, _image, pull_push, sample_view
from face3d.texture.symmetry import vertex_uv_index
from face3d.texture.uv_raster import UVRaster, check_uv_topology, rasterize_uv, uv_to_grid


@dataclass(frozen=True)
class DetailResult:
    """displacement (R,R) metres along the normal (0 where unseen, dilated past chart borders);
    normal_map (R,R,3) tangent-space RGB in [0,1] (OpenGL/glTF convention); vertices_detailed
    (V,3) the mesh displaced by the map sampled at vertex UVs; visibility (R,R) weight used;
    subdivided: (vertices, faces, uvs, uv_faces) of the once-subdivided displaced mesh or None;
    losses: data term at the first and last iteration."""

    displacement: torch.Tensor
    normal_map: torch.Tensor
    vertices_detailed: torch.Tensor
    visibility: torch.Tensor
    subdivided: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None
    losses: tuple[float, float]


@dataclass
class TangentFrames:
    """Per covered texel (N,): P (N,3) point, N (N,3) smooth unit normal, Tu/Tv (N,3) dP/du and
    dP/dv (metres per unit UV), ginv (N,2,2) inverse metric, interior (N,) bool (finite
    differences valid)."""

    P: torch.Tensor
    N: torch.Tensor
    Tu: torch.Tensor
    Tv: torch.Tensor
    ginv: torch.Tensor
    interior: torch.Tensor


def _grid_neighbours(raster: UVRaster) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each covered texel: the covered-texel index of its right/left/up/down neighbour (-1 if none),
    and whether it has all four. Cached on the raster (they depend on its layout only); read-only."""
    hit = raster.__dict__.get("_sfs_neighbours")
    if hit is None:
        hit = raster.__dict__["_sfs_neighbours"] = _compute_grid_neighbours(raster)
    return hit


def _compute_grid_neighbours(raster: UVRaster) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    R = raster.resolution
    lookup = torch.full((R * R,), -1, dtype=torch.int64)
    lookup[raster.index] = torch.arange(raster.index.shape[0])
    lk = lookup.view(R, R)
    rows, cols = raster.index // R, raster.index % R

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        ok = (r >= 0) & (r < R) & (c >= 0) & (c < R)
        return torch.where(ok, lk[r.clamp(0, R - 1), c.clamp(0, R - 1)], torch.full_like(r, -1))

    right, left = at(rows, cols + 1), at(rows, cols - 1)
    up, down = at(rows - 1, cols), at(rows + 1, cols)  # row 0 is v = 1: "up" (+v) is the row above
    interior = (right >= 0) & (left >= 0) & (up >= 0) & (down >= 0)
    return right, left, up, down, interior


@numba.njit(cache=True, nogil=True)
def _frames_kernel(P, nbr, interior, du):  # pragma: no cover - jit
    """Tangents Tu, Tv (N,3), inverse metric ginv (N,2,2) and the interior flags (N,) of the texel
    points P (N,3) (float32, the operations of the torch expressions in their order)."""
    right, left, up, down = nbr
    n = P.shape[0]
    Tu = np.zeros((n, 3), np.float32)
    Tv = np.zeros((n, 3), np.float32)
    ginv = np.zeros((n, 2, 2), np.float32)
    ok = np.zeros(n, np.bool_)
    zero, one, three = np.float32(0.0), np.float32(1.0), np.float32(3.0)
    for k in range(n):
        if not interior[k]:  # zero tangents, zero ginv
            continue
        r, l, u, d = right[k], left[k], up[k], down[k]
        for c in range(3):
            Tu[k, c] = (P[r, c] - P[l, c]) / du
            Tv[k, c] = (P[u, c] - P[d, c]) / du
        g00 = (zero + Tu[k, 0] * Tu[k, 0]) + Tu[k, 1] * Tu[k, 1] + Tu[k, 2] * Tu[k, 2]
        g01 = (zero + Tu[k, 0] * Tv[k, 0]) + Tu[k, 1] * Tv[k, 1] + Tu[k, 2] * Tv[k, 2]
        g11 = (zero + Tv[k, 0] * Tv[k, 0]) + Tv[k, 1] * Tv[k, 1] + Tv[k, 2] * Tv[k, 2]
        det = g00 * g11 - g01 * g01
        good = det > np.float32(1e-14)
        # UV seams: a neighbour on another chart is far away in 3D; one-sided steps then disagree
        for a, b in ((r, l), (u, d)):
            fwd = zero
            bwd = zero
            for c in range(3):
                fwd += (P[a, c] - P[k, c]) * (P[a, c] - P[k, c])
                bwd += (P[k, c] - P[b, c]) * (P[k, c] - P[b, c])
            fwd, bwd = np.sqrt(fwd), np.sqrt(bwd)
            good = good and max(fwd, bwd) <= three * min(fwd, bwd) + np.float32(1e-9)
        ok[k] = good
        if not good:
            det = one
        ginv[k, 0, 0] = g11 / det
        ginv[k, 0, 1] = -g01 / det
        ginv[k, 1, 0] = -g01 / det
        ginv[k, 1, 1] = g00 / det
    return Tu, Tv, ginv, ok


def tangent_frames(vertices: torch.Tensor, faces: torch.Tensor, raster: UVRaster,
                   normals: torch.Tensor | None = None) -> tuple[TangentFrames, tuple[torch.Tensor, ...]]:
    """Texel points, smooth normals and UV tangents (central differences) of a mesh (CPU float32):
    vertices (V,3), faces (F,3), the vertex normals (V,3) if already computed."""
    from face3d.renderers import vertex_normals

    vertices = vertices.detach().cpu().float()
    vn = vertex_normals(vertices[None], faces)[0] if normals is None else normals
    P = raster.interpolate(vertices, faces)
    N = F.normalize(raster.interpolate(vn, faces), dim=-1, eps=1e-12)
    right, left, up, down, interior = _grid_neighbours(raster)
    nbr = tuple(np.ascontiguousarray(i.clamp_min(0).numpy(), dtype=np.uint32) for i in (right, left, up, down))
    Tu, Tv, ginv, ok = _frames_kernel(np.ascontiguousarray(P.numpy()), nbr, interior.numpy(), np.float32(2.0 / raster.resolution))
    frames = TangentFrames(P, N, torch.from_numpy(Tu), torch.from_numpy(Tv), torch.from_numpy(ginv), torch.from_numpy(ok))
    return frames, (right, left, up, down)


def perturbed_normals(D: torch.Tensor, frames: TangentFrames, nbr: tuple[torch.Tensor, ...], resolution: int) -> torch.Tensor:
    """Normals (N,3) of the surface displaced by D (N,) metres along the smooth normal (first order)."""
    right, left, up, down = (i.clamp_min(0) for i in nbr)
    du = 2.0 / resolution
    dDu = (D[right] - D[left]) / du
    dDv = (D[up] - D[down]) / du
    m = frames.interior.to(D.dtype)
    grad = torch.stack([dDu, dDv], -1) * m[:, None]
    coef = (frames.ginv @ grad[..., None])[..., 0]  # (N,2)
    gs = coef[:, :1] * frames.Tu + coef[:, 1:] * frames.Tv
    return F.normalize(frames.N - gs, dim=-1, eps=1e-12)


def laplacian(D: torch.Tensor, nbr: tuple[torch.Tensor, ...], interior: torch.Tensor) -> torch.Tensor:
    """5-point Laplacian (N,) of a texel field (0 at non-interior texels), texel units."""
    right, left, up, down = (i.clamp_min(0) for i in nbr)
    return (D[right] + D[left] + D[up] + D[down] - 4.0 * D) * interior.to(D.dtype)


def tangent_space_normals(n: torch.Tensor, frames: TangentFrames) -> torch.Tensor:
    """World normals (N,3) -> tangent-space RGB (N,3) in [0,1] (T along +u, B along +v, N)."""
    N = frames.N
    T = frames.Tu - (frames.Tu * N).sum(-1, keepdim=True) * N
    T = F.normalize(T, dim=-1, eps=1e-12)
    B = torch.cross(N, T, dim=-1)
    sign = torch.where((B * frames.Tv).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    B = B * sign
    ts = torch.stack([(n * T).sum(-1), (n * B).sum(-1), (n * N).sum(-1)], -1)
    flat = torch.tensor([0.0, 0.0, 1.0], dtype=n.dtype)
    ts = torch.where(frames.interior[:, None], ts, flat)
    return (ts * 0.5 + 0.5).clamp(0.0, 1.0)


@numba.njit(cache=True, nogil=True)
def _normal_rgb_kernel(D, nbr, frames, interior, du):  # pragma: no cover - jit
    """``tangent_space_normals(perturbed_normals(D, ...), frames)`` in one pass (float32, the torch
    expressions' operations in their order): RGB (N,3) of the displaced normals; frames = (N, Tu,
    Tv, ginv)."""
    right, left, up, down = nbr
    Nn, Tu, Tv, ginv = frames
    n = D.shape[0]
    out = np.empty((n, 3), np.float32)
    zero, half, one, eps = np.float32(0.0), np.float32(0.5), np.float32(1.0), np.float32(1e-12)
    for k in range(n):
        if not interior[k]:  # flat: (0, 0, 1)
            out[k, 0] = out[k, 1] = half
            out[k, 2] = one
            continue
        gu = (D[right[k]] - D[left[k]]) / du
        gv = (D[up[k]] - D[down[k]]) / du
        cu = ginv[k, 0, 0] * gu + ginv[k, 0, 1] * gv
        cv = ginv[k, 1, 0] * gu + ginv[k, 1, 1] * gv
        p0 = Nn[k, 0] - (cu * Tu[k, 0] + cv * Tv[k, 0])
        p1 = Nn[k, 1] - (cu * Tu[k, 1] + cv * Tv[k, 1])
        p2 = Nn[k, 2] - (cu * Tu[k, 2] + cv * Tv[k, 2])
        ln = max(np.sqrt(p0 * p0 + p1 * p1 + p2 * p2), eps)
        p0, p1, p2 = p0 / ln, p1 / ln, p2 / ln
        tn = (zero + Tu[k, 0] * Nn[k, 0]) + Tu[k, 1] * Nn[k, 1] + Tu[k, 2] * Nn[k, 2]
        t0 = Tu[k, 0] - tn * Nn[k, 0]
        t1 = Tu[k, 1] - tn * Nn[k, 1]
        t2 = Tu[k, 2] - tn * Nn[k, 2]
        lt = max(np.sqrt(t0 * t0 + t1 * t1 + t2 * t2), eps)
        t0, t1, t2 = t0 / lt, t1 / lt, t2 / lt
        b0 = Nn[k, 1] * t2 - Nn[k, 2] * t1
        b1 = Nn[k, 2] * t0 - Nn[k, 0] * t2
        b2 = Nn[k, 0] * t1 - Nn[k, 1] * t0
        if (zero + b0 * Tv[k, 0]) + b1 * Tv[k, 1] + b2 * Tv[k, 2] < zero:
            b0, b1, b2 = -b0, -b1, -b2
        ts = ((zero + p0 * t0) + p1 * t1 + p2 * t2, (zero + p0 * b0) + p1 * b1 + p2 * b2,
              (zero + p0 * Nn[k, 0]) + p1 * Nn[k, 1] + p2 * Nn[k, 2])
        for c in range(3):
            out[k, c] = min(max(ts[c] * half + half, zero), one)
    return out


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index (n_out,): the two source indices (stacked (2,n_out)) and their weights
    (2,n_out) of ``F.interpolate(mode="bilinear", align_corners=False)`` (torch's source index
    ``max(scale (i + 1/2) - 1/2, 0)``, the second tap clamped at the last row)."""
    src = np.maximum((np.float32(n_in) / np.float32(n_out)) * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = (src - i0).astype(np.float64)
    return np.stack([i0, i1]), np.stack([1.0 - l1, l1])


@numba.njit(cache=True, nogil=True)
def _upsample_normal_map(nmap, idx, wts, out):  # pragma: no cover - jit
    """Bilinear upsampling of a square tangent-space normal map (R,R,3) RGB to out (R',R',3)
    (taps idx (2,R'), weights wts (2,R') per row = per column; along the rows first, as torch),
    renormalised: RGB of the unit vector 2 RGB - 1, clamped to [0,1]; float64 arithmetic."""
    R, n = nmap.shape[0], out.shape[0]
    rows = np.empty((R, n, 3))  # every source row at the output columns
    for a in range(R):
        for x in range(n):
            b0, b1, wb0, wb1 = idx[0, x], idx[1, x], wts[0, x], wts[1, x]
            for c in range(3):
                rows[a, x, c] = wb0 * nmap[a, b0, c] + wb1 * nmap[a, b1, c]
    for y in range(n):
        a0, a1, wa0, wa1 = idx[0, y], idx[1, y], wts[0, y], wts[1, y]
        for x in range(n):
            v0 = 2.0 * (wa0 * rows[a0, x, 0] + wa1 * rows[a1, x, 0]) - 1.0
            v1 = 2.0 * (wa0 * rows[a0, x, 1] + wa1 * rows[a1, x, 1]) - 1.0
            v2 = 2.0 * (wa0 * rows[a0, x, 2] + wa1 * rows[a1, x, 2]) - 1.0
            inv = 1.0 / max(np.sqrt(v0 * v0 + v1 * v1 + v2 * v2), 1e-12)
            out[y, x, 0] = min(max(0.5 * (v0 * inv) + 0.5, 0.0), 1.0)
            out[y, x, 1] = min(max(0.5 * (v1 * inv) + 0.5, 0.0), 1.0)
            out[y, x, 2] = min(max(0.5 * (v2 * inv) + 0.5, 0.0), 1.0)


def subdivide(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, uv_faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Midpoint (1-to-4) subdivision of positions and UVs: returns (V',3), (4F,3), (T',2), (4F,3)."""

    def split(values: torch.Tensor, tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # (3F,2): edges 01, 12, 20
        key = torch.sort(e, dim=1).values
        uniq, inv = torch.unique(key, dim=0, return_inverse=True)
        mids = 0.5 * (values[uniq[:, 0]] + values[uniq[:, 1]])
        n0 = values.shape[0]
        m = (inv + n0).view(3, -1).T  # (F,3): mid of 01, 12, 20
        a, b, c = tri.unbind(1)
        m01, m12, m20 = m.unbind(1)
        new = torch.cat([torch.stack([a, m01, m20], 1), torch.stack([m01, b, m12], 1), torch.stack([m20, m12, c], 1), torch.stack([m01, m12, m20], 1)])
        return torch.cat([values, mids]), new

    v2, f2 = split(vertices, faces)
    t2, tf2 = split(uvs, uv_faces)
    return v2, f2, t2, tf2


def _sample_map(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of an (R,R,C) UV map at uv (M,2) (OBJ convention) -> (M,C)."""
    grid = uv_to_grid(uv.to(image.dtype))[None, None]
    return F.grid_sample(image.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def _vertex_uvs(faces: torch.Tensor, uv_faces: torch.Tensor, uvs: torch.Tensor, n_vertices: int) -> torch.Tensor:
    idx = vertex_uv_index(faces.numpy(), uv_faces.numpy(), uvs.numpy())
    if len(idx) < n_vertices:
        idx = np.concatenate([idx, np.full(n_vertices - len(idx), -1)])
    uv = uvs[torch.from_numpy(np.maximum(idx, 0))]
    return torch.where(torch.from_numpy(idx >= 0)[:, None], uv, torch.full_like(uv, -1.0))


class _Differences:
    """d/du, d/dv (central differences, per unit UV) and the 5-point Laplacian (texel units) of a
    texel field (N,), 0 at non-interior texels; the same values (and summation order) as the
    sparse stencil matrices Su, Sv, L with sorted columns."""

    def __init__(self, nbr: tuple[torch.Tensor, ...], interior: torch.Tensor, resolution: int) -> None:
        right, left, up, down = (i.numpy() for i in nbr)
        self.n = right.shape[0]
        self.rows = np.nonzero(interior.numpy())[0]
        self.r, self.l, self.u, self.d = right[self.rows], left[self.rows], up[self.rows], down[self.rows]
        self.h = resolution / 2.0
        # for the numba kernels: the neighbours of every texel (unsigned: no negative-index wraparound) and the interior flags
        self.stencil = (*(np.ascontiguousarray(np.maximum(i, 0), dtype=np.uint32) for i in (right, left, up, down)),
                        np.ascontiguousarray(interior.numpy()), float(self.h))

    def laplacian(self, D: np.ndarray) -> np.ndarray:
        """(N,): L @ D (columns up, left, own, right, down in index order)."""
        out = np.zeros(self.n)
        out[self.rows] = D[self.u] + D[self.l] - 4.0 * D[self.rows] + D[self.r] + D[self.d]
        return out


class _System:
    """The Gauss-Newton system on the ``active`` texels (N,) bool (the unknowns; D = 0 elsewhere):
    slots 0..A-1 are the active texels, A.. the inactive ones their stencils reach (``texels``
    (S,) maps slots to texels); ``keep`` (M',) the interior stencils (:class:`_Differences` rows)
    that reach an active texel, ``nb`` their (own, right, left, up, down) slots (5 arrays (M',),
    unsigned: numba then adds no negative-index wraparound to the gathers, 2x faster); h, the
    central differences' 1 / (2 texels) per unit UV."""

    def __init__(self, diff: _Differences, active: np.ndarray) -> None:
        st = np.stack([diff.rows, diff.r, diff.l, diff.u, diff.d])  # (5,M)
        self.keep = np.nonzero(active[st].any(0))[0]
        st = st[:, self.keep]
        reached = np.zeros(active.shape[0], dtype=bool)
        reached[st.ravel()] = True
        self.texels = np.concatenate([np.nonzero(active)[0], np.nonzero(reached & ~active)[0]])
        self.n_active = int(active.sum())
        slot = np.zeros(active.shape[0], dtype=np.int64)
        slot[self.texels] = np.arange(self.texels.shape[0])
        self.nb = tuple(np.ascontiguousarray(slot[i], dtype=np.uint32) for i in st)
        self.h = diff.h


@numba.njit(cache=True, nogil=True)
def _normal_apply(x, nb, coef, lam, out):  # pragma: no cover - jit
    """out (S,) = Suᵀ t_u + Svᵀ t_v + lam_s LᵀL x + lam_m x, with per stencil k (M',)
    t_u = h (c0 Su x + c1 Sv x + c3), t_v = h (c1 Su x + c2 Sv x + c4) for coef (3 or 5,M') =
    (c0..c4) (c3 = c4 = 0 when absent): the Gauss-Newton matrix's product ``(JᵀJ + lam_s LᵀL +
    lam_m I) x`` with JᵀJ's per-texel sums (Σa², Σab, Σb²) in c0..c2, or the gradient
    ``Jᵀ res + (lam_s LᵀL + lam_m I) x`` with c0..c2 = 0 and (Σa·res, Σb·res) in c3, c4. nb =
    (own, right, left, up, down) slots (:class:`_System`); lam = (lam_s, lam_m, h); Su, Sv:
    h (right − left), h (up − down); L: the 5-point Laplacian. Matrix-free: one gather-scatter
    pass over the stencils."""
    own, right, left, up, down = nb
    lam_s, lam_m, h = lam
    affine = coef.shape[0] > 3
    for i in range(out.shape[0]):
        out[i] = lam_m * x[i]
    for k in range(own.shape[0]):
        j, r, l, u, d = own[k], right[k], left[k], up[k], down[k]
        xr, xl, xu, xd = x[r], x[l], x[u], x[d]
        gu = h * xr - h * xl
        gv = h * xu - h * xd
        ls = lam_s * (xu + xl - 4.0 * x[j] + xr + xd)
        su = coef[0, k] * gu + coef[1, k] * gv
        sv = coef[1, k] * gu + coef[2, k] * gv
        if affine:
            su += coef[3, k]
            sv += coef[4, k]
        tu = h * su
        tv = h * sv
        out[r] += tu + ls
        out[l] += ls - tu
        out[u] += tv + ls
        out[d] += ls - tv
        out[j] -= 4.0 * ls


@numba.njit(cache=True, nogil=True)
def _pcg_kernel(nb, coef, lam, b, iterations, rtol):  # pragma: no cover - jit
    n = b.shape[0]  # the active slots; the others (reached by the stencils) stay 0
    own, right, left, up, down = nb
    lam_s, lam_m, h = lam
    S = n
    for k in range(own.shape[0]):
        S = max(S, own[k] + 1, right[k] + 1, left[k] + 1, up[k] + 1, down[k] + 1)
    diag = np.full(S, lam_m)  # the matrix's diagonal, for the Jacobi preconditioner
    for k in range(own.shape[0]):
        hu = h * h * coef[0, k] + lam_s
        hv = h * h * coef[2, k] + lam_s
        diag[right[k]] += hu
        diag[left[k]] += hu
        diag[up[k]] += hv
        diag[down[k]] += hv
        diag[own[k]] += 16.0 * lam_s
    inv = np.empty(n)
    for i in range(n):
        inv[i] = 1.0 / diag[i] if diag[i] > 0.0 else 1.0
    x = np.zeros(n)
    r = b.copy()
    p = np.zeros(S)
    Ap = np.empty(S)
    rz = 0.0
    bb = 0.0
    for i in range(n):
        p[i] = inv[i] * r[i]
        rz += r[i] * p[i]
        bb += b[i] * b[i]
    stop = rtol * rtol * bb
    for _ in range(iterations):
        _normal_apply(p, nb, coef, lam, Ap)
        pAp = 0.0
        for i in range(n):
            pAp += p[i] * Ap[i]
        alpha = rz / max(pAp, 1e-300)
        rr = 0.0
        rz_new = 0.0
        for i in range(n):  # x += alpha p, r -= alpha Ap, |r|², r·z with z = inv r
            x[i] += p[i] * alpha
            r[i] -= Ap[i] * alpha
            rr += r[i] * r[i]
            rz_new += r[i] * (inv[i] * r[i])
        if rr <= stop:
            break
        beta = rz_new / rz
        for i in range(n):
            p[i] = inv[i] * r[i] + p[i] * beta
        rz = rz_new
    return x


def _pcg(system: _System, coef: np.ndarray, lam: tuple[float, float], b: np.ndarray, iterations: int, rtol: float) -> np.ndarray:
    """Solve the Gauss-Newton system ``H x = b`` on the active texels (b, x (A,) in slot order) by
    Jacobi-preconditioned conjugate gradients: H = JᵀJ + lam_s LᵀL + lam_m I given by the kept
    stencils' sums coef (3,M') = (Σa², Σab, Σb²) (see :func:`_normal_apply`), lam = (lam_s,
    lam_m); at most ``iterations`` steps, stopping once |r| <= rtol |b|. One numba loop,
    matrix-free (the mat-vec, vector updates and dot products fused, no temporaries): the textbook
    loop's iterates on ``H[active][:, active]`` up to the summation order."""
    return _pcg_kernel(system.nb, np.ascontiguousarray(coef, dtype=np.float64), (float(lam[0]), float(lam[1]), float(system.h)),  # type: ignore[no-any-return]
                       np.ascontiguousarray(b, dtype=np.float64), int(iterations), float(rtol))


@dataclass(frozen=True)
class DetailOptions:
    """Settings of :func:`recover_detail`: smoothness, weight of the squared Laplacian (texel
    units, relative to the data term); iterations, Gauss-Newton steps; magnitude, weight of the
    squared displacement (in mm²); max_displacement, metres (|D| is clipped to it);
    highpass_sigma, texels of the low-pass removed from the shading ratio (None: fit the raw
    photo); solve_resolution, the energy is minimised on a grid of at most this size (a face in a
    photo rarely spans more than 256 px) and the maps are upsampled bilinearly to the requested
    resolution; cg_iterations, conjugate-gradient steps per Gauss-Newton step; sigma, the
    Charbonnier scale of the robust data term."""

    smoothness: float = 0.05
    iterations: int = 2
    magnitude: float = 0.01
    max_displacement: float = 0.004
    highpass_sigma: float | None = 6.0
    solve_resolution: int = 256
    cg_iterations: int = 100
    sigma: float = 0.03


@dataclass(frozen=True)
class _Problem:
    """The SfS data per covered texel (N,): albedo A (N,3), target colour (N,3), weight w (N,)."""

    A: torch.Tensor
    target: torch.Tensor
    w: torch.Tensor


def _shading_polynomials(sh: torch.Tensor) -> np.ndarray:
    """SH coefficients (9,3) -> (3,10) coefficients of the irradiance E_c(n) on the monomials
    (x², y², z², xy, xz, yz, x, y, z, 1) of a unit normal n (from :func:`sh_quadratic_forms`)."""
    from face3d.texture.sampling import sh_quadratic_forms

    M = sh_quadratic_forms(sh)
    return np.ascontiguousarray(np.stack([M[:, 0, 0], M[:, 1, 1], M[:, 2, 2], 2 * M[:, 0, 1], 2 * M[:, 0, 2], 2 * M[:, 1, 2],
                                          2 * M[:, 0, 3], 2 * M[:, 1, 3], 2 * M[:, 2, 3], M[:, 3, 3]], 1))


@numba.njit(cache=True, nogil=True, inline="always")
def _texel_gradient(k, D, stencil):  # pragma: no cover - jit
    """(dD/du, dD/dv) of texel k: h (D_right - D_left), h (D_up - D_down) (central differences per
    unit UV), 0 at non-interior texels; stencil = (right, left, up, down (N,), interior (N,), h)
    (:class:`_Differences`)."""
    right, left, up, down, interior, h = stencil
    if not interior[k]:
        return 0.0, 0.0
    return h * D[right[k]] - h * D[left[k]], h * D[up[k]] - h * D[down[k]]


@numba.njit(cache=True, nogil=True, inline="always")
def _texel_colour(k, gu, gv, frames, albedo, poly):  # pragma: no cover - jit
    """Colour (3-tuple) of texel k whose displacement gradient is (gu, gv): albedo · E(n'), n' the
    normalised ``N - grad_S D`` (see the module docstring), E_c a quadratic polynomial (poly (3,10),
    :func:`_shading_polynomials`)."""
    N, Tu, Tv, ginv = frames
    cu = ginv[k, 0, 0] * gu + ginv[k, 0, 1] * gv
    cv = ginv[k, 1, 0] * gu + ginv[k, 1, 1] * gv
    mx = N[k, 0] - cu * Tu[k, 0] - cv * Tv[k, 0]
    my = N[k, 1] - cu * Tu[k, 1] - cv * Tv[k, 1]
    mz = N[k, 2] - cu * Tu[k, 2] - cv * Tv[k, 2]
    ln = max(np.sqrt(mx * mx + my * my + mz * mz), 1e-12)
    x, y, z = mx / ln, my / ln, mz / ln
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    out = [0.0, 0.0, 0.0]
    for c in range(3):
        e = (poly[c, 0] * xx + poly[c, 1] * yy + poly[c, 2] * zz + poly[c, 3] * xy + poly[c, 4] * xz + poly[c, 5] * yz
             + poly[c, 6] * x + poly[c, 7] * y + poly[c, 8] * z + poly[c, 9])
        out[c] = albedo[k, c] * e
    return out[0], out[1], out[2]


@numba.njit(cache=True, nogil=True)
def _shading_terms(D, stencil, frames, photo, weight, poly, eps_sigma, out):  # pragma: no cover - jit
    """The data term at D: returns Σ_k weight_k ρ(|colour_k(D) - target_k|²) over the texels with
    weight_k > 0 (ρ: Charbonnier, scale σ; photo = (albedo, target) (N,3)). With out (5,N) (not
    (0,N)), also one Gauss-Newton / IRLS linearisation: the colour's Jacobian (a, b) w.r.t. (dD/du,
    dD/dv) by forward differences of step eps, scaled by weight_k / (1 + r²/σ²)^¼ (IRLS weight of
    the Charbonnier loss), and the residual res likewise; out = Σ_c a², ab, b², a·res, b·res (0
    where weight_k = 0). eps_sigma = (eps, σ)."""
    albedo, target = photo
    eps, sigma = eps_sigma
    s2 = sigma * sigma
    jacobian = out.shape[0] == 5
    total = 0.0
    for k in range(D.shape[0]):
        if jacobian:
            for j in range(5):
                out[j, k] = 0.0
        if weight[k] == 0.0:
            continue
        gu, gv = _texel_gradient(k, D, stencil)
        c0 = _texel_colour(k, gu, gv, frames, albedo, poly)
        r2 = 0.0
        for ch in range(3):
            d = c0[ch] - target[k, ch]
            r2 += d * d
        total += weight[k] * (2.0 * s2 * (np.sqrt(1.0 + r2 / s2) - 1.0))
        if not jacobian:
            continue
        cu = _texel_colour(k, gu + eps, gv, frames, albedo, poly)
        cv = _texel_colour(k, gu, gv + eps, frames, albedo, poly)
        s = weight[k] * np.sqrt(1.0 / np.sqrt(1.0 + r2 / s2))
        for ch in range(3):
            a = s * ((cu[ch] - c0[ch]) / eps)
            b = s * ((cv[ch] - c0[ch]) / eps)
            res = (c0[ch] - target[k, ch]) * s
            out[0, k] += a * a
            out[1, k] += a * b
            out[2, k] += b * b
            out[3, k] += a * res
            out[4, k] += b * res
    return total


def _gauss_newton(p: _Problem, sh: torch.Tensor, frames: TangentFrames, raster: UVRaster,
                  opt: DetailOptions) -> tuple[torch.Tensor, float, float]:
    """Minimise the SfS energy over D (N,) by Gauss-Newton / IRLS with CG steps.

    energy = sum w rho(|A E(n'(D)) - target|) / sum w  (rho: Charbonnier, scale sigma) + 1e-2 (smoothness mean|Lap D_mm|^2 + magnitude mean|D_mm|^2).
    The per-texel Jacobian of the colour w.r.t. the displacement gradient (dD/du, dD/dv) is taken
    by finite differences (each texel's colour depends on its own gradient only).
    """
    A, target, w = p.A, p.target, p.w
    smoothness, magnitude, max_displacement, sigma = opt.smoothness, opt.magnitude, opt.max_displacement, opt.sigma
    n_tex = A.shape[0]
    nbr = _grid_neighbours(raster)[:4]
    R = raster.resolution
    diff = _Differences(nbr, frames.interior, R)
    f64 = lambda x: np.ascontiguousarray(x.detach().numpy(), dtype=np.float64)  # noqa: E731
    Ad, td, wd = f64(A), f64(target), f64(w)
    geo = (f64(frames.N), f64(frames.Tu), f64(frames.Tv), f64(frames.ginv))
    poly = _shading_polynomials(sh[0])
    photo = (Ad, td)
    wsum = max(float(wd.sum()), 1e-9)
    mm = 1e3
    lam_s = smoothness * 1e-2 * mm**2 / n_tex
    lam_m = magnitude * 1e-2 * mm**2 / n_tex
    eps = 1e-4  # the forward-difference step of the Jacobian
    no_jacobian = np.empty((0, n_tex))

    def energy(D: np.ndarray) -> tuple[float, float]:
        data = _shading_terms(D, diff.stencil, geo, photo, wd, poly, (eps, float(sigma)), no_jacobian) / wsum
        reg = lam_s * float(np.sum(diff.laplacian(D) ** 2)) + lam_m * float(np.sum(D**2))
        return data, data + reg

    D = np.zeros(n_tex)
    current = energy(D)
    first = current[0]
    # unknowns: texels seen in the photo and a 2-texel ring around them; D = 0 elsewhere
    active = wd > 0
    for _ in range(2):
        grow = active.copy()
        for i in nbr:
            idx = i.numpy()
            ok = idx >= 0
            grow[ok] |= active[idx[ok]]
        active = grow
    system = _System(diff, active)
    slots, n_act = system.texels, system.n_active
    rows = diff.rows[system.keep]
    sw = np.sqrt(wd / wsum)
    lin = np.empty((5, n_tex))
    g = np.empty(slots.shape[0])
    for _ in range(int(opt.iterations)):
        # J = [diag(a_c) Su + diag(b_c) Sv]_c (rows: colour channels c): JᵀJ per texel is a 4×4 block over
        # its right/left/up/down neighbours with entries ±h² Σ_c a_c a_c, a_c b_c, b_c b_c (see _normal_apply)
        _shading_terms(D, diff.stencil, geo, photo, sw, poly, (eps, float(sigma)), lin)
        coef = lin[:, rows]
        _normal_apply(D[slots], system.nb, np.concatenate([np.zeros((3, rows.shape[0])), coef[3:]]), (lam_s, lam_m, diff.h), g)
        step = np.zeros(n_tex)  # the gradient g = Jᵀ res + (lam_s LᵀL + lam_m I) D; D and the step are 0 off the active texels
        step[slots[:n_act]] = _pcg(system, coef[:3], (lam_s, lam_m), -g[:n_act], opt.cg_iterations, 1e-4)
        e_old = current[1]
        t = 1.0
        while t > 1e-3:  # backtracking keeps the energy decreasing
            cand = np.clip(D + t * step, -max_displacement, max_displacement)
            trial = energy(cand)
            if trial[1] <= e_old:
                D, current = cand, trial
                break
            t *= 0.5
        else:
            break
    last = current[0]
    return torch.from_numpy(D).float(), first, last


def recover_detail(
    mesh: Mesh,
    view: View,
    albedo_uv: torch.Tensor | np.ndarray,
    *,
    resolution: int = 256,
    face_mask: torch.Tensor | np.ndarray | None = None,
    subdivide_mesh: bool = False,
    options: DetailOptions | None = None,
) -> DetailResult:
    """Recover a UV displacement map by shape-from-shading (see the module docstring).

    mesh: the fitted mesh (vertices (1,V,3) world metres, faces (F,3), uvs (T,2) OBJ convention,
    uv_faces (F,3)); view: the batch-1 photo with its camera, sh (9,3) fitted lighting (required)
    and optional mask (pixel trust); albedo_uv (R',R',3) the baked albedo; resolution R of the
    maps; face_mask (F,) triangles to use; subdivide_mesh: also return a once-subdivided
    displaced mesh; options: :class:`DetailOptions`.
    """
    from face3d.renderers import sh_shade

    opt = options or DetailOptions()
    if view.sh is None:
        raise BadInputError("recover_detail: the view's 'sh' lighting is required (shape from shading)")
    shc = view.sh[:1]
    v = mesh.vertices
    if v.ndim != 3 or v.shape[0] != 1 or v.shape[2] != 3:
        raise ShapeError("mesh.vertices", "(1, V, 3) world metres", tuple(v.shape))
    v = v[0].detach().float().cpu()
    f, t, tf = check_uv_topology(mesh.faces, mesh.uvs, mesh.texture_faces)
    if f.numel() and int(f.max()) >= v.shape[0]:
        raise ShapeError("faces", f"indices < {v.shape[0]}", int(f.max()))
    alb = _image(albedo_uv, "albedo_uv")
    if opt.iterations < 0 or opt.smoothness < 0 or opt.magnitude < 0 or opt.max_displacement <= 0:
        raise BadInputError("recover_detail: iterations, smoothness, magnitude must be >= 0 and max_displacement > 0")
    R_out = int(resolution)
    if R_out < 4 or int(opt.solve_resolution) < 4:
        raise BadInputError(f"recover_detail: resolution and solve_resolution must be >= 4, got {resolution}, {opt.solve_resolution}")
    R = min(R_out, int(opt.solve_resolution))
    raster = rasterize_uv(t, tf, R, face_mask)
    from face3d.renderers import vertex_normals

    vn = vertex_normals(v[None], f)[0]
    frames, nbr = tangent_frames(v, f, raster, normals=vn)
    seen = sample_view(view, v, f, raster)
    w = seen.weight * frames.interior.float()
    # texels next to occlusion/silhouette/seam borders mix surfaces in the photo: erode the weights
    wmap = raster.scatter(w[:, None])[..., 0]
    eroded = -F.max_pool2d(-wmap[None, None], 5, 1, 2)[0, 0]
    w = torch.minimum(w, eroded.reshape(-1)[raster.index])
    photo = seen.raw
    if alb.shape[:2] != (R, R):
        alb = F.interpolate(alb.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
    A = alb.reshape(-1, 3)[raster.index]
    C0 = A * sh_shade(frames.N[None], shc)[0]
    target = photo
    highpass_sigma = opt.highpass_sigma
    if highpass_sigma is not None and highpass_sigma > 0:
        ratio = photo / C0.clamp_min(1e-3)
        ratio_img = raster.scatter(ratio)
        wmap = raster.scatter(w[:, None])[..., 0]
        k = max(3, int(2 * round(highpass_sigma) + 1))
        rw = ratio_img * wmap[..., None]  # box means (avg_pool2d's values, by the texture stage's numba kernel)
        num = torch.stack([_blur(rw[..., c].contiguous(), k) for c in range(3)], -1)
        den = _blur(wmap, k)
        low = num / den.clamp_min(1e-6)[..., None]
        low = torch.where(den[..., None] > 1e-3, low, pull_push(ratio_img, wmap))
        target = C0 * ratio / low.reshape(-1, 3)[raster.index].clamp_min(1e-3)
    D, first, last = _gauss_newton(_Problem(A, target, w), shc, frames, raster, opt)
    with torch.no_grad():
        # tangent_space_normals(perturbed_normals(D, frames, nbr, R), frames), fused
        c = np.ascontiguousarray
        normal_rgb = torch.from_numpy(_normal_rgb_kernel(
            c(D.numpy(), np.float32), tuple(c(i.clamp_min(0).numpy(), np.uint32) for i in nbr),
            tuple(c(x.numpy(), np.float32) for x in (frames.N, frames.Tu, frames.Tv, frames.ginv)), c(frames.interior.numpy()), np.float32(2.0 / R)))
        disp = raster.dilate(raster.scatter(D[:, None]))[..., 0]
        nmap = raster.scatter(normal_rgb, fill=0.5)
        nmap[..., 2][~raster.mask] = 1.0
        nmap = raster.dilate(nmap)
        if R_out != R:
            up = lambda x: F.interpolate(x.permute(2, 0, 1)[None], size=(R_out, R_out), mode="bilinear", align_corners=False)[0]  # noqa: E731
            disp = up(disp[..., None])[0]
            idx, wts = _bilinear_taps(R, R_out)
            out = np.empty((R_out, R_out, 3), np.float32)
            _upsample_normal_map(np.ascontiguousarray(nmap.numpy()), idx, wts, out)
            nmap = torch.from_numpy(out)
        vuv = _vertex_uvs(f, tf, t, v.shape[0])
        inside = (vuv >= 0).all(-1) & (vuv <= 1).all(-1)
        dv = _sample_map(disp[..., None], vuv.clamp(0, 1))[:, 0] * inside.float()
        detailed = v + dv[:, None] * vn
        sub = None
        if subdivide_mesh:
            v2, f2, t2, tf2 = subdivide(v, f, t, tf)
            n2 = vertex_normals(v2[None], f2)[0]
            vuv2 = _vertex_uvs(f2, tf2, t2, v2.shape[0])
            in2 = (vuv2 >= 0).all(-1) & (vuv2 <= 1).all(-1)
            d2 = _sample_map(disp[..., None], vuv2.clamp(0, 1))[:, 0] * in2.float()
            sub = (v2 + d2[:, None] * n2, f2, t2, tf2)
    vis = raster.scatter(w[:, None])[..., 0]
    if R_out != R:
        vis = F.interpolate(vis[None, None], size=(R_out, R_out), mode="bilinear", align_corners=False)[0, 0]
    return DetailResult(disp, nmap, detailed, vis, sub, (first, last))
