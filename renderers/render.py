"""`render_mesh`: a batched mesh renderer built on the four primitives, drawing a :class:`Mesh` value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from face3d.errors import ShapeError

from . import _checks
from .backends import get_backend
from .backends import torch_cpu as torch_backend
from .camera import OrthographicCamera, PerspectiveCamera
from .fragments import fragments, interp, sample, scatter, shade
from .fused import use_fused
from .fused_shade import TEXTURE, VERTEX, WHITE, ShadeSpec, shade_pixels_cpu
from .mesh import Mesh
from .primitives import antialias as _antialias
from .primitives import interpolate, rasterize, texture
from .shading import sh_shade, vertex_normals


@dataclass
class RenderOutput:
    """Everything `render_mesh` produces; images are (B,H,W,C) with row 0 at the top.

    image (B,H,W,3) shaded colour over the background; alpha (B,H,W,1) antialiased coverage
    in [0,1]; depth (B,H,W,1) metres along the view axis (0 on background); normals (B,H,W,3)
    world-space unit normals (0 on background); tri_id (B,H,W) int64 (−1 on background);
    albedo (B,H,W,3); shading (B,H,W,3); rast (B,H,W,4); clip_pos (B,V,4).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    tri_id: torch.Tensor
    albedo: torch.Tensor
    shading: torch.Tensor
    rast: torch.Tensor
    clip_pos: torch.Tensor


