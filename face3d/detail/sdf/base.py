"""A smooth signed-distance proxy of a triangle mesh, used as the SDF's fixed base.

For a point x near the surface, ``base(x) = (x - q) . n_q`` where q is the closest of a dense
set of surface samples and n_q its interpolated (Phong) unit normal. The zero set is the mesh
to within the sample spacing squared times the curvature, and the gradient is the smooth
normal field, so renders of the base have smooth shading. Sign: positive outside (along n).

Units: metres. Shapes are documented per function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from face3d.errors import ShapeError
from face3d.io.mesh import vertex_normals_np


@dataclass
class SurfaceSamples:
    """Dense samples on a mesh: points (N,3), unit normals (N,3), triangle ids (N,), barycentrics (N,3)."""

    points: np.ndarray
    normals: np.ndarray
    tri: np.ndarray
    bary: np.ndarray


def sample_surface(vertices: np.ndarray, faces: np.ndarray, spacing: float, seed: int = 0) -> SurfaceSamples:
    """Stratified samples with about ``spacing`` metres between neighbours (plus every vertex)."""
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ShapeError("vertices", "(V, 3)", vertices.shape)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ShapeError("faces", "(F, 3)", faces.shape)
    rng = np.random.default_rng(seed)
    v = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    counts = np.floor(area / (spacing * spacing) + rng.random(len(faces))).astype(np.int64)
    tri = np.repeat(np.arange(len(faces)), counts)
    r1, r2 = rng.random(len(tri)), rng.random(len(tri))
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    # every vertex as well (one-hot barycentrics on some incident triangle)
    vt = np.full(len(vertices), -1, np.int64)
    vk = np.zeros(len(vertices), np.int64)
    for k in range(3):
        vt[faces[:, k]] = np.arange(len(faces))
        vk[faces[:, k]] = k
    used = vt >= 0
    vb = np.zeros((int(used.sum()), 3))
    vb[np.arange(len(vb)), vk[used]] = 1.0
    tri = np.concatenate([tri, vt[used]])
    bary = np.concatenate([bary, vb])
    vn = vertex_normals_np(vertices, faces)
    pts = np.einsum("nk,nkd->nd", bary, vertices[faces[tri]])
    nrm = np.einsum("nk,nkd->nd", bary, vn[faces[tri]])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    return SurfaceSamples(pts.astype(np.float64), nrm.astype(np.float64), tri, bary)


class MeshDistance:
    """Closest-sample queries on a mesh, giving the base signed distance and its normal field."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, spacing: float = 4e-4) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.samples = sample_surface(self.vertices, self.faces, spacing)
        self.tree = cKDTree(self.samples.points)
        self.vertex_normals = vertex_normals_np(self.vertices, self.faces)
        self.vertex_tree = cKDTree(self.vertices)

    def coarse_signed_distance(self, x: np.ndarray) -> np.ndarray:
        """Base SDF (N,) at points (N,3) from the closest *vertex* only: exact in sign far from
        the surface and cheap, used to skip the dense query outside a narrow band."""
        _, idx = self.vertex_tree.query(x, workers=-1)
        return ((x - self.vertices[idx]) * self.vertex_normals[idx]).sum(-1)

    def query(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For points (N,3): closest sample points (N,3), their normals (N,3), sample ids (N,)."""
        _, idx = self.tree.query(x, workers=-1)
        return self.samples.points[idx], self.samples.normals[idx], idx

    def query_within(self, x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Base SDF (N,) at points (N,3) that have a surface sample within ``radius`` metres, and
        that mask (N,) bool (the k-d tree search is bounded, so far points cost little)."""
        dist, idx = self.tree.query(x, workers=-1, distance_upper_bound=radius)
        ok = np.isfinite(dist)
        vals = np.full(len(x), np.nan)
        j = idx[ok]
        vals[ok] = ((x[ok] - self.samples.points[j]) * self.samples.normals[j]).sum(-1)
        return vals, ok

    def signed_distance(self, x: Tensor) -> Tensor:
        """Base SDF (N,) at points x (N,3); differentiable in x with gradient = the smooth normal."""
        q, n, _ = self.query(x.detach().cpu().numpy().astype(np.float64))
        qt = torch.as_tensor(q, dtype=x.dtype, device=x.device)
        nt = torch.as_tensor(n, dtype=x.dtype, device=x.device)
        return ((x - qt) * nt).sum(-1)
