"""One fused CPU pass for `render_mesh`'s per-pixel shading, with its hand-written backward.

For every covered pixel of rast (B,H,W,4) it interpolates the vertex normals (and normalises
them), the albedo (vertex colours, or UVs then a bilinear wrapping texture lookup, or white), the
depth, evaluates the SH shading and writes image = albedo · shading (background elsewhere), the
coverage mask, and the albedo, shading, normal and depth images — what
:func:`face3d.renderers.render._shade_fragments` computes with a dozen fused kernels, index
gathers and scatters, but in one loop over the pixels forward and one backward, with no
per-fragment lists or intermediate tensors. Values and gradients equal that path's (it stays as
the reference, and as the path for CUDA tensors and image backgrounds); tests/test_renderer_fused.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable

from .fused import _bilerp, _texels
from .shading import _monomial_matrix

WHITE, VERTEX, TEXTURE = 0, 1, 2


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


@njit(cache=True, inline="always")
def _lerp3(a, bb, tri_v, c, uvw):  # u·a[i0] + v·a[i1] + w·a[i2] of channel c (interp_cpu's order)
    return uvw[0] * a[bb, tri_v[0], c] + uvw[1] * a[bb, tri_v[1], c] + uvw[2] * a[bb, tri_v[2], c]


@njit(cache=True, inline="always")
def _texel_pos(uvs, uv_idx, f, uvw, st):
    """Texture coordinate (s, t) of the pixel: the interpolated UV rounded to the uvs' dtype (st (2,)
    scratch), as interp_cpu stores it, with v flipped to nvdiffrast's orientation."""
    u, v, w = uvw
    j0, j1, j2 = uv_idx[f, 0], uv_idx[f, 1], uv_idx[f, 2]
    st[0] = _lerp3(uvs, 0, (j0, j1, j2), 0, (u, v, w))
    st[1] = _lerp3(uvs, 0, (j0, j1, j2), 1, (u, v, w))
    st[1] = 1.0 - st[1]
    return st[0], st[1]


@njit(cache=True, inline="always")
def _sh9(M, n, out):
    """The 9 basis values of unit normal n (3,) into out (9,): the monomials (1, x, y, z, xy, yz,
    xz, xx, yy, zz) times M (10,9), written out for M's fixed nonzeros (shading._M)."""
    x, y, z = n[0], n[1], n[2]
    out[0] = M[0, 0]
    out[1] = y * M[2, 1]
    out[2] = z * M[3, 2]
    out[3] = x * M[1, 3]
    out[4] = (x * y) * M[4, 4]
    out[5] = (y * z) * M[5, 5]
    out[6] = M[0, 6] + (z * z) * M[9, 6]
    out[7] = (x * z) * M[6, 7]
    out[8] = (x * x) * M[7, 8] + (y * y) * M[8, 8]


@njit(cache=True, inline="always")
def _sh9_grad(M, n, gb, gn):
    """Add to gn (3,) the gradient w.r.t. n of Σ gb · basis(n) (see :func:`_sh9`)."""
    x, y, z = n[0], n[1], n[2]
    g4, g5, g6 = gb[4] * M[4, 4], gb[5] * M[5, 5], gb[7] * M[6, 7]
    g7, g8, g9 = gb[8] * M[7, 8], gb[8] * M[8, 8], gb[6] * M[9, 6]
    gn[0] += gb[3] * M[1, 3] + g4 * y + g6 * z + 2.0 * g7 * x
    gn[1] += gb[1] * M[2, 1] + g4 * x + g5 * z + 2.0 * g8 * y
    gn[2] += gb[2] * M[3, 2] + g5 * y + g6 * x + 2.0 * g9 * z


@njit(cache=True, inline="always")
def _sh_rgb(basis, sh, bs, out):
    """out (3,) = basis (9,) @ sh[bs] (9,3): the three channels' sums interleaved (independent
    chains), in the arrays' precision."""
    b0 = basis[0]
    s0 = b0 * sh[bs, 0, 0]
    s1 = b0 * sh[bs, 0, 1]
    s2 = b0 * sh[bs, 0, 2]
    for k in range(1, 9):
        bk = basis[k]
        s0 += bk * sh[bs, k, 0]
        s1 += bk * sh[bs, k, 1]
        s2 += bk * sh[bs, k, 2]
    out[0] = s0
    out[1] = s1
    out[2] = s2


