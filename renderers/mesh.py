"""``Mesh``: the triangle mesh value that ``render_mesh`` (and face3d's texture, detail and SDF
stages) take instead of loose tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .shading import vertex_normals


@dataclass(frozen=True)
class Mesh:
    """A batch of meshes sharing one topology (world space: metres, +Y up, +Z toward the viewer).

    vertices (B,V,3) float (a (V,3) tensor is taken as B = 1); faces (F,3) int64 vertex indices;
    uvs (T,2) texture coordinates, OBJ/OpenGL convention (v = 0 at the bottom of the texture
    image); uv_faces (F,3) indices into ``uvs`` (None with ``uvs``: ``faces``); normals (B,V,3)
    unit per-vertex normals, or None to compute them from the triangles (:meth:`vertex_normals`).
    Values are not copied; checks of shapes and index ranges happen where the mesh is used.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None
    normals: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if isinstance(self.vertices, torch.Tensor) and self.vertices.dim() == 2:
            object.__setattr__(self, "vertices", self.vertices.unsqueeze(0))
        if isinstance(self.normals, torch.Tensor) and self.normals.dim() == 2:
            object.__setattr__(self, "normals", self.normals.unsqueeze(0))

    @property
    def batch_size(self) -> int:
        """B, the number of vertex sets."""
        return int(self.vertices.shape[0])

    @property
    def texture_faces(self) -> torch.Tensor | None:
        """(F,3) indices into ``uvs`` (``uv_faces``, else ``faces``), or None without ``uvs``."""
        if self.uvs is None:
            return None
        return self.faces if self.uv_faces is None else self.uv_faces

    def vertex_normals(self) -> torch.Tensor:
        """Unit per-vertex normals (B,V,3): ``normals`` when given, else area-weighted face normals."""
        return self.normals if self.normals is not None else vertex_normals(self.vertices, self.faces)

    def with_vertices(self, vertices: torch.Tensor) -> Mesh:
        """The same topology and UVs with other vertices (B',V,3) (normals recomputed)."""
        return replace(self, vertices=vertices, normals=None)

    def item(self, b: int) -> Mesh:
        """Mesh ``b`` of the batch, as a batch of one (a batch of one is returned for every ``b``)."""
        if self.batch_size == 1:
            return self
        normals = None if self.normals is None else self.normals[b : b + 1]
        return replace(self, vertices=self.vertices[b : b + 1], normals=normals)
