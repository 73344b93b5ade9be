"""Texture baking: unwrap, de-light, mirror completion, fallback, multi-view (synthetic renders)."""

from __future__ import annotations

import math

import pytest
import torch

from face3d import renderers as r
from face3d.errors import BadInputError, ShapeError
from face3d.mesh import Mesh, View
from face3d.texture import (
    BakeOptions,
    bake_texture,
    pull_push,
    rasterize_uv,
    symmetry_map,
    uv_position_normal_maps,
)

HALF = 0.08  # half width of the synthetic face patch, metres


def face_patch(n: int = 61) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mirror-symmetric height field (forehead dome + nose) with planar UVs; uv = vertex index."""
    xs = torch.linspace(-HALF, HALF, n)
    y, x = torch.meshgrid(xs, xs, indexing="ij")
    z = 0.03 * torch.exp(-(x**2 + y**2) / 0.05**2) + 0.018 * torch.exp(-(x**2 / 0.01**2 + y**2 / 0.03**2))
    verts = torch.stack([x, y, z], -1).reshape(-1, 3)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    uvs = torch.stack([(x + HALF) / (2 * HALF), (y + HALF) / (2 * HALF)], -1).reshape(-1, 2)
    return verts, faces, uvs


def texture_image(R: int, symmetric: bool = False) -> torch.Tensor:
    """A smooth colour pattern (R,R,3) with row 0 = v 1; optionally symmetric under u -> 1-u."""
    v, u = torch.meshgrid((torch.arange(R) + 0.5) / R, (torch.arange(R) + 0.5) / R, indexing="ij")
    uu = (u - 0.5).abs() if symmetric else u
    return torch.stack([0.55 + 0.25 * torch.sin(9 * uu), 0.45 + 0.2 * torch.cos(7 * v), 0.35 + 0.15 * torch.sin(5 * (uu + v))], -1)


def camera(yaw_deg: float = 0.0, size: int = 256) -> r.PerspectiveCamera:
    yaw = math.radians(yaw_deg)
    R = torch.tensor([[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, 1.0, 0.0], [-math.sin(yaw), 0.0, math.cos(yaw)]])
    K = r.perspective_from_fov(25.0, size, size).float()
    return r.PerspectiveCamera(K=K[None], R=R[None], t=torch.tensor([[0.0, 0.0, -0.45]]), width=size, height=size)


def lighting(strength: float = 0.3) -> torch.Tensor:
    sh = r.ambient_sh(0.75)
    sh[0, 3] = strength  # light from +x
    sh[0, 2] = strength  # and from the front
    sh[0, 1] = 0.5 * strength
    return sh


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    mse = float(((a - b) ** 2)[mask].mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def scene():
    verts, faces, uvs = face_patch()
    tex = texture_image(256)
    return verts, faces, uvs, tex


def render(verts, faces, uvs, tex, cam, sh):
    out = r.render_mesh(r.Mesh(verts[None], faces, uvs=uvs, uv_faces=faces), cam, texture=tex, sh=sh)
    return out.image[0]


def test_bake_recovers_known_texture_on_visible_texels(scene):
    verts, faces, uvs, tex = scene
    cam, sh = camera(0.0), lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), resolution=256)
    seen = res.visibility > 0.5
    assert float(seen.float().mean()) > 0.6
    assert psnr(res.albedo, tex, seen) > 30.0
    # the raw unwrap still carries the shading; the de-lit texture does not
    assert psnr(res.raw, tex, seen) < psnr(res.albedo, tex, seen) - 3.0
    assert res.albedo.shape == (256, 256, 3) and res.visibility.shape == (256, 256)
    assert torch.isfinite(res.albedo).all() and float(res.albedo.min()) >= 0.0 and float(res.albedo.max()) <= 1.0


def test_delighting_gives_flat_albedo_under_strong_light(scene):
    verts, faces, uvs, _ = scene
    albedo = torch.tensor([0.7, 0.5, 0.4])
    cam, sh = camera(0.0), r.ambient_sh(0.55)
    sh[0, 3], sh[0, 1] = 0.7, 0.3
    img = r.render_mesh(r.Mesh(verts[None], faces), cam, vertex_colors=albedo.expand(verts.shape[0], 3), sh=sh).image[0]
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), resolution=128, mirror=False)
    seen = res.visibility > 0.5
    seen[:4], seen[-4:], seen[:, :4], seen[:, -4:] = False, False, False, False  # patch border: antialiased with the background
    recovered = res.albedo[seen]
    err = (recovered - albedo).abs().max(-1).values
    assert float(err.quantile(0.95)) < 0.01
    raw_err = (res.raw[seen] - albedo).abs().max(-1).values
    assert float(raw_err.quantile(0.5)) > 0.1  # the photo itself is far from the albedo
    assert float((res.shading[seen] * recovered - res.raw[seen]).abs().quantile(0.95)) < 0.01


def test_mirror_completion_fills_the_unseen_half(scene):
    verts, faces, uvs, _ = scene
    tex = texture_image(256, symmetric=True)
    cam, sh = camera(0.0), lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    mask = torch.ones(img.shape[:2])
    mask[:, :128] = 0.0  # hide the image's left half (the subject's right, x < 0)
    grey = torch.full((256, 256, 3), 0.5)
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0], mask), albedo_fallback=grey, resolution=256)
    plain = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0], mask), albedo_fallback=grey, resolution=256, mirror=False)
    hidden = torch.zeros(256, 256, dtype=torch.bool)
    hidden[32:224, 24:110] = True  # u < 0.43: subject's right, unseen
    assert float(res.visibility[hidden].max()) == 0.0
    assert psnr(res.albedo, tex, hidden) > 26.0
    assert psnr(res.albedo, tex, hidden) > psnr(plain.albedo, tex, hidden) + 6.0
    assert bool(res.observed[hidden].all())


def test_symmetry_map_of_a_symmetric_layout_is_u_flip(scene):
    verts, faces, uvs, _ = scene
    raster = rasterize_uv(uvs, faces, 64)
    sym = symmetry_map(verts, faces, uvs, faces, raster)
    R = 64
    rows, cols = raster.index // R, raster.index % R
    centre = torch.stack([(cols + 0.5) / R, 1.0 - (rows + 0.5) / R], -1)
    ok = sym.valid
    assert float(ok.float().mean()) > 0.95
    assert torch.allclose(sym.uv[ok, 0], 1.0 - centre[ok, 0], atol=1e-4)
    assert torch.allclose(sym.uv[ok, 1], centre[ok, 1], atol=1e-4)


def test_fallback_fills_everything_unseen_with_model_albedo(scene):
    verts, faces, uvs, tex = scene
    cam, sh = camera(0.0), lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(0))
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0], torch.zeros(256, 256)), albedo_fallback=colours, resolution=64)
    geo = uv_position_normal_maps(verts, faces, uvs, faces, 64)
    expected = geo.raster.scatter(geo.raster.interpolate(colours, faces))
    assert float(res.visibility.max()) == 0.0
    assert torch.allclose(res.albedo[geo.mask], expected[geo.mask], atol=1e-5)


def test_multi_view_bake_covers_both_sides(scene):
    verts, faces, uvs, tex = scene
    views = [camera(-20.0), camera(20.0)]
    shs = [lighting(0.3)[0], lighting(-0.2)[0]]  # each photo has its own lighting
    imgs = [render(verts, faces, uvs, tex, c, s[None]) for c, s in zip(views, shs)]
    left, right = torch.ones(256, 256), torch.ones(256, 256)
    left[:, 128:] = 0.0
    right[:, :128] = 0.0
    one = bake_texture(Mesh(verts, faces, uvs, faces), View(imgs[0], views[0], shs[0], left), resolution=128, mirror=False)
    both = bake_texture(Mesh(verts, faces, uvs, faces), [View(i, c, s, m) for i, c, s, m in zip(imgs, views, shs, [left, right])],
                        resolution=128, mirror=False)
    cover_one = float((one.visibility > 0.5).float().mean())
    cover_both = float((both.visibility > 0.5).float().mean())
    assert cover_both > cover_one + 0.3
    seen = both.visibility > 0.5
    assert psnr(both.albedo, texture_image(128), seen) > 28.0


def test_self_occlusion_is_detected():
    verts, faces, uvs = face_patch()
    cam = camera(70.0)  # strongly turned: the nose hides part of the far cheek
    img = r.render_mesh(r.Mesh(verts[None], faces), cam, vertex_colors=torch.ones(verts.shape[0], 3)).image[0]
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam), resolution=128, mirror=False, options=BakeOptions(min_cos=0.0))
    geo = uv_position_normal_maps(verts, faces, uvs, faces, 128)
    n = geo.normal
    cam_centre = -(cam.R[0].T @ cam.t[0])
    facing = ((cam_centre - geo.position) * n).sum(-1) > 0.02
    occluded = facing & (res.visibility == 0) & geo.mask
    assert int(occluded.sum()) > 20  # front-facing yet hidden behind the nose


def test_pull_push_fills_holes_smoothly():
    vals = torch.zeros(32, 32, 3)
    vals[..., 0] = torch.linspace(0, 1, 32)[None, :]
    w = torch.ones(32, 32)
    w[8:24, 8:24] = 0.0
    out = pull_push(vals * w[..., None], w)
    assert torch.allclose(out[w > 0], vals[w > 0], atol=1e-6)
    hole = out[8:24, 8:24, 0]
    assert float(hole.min()) > 0.1 and float(hole.max()) < 0.9


def test_uncovered_texels_are_dilated(scene):
    verts, faces, uvs, tex = scene
    small_uvs = uvs * 0.5 + 0.25  # layout covers only the centre of the tile
    cam, sh = camera(0.0), lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    res = bake_texture(Mesh(verts, faces, small_uvs, faces), View(img, cam, sh[0]), resolution=64)
    assert torch.allclose(res.albedo[0, 0], res.albedo[16, 16], atol=1e-6)
    assert torch.allclose(res.albedo[63, 63], res.albedo[47, 47], atol=1e-6)


def test_bad_inputs_raise(scene):
    verts, faces, uvs, tex = scene
    cam = camera(0.0)
    mesh = Mesh(verts, faces, uvs, faces)
    with pytest.raises(ShapeError, match="image"):
        View(torch.zeros(10, 10), cam)
    with pytest.raises(ShapeError, match="sh"):
        View(torch.zeros(10, 10, 3), cam, torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="mask"):
        View(torch.zeros(10, 10, 3), cam, mask=torch.ones(3, 3))
    with pytest.raises(ShapeError, match="uv_faces"):
        bake_texture(Mesh(verts, faces, uvs, faces[:5]), View(torch.zeros(10, 10, 3), cam))
    with pytest.raises(ShapeError, match="vertices"):
        bake_texture(Mesh(torch.stack([verts] * 3), faces, uvs, faces), [View(torch.zeros(10, 10, 3), cam)] * 2)
    with pytest.raises(BadInputError, match="no view"):
        bake_texture(mesh, [])
    with pytest.raises(BadInputError, match="resolution"):
        bake_texture(mesh, View(torch.zeros(10, 10, 3), cam), resolution=2)
    with pytest.raises(ShapeError, match="albedo_fallback"):
        bake_texture(mesh, View(torch.zeros(10, 10, 3), cam), albedo_fallback=torch.zeros(7, 3), resolution=16)


def test_position_and_normal_maps_of_the_patch(scene):
    verts, faces, uvs, _ = scene
    geo = uv_position_normal_maps(verts, faces, uvs, faces, 64)
    R = 64
    v, u = torch.meshgrid(1.0 - (torch.arange(R) + 0.5) / R, (torch.arange(R) + 0.5) / R, indexing="ij")
    m = geo.mask
    assert float(m.float().mean()) > 0.95
    assert torch.allclose(geo.position[..., 0][m], ((u - 0.5) * 2 * HALF)[m], atol=1e-5)
    assert torch.allclose(geo.position[..., 1][m], ((v - 0.5) * 2 * HALF)[m], atol=1e-5)
    assert torch.allclose(geo.normal.norm(dim=-1)[m], torch.ones(int(m.sum())), atol=1e-4)
    assert float(geo.normal[..., 2][m].min()) > 0.3  # the height field faces +z
    mirrored = geo.normal.flip(1) * torch.tensor([-1.0, 1.0, 1.0])  # the patch is symmetric in x
    assert torch.allclose(geo.normal[m], mirrored[m], atol=0.03)
    assert float(geo.normal[R // 2, R // 2 + 2, 0]) > 0.2  # right flank of the nose tilts to +x


def test_per_view_vertices_match_shared_ones(scene):
    """Mesh vertices (B,V,3) with B = the number of views give each view its own vertex set; the
    same set repeated bakes exactly what the shared (1,V,3) one does, and uint8 photos are read as /255."""
    verts, faces, uvs, tex = scene
    cams = [camera(-20.0), camera(20.0)]
    sh = lighting()
    imgs = [render(verts, faces, uvs, tex, c, sh) for c in cams]
    views = [View(i, c, sh[0]) for i, c in zip(imgs, cams)]
    a = bake_texture(Mesh(torch.stack([verts, verts]), faces, uvs, faces), views, resolution=64)
    b = bake_texture(Mesh(verts, faces, uvs, faces), views, resolution=64)
    assert torch.equal(a.albedo, b.albedo) and torch.equal(a.visibility, b.visibility)
    assert float(a.visibility.max()) > 0.9
    as_bytes = (imgs[0] * 255).round().to(torch.uint8)
    assert torch.equal(View(as_bytes, cams[0]).image[0], as_bytes.float() / 255)


def test_orthographic_camera_bake(scene):
    verts, faces, uvs, tex = scene
    cam = r.OrthographicCamera(scale=1400.0, width=256, height=256)  # the patch is ~224 px wide
    sh = lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    res = bake_texture(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), resolution=128, mirror=False)
    seen = res.visibility > 0.5
    assert float(seen.float().mean()) > 0.6
    assert psnr(res.albedo, texture_image(128), seen) > 28.0


def test_bake_without_shading_maps_gives_the_same_albedo(scene):
    verts, faces, uvs, tex = scene
    cam, sh = camera(20.0), lighting()
    img = render(verts, faces, uvs, tex, cam, sh)
    args = (Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]))
    full = bake_texture(*args, resolution=128, albedo_fallback=torch.full((verts.shape[0], 3), 0.5))
    lean = bake_texture(*args, resolution=128, albedo_fallback=torch.full((verts.shape[0], 3), 0.5), options=BakeOptions(shading_maps=False))
    assert lean.raw is None and lean.shading is None
    assert full.raw is not None and full.shading is not None and float(full.shading.max()) > 0.5
    for name in ("albedo", "visibility", "observed", "weight"):
        assert torch.equal(getattr(full, name), getattr(lean, name)), name
    assert float(lean.visibility.max()) > 0.9


@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_fused_mirror_kernels_equal_the_tensor_expressions(strength):
    """mirror_stack / mirror_blend (numba) give, to the bit, the float32 tensor expressions they replaced in bake_texture."""
    import numpy as np
    import torch.nn.functional as F

    from face3d.texture.sampling import mirror_blend, mirror_stack
    from face3d.texture.uv_raster import UVRaster

    rng = np.random.default_rng(15)
    R, n = 16, 200
    index = np.sort(rng.choice(R * R, n, replace=False))
    raster = UVRaster(R, torch.zeros(R, R, dtype=torch.int64), torch.zeros(R, R, 3), torch.from_numpy(index), torch.zeros(n, dtype=torch.int64),
                      torch.zeros(n, 3), torch.arange(R * R))
    delit_n = torch.rand(n, 3)
    vis_n = torch.where(torch.rand(n) < 0.3, torch.zeros(n), torch.rand(n))
    valid = torch.rand(n) < 0.8
    delit, vis = raster.scatter(delit_n), raster.scatter(vis_n[:, None])[..., 0]
    stack = torch.empty(1, 4, R, R)
    torch.mul(delit.permute(2, 0, 1), vis, out=stack[0, :3])
    stack[0, 3] = vis
    fused = torch.from_numpy(mirror_stack(index, delit_n.numpy(), vis_n.numpy(), R))
    assert torch.equal(fused, stack[0])
    grid = (torch.rand(1, 1, n, 2) * 2 - 1)
    got = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0]  # (4,N)
    g = got.T
    wm = g[:, 3] * valid.float() * strength
    cm = g[:, :3] / g[:, 3:].clamp_min(1e-8)
    w_mir = wm * (1.0 - vis_n)
    total = vis_n + w_mir
    c = (vis_n[:, None] * delit_n + w_mir[:, None] * cm) / total.clamp_min(1e-8)[:, None]
    colour, weight = mirror_blend(index, got.numpy(), valid.numpy(), vis_n.numpy(), delit_n.numpy(), strength, R)
    assert torch.equal(torch.from_numpy(colour), raster.scatter(c)) and torch.equal(torch.from_numpy(weight), raster.scatter(total[:, None])[..., 0])
    assert float(weight.max()) > 0 and colour.dtype == np.float32


def test_box_blur_kernel_equals_avg_pool2d():
    """bake._blur's numba kernel gives avg_pool2d's values (count_include_pad=False) to the bit, borders included."""
    import numpy as np
    import torch.nn.functional as F

    from face3d.texture.bake import _blur

    rng = np.random.default_rng(16)
    for shape, k in (((64, 48), 5), ((7, 9), 3), ((33, 20), 7)):
        x = rng.random(shape).astype(np.float32)
        x[rng.random(shape) < 0.3] = 0.0
        x[rng.random(shape) < 0.3] = 1.0
        t = torch.from_numpy(x)
        want = F.avg_pool2d(t[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
        assert torch.equal(_blur(t, k), want)
        assert torch.allclose(_blur(t.double(), k), want.double(), atol=1e-6)  # other dtypes: avg_pool2d itself


def test_fused_blend_equals_the_tensor_expressions():
    """bake._blend_dilated (numba) gives the dilated clamp(soft·colour + (1 − soft)·filled) of the tensor expressions, to the bit."""
    import numpy as np

    from face3d.texture.bake import _blend_dilated
    from face3d.texture.uv_raster import UVRaster

    rng = np.random.default_rng(17)
    R = 12
    nearest = torch.from_numpy(rng.integers(0, R * R, R * R))
    raster = UVRaster(R, torch.zeros(R, R, dtype=torch.int64), torch.zeros(R, R, 3), torch.arange(R * R), torch.zeros(R * R, dtype=torch.int64),
                      torch.zeros(R * R, 3), nearest)
    weight = torch.rand(R, R) * 1.5
    weight[weight < 0.3] = 0.0
    blurred = torch.rand(R, R)
    colour, filled = torch.rand(R, R, 3) * 1.2 - 0.1, torch.rand(R, R, 3) * 1.2 - 0.1
    soft = torch.minimum(weight, blurred).clamp(0.0, 1.0)[..., None]
    want = raster.dilate((soft * colour + (1.0 - soft) * filled).clamp(0.0, 1.0))
    got = _blend_dilated(raster, weight, blurred, colour, filled)
    assert got.shape == (R, R, 3) and torch.equal(got, want)


def test_interpolate_image_is_the_scattered_interpolation(scene):
    """UVRaster.interpolate_image (one numba pass) = scatter(interpolate(...)): the same values up to the
    rounding of the sparse product's fused multiply-adds (bit-identical where it uses them, as on x86-64 MKL)."""
    import numpy as np

    from face3d.texture.uv_raster import rasterize_uv

    verts, faces, uvs, _ = scene
    raster = rasterize_uv(uvs, faces, 64)
    attr = torch.rand(verts.shape[0], 3)
    want = raster.scatter(raster.interpolate(attr, faces))
    got = raster.interpolate_image(attr, faces)
    assert got.shape == want.shape == (64, 64, 3)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=3e-7, atol=1e-7)
    assert torch.all(got[~raster.mask] == 0) and float(got[raster.mask].abs().sum()) > 0
    assert torch.equal(raster.interpolate_image(attr.double(), faces), raster.scatter(raster.interpolate(attr.double(), faces)))