@njit(cache=True, inline="always")
def _unit_normal(vn, bn, i0, i1, i2, uvw, n):
    """Interpolated normal into n (3,) (rounded to the array dtype), normalised; returns its length."""
    u, v, w = uvw
    for c in range(3):
        n[c] = _lerp3(vn, bn, (i0, i1, i2), c, (u, v, w))
    length = np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
    if length > 0:
        for c in range(3):
            n[c] = n[c] / length
    return length


@njit(cache=True)
def _forward(rast, tri, attrs, light, mode, outs):
    """rast (B,H,W,4); tri = (faces, uv_idx) (F,3); attrs = (vn (Bn,V,3), depth (Bd,V,1), vc
    (Bc,V,3), tex (Bt,Ht,Wt,3), uvs (1,T,2)); light = (sh (Bs,9,3), the (10,9) monomial matrix);
    mode = (albedo WHITE|VERTEX|TEXTURE, has_sh, background); outs = (image (B,H,W,3), mask
    (B,H,W,1), albedo, shading, normals (B,H,W,3), depth (B,H,W,1), and the normals' lengths before
    normalising (B,H,W), kept for the backward and set at covered pixels only)."""
    faces, uv_idx = tri
    vn, dv, vc, tex, uvs = attrs
    sh, M = light
    kind, has_sh, bg = mode
    img, mask, alb_o, shd_o, nrm_o, dep_o, len_o = outs
    B, H, W = rast.shape[0], rast.shape[1], rast.shape[2]
    Ht, Wt = tex.shape[1], tex.shape[2]
    n = np.empty(3, dtype=vn.dtype)
    basis = np.empty(9, dtype=vn.dtype)
    alb = np.empty(3, dtype=vn.dtype)
    shd = np.empty(3, dtype=vn.dtype)
    st = np.empty(2, dtype=uvs.dtype)
    for b in range(B):
        bn = 0 if vn.shape[0] == 1 else b
        for py in range(H):
            for px in range(W):
                t = int(rast[b, py, px, 3])
                if t <= 0:
                    for c in range(3):
                        img[b, py, px, c] = bg
                        alb_o[b, py, px, c] = 0.0
                        shd_o[b, py, px, c] = 0.0
                        nrm_o[b, py, px, c] = 0.0
                    dep_o[b, py, px, 0] = 0.0
                    mask[b, py, px, 0] = 0.0
                    continue
                f = t - 1
                u, v = rast[b, py, px, 0], rast[b, py, px, 1]
                w = 1.0 - u - v
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                len_o[b, py, px] = _unit_normal(vn, bn, i0, i1, i2, (u, v, w), n)
                if kind == VERTEX:
                    bc = 0 if vc.shape[0] == 1 else b
                    for c in range(3):
                        alb[c] = _lerp3(vc, bc, (i0, i1, i2), c, (u, v, w))
                elif kind == TEXTURE:
                    bt = 0 if tex.shape[0] == 1 else b
                    sx, sy = _texel_pos(uvs, uv_idx, f, (u, v, w), st)
                    texel = _texels(sx, sy, Ht, Wt)
                    for c in range(3):
                        alb[c] = _bilerp(tex, bt, texel, c)
                else:
                    for c in range(3):
                        alb[c] = 1.0
                if has_sh:
                    _sh9(M, n, basis)
                    _sh_rgb(basis, sh, 0 if sh.shape[0] == 1 else b, shd)
                for c in range(3):
                    shd_o[b, py, px, c] = shd[c] if has_sh else 1.0
                    alb_o[b, py, px, c] = alb[c]
                    img[b, py, px, c] = alb_o[b, py, px, c] * shd_o[b, py, px, c]
                    nrm_o[b, py, px, c] = n[c]
                bd = 0 if dv.shape[0] == 1 else b
                dep_o[b, py, px, 0] = _lerp3(dv, bd, (i0, i1, i2), 0, (u, v, w))
                mask[b, py, px, 0] = 1.0


