"""The implicit-SDF detail reconstructor, end to end on top of a 3DMM fit.

Follows the structure of "Facial Geometric Detail Recovery via Implicit Representation"
(Ren et al., 2023): completed UV albedo → synthetic multi-view supervision → implicit SDF with
physically based (here Lambertian + SH) shading → register the detail back to the 3DMM topology
as a UV displacement map, so the result still animates with the model's blendshapes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from torch import Tensor

from face3d.detail.sdf.base import MeshDistance
from face3d.detail.sdf.extract import extract_surface, fade_unregistered, photo_weight, register_displacement
from face3d.detail.sdf.network import ImplicitFace, ResidualSDF
from face3d.detail.sdf.optimize import SDFFitLog, SDFFitOptions, fit_implicit
from face3d.detail.sdf.views import View
from face3d.errors import ShapeError
from face3d.io.mesh import vertex_normals_np
from face3d.mesh import Mesh
from face3d.models.model import axis_angle_to_matrix


@dataclass
class SDFResult:
    """Output of :func:`reconstruct_sdf` (metres).

    vertices_detailed (V,3): the 3DMM mesh displaced along its normals by ``vertex_offsets`` (V,);
    displacement_uv (R,R) metres (0 outside the layout) and its coverage ``uv_mask`` (R,R);
    normal_uv (R,R,3) tangent-space normal map in [0,1] of the displaced surface;
    closed_mesh: raw watertight marching-cubes surface; face_mesh: its crop to the face region;
    gain (g,g,3): the albedo correction map; ``fell_back`` with ``warning`` when the divergence
    guard returned the 3DMM result unchanged; real_views: photos/frames that supervised it.
    """

    vertices_detailed: Tensor
    vertex_offsets: Tensor
    displacement_uv: Tensor | None
    uv_mask: Tensor | None
    normal_uv: Tensor | None
    closed_mesh: trimesh.Trimesh | None
    face_mesh: trimesh.Trimesh | None
    gain: Tensor
    network: ResidualSDF
    log: SDFFitLog
    timings: dict[str, float] = field(default_factory=dict)
    fell_back: bool = False
    warning: str = ""
    real_views: int = 1


def synthetic_views(mesh: Mesh, view: View, albedo_uv: Tensor, yaws: tuple[float, ...], *, weight: float = 0.3,
                    reproject: bool = False, depth_tolerance: float = 2e-3) -> list[View]:
    """Renders of the textured fit (``mesh``, batch 1, with uvs; ``albedo_uv`` (R,R,3)) from the
    camera of ``view`` with the head turned by each yaw (degrees, about the mesh centroid), under
    the view's lighting; used as weak supervision with ``weight``.

    With ``reproject``, every synthetic pixel whose surface point is visible in the view's image
    (its camera depth within ``depth_tolerance`` metres of the fit's depth map there) takes the
    image's colour at its projection, so the photo's detail is re-projected into the new view
    (Lambertian shading under world-fixed SH does not depend on the viewpoint).
    """
    from face3d import renderers

    vertices, camera, sh = mesh.vertices[0], view.camera, view.sh
    photo = view.image[0] if reproject else None
    c = vertices.mean(0)
    out: list[View] = []
    if photo is not None:
        ref = renderers.render_mesh(mesh, camera, vertex_colors=torch.ones_like(mesh.vertices), antialias=False)
        photo_depth = torch.where(ref.tri_id[0] >= 0, ref.depth[0, ..., 0], torch.full_like(ref.depth[0, ..., 0], float("inf")))
    for yaw in yaws:
        Ry = axis_angle_to_matrix(torch.tensor([0.0, math.radians(yaw), 0.0])).to(vertices)
        R0, t0 = camera.R[0].to(vertices), camera.t[0].to(vertices)
        cam = renderers.PerspectiveCamera(K=camera.K, R=(R0 @ Ry).unsqueeze(0), t=(R0 @ (c - Ry @ c) + t0).unsqueeze(0),  # type: ignore[union-attr]
                                          width=camera.width, height=camera.height)
        r = renderers.render_mesh(mesh, cam, texture=albedo_uv, sh=sh)
        img = r.image[0].detach()
        if photo is not None:
            pos = renderers.interpolate(mesh.vertices, r.rast, mesh.faces)[0]  # (H,W,3) world points
            hit = r.tri_id[0] >= 0
            pts = pos[hit].unsqueeze(0)
            px = camera.project(pts)[0]
            dep = camera.depth(pts)[0]
            H, W = photo_depth.shape
            ix, iy = px[:, 0].floor().long(), px[:, 1].floor().long()
            inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
            seen = inside.clone()
            seen[inside] = (dep[inside] - photo_depth[iy[inside], ix[inside]]).abs() < depth_tolerance
            tc = torch.stack([px[:, 0] / W, px[:, 1] / H], -1).reshape(1, 1, -1, 2)
            col = renderers.texture(photo.unsqueeze(0), tc, boundary_mode="clamp").reshape(-1, 3)
            flat = img[hit]
            flat[seen] = col[seen]
            img = img.clone()
            img[hit] = flat
        out.append(View(img, cam, sh, weight=weight, synthetic=True))
    return out


def reconstruct_sdf(mesh: Mesh, view: View, albedo_uv: Tensor, *, region: Tensor | None = None,
                    extra_views: list[View] | None = None, options: SDFFitOptions | None = None,
                    device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None) -> SDFResult:
    """Recover geometric detail beyond the 3DMM with an implicit SDF.

    mesh: the fitted mesh, batch 1, world metres, with uvs (T,2)/uv_faces (F,3) (OBJ convention);
    view: the batch-1 photo (image in [0,1], its ``face3d.renderers.PerspectiveCamera``, sh (9,3));
    albedo_uv (R,R,3) the fitter's de-lit completed albedo; region (V,) bool: the face region
    (default: all vertices); extra_views: more real views (several photos/frames); options: the
    optimisation and its surroundings (:class:`SDFFitOptions`: synthetic yaws, map resolution,
    voxel, albedo blur, facing fade). device: where the optimisation runs ('cuda' on a GPU);
    inputs and outputs stay on the CPU, and so do the k-d tree queries, registration and
    marching cubes. Never raises on divergence: falls back to the 3DMM mesh with ``warning`` set.
    """
    opt = options or SDFFitOptions()
    vertices, faces, uvs, uv_faces = mesh.vertices, mesh.faces, mesh.uvs, mesh.texture_faces
    if vertices.ndim != 3 or vertices.shape[0] != 1 or vertices.shape[-1] != 3 or uvs is None or uv_faces is None:
        raise ShapeError("mesh", "one mesh: vertices (1, V, 3) with uvs", tuple(vertices.shape))
    if view.sh is None:
        raise ShapeError("view.sh", "SH lighting (9, 3)", None)
    if view.image.shape[0] != 1 or int(view.camera.batch_size) != 1:
        raise ShapeError("view", "one image (batch 1) and a batch-1 camera", tuple(view.image.shape))
    vertices = vertices[0]
    uv_resolution, albedo_blur, facing = opt.uv_resolution, opt.albedo_blur, opt.facing
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    v_np = vertices.detach().double().numpy()
    f_np = faces.detach().long().numpy()
    region_np = np.ones(len(v_np), bool) if region is None else region.detach().numpy().astype(bool)
    base = MeshDistance(v_np, f_np)
    centre = torch.as_tensor(v_np[region_np].mean(0), dtype=torch.float32)
    radius = float(np.linalg.norm(v_np[region_np] - v_np[region_np].mean(0), axis=1).max())
    residual = ResidualSDF(centre, radius, seed=opt.seed).to(device)
    face = ImplicitFace(base, residual)
    timings["init"] = time.perf_counter() - t_start

    if albedo_blur > 0:
        from scipy.ndimage import gaussian_filter

        sig = albedo_blur * albedo_uv.shape[1]
        albedo_uv = torch.as_tensor(gaussian_filter(albedo_uv.detach().float().numpy(), (sig, sig, 0), mode="nearest"))
    t0 = time.perf_counter()
    fit_mesh = Mesh(vertices.float(), faces, uvs.float(), uv_faces)
    views = [view] + list(extra_views or [])
    n_real = len(views)
    if opt.synth_yaws:
        views += synthetic_views(fit_mesh, view, albedo_uv.float(), opt.synth_yaws, reproject=True)
    timings["views"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gain, log = fit_implicit(face, views, fit_mesh, albedo_uv.float(), opt, progress)
    residual.cpu()
    gain = gain.cpu()
    timings["optimise"] = time.perf_counter() - t0
    if log.diverged:
        return SDFResult(vertices.detach().clone(), torch.zeros(len(v_np)), None, None, None, None, None, gain, residual, log,
                         timings, fell_back=True, warning=f"SDF refinement fell back to the 3DMM result: {log.reason}",
                         real_views=n_real)

    t0 = time.perf_counter()
    cameras = [v.camera for v in views[:n_real]]

    def detail_offsets(points: Tensor, nrm: Tensor) -> Tensor:
        """Registered offsets (N,) along nrm, unconverged ones faded, weighted by photo facing."""
        d, ok = register_displacement(face, points, nrm)
        d = torch.as_tensor(fade_unregistered(points.double().numpy(), d.numpy(), ok.numpy()))
        return d if facing is None else d * photo_weight(points, nrm, cameras, *facing)

    normals = torch.as_tensor(vertex_normals_np(v_np, f_np), dtype=torch.float32)
    offsets = detail_offsets(vertices.float().detach(), normals)
    offsets = torch.where(torch.as_tensor(region_np), offsets, torch.zeros_like(offsets))
    detailed = vertices.detach().float() + offsets.unsqueeze(-1) * normals
    disp_uv, uv_mask, normal_uv = None, None, None
    if uv_resolution:
        from face3d.detail.sfs import (
            perturbed_normals,
            tangent_frames,
            tangent_space_normals,
        )
        from face3d.texture.uv_raster import rasterize_uv

        fmask = torch.as_tensor(region_np[f_np].all(1))
        uvr = rasterize_uv(uvs, uv_faces, uv_resolution, face_mask=fmask)
        p = uvr.interpolate(vertices.float().detach(), faces.long())
        n = torch.nn.functional.normalize(uvr.interpolate(normals, faces.long()), dim=-1)
        d = detail_offsets(p, n)
        disp_uv = uvr.scatter(d.unsqueeze(-1))[..., 0]
        uv_mask = uvr.mask
        frames, nbr = tangent_frames(vertices.float().detach(), faces.long(), uvr)
        normal_uv = uvr.dilate(uvr.scatter(tangent_space_normals(perturbed_normals(d, frames, nbr, uv_resolution), frames)))
    timings["register"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    s = base.samples
    region_pts = s.points[region_np[f_np[s.tri]].all(1)]
    closed, crop = extract_surface(face, region_pts if len(region_pts) else v_np[region_np], voxel=opt.voxel)
    timings["marching_cubes"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return SDFResult(detailed, offsets, disp_uv, uv_mask, normal_uv, closed, crop, gain, residual, log, timings,
                     real_views=n_real)
