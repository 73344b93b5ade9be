"""Geometry images: the mesh's 3D position and normal at every texel of its UV layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from face3d.errors import ShapeError
from face3d.texture.uv_raster import ArrayLike, UVRaster, check_uv_topology, rasterize_uv
from face3d.renderers import vertex_normals


@dataclass
class GeometryMaps:
    """position (R,R,3) metres, normal (R,R,3) unit, mask (R,R) bool covered texels;
    ``raster`` the cached texel lookup (see :class:`~face3d.texture.uv_raster.UVRaster`)."""

    position: torch.Tensor
    normal: torch.Tensor
    mask: torch.Tensor
    raster: UVRaster


def _vertices(vertices: ArrayLike) -> torch.Tensor:
    v = vertices if isinstance(vertices, torch.Tensor) else torch.as_tensor(vertices)
    if v.ndim == 3 and v.shape[0] == 1:
        v = v[0]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ShapeError("vertices", "(V, 3) or (1, V, 3) tensor", tuple(v.shape))
    return v.float()


def uv_position_normal_maps(vertices: ArrayLike, faces: ArrayLike, uvs: ArrayLike, uv_faces: ArrayLike, resolution: int = 1024,
                            face_mask: ArrayLike | None = None) -> GeometryMaps:
    """Rasterize the mesh in UV space: per texel its 3D point and smooth unit normal.

    vertices (V,3) metres; faces (F,3); uvs (T,2) OBJ convention; uv_faces (F,3).
    Row 0 of the maps is v = 1 (top of the texture image). Uncovered texels are 0.
    """
    v = _vertices(vertices)
    f, t, tf = check_uv_topology(faces, uvs, uv_faces)
    if f.numel() and int(f.max()) >= v.shape[0]:
        raise ShapeError("faces", f"indices < {v.shape[0]}", int(f.max()))
    raster = rasterize_uv(t, tf, resolution, face_mask)
    f = f.to(v.device)
    pos = raster.interpolate(v, f)
    nrm = torch.nn.functional.normalize(raster.interpolate(vertex_normals(v[None], f)[0], f), dim=-1, eps=1e-12)
    return GeometryMaps(raster.scatter(pos), raster.scatter(nrm), raster.mask, raster)