@njit(cache=True)
def _backward(rast, tri, attrs, light, mode, saved, g, grads):
    """Backward of :func:`_forward`: saved = its (albedo, shading, normals, lengths) outputs;
    g = (image (B,H,W,C≥3), albedo, shading, normals, depth) output gradients, want (5,) bool which
    of them are given; grads = (rast (B,H,W,4), vn, depth, vc, tex, uvs, sh) gradient arrays to
    accumulate into (shapes of the inputs; unused ones may be dummies), want_in (7,) which to fill."""
    faces, uv_idx = tri
    vn, dv, vc, tex, uvs = attrs
    sh, M = light
    kind, has_sh, _bg = mode
    alb_o, shd_o, nrm_o, len_o = saved
    (g_img, g_alb, g_shd, g_nrm, g_dep), want = g
    (gr, gvn, gdv, gvc, gtex, guvs, gsh), want_in = grads
    B, H, W = rast.shape[0], rast.shape[1], rast.shape[2]
    Ht, Wt = tex.shape[1], tex.shape[2]
    n = np.empty(3, dtype=vn.dtype)
    basis = np.empty(9, dtype=vn.dtype)
    gb = np.empty(9, dtype=vn.dtype)
    gn = np.empty(3, dtype=vn.dtype)
    st = np.empty(2, dtype=uvs.dtype)
    ga = np.empty(3, dtype=vn.dtype)
    gs = np.empty(3, dtype=vn.dtype)
    for b in range(B):
        bn = 0 if vn.shape[0] == 1 else b
        for py in range(H):
            for px in range(W):
                t = int(rast[b, py, px, 3])
                if want_in[0]:  # the rast gradient is written whole: (gu, gv) at covered pixels, 0 elsewhere
                    for c in range(4):
                        gr[b, py, px, c] = 0.0
                if t <= 0:
                    continue
                f = t - 1
                u, v = rast[b, py, px, 0], rast[b, py, px, 1]
                w = 1.0 - u - v
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                for c in range(3):
                    n[c] = nrm_o[b, py, px, c]
                length = len_o[b, py, px]
                bc = 0 if vc.shape[0] == 1 else b
                bt = 0 if tex.shape[0] == 1 else b
                xa = xb = ya = yb = 0
                fx = fy = 0.0
                if kind == TEXTURE:
                    sx, sy = _texel_pos(uvs, uv_idx, f, (u, v, w), st)
                    xa, xb, ya, yb, fx, fy = _texels(sx, sy, Ht, Wt)
                bs = 0 if sh.shape[0] == 1 else b
                if has_sh:
                    _sh9(M, n, basis)
                # d image / d albedo = shading, d image / d shading = albedo
                for c in range(3):
                    gi = g_img[b, py, px, c] if want[0] else 0.0
                    ga[c] = gi * shd_o[b, py, px, c] + (g_alb[b, py, px, c] if want[1] else 0.0)
                    gs[c] = gi * alb_o[b, py, px, c] + (g_shd[b, py, px, c] if want[2] else 0.0)
                for c in range(3):
                    gn[c] = g_nrm[b, py, px, c] if want[3] else 0.0
                if has_sh:
                    for k in range(9):
                        gb[k] = gs[0] * sh[bs, k, 0] + gs[1] * sh[bs, k, 1] + gs[2] * sh[bs, k, 2]
                    if want_in[6]:
                        for k in range(9):
                            bk = basis[k]
                            gsh[bs, k, 0] += bk * gs[0]
                            gsh[bs, k, 1] += bk * gs[1]
                            gsh[bs, k, 2] += bk * gs[2]
                    _sh9_grad(M, n, gb, gn)
                # unit normal n = m / |m|: dm = (gn − n (n·gn)) / |m|
                if length > 0:
                    d = n[0] * gn[0] + n[1] * gn[1] + n[2] * gn[2]
                    for c in range(3):
                        gn[c] = (gn[c] - n[c] * d) / length
                gu = 0.0
                gv = 0.0
                for c in range(3):
                    gc = gn[c]
                    if want_in[1]:
                        gvn[bn, i0, c] += u * gc
                        gvn[bn, i1, c] += v * gc
                        gvn[bn, i2, c] += w * gc
                    gu += gc * (vn[bn, i0, c] - vn[bn, i2, c])
                    gv += gc * (vn[bn, i1, c] - vn[bn, i2, c])
                if kind == VERTEX:
                    for c in range(3):
                        gc = ga[c]
                        if want_in[3]:
                            gvc[bc, i0, c] += u * gc
                            gvc[bc, i1, c] += v * gc
                            gvc[bc, i2, c] += w * gc
                        gu += gc * (vc[bc, i0, c] - vc[bc, i2, c])
                        gv += gc * (vc[bc, i1, c] - vc[bc, i2, c])
                elif kind == TEXTURE:
                    dx = 0.0
                    dy = 0.0
                    for c in range(3):
                        gc = ga[c]
                        t0, t1 = tex[bt, ya, xa, c], tex[bt, ya, xb, c]
                        t2, t3 = tex[bt, yb, xa, c], tex[bt, yb, xb, c]
                        if want_in[4]:
                            gtex[bt, ya, xa, c] += gc * (1.0 - fx) * (1.0 - fy)
                            gtex[bt, ya, xb, c] += gc * fx * (1.0 - fy)
                            gtex[bt, yb, xa, c] += gc * (1.0 - fx) * fy
                            gtex[bt, yb, xb, c] += gc * fx * fy
                        dx += gc * ((1.0 - fy) * (t1 - t0) + fy * (t3 - t2))
                        top = t0 + fx * (t1 - t0)
                        bot = t2 + fx * (t3 - t2)
                        dy += gc * (bot - top)
                    # texture coordinate (s, 1 − t) of the interpolated UV (s, t)
                    gst = (dx * Wt, -dy * Ht)
                    j0, j1, j2 = uv_idx[f, 0], uv_idx[f, 1], uv_idx[f, 2]
                    for c in range(2):
                        gc = gst[c]
                        if want_in[5]:
                            guvs[0, j0, c] += u * gc
                            guvs[0, j1, c] += v * gc
                            guvs[0, j2, c] += w * gc
                        gu += gc * (uvs[0, j0, c] - uvs[0, j2, c])
                        gv += gc * (uvs[0, j1, c] - uvs[0, j2, c])
                if want[4]:
                    gd = g_dep[b, py, px, 0]
                    bd = 0 if dv.shape[0] == 1 else b
                    if want_in[2]:
                        gdv[bd, i0, 0] += u * gd
                        gdv[bd, i1, 0] += v * gd
                        gdv[bd, i2, 0] += w * gd
                    gu += gd * (dv[bd, i0, 0] - dv[bd, i2, 0])
                    gv += gd * (dv[bd, i1, 0] - dv[bd, i2, 0])
                if want_in[0]:
                    gr[b, py, px, 0] += gu
                    gr[b, py, px, 1] += gv


