"""Texture baking: unwrap photos into the model's UV layout, de-light, complete, blend.

Pipeline (per view, then combined):

1. Rasterize the mesh in UV space (cached per layout): every texel gets its 3D point and
   smooth normal (:func:`face3d.texture.maps.uv_position_normal_maps`).
2. Project the texel points into the photo; a z-buffer of the fitted mesh seen from the camera
   decides which texels are unoccluded. Weight = visibility × smoothstep(cos(view angle)) ×
   inside-image × optional image mask (e.g. the fitter's skin mask).
3. De-light: albedo = photo / irradiance, the irradiance being the fitted SH lighting evaluated
   at the texel normal (``face3d.renderers.sh_shade``, Lambertian SH of Ramamoorthi & Hanrahan 2001).
4. Several views: visibility-weighted average.
5. Completion: texels weakly seen take the de-lit colour of their mirror texel (vertex x -> -x,
   :mod:`face3d.texture.symmetry`); what is still unseen falls back to the model albedo, shifted
   by a smooth colour offset extrapolated from the seen region with a pull-push pyramid
   (Gortler et al. 1996), so the seam between photo and fallback is invisible.
6. Texels outside every UV chart copy their nearest chart texel (no dark bleeding with mipmaps).

All maps are (R, R, C) images, row 0 = top of the texture (v = 1, OBJ UV convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F

from face3d.errors import BadInputError, ShapeError
from face3d.mesh import Camera, Mesh, View
from face3d.texture.sampling import Photo, TexelGeometry, mirror_blend, mirror_stack, sample_texels, sh_quadratic_forms
from face3d.texture.symmetry import SymmetryMap, symmetry_map
from face3d.texture.uv_raster import UVRaster, check_uv_topology, raster2d, rasterize_uv


@dataclass(frozen=True)
class TextureResult:
    """albedo (R,R,3) de-lit, completed, no holes, in [0,1]; visibility (R,R) in [0,1] (how well
    each texel was seen, max over views); raw (R,R,3) the photo unwrapped before de-lighting
    (weighted over views, 0 where unseen); shading (R,R,3) the SH irradiance used to de-light;
    observed (R,R) bool texels whose colour came from a photo or its mirror; weight (R,R) in
    [0,1] how much of each texel's colour came from a photo or its mirror (0: the fallback). raw
    and shading are None when baked with ``BakeOptions(shading_maps=False)``."""

    albedo: torch.Tensor
    visibility: torch.Tensor
    raw: torch.Tensor | None
    shading: torch.Tensor | None
    observed: torch.Tensor
    weight: torch.Tensor | None = None


# --------------------------------------------------------------------------- helpers
def _image(img: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """An (H,W,3) float image from a tensor or array ((1,H,W,3) and uint8 accepted)."""
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


@numba.njit(cache=True, nogil=True)
def _box_mean(x, k):  # pragma: no cover - jit
    H, W = x.shape
    p = k // 2
    xp = np.zeros((H + 2 * p, W + 2 * p), np.float32)
    for i in range(H):
        for j in range(W):
            xp[i + p, j + p] = x[i, j]
    out = np.empty((H, W), np.float32)
    acc = np.empty(W, np.float32)
    for i in range(H):
        for j in range(W):
            acc[j] = 0.0
        for a in range(k):  # window rows, then columns, as avg_pool2d adds them (the zero padding adds nothing)
            for b in range(k):
                for j in range(W):
                    acc[j] += xp[i + a, j + b]
        ch = min(i + p + 1, H) - max(i - p, 0)
        for j in range(W):
            out[i, j] = acc[j] / np.float32(ch * (min(j + p + 1, W) - max(j - p, 0)))
    return out


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """Box blur of an (H,W) map with a k×k window (k odd) clipped at the borders: the values of
    ``F.avg_pool2d(..., count_include_pad=False)`` (for a float32 CPU map by a numba kernel that adds
    the same float32 terms in the same order, ~3x faster)."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.requires_grad:
        return F.avg_pool2d(x[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
    return torch.from_numpy(_box_mean(np.ascontiguousarray(x.numpy()), int(k)))


@numba.njit(cache=True, nogil=True)
def _blend_kernel(nearest, weight, blurred, colour, filled):  # pragma: no cover - jit
    out = np.empty((nearest.shape[0], 3), np.float32)
    zero, one = np.float32(0.0), np.float32(1.0)
    for t in range(nearest.shape[0]):
        i = nearest[t]
        s = min(max(min(weight[i], blurred[i]), zero), one)
        r = one - s
        for c in range(3):
            out[t, c] = min(max(s * colour[i, c] + filled[i, c] * r, zero), one)
    return out


def _blend_dilated(raster: UVRaster, weight: torch.Tensor, blurred: torch.Tensor, colour: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """``raster.dilate`` of clamp(soft · colour + (1 − soft) · filled, 0, 1) with soft = clamp(min(weight,
    blurred), 0, 1): weight, blurred (R,R), colour, filled (R,R,3) float32 -> (R,R,3). One pass per texel
    (numba) with the float32 operations of the tensor expressions (the same values)."""
    R = raster.resolution
    c = np.ascontiguousarray
    out = _blend_kernel(c(raster.nearest.numpy(), np.int64), c(weight.numpy(), np.float32).reshape(-1), c(blurred.numpy(), np.float32).reshape(-1),
                        c(colour.numpy(), np.float32).reshape(-1, 3), c(filled.numpy(), np.float32).reshape(-1, 3))
    return torch.from_numpy(out).view(R, R, 3)


def camera_centre_or_direction(camera: Camera) -> tuple[torch.Tensor, bool]:
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


@dataclass(frozen=True)
class BakeOptions:
    """How a photo is sampled: min_cos/full_cos, the cosines of the viewing angle below which a
    texel gets no weight and above which it gets full weight; depth_tolerance, metres (plus 0.5 %
    of the depth) a texel may lie behind the z-buffer and still count as visible; min_shading, the
    smallest SH irradiance divided by (darker texels are not trusted); mirror_strength, the weight
    of a texel's mirror texel where it was weakly seen (0: no mirror completion); shading_maps,
    also return the unwrapped photo and the shading (``TextureResult.raw``/``shading``; False:
    None, less work; the albedo is the same)."""

    min_cos: float = 0.1
    full_cos: float = 0.5
    depth_tolerance: float = 0.004
    min_shading: float = 0.05
    mirror_strength: float = 1.0
    shading_maps: bool = True


_ZBUF_MEMO: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray]] = []


def _zbuffer(vpix: np.ndarray, faces: np.ndarray, H: int, W: int, vdepth: np.ndarray) -> np.ndarray:
    """(H,W) z-buffer of the mesh in the photo (``raster2d``); the last one is kept: the texture
    and the detail stage of a photo sample the same view of the same mesh. Do not modify it."""
    if _ZBUF_MEMO:
        p, f, d, size, z = _ZBUF_MEMO[0]
        if size == (H, W) and np.array_equal(p, vpix, equal_nan=True) and np.array_equal(d, vdepth, equal_nan=True) and np.array_equal(f, faces):
            return z
    z = raster2d(vpix, faces, H, W, depth=vdepth)[2]
    _ZBUF_MEMO[:] = [(vpix.copy(), faces.copy(), vdepth.copy(), (H, W), z)]
    return z


def sample_view(view: View, vertices: torch.Tensor, faces: torch.Tensor, raster: UVRaster,
                options: BakeOptions | None = None) -> ViewSample:
    """Unwrap one photo onto the covered texels of ``raster`` (see the module docstring).

    view: a batch-1 :class:`~face3d.mesh.View` (its ``sh`` de-lights, its ``mask`` weights the
    pixels); vertices (V,3) world metres; faces (F,3).
    """
    from face3d.renderers import vertex_normals

    opt = options or BakeOptions()
    image, camera = view.image[0], view.camera
    H, W = image.shape[:2]
    if int(camera.batch_size) != 1 or view.image.shape[0] != 1:
        raise BadInputError(f"bake_texture: each view must have batch size 1, got {camera.batch_size}")
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
    zbuf = _zbuffer(vpix, fn, H, W, vdepth)
    mask = None if view.mask is None else view.mask[0].detach().float().cpu().numpy()
    forms = None if view.sh is None else sh_quadratic_forms(view.sh[0])
    w, raw, shade, delit = sample_texels(
        TexelGeometry(raster.tri_n.numpy(), raster.bary_n.numpy(), fn, vpix, vdepth, vnrm, vview),
        Photo(zbuf, image.detach().cpu().numpy(), mask, forms),
        (opt.min_cos, opt.full_cos, opt.depth_tolerance, opt.min_shading, min_depth),
    )
    return ViewSample(*(torch.from_numpy(x) for x in (w, raw, shade, delit)))


# --------------------------------------------------------------------------- bake
def _fallback_map(fallback: torch.Tensor | np.ndarray | None, raster: UVRaster, faces: torch.Tensor, n_vertices: int, R: int) -> torch.Tensor | None:
    if fallback is None:
        return None
    fb = fallback if isinstance(fallback, torch.Tensor) else torch.as_tensor(np.asarray(fallback))
    fb = fb.detach().float().cpu()
    if fb.ndim == 2 and fb.shape == (n_vertices, 3):
        return raster.interpolate_image(fb, faces)
    if fb.ndim == 3 and fb.shape[2] == 3:
        if fb.shape[:2] != (R, R):
            fb = F.interpolate(fb.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
        return fb.clamp(0.0, 1.0)
    raise ShapeError("albedo_fallback", f"per-vertex ({n_vertices}, 3) or UV image (R, R, 3)", tuple(fb.shape))


def bake_texture(
    mesh: Mesh,
    views: View | Sequence[View],
    *,
    resolution: int = 1024,
    albedo_fallback: torch.Tensor | np.ndarray | None = None,
    mirror: SymmetryMap | bool | None = None,
    template: torch.Tensor | None = None,
    face_mask: torch.Tensor | np.ndarray | None = None,
    options: BakeOptions | None = None,
) -> TextureResult:
    """Bake photo(s) into a de-lit, hole-free UV albedo map.

    mesh: the fitted mesh in world metres with its uvs (T,2) (OBJ convention) and uv_faces
    (F,3); its vertices (B,V,3) are shared by all views (B = 1) or one set per view (B = number
    of views, e.g. per-photo expression). views: one batch-1 :class:`~face3d.mesh.View` or a list
    (image, a ``face3d.renderers`` camera, sh (9,3) fitted lighting or None = no de-lighting, mask: per-
    pixel trust, e.g. a skin mask). resolution R; albedo_fallback per-vertex (V,3) or UV (R',R',3)
    model albedo, used where nothing was seen; mirror: None (compute a symmetry map from
    ``template``, default the first view's vertices — pass the model's neutral template in model
    space for a posed mesh), False (no mirror completion) or a
    :class:`~face3d.texture.symmetry.SymmetryMap`. face_mask (F,) bool: triangles to bake (skip
    eyeballs etc. whose UVs overlap the face tile). Returns :class:`TextureResult`.
    """
    opt = options or BakeOptions()
    view_list = [views] if isinstance(views, View) else list(views)
    if not view_list:
        raise BadInputError("bake_texture: no view given")
    n = len(view_list)
    verts = mesh.vertices
    if not isinstance(verts, torch.Tensor) or verts.ndim != 3 or verts.shape[0] not in (1, n):
        raise ShapeError("mesh.vertices", f"(1, V, 3) or ({n}, V, 3) for {n} views", tuple(getattr(verts, "shape", ())))
    verts_list = [verts[min(k, verts.shape[0] - 1)].detach().float().cpu() for k in range(n)]
    R = int(resolution)
    f, t, tf = check_uv_topology(mesh.faces, mesh.uvs, mesh.texture_faces)
    V = verts_list[0].shape[0]
    if f.numel() and int(f.max()) >= V:
        raise ShapeError("faces", f"indices < {V} (the number of vertices)", int(f.max()))
    raster = rasterize_uv(t, tf, R, face_mask)

    wsum = torch.zeros(raster.index.shape[0])
    acc_delit = torch.zeros(raster.index.shape[0], 3)
    acc_raw = torch.zeros_like(acc_delit) if opt.shading_maps else acc_delit
    acc_shade = torch.zeros_like(acc_delit) if opt.shading_maps else acc_delit  # (read only with shading maps)
    unseen = torch.ones_like(wsum)
    for k in range(n):
        s = sample_view(view_list[k], verts_list[k], f, raster, opt)
        w = s.weight
        wsum += w
        acc_delit += w[:, None] * s.delit
        if opt.shading_maps:
            acc_raw += w[:, None] * s.raw
            acc_shade += w[:, None] * s.shading
        unseen *= 1.0 - w
    denom = wsum.clamp_min(1e-8)[:, None]
    vis_n = 1.0 - unseen
    delit_n = acc_delit / denom
    vis = raster.scatter(vis_n[:, None])[..., 0]
    raw = shading = None
    if opt.shading_maps:
        seen = (wsum > 0).float()[:, None]
        raw = raster.scatter(acc_raw / denom * seen)
        shading = raster.scatter(acc_shade / denom * seen)

    # mirror completion: weakly seen texels borrow from their mirror texel
    weight = vis
    if mirror is False or opt.mirror_strength <= 0:
        colour = raster.scatter(delit_n)
    else:
        sym = mirror if isinstance(mirror, SymmetryMap) else symmetry_map(template if template is not None else verts_list[0], f, t, tf, raster)
        if sym.uv.shape[0] != raster.index.shape[0]:
            raise ShapeError("mirror", f"SymmetryMap for {raster.index.shape[0]} texels", tuple(sym.uv.shape))
        # fused per texel (numba, the same float32 operations as the tensor expressions they replace):
        # stack = [delit · vis, vis] as channels-first maps; then colour = (w_own delit + w_mir mirror colour) / (w_own + w_mir)
        idx = raster.index.numpy()
        stack = torch.from_numpy(mirror_stack(idx, delit_n.numpy(), vis_n.numpy(), R))[None]
        got = F.grid_sample(stack, sym.grid(), mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0]  # (4,N)
        c_img, w_img = mirror_blend(idx, got.numpy(), sym.valid.numpy(), vis_n.numpy(), delit_n.numpy(), opt.mirror_strength, R)
        colour, weight = torch.from_numpy(c_img), torch.from_numpy(w_img)

    # fall back to the model albedo, colour-matched to the seen region; soft seams
    cover = raster.mask.float()
    fb = _fallback_map(albedo_fallback, raster, f, V, R)
    weight = weight * cover
    base = torch.zeros_like(colour) if fb is None else fb
    if float(weight.max()) > 0:
        # the colour offset is smooth: extrapolate it at 1/4 resolution, then upsample
        w4 = F.avg_pool2d((cover * weight)[None, None], 4, ceil_mode=True)[0, 0]
        # channels-first copy: torch's channels-last average pool is ~2x slower than the copy plus pool (same values)
        d4 = F.avg_pool2d(((colour - base) * (cover * weight)[..., None]).permute(2, 0, 1).contiguous()[None], 4, ceil_mode=True)[0].permute(1, 2, 0)
        offset = pull_push(d4 / w4[..., None].clamp_min(1e-8), w4)
        filled = base + F.interpolate(offset.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    else:
        filled = base if fb is not None else torch.full_like(colour, 0.5)
    # soft = clamp(min(weight, blur(weight)), 0, 1); albedo = clamp(soft colour + (1 - soft) filled, 0, 1), dilated
    albedo = _blend_dilated(raster, weight, _blur(weight, 5), colour, filled)
    return TextureResult(albedo=albedo, visibility=vis, raw=raw, shading=shading, observed=weight > 1e-3, weight=weight.clamp(0.0, 1.0))
