"""Fused CPU kernels with hand-written backward passes for the renderer's hot per-vertex and
per-fragment math.

Each function here computes exactly what a short chain of torch ops computes (the torch chain
stays as the reference and as the path for CUDA tensors), but as one numba loop forward and one
backward, wrapped in a ``torch.autograd.Function``. On the 52k-triangle face at 256² the torch
chains cost ~600 small ops per forward + backward (column selects, rolls, ``unbind`` — each a
full-size zero-fill in backward); fused, they are a few passes over contiguous arrays.

* :func:`vertex_normals_cpu` — area-weighted unit vertex normals (cross products of the face
  edges accumulated at the corners, then normalised);
* :func:`barycentrics_cpu` — perspective-correct barycentrics and z/w for pixels whose triangle
  is known (homogeneous 2D edge functions, Olano & Greer 1997);
* :func:`sh_basis_cpu` — the 9 Lambertian-convolved SH basis functions of unit normals, and
  :func:`sh_shade_cpu` — those times per-batch SH coefficients (the shading itself);
* :func:`interp_cpu` — barycentric interpolation of vertex attributes at fragments;
* :func:`sample_cpu` — bilinear, wrapping texture lookup at fragments;
* :func:`antialias_blend_cpu` — the silhouette blend of antialiasing for known pixel pairs
  (:func:`antialias_blend2_cpu`: of two images alike, e.g. colour and coverage);
* :func:`scatter_cpu` — fragment values into images over a constant background;
* :func:`affine_cpu` — points times a per-batch (R,3) matrix plus offset (camera → clip space;
  torch's matmul with an inner dimension of 3 is ~10× slower than a plain loop here).

All are first-order differentiable only (``once_differentiable``), float32 or float64.
``set_fused(False)`` makes CPU tensors take the torch-op references too (everything
differentiable then runs as torch ops, as on CUDA).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

_ENABLED = True


def set_fused(enabled: bool) -> None:
    """Use the fused CPU kernels (default True) or the torch-op references for CPU tensors."""
    global _ENABLED
    _ENABLED = bool(enabled)


def use_fused(t: torch.Tensor) -> bool:
    """Whether computations on ``t`` take the fused kernels (a CPU tensor, fused kernels enabled)."""
    return _ENABLED and t.device.type == "cpu"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


# ---------------------------------------------------------------- vertex normals


@njit(cache=True, inline="always")
def _face_edges(v, b, i0, i1, i2):  # edges a = v1 - v0, b = v2 - v0 of one face, as 6 scalars
    return (v[b, i1, 0] - v[b, i0, 0], v[b, i1, 1] - v[b, i0, 1], v[b, i1, 2] - v[b, i0, 2],
            v[b, i2, 0] - v[b, i0, 0], v[b, i2, 1] - v[b, i0, 1], v[b, i2, 2] - v[b, i0, 2])


@njit(cache=True)
def _vn_forward(v, f, acc):  # v (B,V,3), f (F,3) int64 -> acc (B,V,3) unnormalised sums
    for b in range(v.shape[0]):
        for i in range(f.shape[0]):
            i0, i1, i2 = f[i, 0], f[i, 1], f[i, 2]
            ax, ay, az, bx, by, bz = _face_edges(v, b, i0, i1, i2)
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            for k in (i0, i1, i2):
                acc[b, k, 0] += nx
                acc[b, k, 1] += ny
                acc[b, k, 2] += nz


@njit(cache=True)
def _normalise_rows(acc, out, length):  # (B,V,3) -> unit rows, lengths (B,V); zero rows stay zero
    for b in range(acc.shape[0]):
        for k in range(acc.shape[1]):
            x, y, z = acc[b, k, 0], acc[b, k, 1], acc[b, k, 2]
            n = np.sqrt(x * x + y * y + z * z)
            length[b, k] = n
            s = 1.0 / n if n > 0 else 1.0
            out[b, k, 0] = x * s
            out[b, k, 1] = y * s
            out[b, k, 2] = z * s


@njit(cache=True)
def _vn_backward(v, f, unit, length, g, gv):  # g, unit (B,V,3); -> gv (B,V,3)
    B, V = v.shape[0], v.shape[1]
    gn = np.zeros((V, 3), dtype=v.dtype)
    for b in range(B):
        for k in range(V):
            n = length[b, k]
            if n > 0:
                d = unit[b, k, 0] * g[b, k, 0] + unit[b, k, 1] * g[b, k, 1] + unit[b, k, 2] * g[b, k, 2]
                for c in range(3):
                    gn[k, c] = (g[b, k, c] - unit[b, k, c] * d) / n
            else:
                for c in range(3):
                    gn[k, c] = 0.0
        for i in range(f.shape[0]):
            i0, i1, i2 = f[i, 0], f[i, 1], f[i, 2]
            Gx = gn[i0, 0] + gn[i1, 0] + gn[i2, 0]
            Gy = gn[i0, 1] + gn[i1, 1] + gn[i2, 1]
            Gz = gn[i0, 2] + gn[i1, 2] + gn[i2, 2]
            ax, ay, az, bx, by, bz = _face_edges(v, b, i0, i1, i2)
            # n = a x b: dL/da = b x G, dL/db = G x a
            gax = by * Gz - bz * Gy
            gay = bz * Gx - bx * Gz
            gaz = bx * Gy - by * Gx
            gbx = Gy * az - Gz * ay
            gby = Gz * ax - Gx * az
            gbz = Gx * ay - Gy * ax
            gv[b, i1, 0] += gax
            gv[b, i1, 1] += gay
            gv[b, i1, 2] += gaz
            gv[b, i2, 0] += gbx
            gv[b, i2, 1] += gby
            gv[b, i2, 2] += gbz
            gv[b, i0, 0] -= gax + gbx
            gv[b, i0, 1] -= gay + gby
            gv[b, i0, 2] -= gaz + gbz


class _VertexNormals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        v, f = _np(vertices), _np(faces.long())
        acc = np.zeros_like(v)
        _vn_forward(v, f, acc)
        length = np.empty(v.shape[:2], dtype=v.dtype)
        _normalise_rows(acc, acc, length)  # in place: each row is read before it is written
        out = torch.from_numpy(acc)
        ctx.save_for_backward(vertices, faces, out, torch.from_numpy(length))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        vertices, faces, unit, length = ctx.saved_tensors
        v = _np(vertices)
        gv = np.zeros_like(v)
        _vn_backward(v, _np(faces.long()), _np(unit), _np(length), _np(grad.to(vertices.dtype)), gv)
        return torch.from_numpy(gv), None


def vertex_normals_cpu(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals of CPU vertices (B,V,3), faces (F,3) → (B,V,3)."""
    return _VertexNormals.apply(vertices, faces)


