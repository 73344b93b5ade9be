"""Fused per-texel photo sampling for texture baking (numba; not differentiable).

For every covered texel: interpolate the per-vertex pixel position, camera depth, normal and
view direction with the texel's barycentrics; test it against the z-buffer; weight it by the
viewing angle; sample the photo bilinearly (pixel centres at i + 0.5); evaluate the SH
irradiance at the normal; de-light. Interpolating projected positions instead of projecting
interpolated points is exact for depth and off by far less than a pixel for face-sized triangles.

SH irradiance is a quadratic form of the homogeneous normal ``(x, y, z, 1)``: the 4×4 matrices
are recovered from ``face3d.renderers.sh_basis`` so the constants always match the renderer.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch


class TexelGeometry(NamedTuple):
    """What the kernel interpolates per covered texel: tri_n (N,) triangle and bary_n (N,3)
    barycentrics of each texel, faces (F,3), and per vertex: vpix (V,2) pixel position (NaN
    behind the camera), vdepth (V,) camera depth, vnrm (V,3) normal, vview (V,3) direction to
    the camera (not normalised)."""

    tri_n: np.ndarray
    bary_n: np.ndarray
    faces: np.ndarray
    vpix: np.ndarray
    vdepth: np.ndarray
    vnrm: np.ndarray
    vview: np.ndarray


class Photo(NamedTuple):
    """The sampled image: zbuf (H,W) camera depth of the nearest surface; image (H,W,3) in
    [0,1]; mask (H,W) per-pixel trust or None; sh_forms (3,4,4) from :func:`sh_quadratic_forms`
    or None (no de-lighting)."""

    zbuf: np.ndarray
    image: np.ndarray
    mask: np.ndarray | None
    sh_forms: np.ndarray | None


def sh_quadratic_forms(sh: torch.Tensor) -> np.ndarray:
    """SH coefficients (9,3) -> (3,4,4) symmetric matrices M with irradiance_c = h^T M_c h, h=(n,1)."""
    from face3d.renderers import sh_basis

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 3))
    basis = sh_basis(torch.from_numpy(pts)).numpy()  # (40,9), a quadratic polynomial of (x,y,z)
    x, y, z = pts.T
    one = np.ones_like(x)
    mono = np.stack([x * x, y * y, z * z, x * y, x * z, y * z, x, y, z, one], 1)  # (40,10)
    coef, *_ = np.linalg.lstsq(mono, basis, rcond=None)  # (10,9)
    poly = coef @ sh.detach().double().cpu().numpy().reshape(9, 3)  # (10,3)
    M = np.zeros((3, 4, 4))
    for c in range(3):
        p = poly[:, c]
        M[c] = [
            [p[0], p[3] / 2, p[4] / 2, p[6] / 2],
            [p[3] / 2, p[1], p[5] / 2, p[7] / 2],
            [p[4] / 2, p[5] / 2, p[2], p[8] / 2],
            [p[6] / 2, p[7] / 2, p[8] / 2, p[9]],
        ]
    return M


@numba.njit(cache=True, nogil=True)
def _sample(texels, verts, photo, shm, flags, limits):  # pragma: no cover - jit
    tri_n, bary_n, faces = texels
    vpix, vdepth, vnrm, vview = verts
    zbuf, image, mask = photo
    use_mask, use_sh = flags
    min_cos, full_cos, depth_tol, min_shading, min_depth = limits
    n = tri_n.shape[0]
    H, W = image.shape[0], image.shape[1]
    weight = np.zeros(n, np.float32)
    raw = np.zeros((n, 3), np.float32)
    shade = np.zeros((n, 3), np.float32)
    delit = np.zeros((n, 3), np.float32)
    for k in range(n):
        f = tri_n[k]
        px = 0.0
        py = 0.0
        d = 0.0
        nx = 0.0
        ny = 0.0
        nz = 0.0
        vx = 0.0
        vy = 0.0
        vz = 0.0
        for c in range(3):
            i = faces[f, c]
            b = bary_n[k, c]
            px += b * vpix[i, 0]
            py += b * vpix[i, 1]
            d += b * vdepth[i]
            nx += b * vnrm[i, 0]
            ny += b * vnrm[i, 1]
            nz += b * vnrm[i, 2]
            vx += b * vview[i, 0]
            vy += b * vview[i, 1]
            vz += b * vview[i, 2]
        if not (np.isfinite(px) and np.isfinite(py)) or d <= min_depth:
            continue
        col = int(np.floor(px))
        row = int(np.floor(py))
        if col < 0 or col >= W or row < 0 or row >= H:
            continue
        if d > zbuf[row, col] + depth_tol + 0.005 * abs(d):
            continue
        ln = np.sqrt(nx * nx + ny * ny + nz * nz)
        lv = np.sqrt(vx * vx + vy * vy + vz * vz)
        if ln < 1e-12 or lv < 1e-12:
            continue
        nx /= ln
        ny /= ln
        nz /= ln
        cs = (nx * vx + ny * vy + nz * vz) / lv
        t = (cs - min_cos) / (full_cos - min_cos)
        if t <= 0.0:
            continue
        if t > 1.0:
            t = 1.0
        w = t * t * (3.0 - 2.0 * t)
        # bilinear lookup, border clamp
        fx = px - 0.5
        fy = py - 0.5
        x0 = int(np.floor(fx))
        y0 = int(np.floor(fy))
        ax = fx - x0
        ay = fy - y0
        xa = min(max(x0, 0), W - 1)
        xb = min(max(x0 + 1, 0), W - 1)
        ya = min(max(y0, 0), H - 1)
        yb = min(max(y0 + 1, 0), H - 1)
        if use_mask:
            m = ((1 - ax) * (1 - ay) * mask[ya, xa] + ax * (1 - ay) * mask[ya, xb]
                 + (1 - ax) * ay * mask[yb, xa] + ax * ay * mask[yb, xb])
            w *= min(max(m, 0.0), 1.0)
        h = (nx, ny, nz, 1.0)
        ok = True
        for c in range(3):
            r = ((1 - ax) * (1 - ay) * image[ya, xa, c] + ax * (1 - ay) * image[ya, xb, c]
                 + (1 - ax) * ay * image[yb, xa, c] + ax * ay * image[yb, xb, c])
            s = 1.0
            if use_sh:
                s = 0.0
                for a in range(4):
                    for bb in range(4):
                        s += h[a] * shm[c, a, bb] * h[bb]
            if s <= min_shading:
                ok = False
            raw[k, c] = r
            shade[k, c] = s
            v = r / max(s, min_shading)
            delit[k, c] = min(max(v, 0.0), 1.0)
        if ok:
            weight[k] = w
    return weight, raw, shade, delit


def sample_texels(geometry: TexelGeometry, photo: Photo, limits: tuple[float, float, float, float, float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numpy in/out wrapper of the fused kernel: (weight (N,), raw (N,3), shading (N,3), delit
    (N,3)) per texel. limits: (min_cos, full_cos, depth_tolerance, min_shading, min_depth); texels
    with camera depth <= min_depth (the near plane) are skipped."""
    g = geometry
    use_mask = photo.mask is not None
    use_sh = photo.sh_forms is not None
    c = np.ascontiguousarray
    return _sample(  # type: ignore[no-any-return]
        (c(g.tri_n, np.int64), c(g.bary_n, np.float32), c(g.faces, np.int64)),
        (c(g.vpix, np.float64), c(g.vdepth, np.float64), c(g.vnrm, np.float64), c(g.vview, np.float64)),
        (c(photo.zbuf, np.float32), c(photo.image, np.float32), c(photo.mask if use_mask else np.zeros((1, 1)), np.float32)),
        c(photo.sh_forms if use_sh else np.zeros((3, 4, 4)), np.float64),
        (use_mask, use_sh),
        tuple(float(x) for x in limits),
    )