class ShadeSpec(NamedTuple):
    """The non-differentiable inputs of :func:`shade_pixels_cpu`: faces (F,3), uv_idx (F,3) or
    None, the albedo source WHITE|VERTEX|TEXTURE, and the scalar background."""

    faces: torch.Tensor
    uv_idx: torch.Tensor | None
    kind: int
    background: float


def _dummy(dt: np.dtype | type, nd: int) -> np.ndarray:
    return np.zeros((1,) * nd, dtype=dt)


class _ShadePixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: ShadeSpec, rast: torch.Tensor, vn: torch.Tensor, depth_v: torch.Tensor,  # type: ignore[override]
                colour: torch.Tensor | None, uvs: torch.Tensor | None, sh: torch.Tensor | None):
        ctx.set_materialize_grads(False)
        dt = vn.dtype
        r = _np(rast)
        B, H, W = r.shape[:3]
        tri = (_np(spec.faces.long()), _np(spec.uv_idx.long()) if spec.uv_idx is not None else _dummy(np.int64, 2))
        attrs = _attrs(spec, vn, depth_v, colour, uvs)
        n = attrs[0]
        d = n.dtype
        light = _light(sh, dt)
        outs = (np.empty((B, H, W, 3), d), np.empty((B, H, W, 1), d), np.empty((B, H, W, 3), d), np.empty((B, H, W, 3), d), np.empty((B, H, W, 3), d), np.empty((B, H, W, 1), d),
                np.empty((B, H, W), d))
        _forward(r, tri, attrs, light, (spec.kind, sh is not None, float(spec.background)), outs)
        res = tuple(torch.from_numpy(o) for o in outs[:6])
        ctx.spec, ctx.lengths = spec, outs[6]
        ctx.arrays = (r, tri, attrs, light)  # the kernel's views of the saved inputs, reused by the backward
        ctx.save_for_backward(rast, vn, depth_v, colour, uvs, sh, res[2], res[3], res[4])
        ctx.mark_non_differentiable(res[1])
        return res

    @staticmethod
    @once_differentiable
    def backward(ctx, g_img, _g_mask, g_alb, g_shd, g_nrm, g_dep):  # type: ignore[no-untyped-def, override]
        spec: ShadeSpec = ctx.spec
        rast, vn, depth_v, colour, uvs, sh, alb, shd, nrm = ctx.saved_tensors  # (checks they were not modified)
        r, tri, attrs, light = ctx.arrays
        n = attrs[0]
        d = n.dtype
        outs_g = (g_img, g_alb, g_shd, g_nrm, g_dep)
        want = np.array([x is not None for x in outs_g])
        g = tuple(_np(x.to(vn.dtype)) if x is not None else _dummy(d, 4) for x in outs_g)
        need = ctx.needs_input_grad[1:]
        tex_kind = spec.kind == TEXTURE
        want_in = np.array([need[0], need[1], need[2], need[3] and not tex_kind, need[3] and tex_kind, need[4], need[5]])
        gr = (np.empty if want.any() else np.zeros)(r.shape, d) if need[0] else _dummy(d, 4)  # the kernel writes every pixel
        gvn = np.zeros(n.shape, d) if need[1] else _dummy(d, 3)
        gdv = np.zeros(attrs[1].shape, d) if need[2] else _dummy(d, 3)
        gvc = np.zeros(attrs[2].shape, d) if want_in[3] else _dummy(d, 3)
        gtex = np.zeros(attrs[3].shape, d) if want_in[4] else _dummy(d, 4)
        guvs = np.zeros(attrs[4].shape, d) if need[4] else _dummy(d, 3)
        gsh = np.zeros(light[0].shape, d) if need[5] else _dummy(d, 3)
        if want.any():
            saved = (_np(alb), _np(shd), _np(nrm), ctx.lengths)
            _backward(r, tri, attrs, light, (spec.kind, sh is not None, 0.0), saved, (g, want), ((gr, gvn, gdv, gvc, gtex, guvs, gsh), want_in))

        def out(flag: bool, arr: np.ndarray, like: torch.Tensor | None) -> torch.Tensor | None:
            if not flag or like is None:
                return None
            return torch.from_numpy(arr).reshape(like.shape).to(like.dtype)

        return (None, out(need[0], gr, rast), out(need[1], gvn, vn), out(need[2], gdv, depth_v),
                out(need[3], gtex if tex_kind else gvc, colour), out(need[4], guvs, uvs), out(need[5], gsh, sh))


