"""Implicit-SDF reconstructor (face3d.detail.sdf): base SDF, network, ray intersection with its
implicit gradient, surface extraction, registration, the end-to-end planted bump, fallback."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from face3d import renderers
from face3d.detail.sdf import SDFFitOptions, View, reconstruct_sdf
from face3d.detail.sdf.base import MeshDistance, sample_surface
from face3d.detail.sdf.extract import (
    evaluate_grid,
    extract_surface,
    fade_unregistered,
    photo_weight,
    register_displacement,
)
from face3d.detail.sdf.network import FourierFeatures, ImplicitFace, ResidualSDF
from face3d.detail.sdf.optimize import (
    albedo_at,
    lr_factor,
    sample_texcoords,
    start_depths,
)
from face3d.detail.sdf.pipeline import synthetic_views
from face3d.detail.sdf.trace import attach_implicit_gradient, intersect, sdf_grad
from face3d.detail.sdf.views import pixel_rays
from face3d.errors import ShapeError
from face3d.io.mesh import vertex_normals_np
from face3d.mesh import Mesh

R_SPHERE = 0.08


def sphere(subdivisions: int = 4):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=R_SPHERE)
    return np.asarray(s.vertices, np.float64), np.asarray(s.faces, np.int64)


def sphere_uvs(v: torch.Tensor) -> torch.Tensor:
    n = v / v.norm(dim=1, keepdim=True)
    return torch.stack([0.5 + torch.atan2(n[:, 0], n[:, 2]) / (2 * math.pi), 0.5 + torch.asin(n[:, 1].clamp(-1, 1)) / math.pi], 1)


def camera(size: int = 128, focal: float = 300.0):
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    return renderers.PerspectiveCamera(K=K, t=torch.tensor([[0.0, 0.0, -0.4]]), width=size, height=size)


def implicit_sphere(subdivisions: int = 4) -> ImplicitFace:
    v, f = sphere(subdivisions)
    base = MeshDistance(v, f)
    return ImplicitFace(base, ResidualSDF(torch.zeros(3), R_SPHERE))


def test_surface_samples_and_base_sdf():
    v, f = sphere(3)
    s = sample_surface(v, f, spacing=2e-3)
    assert np.allclose(np.linalg.norm(s.points, axis=1), R_SPHERE, atol=2e-3)
    assert np.allclose(np.linalg.norm(s.normals, axis=1), 1.0)
    assert (np.einsum("nd,nd->n", s.normals, s.points / R_SPHERE) > 0.99).all()  # outward
    vn = vertex_normals_np(v, f)
    assert np.allclose(vn, v / R_SPHERE, atol=2e-2)
    base = MeshDistance(v, f, spacing=1e-3)
    x = torch.tensor([[0.0, 0.0, 0.085], [0.0, 0.079, 0.0], [0.03, 0.03, 0.03]], requires_grad=True)
    d = base.signed_distance(x)
    expected = x.detach().norm(dim=1) - R_SPHERE
    assert torch.allclose(d, expected.float(), atol=6e-4)
    (g,) = torch.autograd.grad(d.sum(), x)
    assert torch.allclose(g.norm(dim=1), torch.ones(3), atol=1e-5)  # gradient = the unit normal field
    coarse = base.coarse_signed_distance(x.detach().double().numpy())
    assert np.all(np.sign(coarse) == np.sign(expected.numpy()))
    within, ok = base.query_within(np.array([[0.0, 0.0, 0.081], [0.0, 0.0, 0.2]]), 5e-3)
    assert ok.tolist() == [True, False] and abs(within[0] - 1e-3) < 5e-4
    with pytest.raises(ShapeError):
        sample_surface(v[:, :2], f, 1e-3)
    with pytest.raises(ShapeError):
        sample_surface(v, f[:, :2], 1e-3)


def test_network_starts_at_zero_and_features():
    enc = FourierFeatures(3)
    assert enc.out_dim == 3 + 18
    x = torch.rand(5, 3)
    feat = enc(x)
    assert feat.shape == (5, 21) and torch.allclose(feat[:, :3], x)
    assert torch.allclose(feat[:, 3], torch.sin(math.pi * x[:, 0]))
    net = ResidualSDF(torch.zeros(3), 0.1)
    assert torch.count_nonzero(net(torch.randn(100, 3) * 0.05)) == 0


def test_initialisation_reproduces_the_mesh():
    """The initial zero level set is the fitted mesh: marching-cubes Chamfer < 1.5 mm at a 2 mm voxel, watertight."""
    face = implicit_sphere(4)
    v, _f = face.base.vertices, face.base.faces
    closed, crop = extract_surface(face, face.base.samples.points, voxel=2e-3, crop_distance=3e-3)
    assert closed.is_watertight and closed.is_winding_consistent
    assert closed.volume > 0  # outward orientation
    d_mc, _ = cKDTree(v).query(closed.vertices)
    d_mesh, _ = cKDTree(closed.vertices).query(v)
    chamfer = 0.5 * (d_mc.mean() + d_mesh.mean())
    assert chamfer < 1.5e-3
    assert np.abs(np.linalg.norm(closed.vertices, axis=1) - R_SPHERE).max() < 1e-3
    assert len(crop.faces) > 0.95 * len(closed.faces)
    vals, origin = evaluate_grid(face, np.array([-0.1, -0.1, -0.1]), np.array([0.1, 0.1, 0.1]), 1e-2)
    pts = origin + 1e-2 * np.stack(np.meshgrid(*[np.arange(s) for s in vals.shape], indexing="ij"), -1)
    true = np.linalg.norm(pts, axis=-1) - R_SPHERE
    assert (np.sign(vals) == np.sign(true))[np.abs(true) > 4e-3].all()
    near = np.abs(true) < 4e-3
    assert np.abs(vals[near] - true[near]).max() < 1e-3
    pts_t = torch.as_tensor(v[:50], dtype=torch.float32)
    offsets, valid = register_displacement(face, pts_t, pts_t / pts_t.norm(dim=1, keepdim=True))
    assert offsets.abs().max() < 2e-4 and bool(valid.all())


def test_registration_flags_points_whose_normal_misses_the_surface():
    """Points 3 mm off the sphere register back (offset -3 mm); points 20 mm off hit the 5 mm clamp
    and are flagged, as are points whose 'normal' runs tangent to the surface."""
    face = implicit_sphere(4)
    dirs = torch.nn.functional.normalize(torch.randn(30, 3, dtype=torch.float64), dim=1).float()
    near, valid_near = register_displacement(face, dirs * (R_SPHERE + 3e-3), dirs)
    assert bool(valid_near.all()) and torch.allclose(near, torch.full_like(near, -3e-3), atol=2e-4)
    far, valid_far = register_displacement(face, dirs * (R_SPHERE + 2e-2), dirs)
    assert not bool(valid_far.any()) and torch.allclose(far, torch.full_like(far, -5e-3))
    tangent = torch.nn.functional.normalize(torch.cross(dirs, torch.randn(30, 3), dim=1), dim=1)
    _, valid_tan = register_displacement(face, dirs * (R_SPHERE + 3e-3), tangent)
    assert not bool(valid_tan.any())


def test_photo_weight_follows_the_best_facing_camera():
    cam = camera()  # centre at (0, 0, 0.4) m, looking at the origin
    cos = torch.tensor([1.0, 0.5, 0.35, 0.2, -1.0])
    normals = torch.stack([torch.sqrt(1 - cos**2), torch.zeros(5), cos], 1)
    w = photo_weight(torch.zeros(5, 3), normals, [cam], lo=0.2, hi=0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))
    # a second camera on the +X axis (rotated 90 deg about Y): its centre solves R c + t = 0
    a = math.pi / 2
    R = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
    side = renderers.PerspectiveCamera(K=cam.K, R=R[None], t=torch.tensor([[0.0, 0.0, -0.4]]), width=128, height=128)
    centre = -torch.linalg.solve(R, torch.tensor([0.0, 0.0, -0.4]))
    assert torch.allclose(centre.abs(), torch.tensor([0.4, 0.0, 0.0]), atol=1e-6)
    n_side = torch.nn.functional.normalize(centre, dim=0)[None]
    assert float(photo_weight(torch.zeros(1, 3), n_side, [cam])) == 0.0
    assert float(photo_weight(torch.zeros(1, 3), n_side, [cam, side])) == 1.0


def test_fade_unregistered_zeroes_failures_and_ramps_their_neighbourhood():
    x = np.linspace(0, 0.01, 11)  # 1 mm apart on a line
    pts = np.stack([x, np.zeros_like(x), np.zeros_like(x)], 1)
    off = np.full(11, 2e-4)
    valid = np.ones(11, bool)
    valid[0] = False
    out = fade_unregistered(pts, off, valid, inner=1e-3, outer=3e-3)
    np.testing.assert_allclose(out, 2e-4 * np.array([0, 0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]), atol=1e-12)
    np.testing.assert_array_equal(fade_unregistered(pts, off, np.ones(11, bool)), off)
    np.testing.assert_array_equal(fade_unregistered(pts, off, np.zeros(11, bool)), 0 * off)


def analytic_sphere(c: torch.Tensor, r: torch.Tensor):
    return lambda x: (x - c).norm(dim=-1) - r


def test_intersection_and_implicit_gradient_match_finite_differences():
    c = torch.tensor([0.01, -0.02, 0.0], dtype=torch.float64, requires_grad=True)
    r = torch.tensor(0.08, dtype=torch.float64, requires_grad=True)
    o = torch.tensor([[0.0, 0.0, 0.5], [0.02, 0.01, 0.5], [-0.03, 0.02, 0.5]], dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0], [0.01, -0.05, -1.0], [0.02, 0.0, -1.0]], dtype=torch.float64), dim=1)
    sdf = analytic_sphere(c, r)
    t, ok = intersect(sdf, o, d, torch.full((3,), 0.41, dtype=torch.float64), iters=12, max_step=0.05, tol=1e-9)
    assert ok.all()
    x = o + t[:, None] * d
    f, g = sdf_grad(sdf, x)
    assert f.abs().max() < 1e-9 and torch.allclose(g.norm(dim=1), torch.ones(3, dtype=torch.float64))
    w = torch.tensor([[0.3, -0.7, 1.1], [1.0, 0.5, -0.2], [-0.4, 0.9, 0.6]], dtype=torch.float64)
    xg = attach_implicit_gradient(sdf, o, d, t)
    assert torch.allclose(xg, x)
    loss = (xg * w).sum()
    gc, gr = torch.autograd.grad(loss, [c, r])

    def loss_at(cc: torch.Tensor, rr: torch.Tensor) -> float:
        s = analytic_sphere(cc, rr)
        tt, _ = intersect(s, o, d, t.detach(), iters=20, max_step=0.05, tol=1e-12)
        return float(((o + tt[:, None] * d) * w).sum())

    eps = 1e-6
    fd_c = torch.zeros(3, dtype=torch.float64)
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = eps
        fd_c[k] = (loss_at(c.detach() + e, r.detach()) - loss_at(c.detach() - e, r.detach())) / (2 * eps)
    fd_r = (loss_at(c.detach(), r.detach() + eps) - loss_at(c.detach(), r.detach() - eps)) / (2 * eps)
    assert torch.allclose(gc, fd_c, rtol=1e-4, atol=1e-7)
    assert abs(float(gr) - fd_r) < 1e-4 * abs(fd_r) + 1e-7


def test_pixel_rays_pass_through_projected_points():
    cam = camera(64)
    o, d, cos = pixel_rays(cam)
    assert o.shape == (64 * 64, 3) and torch.allclose(d.norm(dim=1), torch.ones(64 * 64))
    p = torch.tensor([[[0.02, -0.015, 0.05]]])
    px = cam.project(p)[0, 0]
    i, j = int(px[1]), int(px[0])
    k = i * 64 + j
    # the ray of that pixel passes within half a pixel footprint of the point
    v = p[0, 0] - o[k]
    dist = (v - (v @ d[k]) * d[k]).norm()
    assert dist < 0.5 * 0.35 / 300 * 1.5
    assert torch.allclose(cos[k], -(torch.nn.functional.normalize(v, dim=0) @ torch.tensor([0.0, 0.0, 1.0])), atol=1e-2)
    with pytest.raises(ShapeError):
        View(torch.zeros(8, 8), cam, torch.zeros(9, 3))
    with pytest.raises(ShapeError):
        View(torch.zeros(8, 8, 3), cam, torch.zeros(3, 9))


def bumps(p: torch.Tensor) -> torch.Tensor:
    h = torch.zeros(len(p))
    for c in [(0.0, 0.0, 1.0), (0.3, 0.3, 0.9), (-0.3, -0.2, 0.93)]:
        cc = torch.tensor(c) / torch.tensor(c).norm()
        h += 1.5e-3 * torch.exp(-((p / p.norm(dim=1, keepdim=True) - cc) ** 2).sum(1) / (2 * 0.08**2))
    return h


def planted_case(size: int = 128):
    s = trimesh.creation.icosphere(subdivisions=5, radius=R_SPHERE)
    v = torch.tensor(s.vertices, dtype=torch.float32)
    f = torch.tensor(s.faces)
    n = v / v.norm(dim=1, keepdim=True)
    h = bumps(v)
    cam = camera(size, focal=300.0 * size / 128)
    sh = renderers.ambient_sh(0.6)[0]
    sh[1] += 0.3
    sh[2] += 0.4
    sh[3] += 0.2
    uv = sphere_uvs(v)
    alb = torch.full((32, 32, 3), 0.7)
    img = renderers.render_mesh(renderers.Mesh((v + n * h[:, None])[None], f, uvs=uv, uv_faces=f), cam, texture=alb, sh=sh[None]).image[0]
    return v, f, uv, alb, cam, sh, img, h, n


@pytest.mark.slow
def test_end_to_end_recovers_a_planted_bump():
    """Seed 0, with the learning-rate warm-up and decay: float rounding then barely moves the
    result (corr 0.785 / 0.784 / 0.787, peak 0.57 / 0.54 / 0.57 mm with MKL's AVX-512 kernels, its
    AVX2 ones, or 2 torch threads), where the
    constant rate landed at 0.669 or 0.761 by kernel alone. Other seeds recover less of the bump
    (150 iterations, seeds 1-3: corr 0.63-0.75, peak 0.29-0.37 mm), so the seed stays pinned."""
    v, f, uv, alb, cam, sh, img, h, n = planted_case()
    res = reconstruct_sdf(Mesh(v, f, uv, f), View(img, cam, sh), alb,
                          options=SDFFitOptions(iterations=150, rays=2048, lr=5e-3, warmup=15, lr_final=0.05, synth_yaws=(),
                                                albedo_blur=0.0, uv_resolution=64, voxel=3e-3))
    assert not res.fell_back, res.warning
    front = n[:, 2] > 0.8
    corr = np.corrcoef(res.vertex_offsets[front].numpy(), h[front].numpy())[0, 1]
    peak = float(res.vertex_offsets[front][h[front].argmax()])
    print(f"planted bump: correlation {corr:.3f}, peak {peak * 1e3:.2f} mm of 1.50 mm")
    assert corr > 0.7, corr
    assert 0.4e-3 < peak < 2.5e-3, peak
    assert res.closed_mesh.is_watertight
    assert res.displacement_uv.shape == (64, 64) and res.normal_uv.shape == (64, 64, 3)
    assert res.log.losses[-1]["photo"] < res.log.losses[0]["photo"]
    assert set(res.timings) >= {"init", "views", "optimise", "register", "marching_cubes", "total"}


def test_lr_factor_warms_up_then_decays_to_the_final_fraction():
    opt = SDFFitOptions(iterations=101, warmup=10, lr_final=0.1)
    f = [lr_factor(i, opt) for i in range(101)]
    assert f[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.0))))  # 1/10 of the way up
    assert f[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 9 / 100)))  # warm-up done
    assert f[50] == pytest.approx(0.55) and f[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))  # monotone decay after the warm-up
    assert {lr_factor(i, SDFFitOptions(iterations=7)) for i in range(7)} == {1.0}  # defaults: constant


def test_divergence_falls_back_to_the_3dmm_result():
    v, f, uv, alb, cam, sh, img, _h, _n = planted_case(64)
    res = reconstruct_sdf(Mesh(v, f, uv, f), View(img, cam, sh), alb,
                          options=SDFFitOptions(iterations=3, rays=256, max_residual=1e-12, synth_yaws=(), uv_resolution=32, voxel=4e-3))
    assert res.fell_back and "drifted" in res.warning
    assert torch.equal(res.vertices_detailed, v) and res.closed_mesh is None
    assert res.vertex_offsets.abs().max() == 0
    res2 = reconstruct_sdf(Mesh(v, f, uv, f), View(img * float("nan"), cam, sh), alb,
                           options=SDFFitOptions(iterations=3, rays=256, synth_yaws=(), uv_resolution=32, voxel=4e-3))
    assert res2.fell_back and "not finite" in res2.warning
    with pytest.raises(ShapeError):
        reconstruct_sdf(Mesh(v[:, :2], f, uv, f), View(img, cam, sh), alb)
    with pytest.raises(ShapeError):
        reconstruct_sdf(Mesh(v, f, uv, f), View(img, cam), alb)  # no lighting
    with pytest.raises(ShapeError, match="view"):
        reconstruct_sdf(Mesh(v, f, uv, f), View(torch.stack([img, img]), cam, sh), alb)  # two images, one camera


def test_views_albedo_and_start_depths():
    v, f, uv, alb, cam, sh, img, _h, _n = planted_case(64)
    mesh = Mesh(v, f, uv, f)
    depth, mask = start_depths(mesh, View(img, cam, sh))
    assert mask.any() and not mask.all()
    centre = depth[32, 32]
    assert abs(float(centre) - (0.4 - R_SPHERE)) < 2e-3
    views = synthetic_views(mesh, View(img, cam, sh), alb, (-20.0, 20.0))
    assert len(views) == 2 and all(x.synthetic for x in views)
    assert views[0].image.shape == (1, 64, 64, 3) and not torch.allclose(views[0].image, views[1].image)
    photo = torch.rand(64, 64, 3)
    same = synthetic_views(mesh, View(photo, cam, sh), alb, (0.0,), reproject=True)[0].image[0]
    assert ((same[mask] - photo[mask]).abs().max(-1).values < 2e-3).float().mean() > 0.98  # its own view: the photo comes back
    turned = synthetic_views(mesh, View(photo, cam, sh), alb, (20.0,), reproject=True)[0].image
    assert not torch.allclose(turned, views[1].image)  # re-projected photo colours replace the render
    face = ImplicitFace(MeshDistance(v.double().numpy(), f.numpy()), ResidualSDF(torch.zeros(3), R_SPHERE))
    idx = np.arange(10)
    tex = sample_texcoords(face, idx, uv, f)
    assert tex.shape == (10, 2) and ((tex >= 0) & (tex <= 1)).all()
    gain = torch.full((4, 4, 3), 2.0)
    a = albedo_at(tex, torch.full((8, 8, 3), 0.3), gain)
    assert torch.allclose(a, torch.full((10, 3), 0.6))


@pytest.mark.slow
def test_reconstruct_method_sdf_writes_outputs(tmp_path):
    import face3d
    from face3d.testing import shared_data

    photo = shared_data() / "faces" / "skimage_astronaut.jpg"
    rec = face3d.reconstruct(str(photo), method="sdf", sdf_iterations=4, sdf_voxel=4e-3, texture_resolution=128,
                             detail_resolution=64, photometric_steps=5)
    assert rec.sdf is not None and not rec.sdf.fell_back
    out = rec.save(tmp_path / "out")
    for name in ["mesh_sdf.obj", "mesh_sdf.glb", "sdf_raw.ply", "sdf_face.ply", "sdf.pt", "mesh.obj", "displacement.png", "normal.png"]:
        assert (out / name).is_file(), name
    info = json.loads((out / "params.json").read_text())
    assert info["sdf"]["iterations"] == 4 and info["sdf"]["fell_back"] is False
    raw = trimesh.load(out / "sdf_raw.ply")
    assert raw.is_watertight
    state = torch.load(out / "sdf.pt")
    assert "state_dict" in state and state["radius"] > 0
    from face3d.errors import BadInputError

    with pytest.raises(BadInputError):
        face3d.reconstruct(str(photo), method="nerf")


@pytest.mark.slow
def test_several_photos_are_real_views_of_each_sdf():
    import face3d
    from face3d.pipeline import real_views
    from face3d.testing import shared_data

    paths = [str(shared_data() / "faces" / f"hrn_mv_{k}.jpg") for k in ("10078", "21650")]
    # model named: the "views really differ" margin below (a median over the model's vertices) was set on
    # 'basic'; over the default head's 24,591 vertices the same photos give 0.0061 against 5 x 0.0012
    recs = face3d.reconstruct(paths, model="basic", method="sdf", sdf_iterations=4, sdf_voxel=4e-3, texture_resolution=128,
                              detail_resolution=64, photometric_steps=5)
    assert len(recs) == 2 and all(r.sdf is not None and r.sdf.real_views == 2 for r in recs)
    # photo 1 as a view of photo 0's posed head: its camera must put photo 0's posed mesh where
    # photo 1's own fit projects (same identity; only the per-photo expression differs)
    (view,) = real_views(recs[0], [recs[1]])
    assert view.image.shape[1:3] == recs[1].image.shape[:2]
    here = view.camera.project(torch.as_tensor(recs[0].vertices(posed=True), dtype=torch.float32)[None])[0]
    there = recs[1].camera().project(torch.as_tensor(recs[1].vertices(posed=True), dtype=torch.float32)[None])[0]
    err = (here - there).norm(dim=-1).median() / max(recs[1].image_size)
    same = recs[0].camera().project(torch.as_tensor(recs[0].vertices(posed=True), dtype=torch.float32)[None])[0]
    assert err < 0.01, err
    assert (same - there).norm(dim=-1).median() / max(recs[1].image_size) > 5 * err  # the views really differ


@pytest.mark.slow
def test_video_method_sdf_uses_other_frames_on_the_first(tmp_path):
    import face3d
    from face3d.io.images import demo_image
    from face3d.io.video import write_video

    img = demo_image()[:384, 64:448]
    clip = write_video(tmp_path / "clip.mp4", [np.roll(img, shift=4 * k, axis=1) for k in range(3)], fps=4.0)
    recs = face3d.reconstruct(str(clip), fps=4.0, method="sdf", sdf_iterations=3, sdf_voxel=4e-3, photometric_steps=3,
                              texture_resolution=128, detail_resolution=64)
    assert len(recs) == 3 and recs[0].sdf is not None and recs[0].sdf.real_views == 3
    assert recs[1].sdf is None and recs[2].sdf is None