# ---------------------------------------------------------------- barycentrics from triangle ids


@njit(cache=True, inline="always")
def _edge_functions(pos, tri, b, f, xn, yn, e):
    """Homogeneous edge functions e (3,) of triangle f at NDC pixel centre (xn, yn), and their
    sum s, Σ e_i z_i and Σ e_i w_i (so λ = e / s and z/w = Σ e z / Σ e w)."""
    for i in range(3):
        j = tri[f, (i + 1) % 3]
        k = tri[f, (i + 2) % 3]
        xj, yj, wj = pos[b, j, 0], pos[b, j, 1], pos[b, j, 3]
        xk, yk, wk = pos[b, k, 0], pos[b, k, 1], pos[b, k, 3]
        e[i] = xn * (yj * wk - wj * yk) + yn * (wj * xk - xj * wk) + (xj * yk - yj * xk)
    num = 0.0
    den = 0.0
    for i in range(3):
        vi = tri[f, i]
        num += e[i] * pos[b, vi, 2]
        den += e[i] * pos[b, vi, 3]
    return e[0] + e[1] + e[2], num, den


@njit(cache=True)
def _bary_forward(pos, tri, ids, out):  # pos (B,V,4), ids (B,H,W) id+1 -> out (B,H,W,4), 0 where empty
    B, H, W = ids.shape
    e = np.empty(3, dtype=pos.dtype)
    for b in range(B):
        for py in range(H):
            yn = (py + 0.5) * (2.0 / H) - 1.0
            for px in range(W):
                t = ids[b, py, px]
                if t <= 0:
                    for c in range(4):
                        out[b, py, px, c] = 0.0
                    continue
                xn = (px + 0.5) * (2.0 / W) - 1.0
                s, num, den = _edge_functions(pos, tri, b, t - 1, xn, yn, e)
                out[b, py, px, 0] = e[0] / s
                out[b, py, px, 1] = e[1] / s
                out[b, py, px, 2] = num / den
                out[b, py, px, 3] = t


@njit(cache=True)
def _bary_backward(pos, tri, ids, g, gpos):  # g (B,H,W,4) -> gpos (B,V,4)
    B, H, W = ids.shape
    e = np.empty(3, dtype=pos.dtype)
    ge = np.empty(3, dtype=pos.dtype)
    for b in range(B):
        for py in range(H):
            yn = (py + 0.5) * (2.0 / H) - 1.0
            for px in range(W):
                t = ids[b, py, px]
                if t <= 0:
                    continue
                gu, gw, gz = g[b, py, px, 0], g[b, py, px, 1], g[b, py, px, 2]
                if gu == 0.0 and gw == 0.0 and gz == 0.0:
                    continue
                xn = (px + 0.5) * (2.0 / W) - 1.0
                s, num, den = _edge_functions(pos, tri, b, t - 1, xn, yn, e)
                zw = num / den
                lam0, lam1 = e[0] / s, e[1] / s
                # u = e0/s, v = e1/s: de_k -> (g_lam_k - sum_i g_lam_i lam_i) / s ; zw = num/den
                dot = gu * lam0 + gw * lam1
                for k in range(3):
                    vk = tri[t - 1, k]
                    glk = gu if k == 0 else (gw if k == 1 else 0.0)
                    ge[k] = (glk - dot) / s + gz * (pos[b, vk, 2] - zw * pos[b, vk, 3]) / den
                    gpos[b, vk, 2] += gz * e[k] / den
                    gpos[b, vk, 3] -= gz * zw * e[k] / den
                for i in range(3):
                    if ge[i] == 0.0:
                        continue
                    j = tri[t - 1, (i + 1) % 3]
                    k = tri[t - 1, (i + 2) % 3]
                    xj, yj, wj = pos[b, j, 0], pos[b, j, 1], pos[b, j, 3]
                    xk, yk, wk = pos[b, k, 0], pos[b, k, 1], pos[b, k, 3]
                    # e_i = p . (v_j x v_k) with v = (x, y, w), p = (xn, yn, 1):
                    # de/dv_j = v_k x p, de/dv_k = p x v_j
                    gpos[b, j, 0] += ge[i] * (yk * 1.0 - wk * yn)
                    gpos[b, j, 1] += ge[i] * (wk * xn - xk * 1.0)
                    gpos[b, j, 3] += ge[i] * (xk * yn - yk * xn)
                    gpos[b, k, 0] += ge[i] * (yn * wj - 1.0 * yj)
                    gpos[b, k, 1] += ge[i] * (1.0 * xj - xn * wj)
                    gpos[b, k, 3] += ge[i] * (xn * yj - yn * xj)


