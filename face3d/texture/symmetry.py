"""Left-right symmetry of a face mesh carried into UV space (for mirror texture completion).

Each vertex is paired with the vertex nearest to its mirror image (x -> -x, model space is
symmetric about the x = 0 plane, ``docs/conventions.md``). A texel on triangle (a, b, c) with
barycentrics (wa, wb, wc) maps to the point with the same barycentrics on the mirrored corners,
whose UV is interpolated from the mirrored corners' UVs. Texels whose mirrored UV does not land
back on the mirrored 3D point (UV seams, asymmetric layouts) are marked invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from face3d.errors import BadInputError
from face3d.io.array_cache import ContentMemo, cached_arrays, digest
from face3d.texture.uv_raster import DISK_CACHE_MIN_RESOLUTION, ArrayLike, UVRaster

_CACHE: dict[tuple[str, int], SymmetryMap] = {}


@dataclass
class SymmetryMap:
    """For the N covered texels of a :class:`UVRaster`: ``uv`` (N,2) the mirror texel's UV (OBJ
    convention) and ``valid`` (N,) bool where the mirror lookup is trustworthy."""

    uv: torch.Tensor
    valid: torch.Tensor

    def grid(self) -> torch.Tensor:
        """(1,1,N,2) ``grid_sample`` coordinates of ``uv`` (computed once)."""
        g = self.__dict__.get("_grid")
        if g is None:
            from face3d.texture.uv_raster import uv_to_grid

            g = self.__dict__["_grid"] = uv_to_grid(self.uv)[None, None]
        return g


def mirror_vertex_index(template: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(V,) index of the vertex nearest each vertex's mirror image, and that distance (metres)."""
    from scipy.spatial import cKDTree

    mirrored = template.copy()
    mirrored[:, axis] *= -1.0
    dist, idx = cKDTree(template).query(mirrored, k=1)
    return idx.astype(np.int64), dist


def vertex_uv_index(faces: np.ndarray, uv_faces: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """(V,) one UV index per vertex, preferring corners inside the [0,1]² tile (-1 if none)."""
    inside = np.all((uvs >= 0.0) & (uvs <= 1.0), axis=1)
    fv, tv = faces.reshape(-1), uv_faces.reshape(-1)
    out = np.full(int(faces.max()) + 1, -1, np.int64)
    order = np.argsort(inside[tv], kind="stable")  # outside first, inside last -> inside wins
    out[fv[order]] = tv[order]
    return out


def symmetry_map(template: ArrayLike, faces: ArrayLike, uvs: ArrayLike, uv_faces: ArrayLike, raster: UVRaster,
                 tolerance: float = 0.004) -> SymmetryMap:
    """Mirror map of the covered texels of ``raster`` for a template (V,3) metres (cached).

    tolerance: metres between the mirrored 3D point and the point found at the mirror UV above
    which a texel's mirror is declared invalid.
    """
    tv = (template.detach().cpu().numpy() if isinstance(template, torch.Tensor) else np.asarray(template)).astype(np.float64)
    if tv.ndim == 3 and tv.shape[0] == 1:
        tv = tv[0]
    f = np.asarray(faces.cpu() if isinstance(faces, torch.Tensor) else faces).astype(np.int64)
    t = np.asarray(uvs.cpu() if isinstance(uvs, torch.Tensor) else uvs).astype(np.float64)
    tf = np.asarray(uv_faces.cpu() if isinstance(uv_faces, torch.Tensor) else uv_faces).astype(np.int64)
    if tv.ndim != 2 or tv.shape[1] != 3 or f.max() >= len(tv):
        raise BadInputError(f"symmetry_map: template must be (V,3) matching faces, got {tv.shape}")
    own: ContentMemo[SymmetryMap] = raster.__dict__.setdefault("_symmetry", ContentMemo(4))  # per raster: its (R,R) triangle ids not hashed again
    own_key = ContentMemo.key((tv, f, t, tf), float(tolerance))
    hit = own.get(own_key, (tv, f, t, tf))
    if hit is not None:
        return hit
    key = (digest(tv, f, t, tf, raster.tri, tolerance), raster.resolution)
    if key in _CACHE:
        return own.put(own_key, (tv, f, t, tf), _CACHE[key])
    if raster.resolution >= DISK_CACHE_MIN_RESOLUTION:
        n = raster.index.shape[0]
        maps = cached_arrays("symmetry_map", f"{key[0]}-{key[1]}-v{SYMMETRY_VERSION}", ("uv", "valid"),
                             lambda: _mirror_uv(tv, f, t, tf, raster, tolerance),
                             check=lambda m: m["uv"].shape == (n, 2) and m["uv"].dtype == np.float32 and m["valid"].shape == (n,)
                             and m["valid"].dtype == np.bool_)
    else:
        maps = _mirror_uv(tv, f, t, tf, raster, tolerance)
    out = SymmetryMap(torch.from_numpy(maps["uv"]), torch.from_numpy(maps["valid"]))
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = out
    return own.put(own_key, (tv, f, t, tf), out)


SYMMETRY_VERSION = 1  # bump when _mirror_uv computes something else: old disk cache entries are then ignored


def _mirror_uv(tv: np.ndarray, f: np.ndarray, t: np.ndarray, tf: np.ndarray, raster: UVRaster, tolerance: float) -> dict[str, np.ndarray]:
    """uv (N,2) float32 and valid (N,) bool of :class:`SymmetryMap` (arguments as :func:`symmetry_map`'s, as numpy)."""
    mirror, _ = mirror_vertex_index(tv)
    v2t = vertex_uv_index(f, tf, t)
    tri = raster.tri_n.numpy()
    bary = raster.bary_n.numpy().astype(np.float64)
    corners = mirror[f[tri]]  # (N,3) mirrored vertex of each corner
    uv_idx = v2t[corners]
    ok = np.all(uv_idx >= 0, axis=1)
    muv = np.einsum("nk,nkd->nd", bary, t[np.maximum(uv_idx, 0)])  # einsum: ~6x faster than (a * b).sum(1) here
    # check: the surface point at the mirror UV must be the mirrored 3D point
    R = raster.resolution
    col = np.clip(np.floor(muv[:, 0] * R).astype(np.int64), 0, R - 1)
    row = np.clip(np.floor((1.0 - muv[:, 1]) * R).astype(np.int64), 0, R - 1)
    tri_at = raster.tri.numpy()[row, col]
    bary_at = raster.bary.numpy()[row, col].astype(np.float64)
    found = np.einsum("nk,nkd->nd", bary_at, tv[f[np.maximum(tri_at, 0)]])
    target = np.einsum("nk,nkd->nd", bary, tv[f[tri]]) * np.array([-1.0, 1.0, 1.0])
    ok &= (tri_at >= 0) & (np.linalg.norm(found - target, axis=1) < tolerance)
    return {"uv": muv.astype(np.float32), "valid": ok}
