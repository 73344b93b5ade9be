"""Texture baking: unwrap photos into the model's UV layout, de-light, complete, blend.

Pipeline (per view, then combined):

1. Rasterize the mesh in UV space (cached per layout): every texel gets its 3D point and
   smooth normal (:func:`face3d.texture.maps.uv_position_normal_maps`).
2. Project the texel points into the photo; a z-buffer of the fitted mesh seen from the camera
   decides which texels are unoccluded. Weight = visibility × smoothstep(cos(view angle)) ×
   inside-image × optional image mask (e.g. the fitter's skin mask).
3. De-light: albedo = photo / irradiance, the irradiance being the fitted SH lighting evaluated
   at the texel normal (``renderers.sh_shade``, Lambertian SH of Ramamoorthi & Hanrahan 2001).
4. Several views: visibility-weighted average.
5. Completion: texels weakly seen take the de-lit colour of their mirror texel (vertex x -> -x,
   :mod:`face3d.texture.symmetry`); what is still unseen falls back to the model albedo, shifted
   by a smooth colour offset extrapolated from the seen region with a pull-push pyramid
   (Gortler et al. 1996), so the seam between photo and fallback is invisible.
6. Texels outside every UV chart copy their nearest chart texel (no dark bleeding with mipmaps).

All maps are (R, R, C) images, row 0 = top of the texture (v = 1, OBJ UV convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from face3d.errors import BadInputError, ShapeError
from face3d.texture.sampling import sample_texels, sh_quadratic_forms
from face3d.texture.symmetry import SymmetryMap, symmetry_map
from face3d.texture.uv_raster import UVRaster, check_uv_topology, rasterize_uv, raster2d, uv_to_grid


@dataclass
class TextureResult:
    """albedo (R,R,3) de-lit, completed, no holes, in [0,1]; visibility (R,R) in [0,1] (how well
    each texel was seen, max over views); raw (R,R,3) the photo unwrapped before de-lighting
    (weighted over views, 0 where unseen); shading (R,R,3) the SH irradiance used to de-light;
    observed (R,R) bool texels whose colour came from a photo or its mirror; weight (R,R) in
    [0,1] how much of each texel's colour came from a photo or its mirror (0: the fallback)."""

    albedo: torch.Tensor
    visibility: torch.Tensor
    raw: torch.Tensor
    shading: torch.Tensor
    observed: torch.Tensor
    weight: torch.Tensor | None = None


# --------------------------------------------------------------------------- helpers
def _image(img: Any, name: str) -> torch.Tensor:
    t = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[2] != 3 or min(t.shape[:2]) < 1:
        raise ShapeError(name, "(H, W, 3) float image in [0, 1]", tuple(t.shape))
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise ShapeError(name, "float image in [0, 1] or uint8", str(t.dtype))
    return t.float()


def _sh(sh: Any, name: str) -> torch.Tensor | None:
    if sh is None:
        return None
    t = sh if isinstance(sh, torch.Tensor) else torch.as_tensor(np.asarray(sh))
    if t.ndim == 2:
        t = t[None]
    if t.shape != (1, 9, 3):
        raise ShapeError(name, "SH coefficients (9, 3) or (1, 9, 3)", tuple(t.shape))
    return t.float()


def _as_list(x: Any, n: int, name: str) -> list[Any]:
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise BadInputError(f"argument '{name}': {len(x)} entries for {n} images")
        return list(x)
    return [x] * n