def _attrs(spec: ShadeSpec, vn: torch.Tensor, depth_v: torch.Tensor, colour: torch.Tensor | None,
           uvs: torch.Tensor | None) -> tuple[np.ndarray, ...]:
    dt = vn.dtype
    n = _np(vn)
    vc = _np(colour.to(dt)) if spec.kind == VERTEX and colour is not None else _dummy(n.dtype, 3)
    tex = _np(colour.to(dt)) if spec.kind == TEXTURE and colour is not None else _dummy(n.dtype, 4)
    uv = _np(uvs.to(dt)).reshape(1, -1, 2) if uvs is not None else _dummy(n.dtype, 3)
    return (n, depth_v.to(dt).detach().numpy(), vc, tex, uv)  # depth as it is laid out (clip's w column: strided)


def _light(sh: torch.Tensor | None, dt: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    M = _np(_monomial_matrix(dt, torch.device("cpu")))
    s = _np(sh.to(dt)) if sh is not None else np.zeros((1, 9, 3), dtype=M.dtype)
    return s, M


def shade_pixels_cpu(spec: ShadeSpec, rast: torch.Tensor, vn: torch.Tensor, depth_v: torch.Tensor,
                     colour: torch.Tensor | None, uvs: torch.Tensor | None, sh: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Shade every covered pixel of CPU rast (B,H,W,4) in one pass → (image (B,H,W,3); mask (B,H,W,1); albedo,
    shading, normals (B,H,W,3); depth (B,H,W,1)). vn (B|1,V,3) vertex normals, depth_v (B|1,V,1),
    colour: vertex colours (B|1,V,3) or a texture (B|1,Ht,Wt,3) (``spec.kind``) or None; uvs (T,2)
    for a texture; sh (B|1,9,3) or None (unlit). Differentiable w.r.t. rast's (u, v) and all
    float inputs."""
    return _ShadePixels.apply(spec, rast, vn, depth_v, colour, uvs, sh)
