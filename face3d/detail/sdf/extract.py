"""Surface extraction (marching cubes) and registration of the detail back to the 3DMM.

``extract_surface`` evaluates f on a grid over the face region's bounding box (padded), caps
the grid boundary with positive values so the marching-cubes surface (Lorensen & Cline 1987,
scikit-image) is closed, and returns it plus the crop near the face region.
``register_displacement`` finds, for points on the fitted mesh, the signed offset along the
mesh normal to the zero level set (Newton steps), which becomes the UV displacement map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes
from torch import Tensor

from face3d.detail.sdf.network import ImplicitFace
from face3d.texture.bake import camera_centre_or_direction


def evaluate_grid(face: ImplicitFace, lo: np.ndarray, hi: np.ndarray, voxel: float, band: float = 4e-3,
                  chunk: int = 200_000, coarse_factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """f on a regular grid with spacing ``voxel`` metres over [lo, hi]. Returns (values (X,Y,Z),
    origin (3,)).

    Narrow band: a grid ``coarse_factor`` times coarser, valued by the closest-vertex distance,
    is trilinearly upsampled; only fine points within ``band`` plus a coarse cell diagonal of
    the surface get the dense base query, and only those within ``band`` the residual network.
    Elsewhere the upsampled coarse value carries the sign, which is all marching cubes needs.
    """
    from scipy.ndimage import map_coordinates

    dims = np.maximum(np.ceil((hi - lo) / voxel).astype(int) + 1, 2)
    axes = [lo[i] + voxel * np.arange(dims[i]) for i in range(3)]
    step = voxel * coarse_factor
    cdims = np.ceil((dims - 1) / coarse_factor).astype(int) + 2
    caxes = [lo[i] + step * np.arange(cdims[i]) for i in range(3)]
    cpts = np.stack(np.meshgrid(*caxes, indexing="ij"), -1).reshape(-1, 3)
    coarse = face.base.coarse_signed_distance(cpts).reshape(tuple(cdims))
    coords = np.meshgrid(*[np.arange(d) / coarse_factor for d in dims], indexing="ij")
    vals = map_coordinates(coarse, coords, order=1, mode="nearest").reshape(-1)
    shell = np.nonzero(np.abs(vals) < band + 2.0 * step)[0]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)[shell]
    # beyond this radius the coarse value's sign is exact (farther than a coarse cell diagonal)
    fine, ok = face.base.query_within(pts, max(1.5 * band, band + 1.8 * step))
    vals[shell[ok]] = fine[ok]
    near = np.nonzero(ok & (np.abs(fine) < band))[0]
    with torch.no_grad():
        for s in range(0, len(near), chunk):
            sl = near[s : s + chunk]
            vals[shell[sl]] += face.residual(torch.as_tensor(pts[sl], dtype=torch.float32)).double().numpy()
    return vals.reshape(tuple(dims)), lo


def extract_surface(face: ImplicitFace, region_points: np.ndarray, voxel: float = 1e-3, pad: float = 8e-3,
                    crop_distance: float = 3e-3) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """Marching cubes over the bounding box of ``region_points`` (N,3) (the face region).

    Returns (closed, face): ``closed`` is the full marching-cubes surface with the box boundary
    capped (watertight), ``face`` keeps the triangles within ``crop_distance`` of the region.
    """
    lo, hi = region_points.min(0) - pad, region_points.max(0) + pad
    vals, origin = evaluate_grid(face, lo, hi, voxel)
    # keep marching-cubes vertices off the grid nodes: a node on the level set makes zero-area
    # triangles and coincident vertices (non-manifold once merged)
    vals[np.abs(vals) < 1e-6 * voxel] = 1e-6 * voxel
    vals = np.pad(vals, 1, constant_values=float(np.abs(vals).max() + voxel))
    verts, tris, _, _ = marching_cubes(vals, level=0.0, spacing=(voxel, voxel, voxel))
    verts = verts + origin - voxel
    closed = trimesh.Trimesh(verts, tris, process=False)  # skimage shares vertices; winding: normals toward +f (outward)
    d, _ = cKDTree(region_points).query(closed.triangles_center, workers=-1, distance_upper_bound=crop_distance)  # far: inf, fast
    crop = closed.submesh([np.nonzero(d < crop_distance)[0]], append=True)
    if isinstance(crop, list):
        crop = crop[0]
    return closed, crop


def register_displacement(face: ImplicitFace, points: Tensor, normals: Tensor, iters: int = 5,
                          max_offset: float = 5e-3, tol: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Offsets s (N,) in metres such that f(p + s n) ≈ 0 for points p (N,3) on the fitted mesh
    with unit normals n (N,3), clamped to ±``max_offset``, and whether each converged (N,) bool:
    |f| < ``tol`` metres at the end and the offset not at the clamp. Points whose normal line
    misses the level set (eye and mouth corners, where it runs into a neighbouring fold) do not
    converge; see :func:`fade_unregistered`."""
    s = torch.zeros(points.shape[0], dtype=points.dtype)
    for _ in range(iters):
        x = (points + s.unsqueeze(-1) * normals).detach().requires_grad_(True)
        f = face(x)
        (g,) = torch.autograd.grad(f.sum(), x)
        gn = (g * normals).sum(-1).clamp_min(0.2)
        s = (s - f.detach() / gn).clamp(-max_offset, max_offset)
    with torch.no_grad():
        f = face(points + s.unsqueeze(-1) * normals)
    valid = (f.abs() < tol) & (s.abs() < max_offset * (1 - 1e-3))
    return s.detach(), valid


def fade_unregistered(points: np.ndarray, offsets: np.ndarray, valid: np.ndarray, inner: float = 1e-3,
                      outer: float = 3e-3) -> np.ndarray:
    """Offsets (N,) with the unconverged ones zeroed and their neighbourhood faded in: the weight
    is 0 within ``inner`` metres of an unconverged point (N,3) and rises linearly to 1 at
    ``outer``. Newton offsets next to a failed point are the half-converged flank of the same
    spike, so they go too (measured on dev faces: removing the spikes, 0.2-0.6 % of the face,
    takes the SDF's 3D normal error from 21.1 to 19.7 degrees, the 3DMM's being 19.5)."""
    if valid.all():
        return offsets.copy()
    if not valid.any():
        return np.zeros_like(offsets)
    dist, _ = cKDTree(points[~valid]).query(points, distance_upper_bound=outer)
    w = np.clip((np.minimum(dist, outer) - inner) / (outer - inner), 0.0, 1.0)
    return (offsets * w).astype(offsets.dtype)


def photo_weight(points: Tensor, normals: Tensor, cameras: list, lo: float = 0.2, hi: float = 0.5) -> Tensor:
    """Confidence (N,) in [0, 1] of the detail at points (N,3) with unit normals (N,3), world
    metres: the best facing cosine over the real photos' batch-1 cameras, mapped 0 below ``lo``
    (grazing or unseen) and rising linearly to 1 at ``hi``. The synthetic views render the
    texture baked from the photo, which is foreshortened where the photo sees the surface at a
    grazing angle, so detail recovered there is mostly invented."""
    best = torch.full(points.shape[:1], -1.0, dtype=points.dtype)
    for cam in cameras:
        origin, perspective = camera_centre_or_direction(cam)
        origin = origin.to(points.dtype)
        to_cam = F.normalize(origin - points if perspective else origin.expand_as(points), dim=-1)
        best = torch.maximum(best, (normals * to_cam).sum(-1))
    return ((best - lo) / (hi - lo)).clamp(0.0, 1.0)