def pull_push(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill an image from weighted samples: values (H,W,C), weights (H,W) >= 0 -> (H,W,C).

    Pull: a pyramid of weight-averaged colours; push: each level keeps its own colour where its
    (pooled) weight is >= 1 and blends in the coarser level elsewhere (Gortler et al. 1996).
    """
    v = (values * weights[..., None]).permute(2, 0, 1)[None]
    w = weights[None, None]
    pyramid = [(v, w)]
    while min(v.shape[-2:]) > 1:
        v = F.avg_pool2d(v, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
        pyramid.append((v, w))
    v, w = pyramid[-1]
    colour = v / w.clamp_min(1e-8)
    for v, w in reversed(pyramid[:-1]):
        up = F.interpolate(colour, size=v.shape[-2:], mode="bilinear", align_corners=False)
        own = v / w.clamp_min(1e-8)
        a = w.clamp(0.0, 1.0)
        colour = a * own + (1.0 - a) * up
    return colour[0].permute(1, 2, 0)


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """Box blur of an (H,W) map with a k×k window (k odd)."""
    return F.avg_pool2d(x[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]


def camera_centre_or_direction(camera: Any) -> tuple[torch.Tensor, bool]:
    """(3,) world camera centre and True for perspective cameras; for orthographic cameras the
    (3,) world direction toward the camera and False."""
    R = camera.R[0].float()
    t = camera.t[0].float()
    if hasattr(camera, "K"):
        return -(R.T @ t), True
    return R.T @ torch.tensor([0.0, 0.0, 1.0]), False


# --------------------------------------------------------------------------- one view
@dataclass
class ViewSample:
    """Per covered texel (N,): weight (N,) in [0,1], raw (N,3) photo colour, shading (N,3), delit (N,3)."""

    weight: torch.Tensor
    raw: torch.Tensor
    shading: torch.Tensor
    delit: torch.Tensor


def sample_view(
    image: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    raster: UVRaster,
    camera: Any,
    sh: torch.Tensor | None,
    *,
    image_mask: torch.Tensor | None = None,
    min_cos: float = 0.1,
    full_cos: float = 0.5,
    depth_tolerance: float = 0.004,
    min_shading: float = 0.05,
) -> ViewSample:
    """Unwrap one photo onto the covered texels of ``raster`` (see the module docstring).

    image (H,W,3); vertices (V,3) world metres; camera batch 1; sh (1,9,3) or None (no
    de-lighting); image_mask (H,W) in [0,1] optional. depth_tolerance: metres (plus 0.5% of the
    depth) a texel may lie behind the z-buffer and still count as visible.
    """
    from renderers import vertex_normals

    H, W = image.shape[:2]
    if int(camera.batch_size) != 1:
        raise BadInputError(f"bake_texture: each camera must have batch size 1, got {camera.batch_size}")
    with torch.no_grad():
        vpix = camera.project(vertices[None])[0].double().numpy()
        vdepth = camera.depth(vertices[None])[0].double().numpy()
        vnrm = vertex_normals(vertices[None], faces)[0].double().numpy()
        origin, perspective = camera_centre_or_direction(camera)
        vview = (origin[None] - vertices if perspective else origin[None].expand_as(vertices)).double().numpy()
    vpix = vpix.copy()
    min_depth = float(camera.near) if perspective else -np.inf
    vpix[vdepth <= min_depth] = np.nan
    fn = faces.numpy()
    _, _, zbuf = raster2d(vpix, fn, H, W, depth=vdepth)
    mask = None if image_mask is None else image_mask.detach().float().cpu().numpy()
    forms = None if sh is None else sh_quadratic_forms(sh[0])
    w, raw, shade, delit = sample_texels(
        raster.tri_n.numpy(), raster.bary_n.numpy(), fn, vpix, vdepth, vnrm, vview, zbuf,
        image.detach().cpu().numpy(), mask, forms, min_cos, full_cos, depth_tolerance, min_shading, min_depth,
    )
    return ViewSample(*(torch.from_numpy(x) for x in (w, raw, shade, delit)))


# --------------------------------------------------------------------------- bake
def _fallback_map(fallback: Any, raster: UVRaster, faces: torch.Tensor, n_vertices: int, R: int) -> torch.Tensor | None:
    if fallback is None:
        return None
    fb = fallback if isinstance(fallback, torch.Tensor) else torch.as_tensor(np.asarray(fallback))
    fb = fb.detach().float().cpu()
    if fb.ndim == 2 and fb.shape == (n_vertices, 3):
        return raster.scatter(raster.interpolate(fb, faces))
    if fb.ndim == 3 and fb.shape[2] == 3:
        if fb.shape[:2] != (R, R):
            fb = F.interpolate(fb.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
        return fb.clamp(0.0, 1.0)
    raise ShapeError("albedo_fallback", f"per-vertex ({n_vertices}, 3) or UV image (R, R, 3)", tuple(fb.shape))


def bake_texture(
    image: Any,
    vertices: Any,
    faces: Any,
    uvs: Any,
    uv_faces: Any,
    camera: Any,
    sh: Any = None,
    albedo_fallback: Any = None,
    resolution: int = 1024,
    mirror: Any = None,
    *,
    template: Any = None,
    face_mask: Any = None,
    image_mask: Any = None,
    min_cos: float = 0.1,
    depth_tolerance: float = 0.004,
    mirror_strength: float = 1.0,
) -> TextureResult:
    """Bake photo(s) into a de-lit, hole-free UV albedo map.

    image (H,W,3) float [0,1] (or a list for several views); vertices (V,3) world metres of the
    fitted mesh (one tensor shared by all views, or a list per view, e.g. per-photo expression);
    faces (F,3); uvs (T,2) OBJ convention; uv_faces (F,3); camera a batch-1
    ``renderers.PerspectiveCamera``/``OrthographicCamera`` (or a list); sh (9,3) fitted SH
    lighting (or a list, or None = no de-lighting); albedo_fallback per-vertex (V,3) or UV
    (R',R',3) model albedo, used where nothing was seen; resolution R; mirror: None (compute a
    symmetry map from ``template``, default the first view's vertices — pass the model's
    neutral template in model space for a posed mesh), False (no mirror completion) or a
    :class:`~face3d.texture.symmetry.SymmetryMap`. face_mask (F,) bool: triangles to bake (skip
    eyeballs etc. whose UVs overlap the face tile). image_mask (H,W) or list: per-pixel trust
    (e.g. skin mask). Returns :class:`TextureResult`.
    """
    images = [_image(i, "image") for i in (image if isinstance(image, (list, tuple)) else [image])]
    if not images:
        raise BadInputError("bake_texture: no image given")
    n = len(images)
    cameras = _as_list(camera, n, "camera")
    shs = [_sh(s, "sh") for s in _as_list(sh, n, "sh")]
    masks = _as_list(image_mask, n, "image_mask")
    verts_list = _as_list(vertices, n, "vertices")
    verts_list = [v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for v in verts_list]
    verts_list = [(v[0] if v.ndim == 3 and v.shape[0] == 1 else v).detach().float().cpu() for v in verts_list]
    R = int(resolution)
    f, t, tf = check_uv_topology(faces, uvs, uv_faces)
    V = verts_list[0].shape[0]
    if f.numel() and int(f.max()) >= V:
        raise ShapeError("faces", f"indices < {V} (the number of vertices)", int(f.max()))
    raster = rasterize_uv(t, tf, R, face_mask)

    wsum = torch.zeros(raster.index.shape[0])
    acc_delit = torch.zeros(raster.index.shape[0], 3)
    acc_raw = torch.zeros_like(acc_delit)
    acc_shade = torch.zeros_like(acc_delit)
    unseen = torch.ones_like(wsum)
    for k in range(n):
        if verts_list[k].shape[0] != V:
            raise ShapeError("vertices", f"({V}, 3) for every view", tuple(verts_list[k].shape))
        mk = masks[k]
        if mk is not None:
            mk = mk if isinstance(mk, torch.Tensor) else torch.as_tensor(np.asarray(mk))
            mk = mk.reshape(mk.shape[-2:]) if mk.ndim > 2 and mk.shape[-1] != 1 else mk.squeeze()
            if tuple(mk.shape) != tuple(images[k].shape[:2]):
                raise ShapeError("image_mask", f"{tuple(images[k].shape[:2])} like its image", tuple(mk.shape))
        s = sample_view(images[k], verts_list[k], f, raster, cameras[k], shs[k], image_mask=mk, min_cos=min_cos, depth_tolerance=depth_tolerance)
        w = s.weight
        wsum += w
        acc_delit += w[:, None] * s.delit
        acc_raw += w[:, None] * s.raw
        acc_shade += w[:, None] * s.shading
        unseen *= 1.0 - w
    denom = wsum.clamp_min(1e-8)[:, None]
    vis_n = 1.0 - unseen
    delit = raster.scatter(acc_delit / denom)
    vis = raster.scatter(vis_n[:, None])[..., 0]
    raw = raster.scatter(acc_raw / denom * (wsum > 0).float()[:, None])
    shading = raster.scatter(acc_shade / denom * (wsum > 0).float()[:, None])

    # mirror completion: weakly seen texels borrow from their mirror texel
    weight = vis
    colour = delit
    if mirror is not False and mirror_strength > 0:
        sym = mirror if isinstance(mirror, SymmetryMap) else symmetry_map(template if template is not None else verts_list[0], f, t, tf, raster)
        if sym.uv.shape[0] != raster.index.shape[0]:
            raise ShapeError("mirror", f"SymmetryMap for {raster.index.shape[0]} texels", tuple(sym.uv.shape))
        grid = uv_to_grid(sym.uv)[None, None]
        stack = torch.cat([delit * vis[..., None], vis[..., None]], -1).permute(2, 0, 1)[None]
        got = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T  # (N,4)
        wm = got[:, 3] * sym.valid.float() * mirror_strength
        cm = got[:, :3] / got[:, 3:].clamp_min(1e-8)
        w_own = vis_n
        w_mir = wm * (1.0 - w_own)
        total = w_own + w_mir
        c = (w_own[:, None] * (acc_delit / denom) + w_mir[:, None] * cm) / total.clamp_min(1e-8)[:, None]
        colour = raster.scatter(c)
        weight = raster.scatter(total[:, None])[..., 0]

    # fall back to the model albedo, colour-matched to the seen region; soft seams
    cover = raster.mask.float()
    fb = _fallback_map(albedo_fallback, raster, f, V, R)
    weight = weight * cover
    base = torch.zeros_like(colour) if fb is None else fb
    if float(weight.max()) > 0:
        # the colour offset is smooth: extrapolate it at 1/4 resolution, then upsample
        w4 = F.avg_pool2d((cover * weight)[None, None], 4, ceil_mode=True)[0, 0]
        d4 = F.avg_pool2d(((colour - base) * (cover * weight)[..., None]).permute(2, 0, 1)[None], 4, ceil_mode=True)[0].permute(1, 2, 0)
        offset = pull_push(d4 / w4[..., None].clamp_min(1e-8), w4)
        filled = base + F.interpolate(offset.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    else:
        filled = base if fb is not None else torch.full_like(colour, 0.5)
    soft = torch.minimum(weight, _blur(weight, 5)).clamp(0.0, 1.0)
    albedo = (soft[..., None] * colour + (1.0 - soft[..., None]) * filled).clamp(0.0, 1.0)
    albedo = raster.dilate(albedo)
    return TextureResult(albedo=albedo, visibility=vis, raw=raw, shading=shading, observed=weight > 1e-3, weight=weight.clamp(0.0, 1.0))


def bake_views(views: Sequence[dict[str, Any]], vertices: Any, faces: Any, uvs: Any, uv_faces: Any, **kwargs: Any) -> TextureResult:
    """Convenience: ``views`` is a list of dicts with keys image, camera, sh (and optionally
    vertices, image_mask); calls :func:`bake_texture` with the lists."""
    if not views:
        raise BadInputError("bake_views: no views given")
    return bake_texture(
        [v["image"] for v in views],
        [v.get("vertices", vertices) for v in views],
        faces,
        uvs,
        uv_faces,
        [v["camera"] for v in views],
        [v.get("sh") for v in views],
        image_mask=[v.get("image_mask") for v in views],
        **kwargs,
    )
