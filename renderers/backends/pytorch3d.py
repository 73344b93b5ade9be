"""pytorch3d backend: its coarse-to-fine rasterizer computes visibility (CPU or CUDA).

Only the triangle-id map comes from ``pytorch3d.renderer.mesh.rasterize_meshes``; barycentrics,
z/w and everything differentiable are recomputed by the built-in torch code, so results and
gradients follow docs/renderer_api.md exactly. pytorch3d's NDC has +X left, +Y up and, for
non-square images, the shorter side spanning [−1, 1]; the adapter maps our clip space to it.
Triangles with any vertex at w <= 0 are culled before rasterization, as in the built-in backend.
"""

from __future__ import annotations

import torch
from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
from pytorch3d.structures import Meshes

from . import torch_cpu

NAME = "pytorch3d"


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Visibility by pytorch3d, values by :func:`face3d.renderers.backends.torch_cpu.rast_from_ids`."""
    H, W = resolution
    B = pos.shape[0]
    p = pos.detach().float()
    w = p[..., 3:]
    ok = (w > 0).squeeze(-1)
    safe = torch.where(w > 0, w, torch.ones_like(w))
    ndc = p[..., :3] / safe
    short = float(min(H, W))
    verts = torch.stack((-ndc[..., 0] * (W / short), -ndc[..., 1] * (H / short), ndc[..., 2] + 1.0), -1)
    t = tri.long()
    keep = ok[:, t].all(-1)
    faces = [t[keep[b]] for b in range(B)]
    face_index = [torch.nonzero(keep[b]).squeeze(1) for b in range(B)]
    meshes = Meshes(verts=list(verts), faces=faces)
    pix_to_face, zbuf, _, _ = rasterize_meshes(meshes, image_size=(H, W), blur_radius=0.0, faces_per_pixel=1, perspective_correct=False)
    pf = pix_to_face[..., 0]
    ids = torch.zeros(B, H, W, dtype=torch.long, device=pos.device)
    offsets = meshes.mesh_to_faces_packed_first_idx()
    for b in range(B):
        local = pf[b] - offsets[b]
        hit = (pf[b] >= 0) & (zbuf[b, ..., 0] <= 2.0)
        ids[b][hit] = face_index[b][local[hit]] + 1
    return torch_cpu.rast_from_ids(pos, tri, ids)


interpolate = torch_cpu.interpolate
texture = torch_cpu.texture
antialias = torch_cpu.antialias