def _per_batch(name: str, t: torch.Tensor, batch: int, tail_dims: int, expected: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ShapeError(name, expected, _checks._desc(t))
    if t.dim() == tail_dims:
        t = t.unsqueeze(0)
    if t.dim() != tail_dims + 1 or t.shape[-1] != 3:
        raise ShapeError(name, expected, tuple(t.shape))
    _checks.batch_match(name, t.shape[0], batch)
    return t


def render_mesh(
    mesh: Mesh,
    camera: PerspectiveCamera | OrthographicCamera,
    *,
    vertex_colors: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    sh: torch.Tensor | None = None,
    background: torch.Tensor | float | None = None,
    antialias: bool = True,
    backend: str | None = None,
) -> RenderOutput:
    """Render a batch of meshes (a :class:`Mesh`: vertices (B,V,3) world metres, faces (F,3),
    uvs/uv_faces for a texture, optional normals) seen by ``camera`` at the camera's size.

    Albedo from ``vertex_colors`` (B,V,3)|(V,3), or ``texture`` (B,Ht,Wt,3)|(Ht,Wt,3) with the
    mesh's ``uvs`` (T,2) and ``uv_faces`` (F,3) (defaults to ``faces``); mesh UVs follow
    OBJ/OpenGL (v = 0 at the bottom of the texture image, whose row 0 is its top), neither →
    white. ``sh`` (B,9,3) Lambertian SH lighting (None = unlit: image = albedo). ``background``
    (B,H,W,3) or a scalar (default 0). Returns :class:`RenderOutput`.
    """
    if not isinstance(mesh, Mesh):
        raise ShapeError("mesh", "a face3d.renderers.Mesh", type(mesh).__name__)
    vertices, faces, uvs, uv_faces = mesh.vertices, mesh.faces, mesh.uvs, mesh.uv_faces
    _checks.float_tensor("vertices", vertices, 3, 3, "float tensor (B,V,3) world metres")
    _checks.index_tensor("faces", faces, vertices.shape[1])
    H, W = _checks.resolution_pair((int(camera.height), int(camera.width)))
    B = max(vertices.shape[0], camera.batch_size)
    if vertices.shape[0] != B:
        vertices = vertices.expand(B, -1, -1)
    dt = vertices.dtype
    clip = camera.to_clip(vertices)
    vis = None
    if get_backend(backend).NAME == "torch" and faces.device == clip.device:  # keep the visibility for antialias
        rast, vis = torch_backend.rasterize_visible(clip, faces, (H, W))
    else:
        rast = rasterize(clip, faces, (H, W), backend=backend)

    tex = uvs_t = uv_idx = vc = None
    if texture is not None:
        if uvs is None:
            raise ShapeError("uvs", "float tensor (T,2) when a texture is given", "None")
        tex = _per_batch("texture", texture, B, 3, "float tensor (B,Ht,Wt,3) or (Ht,Wt,3)").to(dt)
        _checks.float_tensor("uvs", uvs, 2, 2, "float tensor (T,2)")
        uv_idx = faces if uv_faces is None else uv_faces
        _checks.index_tensor("uv_faces", uv_idx, uvs.shape[0])
        if uv_idx.shape[0] != faces.shape[0]:
            raise ShapeError("uv_faces", f"(F,3) with F = {faces.shape[0]}", tuple(uv_idx.shape))
        uvs_t = uvs.to(dt)
    elif vertex_colors is not None:
        vc = _per_batch("vertex_colors", vertex_colors, B, 2, "float tensor (B,V,3) or (V,3)").to(dt)
        if vc.shape[1] != vertices.shape[1]:
            raise ShapeError("vertex_colors", f"(B,{vertices.shape[1]},3)", tuple(vc.shape))
    if sh is not None:
        _checks.float_tensor("sh", sh, 3, None, "float tensor (B,9,3)")
        if sh.shape[1:] != (9, 3):
            raise ShapeError("sh", "float tensor (B,9,3)", tuple(sh.shape))
        _checks.batch_match("sh", sh.shape[0], B)
        sh = sh.to(dt)

    if background is None:
        bg: torch.Tensor | float = 0.0
    elif isinstance(background, torch.Tensor) and background.dim() > 0:
        bg = _per_batch("background", background, B, 3, "float tensor (B,H,W,3) or a scalar")
        if bg.shape[1:3] != (H, W):
            raise ShapeError("background", f"(B,{H},{W},3)", tuple(bg.shape))
        bg = bg.to(dt).expand(B, H, W, 3)
    else:
        bg = float(background)

    if mesh.normals is None:
        vn = vertex_normals(vertices, faces)
    else:
        vn = _per_batch("mesh.normals", mesh.normals, B, 2, "float tensor (B,V,3) or (V,3)").to(dt).expand(B, -1, -1)
        if vn.shape[1] != vertices.shape[1]:
            raise ShapeError("mesh.normals", f"(B,{vertices.shape[1]},3)", tuple(vn.shape))
    if isinstance(camera, PerspectiveCamera):  # clip w is −Z_cam: the depth (the same float ops, so equal)
        depth_v = clip[..., 3:]
    else:
        depth_v = camera.depth(vertices).unsqueeze(-1)
    inputs = _ShadeInputs(rast, faces, vn, depth_v, tex, uvs_t, uv_idx, vc, sh, bg)
    aa = antialias and faces.shape[0] > 0
    name = get_backend(backend).NAME
    pixel_pass = name == "torch" and use_fused(vn) and not isinstance(bg, torch.Tensor)  # the fused one-pass shading
    if name == "nvdiffrast":
        image, mask, albedo, shading, normals, depth = _shade_dense(inputs, backend=backend)
    elif pixel_pass:
        image, mask, albedo, shading, normals, depth = _shade_pixels(inputs)
    else:
        image, mask, albedo, shading, normals, depth = _shade_fragments(inputs)

    if aa:
        if vis is not None:
            images = torch_backend.AAInputs(image, mask, in_place=pixel_pass)  # _shade_pixels' fresh outputs
            image, alpha = torch_backend.antialias_with_coverage(images, rast, clip, faces, visibility=vis)
        else:
            both = _antialias(torch.cat((image, mask), -1), rast, clip, faces, backend=backend)
            image, alpha = both[..., :3], both[..., 3:]
        alpha = alpha.clamp(0.0, 1.0)
    else:
        alpha = mask
    if vis is not None:
        tri_id = torch.from_numpy(vis.ids).to(rast.device).long() - 1
    else:
        tri_id = rast[..., 3].detach().long() - 1
    return RenderOutput(
        image=image,
        alpha=alpha,
        depth=depth,
        normals=normals,
        tri_id=tri_id,
        albedo=albedo,
        shading=shading,
        rast=rast,
        clip_pos=clip,
    )


def _normalize(n: torch.Tensor) -> torch.Tensor:
    length = n.norm(dim=-1, keepdim=True)
    return n / torch.where(length > 0, length, torch.ones_like(length))


class _ShadeInputs(NamedTuple):
    """What the shading passes need: rast (B,H,W,4), faces (F,3), vertex normals vn (B,V,3) and
    depths depth_v (B,V,1); the albedo source (tex (B,Ht,Wt,3) with uvs (T,2) and uv_idx (F,3),
    or vertex colours vc (B,V,3), or neither: white); sh (B,9,3) or None; bg background."""

    rast: torch.Tensor
    faces: torch.Tensor
    vn: torch.Tensor
    depth_v: torch.Tensor
    tex: torch.Tensor | None
    uvs: torch.Tensor | None
    uv_idx: torch.Tensor | None
    vc: torch.Tensor | None
    sh: torch.Tensor | None
    bg: torch.Tensor | float


Shaded = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _shade_fragments(a: _ShadeInputs) -> Shaded:
    """Shade only covered pixels, then scatter (built-in and pytorch3d backends)."""
    frag = fragments(a.rast)
    dt = a.vn.dtype
    if a.tex is not None and a.uvs is not None and a.uv_idx is not None:
        uv = interp(frag, a.uvs, a.uv_idx)
        alb = sample(frag, a.tex, torch.stack((uv[:, 0], 1.0 - uv[:, 1]), 1))
    elif a.vc is not None:
        alb = interp(frag, a.vc, a.faces)
    else:
        alb = torch.ones(frag.count, 3, dtype=dt, device=a.vn.device)
    n = _normalize(interp(frag, a.vn, a.faces))
    shd = shade(frag, n, a.sh) if a.sh is not None else torch.ones_like(alb)
    image = scatter(frag, alb * shd, a.bg)
    mask = scatter(frag, torch.ones(frag.count, 1, dtype=dt, device=a.vn.device))
    return (
        image,
        mask,
        scatter(frag, alb),
        scatter(frag, shd),
        scatter(frag, n),
        scatter(frag, interp(frag, a.depth_v, a.faces)),
    )


def _shade_pixels(a: _ShadeInputs) -> Shaded:
    """Shade CPU tensors with one fused pass over the pixels (the built-in backend's fast path;
    equals :func:`_shade_fragments`)."""
    if a.tex is not None and a.uvs is not None and a.uv_idx is not None:
        kind, colour, uvs = TEXTURE, a.tex, a.uvs
    elif a.vc is not None:
        kind, colour, uvs = VERTEX, a.vc, None
    else:
        kind, colour, uvs = WHITE, None, None
    spec = ShadeSpec(a.faces, a.uv_idx, kind, float(a.bg))
    out = shade_pixels_cpu(spec, a.rast, a.vn, a.depth_v, colour, uvs, a.sh)
    return out[0], out[1], out[2], out[3], out[4], out[5]


def _shade_dense(a: _ShadeInputs, backend: str | None = None) -> Shaded:
    """Shade full images with the public primitives (used for the nvdiffrast backend)."""
    rast, faces = a.rast, a.faces
    dt = a.vn.dtype
    mask = (rast[..., 3:] > 0).to(dt)
    if a.tex is not None and a.uvs is not None and a.uv_idx is not None:
        uv = interpolate(a.uvs, rast, a.uv_idx, backend=backend)
        uv = torch.stack((uv[..., 0], 1.0 - uv[..., 1]), -1)
        albedo = texture_sample(a.tex, uv, backend) * mask
    elif a.vc is not None:
        albedo = interpolate(a.vc, rast, faces, backend=backend)
    else:
        albedo = mask.expand(-1, -1, -1, 3)
    normals = _normalize(interpolate(a.vn, rast, faces, backend=backend))
    shading = sh_shade(normals, a.sh) * mask if a.sh is not None else mask.expand(-1, -1, -1, 3)
    image = albedo * shading * mask + a.bg * (1.0 - mask)
    depth = interpolate(a.depth_v, rast, faces, backend=backend)
    return image, mask, albedo, shading, normals, depth


def texture_sample(tex: torch.Tensor, uv: torch.Tensor, backend: str | None) -> torch.Tensor:
    """Bilinear, wrapping texture lookup used by render_mesh (uv in nvdiffrast orientation)."""
    return texture(tex, uv, filter_mode="linear", boundary_mode="wrap", backend=backend)
