"""A small exact 2D triangle rasterizer (numba) for texture-space work and depth buffers.

Used to rasterize a mesh in UV space (each texel -> triangle id + barycentrics, static per
topology and cached) and to build a z-buffer of the fitted mesh seen from a camera for the
visibility test of texture baking. Not differentiable (it only decides *which* triangle).

Texture layout: a UV map of resolution R is an (R, R, C) image with row 0 at the **top**
(v = 1, OBJ convention: v up) and column 0 at u = 0; texel (row i, col j) has its centre at
``u = (j + 0.5) / R``, ``v = 1 - (i + 0.5) / R``. Only the [0, 1]² tile is rasterized.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numba
import numpy as np
import torch

from face3d.errors import BadInputError, ShapeError
from face3d.io.array_cache import ContentMemo, cached_arrays, digest


@numba.njit(cache=True, nogil=True)
def _raster2d(xy: np.ndarray, z: np.ndarray, faces: np.ndarray, height: int, width: int, use_depth: bool):  # pragma: no cover - jit
    tri = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3), np.float32)
    zbuf = np.full((height, width), np.inf, np.float32)
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0 = xy[i0, 0], xy[i0, 1]
        x1, y1 = xy[i1, 0], xy[i1, 1]
        x2, y2 = xy[i2, 0], xy[i2, 1]
        if not (np.isfinite(x0) and np.isfinite(x1) and np.isfinite(x2) and np.isfinite(y0) and np.isfinite(y1) and np.isfinite(y2)):
            continue
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        inv = 1.0 / area
        cmin = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        cmax = min(int(np.ceil(max(x0, x1, x2) - 0.5)), width - 1)
        rmin = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        rmax = min(int(np.ceil(max(y0, y1, y2) - 0.5)), height - 1)
        for r in range(rmin, rmax + 1):
            py = r + 0.5
            for c in range(cmin, cmax + 1):
                px = c + 0.5
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv
                w2 = 1.0 - w0 - w1
                if w0 < -1e-7 or w1 < -1e-7 or w2 < -1e-7:
                    continue
                if use_depth:
                    d = w0 * z[i0] + w1 * z[i1] + w2 * z[i2]
                    if d >= zbuf[r, c]:
                        continue
                    zbuf[r, c] = d
                tri[r, c] = f
                bary[r, c, 0] = w0
                bary[r, c, 1] = w1
                bary[r, c, 2] = w2
    return tri, bary, zbuf


@numba.njit(cache=True, nogil=True)
def _interpolate_texels(index, tri, bary, faces, attr, size):  # pragma: no cover - jit
    out = np.zeros((size, attr.shape[1]), np.float32)
    for k in range(index.shape[0]):
        f = tri[k]
        for c in range(attr.shape[1]):
            # fma(b2, a2, fma(b1, a1, b0 a0)): products of float32 are exact in float64, one rounding per step
            s = np.float32(np.float64(bary[k, 0]) * np.float64(attr[faces[f, 0], c]))
            s = np.float32(np.float64(bary[k, 1]) * np.float64(attr[faces[f, 1], c]) + np.float64(s))
            out[index[k], c] = np.float32(np.float64(bary[k, 2]) * np.float64(attr[faces[f, 2], c]) + np.float64(s))
    return out


def raster2d(xy: np.ndarray, faces: np.ndarray, height: int, width: int, depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterize 2D triangles given in pixel coordinates (x right, y down, pixel centres at +0.5).

    xy (V,2); faces (F,3); depth (V,) optional (nearest = smallest wins, interpolated linearly
    in screen space). Returns tri (H,W) int32 (-1 empty), bary (H,W,3) float32 (weights of the
    three corners) and zbuf (H,W) float32 (inf where empty or without depth).
    """
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    z = np.zeros(1, np.float64) if depth is None else np.ascontiguousarray(depth, dtype=np.float64)
    return _raster2d(xy, z, faces, int(height), int(width), depth is not None)