# --------------------------------------------------------------------------- mirror completion
@numba.njit(cache=True, nogil=True)
def _mirror_stack(index, delit, vis, size):  # pragma: no cover - jit
    out = np.zeros((4, size), np.float32)
    for k in range(index.shape[0]):
        i = index[k]
        v = vis[k]
        out[0, i] = delit[k, 0] * v
        out[1, i] = delit[k, 1] * v
        out[2, i] = delit[k, 2] * v
        out[3, i] = v
    return out


def mirror_stack(index: np.ndarray, delit: np.ndarray, vis: np.ndarray, resolution: int) -> np.ndarray:
    """What the mirror lookup of :func:`face3d.texture.bake.bake_texture` samples: (4, R, R) float32,
    the de-lit colour (N,3) times the visibility (N,) and the visibility, at the covered texels
    ``index`` (N,) of an R² map, 0 elsewhere (the products of ``scatter(delit) * scatter(vis)``)."""
    c = np.ascontiguousarray
    out = _mirror_stack(c(index, np.int64), c(delit, np.float32), c(vis, np.float32), int(resolution) ** 2)
    return out.reshape(4, resolution, resolution)  # type: ignore[no-any-return]


@numba.njit(cache=True, nogil=True)
def _mirror_blend(index, got, valid, vis, delit, strength, size):  # pragma: no cover - jit
    colour = np.zeros((size, 3), np.float32)
    weight = np.zeros(size, np.float32)
    one = np.float32(1.0)
    tiny = np.float32(1e-8)
    for k in range(index.shape[0]):
        wm = got[3, k] * (one if valid[k] else np.float32(0.0)) * strength
        own = vis[k]
        mir = wm * (one - own)
        total = own + mir
        den = max(got[3, k], tiny)
        t = max(total, tiny)
        i = index[k]
        for c in range(3):
            colour[i, c] = (own * delit[k, c] + mir * (got[c, k] / den)) / t
        weight[i] = total
    return colour, weight


def mirror_blend(index: np.ndarray, got: np.ndarray, valid: np.ndarray, vis: np.ndarray, delit: np.ndarray,
                 strength: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror completion of the covered texels ``index`` (N,) of an R² map: a texel's own de-lit
    colour ``delit`` (N,3) with weight ``vis`` (N,), blended with its mirror texel's (``got`` (4,N):
    the :func:`mirror_stack` sampled at the mirror UVs, ``valid`` (N,) bool) with weight
    ``strength`` × its visibility × (1 − ``vis``). Returns the colour (R,R,3) and the total weight
    (R,R), 0 outside ``index``: float32, operation by operation as the tensor expressions of
    :func:`face3d.texture.bake.bake_texture` compute them (the same values)."""
    c = np.ascontiguousarray
    colour, weight = _mirror_blend(c(index, np.int64), c(got, np.float32), c(valid, np.bool_), c(vis, np.float32),
                                   c(delit, np.float32), np.float32(strength), int(resolution) ** 2)
    return colour.reshape(resolution, resolution, 3), weight.reshape(resolution, resolution)