class _Barycentrics(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos: torch.Tensor, tri: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        p, t, i = _np(pos), _np(tri.long()), _np(ids if ids.dtype in (torch.int32, torch.int64) else ids.long())
        out = np.empty(i.shape + (4,), dtype=p.dtype)
        _bary_forward(p, t, i, out)
        ctx.save_for_backward(pos, tri, ids)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        pos, tri, ids = ctx.saved_tensors
        p = _np(pos)
        gpos = np.zeros_like(p)
        _bary_backward(p, _np(tri.long()), _np(ids if ids.dtype in (torch.int32, torch.int64) else ids.long()), _np(grad.to(pos.dtype)), gpos)
        return torch.from_numpy(gpos), None, None


def barycentrics_cpu(pos: torch.Tensor, tri: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """rast (B,H,W,4) = (u, v, z/w, id+1) for CPU clip positions pos (B,V,4), tri (F,3) and the
    visible triangle ids (B,H,W) (id+1, 0 = empty); differentiable w.r.t. pos."""
    return _Barycentrics.apply(pos, tri, ids)


# ---------------------------------------------------------------- SH basis


@njit(cache=True, inline="always")
def _basis_row(n, r, nz_q, nz_c, nz_v, mono, out):
    """The 9 basis values of normal n[r] into out (9,): monomials (1, x, y, z, xy, yz, xz, xx,
    yy, zz) times the (10,9) matrix given by its nonzeros (q, c, value); mono (10,) scratch."""
    x, y, z = n[r, 0], n[r, 1], n[r, 2]
    mono[0] = 1.0
    mono[1], mono[2], mono[3] = x, y, z
    mono[4], mono[5], mono[6] = x * y, y * z, x * z
    mono[7], mono[8], mono[9] = x * x, y * y, z * z
    for c in range(9):
        out[c] = 0.0
    for k in range(nz_q.shape[0]):
        out[nz_c[k]] += mono[nz_q[k]] * nz_v[k]


@njit(cache=True, inline="always")
def _basis_grad_row(n, r, gb, nz_q, nz_c, nz_v, gm, gn):
    """Gradient gn (3,) w.r.t. normal n[r] from the basis gradient gb (9,); gm (10,) scratch."""
    x, y, z = n[r, 0], n[r, 1], n[r, 2]
    for q in range(10):
        gm[q] = 0.0
    for k in range(nz_q.shape[0]):
        gm[nz_q[k]] += gb[nz_c[k]] * nz_v[k]
    gn[0] = gm[1] + gm[4] * y + gm[6] * z + 2.0 * gm[7] * x
    gn[1] = gm[2] + gm[4] * x + gm[5] * z + 2.0 * gm[8] * y
    gn[2] = gm[3] + gm[5] * y + gm[6] * x + 2.0 * gm[9] * z


@njit(cache=True)
def _sh_forward(n, nz_q, nz_c, nz_v, out):  # n (N,3); nonzeros (q, c, value) of the (10,9) matrix -> out (N,9)
    mono = np.empty(10, dtype=n.dtype)
    for r in range(n.shape[0]):
        _basis_row(n, r, nz_q, nz_c, nz_v, mono, out[r])


@njit(cache=True)
def _sh_backward(n, nz_q, nz_c, nz_v, g, gn):  # g (N,9) -> gn (N,3)
    gm = np.empty(10, dtype=n.dtype)
    for r in range(n.shape[0]):
        _basis_grad_row(n, r, g[r], nz_q, nz_c, nz_v, gm, gn[r])


def _nonzeros(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = _np(matrix)
    q, c = np.nonzero(m)
    return q.astype(np.int64), c.astype(np.int64), m[q, c]


class _SHBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normals: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n = _np(normals)
        out = np.empty((n.shape[0], 9), dtype=n.dtype)
        _sh_forward(n, *_nonzeros(matrix.to(normals.dtype)), out)
        ctx.save_for_backward(normals, matrix)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        normals, matrix = ctx.saved_tensors
        n = _np(normals)
        gn = np.empty_like(n)
        _sh_backward(n, *_nonzeros(matrix.to(normals.dtype)), _np(grad.to(normals.dtype)), gn)
        return torch.from_numpy(gn), None


def sh_basis_cpu(normals: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(N,3) CPU unit normals → (N,9) basis ``monomials(n) @ matrix`` with monomials
    (1, x, y, z, xy, yz, xz, xx, yy, zz) and ``matrix`` (10,9) (see :mod:`face3d.renderers.shading`)."""
    return _SHBasis.apply(normals, matrix)


@njit(cache=True)
def _shade_forward(n, sh, b, nz_q, nz_c, nz_v, out):  # n (N,3), sh (Bs,9,3), b (N,) -> out (N,3)
    mono = np.empty(10, dtype=n.dtype)
    basis = np.empty(9, dtype=n.dtype)
    single = sh.shape[0] == 1
    for r in range(n.shape[0]):
        bb = 0 if single else b[r]
        _basis_row(n, r, nz_q, nz_c, nz_v, mono, basis)
        for ch in range(3):
            acc = 0.0
            for c in range(9):
                acc += basis[c] * sh[bb, c, ch]
            out[r, ch] = acc


@njit(cache=True)
def _shade_backward(n, sh, b, nz, g, gn, gsh):  # nz = (q, c, value) nonzeros; g (N,3) -> gn (N,3), gsh (Bs,9,3)
    nz_q, nz_c, nz_v = nz
    mono = np.empty(10, dtype=n.dtype)
    basis = np.empty(9, dtype=n.dtype)
    gb = np.empty(9, dtype=n.dtype)
    gm = np.empty(10, dtype=n.dtype)
    single = sh.shape[0] == 1
    for r in range(n.shape[0]):
        bb = 0 if single else b[r]
        _basis_row(n, r, nz_q, nz_c, nz_v, mono, basis)
        for c in range(9):
            acc = 0.0
            for ch in range(3):
                acc += g[r, ch] * sh[bb, c, ch]
                gsh[bb, c, ch] += basis[c] * g[r, ch]
            gb[c] = acc
        _basis_grad_row(n, r, gb, nz_q, nz_c, nz_v, gm, gn[r])


class _SHShade(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normals: torch.Tensor, sh: torch.Tensor, b: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n = _np(normals)
        out = np.empty((n.shape[0], 3), dtype=n.dtype)
        _shade_forward(n, _np(sh.to(normals.dtype)), _np(b), *_nonzeros(matrix.to(normals.dtype)), out)
        ctx.save_for_backward(normals, sh, b, matrix)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def, override]
        normals, sh, b, matrix = ctx.saved_tensors
        n = _np(normals)
        s = _np(sh.to(normals.dtype))
        gn = np.empty_like(n)
        gsh = np.zeros_like(s)
        _shade_backward(n, s, _np(b), _nonzeros(matrix.to(normals.dtype)), _np(grad.to(normals.dtype)), gn, gsh)
        return torch.from_numpy(gn), torch.from_numpy(gsh).to(sh.dtype), None, None


def sh_shade_cpu(normals: torch.Tensor, sh: torch.Tensor, b: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Shading (N,3) = sh_basis(normals) @ sh[b] for CPU unit normals (N,3), SH coefficients
    sh (Bs,9,3) (Bs = 1 broadcasts), batch index b (N,) and the (10,9) monomial matrix."""
    return _SHShade.apply(normals, sh, b, matrix)


# ---------------------------------------------------------------- fragment interpolation


@njit(cache=True)
def _interp_forward(attr, tri, f, b, bary, out):  # attr (Ba,V,C); f, b (N,); bary (N,2) -> out (N,C)
    single = attr.shape[0] == 1
    for r in range(f.shape[0]):
        bb = 0 if single else b[r]
        i0, i1, i2 = tri[f[r], 0], tri[f[r], 1], tri[f[r], 2]
        u, v = bary[r, 0], bary[r, 1]
        w = 1.0 - u - v
        for c in range(attr.shape[2]):
            out[r, c] = u * attr[bb, i0, c] + v * attr[bb, i1, c] + w * attr[bb, i2, c]


@njit(cache=True)
def _interp_backward(attr, tri, f, b, bary, g, grads, wants):  # grads = (gattr (Ba,V,C), gbary (N,2)), wants: which to fill
    gattr, gbary = grads
    want_attr, want_bary = wants
    single = attr.shape[0] == 1
    for r in range(f.shape[0]):
        bb = 0 if single else b[r]
        i0, i1, i2 = tri[f[r], 0], tri[f[r], 1], tri[f[r], 2]
        u, v = bary[r, 0], bary[r, 1]
        w = 1.0 - u - v
        gu = 0.0
        gv = 0.0
        for c in range(attr.shape[2]):
            gc = g[r, c]
            if want_attr:
                gattr[bb, i0, c] += u * gc
                gattr[bb, i1, c] += v * gc
                gattr[bb, i2, c] += w * gc
            if want_bary:
                gu += gc * (attr[bb, i0, c] - attr[bb, i2, c])
                gv += gc * (attr[bb, i1, c] - attr[bb, i2, c])
        if want_bary:
            gbary[r, 0] = gu
            gbary[r, 1] = gv


class _Interp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr: torch.Tensor, tri: torch.Tensor, f: torch.Tensor, b: torch.Tensor,  # type: ignore[override]
                bary: torch.Tensor) -> torch.Tensor:
        a = _np(attr)
        out = np.empty((f.shape[0], a.shape[2]), dtype=a.dtype)
        _interp_forward(a, _np(tri.long()), _np(f), _np(b), _np(bary.to(attr.dtype)), out)
        ctx.save_for_backward(attr, tri, f, b, bary)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def, override]
        attr, tri, f, b, bary = ctx.saved_tensors
        want_attr, want_bary = ctx.needs_input_grad[0], ctx.needs_input_grad[4]
        a = _np(attr)
        gattr = np.zeros_like(a) if want_attr else np.zeros((1, 1, 1), a.dtype)
        gbary = np.zeros((f.shape[0], 2), a.dtype) if want_bary else np.zeros((1, 2), a.dtype)
        _interp_backward(a, _np(tri.long()), _np(f), _np(b), _np(bary.to(attr.dtype)), _np(grad.to(attr.dtype)),
                         (gattr, gbary), (want_attr, want_bary))
        return (torch.from_numpy(gattr) if want_attr else None, None, None, None,
                torch.from_numpy(gbary).to(bary.dtype) if want_bary else None)


def interp_cpu(attr: torch.Tensor, tri: torch.Tensor, f: torch.Tensor, b: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """u·a0 + v·a1 + (1−u−v)·a2 (N,C) of CPU vertex attributes attr (Ba,V,C) (Ba = 1 broadcasts)
    at fragments with triangle f (N,), batch b (N,) and barycentrics bary (N,2) = (u, v)."""
    return _Interp.apply(attr, tri, f, b, bary)


# ---------------------------------------------------------------- texture lookup at fragments


@njit(cache=True, inline="always")
def _texels(u, v, Ht, Wt):
    """Wrapped texel columns xa, xb, rows ya, yb and bilinear fractions fx, fy at (u, v)."""
    x = u * Wt - 0.5
    y = v * Ht - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    xa, ya = int(x0) % Wt, int(y0) % Ht
    return xa, (xa + 1) % Wt, ya, (ya + 1) % Ht, x - x0, y - y0


@njit(cache=True, inline="always")
def _bilerp(tex, bb, texel, c):
    """Bilinear value of channel c of texture ``bb`` of tex (Bt,Ht,Wt,C) at ``texel`` (:func:`_texels`)."""
    xa, xb, ya, yb, fx, fy = texel
    top = tex[bb, ya, xa, c] + fx * (tex[bb, ya, xb, c] - tex[bb, ya, xa, c])
    bot = tex[bb, yb, xa, c] + fx * (tex[bb, yb, xb, c] - tex[bb, yb, xa, c])
    return top + fy * (bot - top)


@njit(cache=True)
def _sample_forward(tex, uv, b, out):  # tex (Bt,Ht,Wt,C), uv (N,2) nvdiffrast orientation -> (N,C)
    Bt, Ht, Wt, C = tex.shape
    for r in range(uv.shape[0]):
        bb = 0 if Bt == 1 else b[r]
        texel = _texels(uv[r, 0], uv[r, 1], Ht, Wt)
        for c in range(C):
            out[r, c] = _bilerp(tex, bb, texel, c)


@njit(cache=True)
def _sample_backward(tex, uv, b, g, gtex, guv, want_tex, want_uv):
    Bt, Ht, Wt, C = tex.shape
    for r in range(uv.shape[0]):
        bb = 0 if Bt == 1 else b[r]
        xa, xb, ya, yb, fx, fy = _texels(uv[r, 0], uv[r, 1], Ht, Wt)
        dx = 0.0
        dy = 0.0
        for c in range(C):
            gc = g[r, c]
            t0, t1 = tex[bb, ya, xa, c], tex[bb, ya, xb, c]
            t2, t3 = tex[bb, yb, xa, c], tex[bb, yb, xb, c]
            if want_tex:
                gtex[bb, ya, xa, c] += gc * (1.0 - fx) * (1.0 - fy)
                gtex[bb, ya, xb, c] += gc * fx * (1.0 - fy)
                gtex[bb, yb, xa, c] += gc * (1.0 - fx) * fy
                gtex[bb, yb, xb, c] += gc * fx * fy
            if want_uv:
                top = t0 + fx * (t1 - t0)
                bot = t2 + fx * (t3 - t2)
                dx += gc * ((1.0 - fy) * (t1 - t0) + fy * (t3 - t2))
                dy += gc * (bot - top)
        if want_uv:
            guv[r, 0] = dx * Wt
            guv[r, 1] = dy * Ht


class _Sample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tex: torch.Tensor, uv: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t = _np(tex)
        out = np.empty((uv.shape[0], t.shape[3]), dtype=t.dtype)
        _sample_forward(t, _np(uv.to(tex.dtype)), _np(b), out)
        ctx.save_for_backward(tex, uv, b)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def, override]
        tex, uv, b = ctx.saved_tensors
        want_tex, want_uv = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        t = _np(tex)
        gtex = np.zeros_like(t) if want_tex else np.zeros((1, 1, 1, 1), t.dtype)
        guv = np.zeros((uv.shape[0], 2), t.dtype) if want_uv else np.zeros((1, 2), t.dtype)
        _sample_backward(t, _np(uv.to(tex.dtype)), _np(b), _np(grad.to(tex.dtype)), gtex, guv, want_tex, want_uv)
        return (torch.from_numpy(gtex) if want_tex else None, torch.from_numpy(guv).to(uv.dtype) if want_uv else None, None)


def sample_cpu(tex: torch.Tensor, uv: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bilinear, wrapping lookup (N,C) of a CPU texture tex (Bt,Ht,Wt,C) (Bt = 1 broadcasts) at
    uv (N,2) (nvdiffrast orientation: (0,0) = outer corner of texel [0,0]) for batch b (N,)."""
    return _Sample.apply(tex, uv, b)


# ---------------------------------------------------------------- antialiasing blend


@njit(cache=True)
def _aa_t(pos, b, pa, ip, iq, axis, H, W):
    """Crossing t (0 at pixel A's centre, 1 at B's) of edge (p, q) and the pieces of its gradient."""
    Px, Py, Pw = pos[b, ip, 0], pos[b, ip, 1], pos[b, ip, 3]
    Qx, Qy, Qw = pos[b, iq, 0], pos[b, iq, 1], pos[b, iq, 3]
    psx, psy = (Px / Pw * 0.5 + 0.5) * W, (Py / Pw * 0.5 + 0.5) * H
    qsx, qsy = (Qx / Qw * 0.5 + 0.5) * W, (Qy / Qw * 0.5 + 0.5) * H
    la = pa - b * (H * W)
    ay = la // W
    ax = la - ay * W
    if axis == 0:
        c_al, c_or = ax + 0.5, ay + 0.5
        p_al, p_or, q_al, q_or = psx, psy, qsx, qsy
    else:
        c_al, c_or = ay + 0.5, ax + 0.5
        p_al, p_or, q_al, q_or = psy, psx, qsy, qsx
    return c_al, c_or, p_al, p_or, q_al, q_or


@njit(cache=True, inline="always")
def _blend_rows(rows, k, dst, pa, pb, t):
    """dst row pa or pb (flat pixels) += the blend, for crossing t, of pair k's original rows
    (rows (n,2,C): the colours of pixels A and B before any blending)."""
    if t > 0.5:
        for c in range(rows.shape[2]):
            dst[pb, c] += (t - 0.5) * (rows[k, 0, c] - rows[k, 1, c])
    else:
        for c in range(rows.shape[2]):
            dst[pa, c] += (0.5 - t) * (rows[k, 1, c] - rows[k, 0, c])


@njit(cache=True, inline="always")
def _blend_rows_grad(rows, k, g, gsrc, pa, pb, t):
    """Backward of :func:`_blend_rows`: adds into gsrc, returns the gradient w.r.t. t."""
    gt = 0.0
    if t > 0.5:
        for c in range(rows.shape[2]):
            gc = g[pb, c]
            gsrc[pa, c] += (t - 0.5) * gc
            gsrc[pb, c] -= (t - 0.5) * gc
            gt += gc * (rows[k, 0, c] - rows[k, 1, c])
    else:
        for c in range(rows.shape[2]):
            gc = g[pa, c]
            gsrc[pb, c] += (0.5 - t) * gc
            gsrc[pa, c] -= (0.5 - t) * gc
            gt -= gc * (rows[k, 1, c] - rows[k, 0, c])
    return gt


@njit(cache=True)
def _pair_rows(src, pairs):
    """(n,2,C): the rows of flat pixels A and B of each pair, taken before anything is blended."""
    rows = np.empty((pairs.shape[0], 2, src.shape[1]), dtype=src.dtype)
    for k in range(pairs.shape[0]):
        for c in range(src.shape[1]):
            rows[k, 0, c] = src[pairs[k, 1], c]
            rows[k, 1, c] = src[pairs[k, 2], c]
    return rows


@njit(cache=True)
def _aa_forward(colors, pos, pairs, outs, H, W):
    """colors = two flat colour arrays (B*H*W,Ca), (B*H*W,Cb) blended alike (the second may have 0
    channels); pos (B,V,4); pairs (n,6); outs: the arrays to blend into (copies of the colours, or
    the colours themselves). Returns the pairs' original rows of both (for the backward)."""
    ra, rb = _pair_rows(colors[0], pairs), _pair_rows(colors[1], pairs)
    oa, ob = outs
    for k in range(pairs.shape[0]):
        b, pa, pb, ip, iq, axis = pairs[k, 0], pairs[k, 1], pairs[k, 2], pairs[k, 3], pairs[k, 4], pairs[k, 5]
        c_al, c_or, p_al, p_or, q_al, q_or = _aa_t(pos, b, pa, ip, iq, axis, H, W)
        direction = 1.0 if pb > pa else -1.0
        t = (p_al + (c_or - p_or) * (q_al - p_al) / (q_or - p_or) - c_al) * direction
        _blend_rows(ra, k, oa, pa, pb, t)
        _blend_rows(rb, k, ob, pa, pb, t)
    return ra, rb


@njit(cache=True)
def _aa_backward(rows, pos, pairs, g, grads, H, W):
    """rows = what :func:`_aa_forward` returned; g = the outputs' gradients (flat, as the colours);
    grads = (gcolor a, gcolor b, gpos (B,V,4)), the colour ones starting as copies of g."""
    ra, rb = rows
    ga, gb = g
    gca, gcb, gpos = grads
    for k in range(pairs.shape[0]):
        b, pa, pb, ip, iq, axis = pairs[k, 0], pairs[k, 1], pairs[k, 2], pairs[k, 3], pairs[k, 4], pairs[k, 5]
        c_al, c_or, p_al, p_or, q_al, q_or = _aa_t(pos, b, pa, ip, iq, axis, H, W)
        direction = 1.0 if pb > pa else -1.0
        den = q_or - p_or
        r = (c_or - p_or) / den
        t = (p_al + r * (q_al - p_al) - c_al) * direction
        gt = _blend_rows_grad(ra, k, ga, gca, pa, pb, t)
        gt += _blend_rows_grad(rb, k, gb, gcb, pa, pb, t)
        if gt == 0.0:
            continue
        g_pal = gt * direction * (1.0 - r)
        g_qal = gt * direction * r
        g_por = gt * direction * (q_al - p_al) * (c_or - q_or) / (den * den)
        g_qor = -gt * direction * (q_al - p_al) * (c_or - p_or) / (den * den)
        g_psx, g_psy = (g_pal, g_por) if axis == 0 else (g_por, g_pal)
        g_qsx, g_qsy = (g_qal, g_qor) if axis == 0 else (g_qor, g_qal)
        for v, gx, gy in ((ip, g_psx, g_psy), (iq, g_qsx, g_qsy)):
            x, y, w = pos[b, v, 0], pos[b, v, 1], pos[b, v, 3]
            gpos[b, v, 0] += gx * 0.5 * W / w
            gpos[b, v, 1] += gy * 0.5 * H / w
            gpos[b, v, 3] -= (gx * 0.5 * W * x + gy * 0.5 * H * y) / (w * w)


def _flat(a: np.ndarray) -> np.ndarray:  # (B,H,W,C) -> (B*H*W,C), also for C = 0
    return a.reshape(a.shape[0] * a.shape[1] * a.shape[2], a.shape[3])


class _AntialiasBlend(torch.autograd.Function):
    """Blends an image (B,H,W,Ca) and, alike, a second one (B,H,W,Cb) (Cb may be 0), into copies
    or, with ``in_place``, into the tensors themselves (marked dirty); the backward needs only the
    pairs' original rows."""

    @staticmethod
    def forward(ctx, color: torch.Tensor, extra: torch.Tensor, pos: torch.Tensor, pairs: torch.Tensor,  # type: ignore[override]
                in_place: bool):
        c, e = _np(color), _np(extra)
        if in_place:
            if not (color.is_contiguous() and extra.is_contiguous()):
                raise ValueError("in-place antialiasing needs contiguous images")
            out_c, out_e = c, e
            ctx.mark_dirty(color, extra)
        else:
            out_c, out_e = c.copy(), e.copy()
        H, W = c.shape[1:3]
        ctx.rows = _aa_forward((_flat(c), _flat(e)), _np(pos.to(color.dtype)), _np(pairs), (_flat(out_c), _flat(out_e)), H, W)
        ctx.hw = (H, W)
        ctx.save_for_backward(pos, pairs)
        if in_place:
            return color, extra
        return torch.from_numpy(out_c), torch.from_numpy(out_e)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_color: torch.Tensor, g_extra: torch.Tensor):  # type: ignore[no-untyped-def, override]
        pos, pairs = ctx.saved_tensors
        dt = ctx.rows[0].dtype
        gc, ge = _np(g_color).astype(dt, copy=False), _np(g_extra).astype(dt, copy=False)
        gcolor, gextra = gc.copy(), ge.copy()
        p = _np(pos).astype(dt, copy=False)
        gpos = np.zeros_like(p)
        _aa_backward(ctx.rows, p, _np(pairs), (_flat(gc), _flat(ge)), (_flat(gcolor), _flat(gextra), gpos), *ctx.hw)
        g_e = torch.from_numpy(gextra) if ctx.needs_input_grad[1] else None
        return torch.from_numpy(gcolor), g_e, torch.from_numpy(gpos).to(pos.dtype), None, None


def antialias_blend_cpu(color: torch.Tensor, pos: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Blend CPU colours (B,H,W,C) across silhouette pixel pairs (n,6) int64 rows (batch, flat
    pixel A, flat pixel B, edge vertices p, q, axis) found by ``_kernels.silhouette_pairs``, with
    the crossing position computed from clip positions pos (B,V,4); differentiable w.r.t. color
    and pos (see :func:`face3d.renderers.backends.torch_cpu.antialias`)."""
    return _AntialiasBlend.apply(color, color.new_empty(color.shape[:3] + (0,)), pos, pairs, False)[0]


def antialias_blend2_cpu(color: torch.Tensor, extra: torch.Tensor, pos: torch.Tensor, pairs: torch.Tensor,
                         in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`antialias_blend_cpu` of two images blended alike, e.g. an image (B,H,W,3) and its
    coverage (B,H,W,1), as two contiguous outputs (what one 4-channel image would give, without
    interleaving the channels or slicing them apart again). ``in_place``: blend into ``color`` and
    ``extra`` themselves (contiguous tensors nothing else holds for its backward, e.g. fresh
    outputs of the shading pass) and return them, saving two image copies."""
    return _AntialiasBlend.apply(color, extra.to(color.dtype), pos, pairs, in_place)


# ---------------------------------------------------------------- fragments -> image


@njit(cache=True)
def _scatter_forward(values, sel, out):  # values (N,C), sel (N,) flat pixel -> out (P,C) pre-filled
    for i in range(sel.shape[0]):
        for c in range(values.shape[1]):
            out[sel[i], c] = values[i, c]


@njit(cache=True)
def _gather_rows(src, sel, out):  # src (P,C) -> out (N,C) = src[sel]
    for i in range(sel.shape[0]):
        for c in range(src.shape[1]):
            out[i, c] = src[sel[i], c]


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, sel: torch.Tensor, n_rows: int, fill: float) -> torch.Tensor:  # type: ignore[override]
        v = _np(values)
        out = np.full((n_rows, v.shape[1]), fill, dtype=v.dtype)
        _scatter_forward(v, _np(sel), out)
        ctx.save_for_backward(sel)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def, override]
        (sel,) = ctx.saved_tensors
        g = _np(grad)
        out = np.empty((sel.shape[0], g.shape[1]), dtype=g.dtype)
        _gather_rows(g, _np(sel), out)
        return torch.from_numpy(out), None, None, None


def scatter_cpu(values: torch.Tensor, sel: torch.Tensor, n_rows: int, fill: float = 0.0) -> torch.Tensor:
    """(n_rows, C) rows equal to ``fill`` except rows sel (N,) (distinct), which take the CPU
    values (N,C); differentiable w.r.t. values."""
    return _Scatter.apply(values, sel, n_rows, float(fill))


# ---------------------------------------------------------------- per-batch affine map of points


@njit(cache=True)
def _affine_forward(p, lin, off, out):  # p (Bp,V,3), lin (Bl,R,3), off (Bo,R) -> out (B,V,R)
    B, V, R = out.shape
    for b in range(B):
        bp = 0 if p.shape[0] == 1 else b
        bl = 0 if lin.shape[0] == 1 else b
        bo = 0 if off.shape[0] == 1 else b
        for v in range(V):
            x, y, z = p[bp, v, 0], p[bp, v, 1], p[bp, v, 2]
            for r in range(R):
                out[b, v, r] = lin[bl, r, 0] * x + lin[bl, r, 1] * y + lin[bl, r, 2] * z + off[bo, r]


@njit(cache=True)
def _affine_backward(p, lin, g, grads, want_params):  # g (B,V,R); grads = (gp, glin, goff)
    gp, glin, goff = grads
    B, V, R = g.shape
    for b in range(B):
        bp = 0 if p.shape[0] == 1 else b
        bl = 0 if lin.shape[0] == 1 else b
        bo = 0 if goff.shape[0] == 1 else b
        for v in range(V):
            x, y, z = p[bp, v, 0], p[bp, v, 1], p[bp, v, 2]
            for r in range(R):
                gr = g[b, v, r]
                gp[bp, v, 0] += lin[bl, r, 0] * gr
                gp[bp, v, 1] += lin[bl, r, 1] * gr
                gp[bp, v, 2] += lin[bl, r, 2] * gr
                if want_params:
                    glin[bl, r, 0] += x * gr
                    glin[bl, r, 1] += y * gr
                    glin[bl, r, 2] += z * gr
                    goff[bo, r] += gr


class _Affine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points: torch.Tensor, lin: torch.Tensor, off: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        p, m, o = _np(points), _np(lin.to(points.dtype)), _np(off.to(points.dtype))
        B = max(p.shape[0], m.shape[0], o.shape[0])
        out = np.empty((B, p.shape[1], m.shape[1]), dtype=p.dtype)
        _affine_forward(p, m, o, out)
        ctx.save_for_backward(points, lin, off)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[no-untyped-def, override]
        points, lin, off = ctx.saved_tensors
        p, m = _np(points), _np(lin.to(points.dtype))
        gp, glin = np.zeros_like(p), np.zeros_like(m)
        goff = np.zeros(tuple(off.shape), dtype=p.dtype)
        want_params = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]  # e.g. a camera being fitted
        _affine_backward(p, m, _np(grad.to(points.dtype)), (gp, glin, goff), want_params)
        if not want_params:
            return torch.from_numpy(gp), None, None
        return torch.from_numpy(gp), torch.from_numpy(glin).to(lin.dtype), torch.from_numpy(goff).to(off.dtype)


def affine_cpu(points: torch.Tensor, lin: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """points (Bp,V,3) @ lin(Bl,R,3)ᵀ + off (Bo,R) → (B,V,R) for CPU tensors; batches of 1
    broadcast. Differentiable w.r.t. all three."""
    return _Affine.apply(points, lin, off)