@dataclass
class UVRaster:
    """Texel -> surface lookup of a mesh rasterized in UV space at resolution R.

    tri (R,R) int64 (-1 outside every chart); bary (R,R,3) float32; ``index`` (N,) flat indices of
    covered texels, ``tri_n`` (N,) and ``bary_n`` (N,3) the same restricted to them; ``nearest``
    (R*R,) for every texel the flat index of the nearest covered texel (used to dilate maps
    past chart borders so bilinear lookups never read empty texels).
    """

    resolution: int
    tri: torch.Tensor
    bary: torch.Tensor
    index: torch.Tensor
    tri_n: torch.Tensor
    bary_n: torch.Tensor
    nearest: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(R,R) bool: texels covered by a triangle."""
        return self.tri >= 0

    def weights(self, faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
        """Sparse CSR (N, V) matrix of barycentric weights: texel values = weights @ vertex values.
        Cached per ``faces``."""
        cache: ContentMemo[torch.Tensor] = self.__dict__.setdefault("_weights", ContentMemo(4))
        f = faces.detach().cpu().numpy()
        key = ContentMemo.key((f,), int(n_vertices))
        hit = cache.get(key, (f,))
        if hit is None:
            cols = faces.cpu()[self.tri_n]  # (N,3)
            n = self.tri_n.shape[0]
            crow = torch.arange(0, 3 * n + 1, 3, dtype=torch.int64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                hit = cache.put(key, (f,), torch.sparse_csr_tensor(crow, cols.reshape(-1), self.bary_n.reshape(-1), size=(n, int(n_vertices)),
                                                                   check_invariants=False))
        return hit

    def interpolate(self, attr: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """attr (V,C) per vertex (indexed by ``faces`` (F,3)) -> (N,C) at the covered texels."""
        w = self.weights(faces, attr.shape[0]).to(device=attr.device, dtype=attr.dtype)
        return torch.sparse.mm(w, attr) if attr.requires_grad else w @ attr

    def interpolate_image(self, attr: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """``scatter(interpolate(attr, faces))`` for a float32 CPU attr (V,C) without gradients: (R,R,C),
        0 outside the charts, in one pass (numba) that rounds each barycentric product-sum as the sparse
        product's fused multiply-adds do (the same values here, ~2x faster; other inputs: that expression)."""
        if attr.dtype != torch.float32 or attr.device.type != "cpu" or attr.requires_grad or attr.ndim != 2:
            return self.scatter(self.interpolate(attr, faces))
        R = self.resolution
        c = np.ascontiguousarray
        out = _interpolate_texels(c(self.index.numpy(), np.int64), c(self.tri_n.numpy(), np.int64), c(self.bary_n.numpy(), np.float32),
                                  c(faces.detach().cpu().numpy(), np.int64), c(attr.numpy(), np.float32), R * R)
        return torch.from_numpy(out).view(R, R, -1)

    def scatter(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(N,C) values at covered texels -> (R,R,C) image (``fill`` elsewhere)."""
        R = self.resolution
        out = torch.full((R * R, values.shape[-1]), fill, dtype=values.dtype, device=values.device)
        out.index_copy_(0, self.index.to(values.device), values)  # ~1.6x faster than out[index] = values
        return out.view(R, R, -1)

    def dilate(self, image: torch.Tensor) -> torch.Tensor:
        """(R,R,C) -> (R,R,C) with every uncovered texel set to its nearest covered texel."""
        R = self.resolution
        flat = image.reshape(R * R, -1)
        return flat.index_select(0, self.nearest.to(image.device)).view(image.shape)  # ~3x faster than flat[nearest]


_CACHE: ContentMemo[UVRaster] = ContentMemo(16)

ArrayLike = torch.Tensor | np.ndarray
"""A tensor or an array (converted with ``torch.as_tensor``)."""


def check_uv_topology(faces: ArrayLike, uvs: ArrayLike | None, uv_faces: ArrayLike | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and convert faces (F,3), uvs (T,2), uv_faces (F,3) to torch (int64, float32, int64)."""
    f = torch.as_tensor(np.asarray(faces) if not isinstance(faces, torch.Tensor) else faces)
    t = torch.as_tensor(np.asarray(uvs) if not isinstance(uvs, torch.Tensor) else uvs)
    tf = torch.as_tensor(np.asarray(uv_faces) if not isinstance(uv_faces, torch.Tensor) else uv_faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.is_floating_point():
        raise ShapeError("faces", "(F, 3) integer tensor", (tuple(f.shape), str(f.dtype)))
    if t.ndim != 2 or t.shape[1] != 2 or not t.is_floating_point():
        raise ShapeError("uvs", "(T, 2) float tensor", (tuple(t.shape), str(t.dtype)))
    if tf.shape != f.shape or tf.is_floating_point():
        raise ShapeError("uv_faces", f"({f.shape[0]}, 3) integer tensor like faces", (tuple(tf.shape), str(tf.dtype)))
    if tf.numel() and (int(tf.min()) < 0 or int(tf.max()) >= t.shape[0]):
        raise BadInputError(f"argument 'uv_faces': indices outside [0, {t.shape[0]})")
    return f.long().cpu(), t.float().cpu(), tf.long().cpu()


def rasterize_uv(uvs: ArrayLike, uv_faces: ArrayLike, resolution: int, face_mask: ArrayLike | None = None) -> UVRaster:
    """Rasterize the UV layout at ``resolution``² (cached per layout). face_mask (F,) bool limits
    which triangles are baked (e.g. skip eyeballs whose UVs overlap the face tile)."""
    if int(resolution) < 4:
        raise BadInputError(f"argument 'resolution': expected an int >= 4, got {resolution}")
    R = int(resolution)
    t = (uvs.detach().cpu().numpy() if isinstance(uvs, torch.Tensor) else np.asarray(uvs)).astype(np.float64)
    tf = (uv_faces.detach().cpu().numpy() if isinstance(uv_faces, torch.Tensor) else np.asarray(uv_faces)).astype(np.int64)
    sel = np.arange(len(tf))
    if face_mask is not None:
        m = face_mask.detach().cpu().numpy() if isinstance(face_mask, torch.Tensor) else np.asarray(face_mask)
        if m.shape != (len(tf),):
            raise ShapeError("face_mask", f"({len(tf)},) bool", m.shape)
        sel = np.nonzero(m.astype(bool))[0]
    key = ContentMemo.key((t, tf, sel), R)  # a CRC-32 and a comparison: ~3x cheaper than the SHA-1 of the disk cache
    hit = _CACHE.get(key, (t, tf, sel))
    if hit is not None:
        return hit
    if R >= DISK_CACHE_MIN_RESOLUTION:
        maps = cached_arrays("uv_raster", f"{digest(t, tf, sel)}-{R}-v{RASTER_VERSION}", ("tri", "bary", "nearest"),
                             lambda: _uv_maps(t, tf, sel, R), check=lambda m: _maps_fit(m, R, len(tf)))
    else:
        maps = _uv_maps(t, tf, sel, R)
    tri, bary = maps["tri"].astype(np.int64), maps["bary"]
    index = np.flatnonzero(tri >= 0)
    out = UVRaster(
        resolution=R,
        tri=torch.from_numpy(tri),
        bary=torch.from_numpy(bary),
        index=torch.from_numpy(index),
        tri_n=torch.from_numpy(tri.reshape(-1)[index]),
        bary_n=torch.from_numpy(bary.reshape(-1, 3)[index]),
        nearest=torch.from_numpy(maps["nearest"].astype(np.int64)),
    )
    return _CACHE.put(key, (t, tf, sel), out)


DISK_CACHE_MIN_RESOLUTION = 256
"""UV rasters of this resolution and above (and their mirror maps) are kept in the disk cache
(:mod:`face3d.io.array_cache`): the default model's 1024² raster costs ~0.5 s of CPU to compute and
its mirror map ~0.9 s, reading both back ~0.05 s."""
RASTER_VERSION = 1  # bump when _uv_maps computes something else: old cache entries are then ignored


def _maps_fit(maps: dict[str, np.ndarray], R: int, n_faces: int) -> bool:
    """Whether cached maps have the shapes, dtypes and index ranges of an R² raster of n_faces triangles."""
    tri, bary, near = maps["tri"], maps["bary"], maps["nearest"]
    return (tri.shape == (R, R) and tri.dtype.kind == "i" and bary.shape == (R, R, 3) and bary.dtype == np.float32
            and near.shape == (R * R,) and near.dtype.kind == "i" and int(tri.max()) < n_faces and int(tri.min()) >= -1
            and int(near.min()) >= 0 and int(near.max()) < R * R)


def _uv_maps(t: np.ndarray, tf: np.ndarray, sel: np.ndarray, R: int) -> dict[str, np.ndarray]:
    """tri (R,R) int32 (-1 uncovered), bary (R,R,3) float32, nearest (R*R,) int32 of the layout."""
    xy = np.stack([t[:, 0] * R, (1.0 - t[:, 1]) * R], 1)
    tri_local, bary, _ = raster2d(xy, tf[sel], R, R)
    tri = np.where(tri_local >= 0, sel[np.maximum(tri_local, 0)], -1)
    covered = tri >= 0
    if not covered.any():
        raise BadInputError("the UV layout covers no texel of the [0, 1]² tile")
    from scipy.ndimage import distance_transform_edt

    _, (ri, ci) = distance_transform_edt(~covered, return_indices=True)
    return {"tri": tri.astype(np.int32), "bary": bary, "nearest": (ri * R + ci).reshape(-1).astype(np.int32 if R * R < 2**31 else np.int64)}


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """UV coords (...,2) (OBJ convention) -> ``grid_sample`` coords (align_corners=False) on a UV map."""
    return torch.stack([uv[..., 0] * 2.0 - 1.0, (1.0 - uv[..., 1]) * 2.0 - 1.0], -1)
