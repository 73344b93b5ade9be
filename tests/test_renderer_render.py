"""render_mesh, backends, batch consistency and pose recovery through the renderer alone."""

from __future__ import annotations

import math

import pytest
import torch

from face3d import renderers as R
from face3d.errors import BackendError, MissingDependencyError, ShapeError
from test_renderer_shading import icosphere

D = torch.float64


def _quad(z=-2.0, half=0.5, dtype=D):
    v = torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=dtype)
    return v[None], torch.tensor([[0, 1, 2], [0, 2, 3]])


def _cam(W=32, H=24, f=40.0, dtype=D, B=1):
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=dtype).expand(B, 3, 3)
    return R.PerspectiveCamera(K, width=W, height=H)


def test_unlit_vertex_colours_background_alpha_and_ids():
    verts, faces = _quad()
    out = R.render_mesh(R.Mesh(verts, faces), _cam(), vertex_colors=torch.tensor([0.2, 0.4, 0.6], dtype=D).expand(4, 3), background=0.9)
    inside = out.tri_id[0] >= 0
    # quad spans ±0.5 m at 2 m with f = 40: ±10 px around the centre (16, 12)
    assert inside.sum() == 20 * 20
    assert torch.allclose(out.image[0][inside], torch.tensor([0.2, 0.4, 0.6], dtype=D).expand(400, 3))
    assert torch.allclose(out.image[0][~inside], torch.full((32 * 24 - 400, 3), 0.9, dtype=D))
    # edges lie exactly on pixel boundaries: antialiasing adds (almost) nothing
    assert torch.allclose(out.alpha[0][inside], torch.ones(400, 1, dtype=D))
    assert out.alpha[0][~inside].abs().max() < 1e-9
    assert set(out.tri_id.unique().tolist()) == {-1, 0, 1}
    assert torch.all(out.depth[0][~inside] == 0) and torch.all(out.normals[0][~inside] == 0)
    assert out.rast.shape == (1, 24, 32, 4) and out.clip_pos.shape == (1, 4, 4)


def test_antialiased_alpha_is_fractional_on_subpixel_edges():
    verts, faces = _quad(half=0.5 + 0.3 / 20)  # edges at 0.3 px past the pixel boundary
    out = R.render_mesh(R.Mesh(verts, faces), _cam())
    frac = out.alpha[0, ..., 0][(out.alpha[0, ..., 0] > 0) & (out.alpha[0, ..., 0] < 1)]
    assert frac.numel() > 40
    assert torch.allclose(frac.median(), torch.tensor(0.3, dtype=D), atol=0.02)
    plain = R.render_mesh(R.Mesh(verts, faces), _cam(), antialias=False)
    assert set(plain.alpha.unique().tolist()) == {0.0, 1.0}


def test_texture_orientation_obj_uvs_top_of_image_is_top_of_picture():
    verts, faces = _quad()
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=D)
    tex = torch.zeros(8, 8, 3, dtype=D)
    tex[:4, :, 0] = 1.0  # top half of the image red
    tex[4:, :, 2] = 1.0  # bottom half blue
    tex[:, :4, 1] = 0.5  # left half has some green
    out = R.render_mesh(R.Mesh(verts, faces, uvs=uvs), _cam(), texture=tex, antialias=False)
    img = out.image[0]
    assert img[3, 16, 0] == 1 and img[3, 16, 2] == 0
    assert img[20, 16, 2] == 1 and img[20, 16, 0] == 0
    assert img[12, 8, 1] == 0.5 and img[12, 24, 1] == 0


def test_sh_lighting_of_a_facing_quad():
    verts, faces = _quad()
    sh = R.ambient_sh(0.5, dtype=D)
    sh[0, 2] = 0.3  # z band: shading 0.5 + (2/3)·sqrt(3/4π)·0.3 for normal +z
    out = R.render_mesh(R.Mesh(verts, faces), _cam(), sh=sh, vertex_colors=torch.full((4, 3), 0.5, dtype=D), antialias=False)
    inside = out.tri_id[0] >= 0
    expected = 0.5 * (0.5 + 2 / 3 * math.sqrt(3 / (4 * math.pi)) * 0.3)
    assert torch.allclose(out.image[0][inside], torch.full((400, 3), expected, dtype=D))
    assert torch.allclose(out.shading[0][inside], torch.full((400, 3), expected / 0.5, dtype=D))


def test_render_mesh_batch_of_four_equals_four_singles_including_gradients():
    v, f = icosphere(2)
    g = torch.Generator().manual_seed(0)
    verts = (v[None] * 0.3 + torch.randn(4, 1, 3, generator=g, dtype=D) * 0.1 + torch.tensor([0, 0, -2.0], dtype=D)).clone()
    cols = torch.rand(4, v.shape[0], 3, generator=g, dtype=D)
    sh = R.ambient_sh(0.7, batch=4, dtype=D)
    sh[:, 1:4] = torch.randn(4, 3, 3, generator=g, dtype=D) * 0.2
    cam = _cam(B=4)
    vb = verts.clone().requires_grad_(True)
    out = R.render_mesh(R.Mesh(vb, f), cam, vertex_colors=cols, sh=sh)
    (out.image ** 2).sum().backward()
    for b in range(4):
        v1 = verts[b : b + 1].clone().requires_grad_(True)
        o1 = R.render_mesh(R.Mesh(v1, f), _cam(), vertex_colors=cols[b : b + 1], sh=sh[b : b + 1])
        (o1.image ** 2).sum().backward()
        for name in ("image", "alpha", "depth", "normals", "tri_id"):
            assert torch.allclose(getattr(o1, name), getattr(out, name)[b : b + 1]), name
        assert torch.allclose(v1.grad, vb.grad[b : b + 1])


def test_render_mesh_input_errors_name_the_argument():
    verts, faces = _quad()
    cam = _cam()
    plain = R.Mesh(verts, faces)
    bad_uv_faces = R.Mesh(verts, faces, uvs=torch.zeros(4, 2, dtype=D), uv_faces=torch.tensor([[0, 1, 9]]))
    cases = [
        (plain, dict(vertex_colors=torch.zeros(3, 3, dtype=D)), "vertex_colors"),
        (plain, dict(texture=torch.zeros(4, 4, 3, dtype=D)), "uvs"),
        (bad_uv_faces, dict(texture=torch.zeros(4, 4, 3, dtype=D)), "uv_faces"),
        (plain, dict(background=torch.zeros(1, 5, 5, 3, dtype=D)), "background"),
        (R.Mesh(verts, faces, normals=torch.zeros(3, 3, dtype=D)), {}, "mesh.normals"),
    ]
    for mesh, kwargs, name in cases:
        with pytest.raises(ShapeError) as e:
            R.render_mesh(mesh, cam, **kwargs)
        assert e.value.name == name
    with pytest.raises(ShapeError) as e:
        R.render_mesh(verts, cam)  # type: ignore[arg-type]
    assert e.value.name == "mesh"
    with pytest.raises(ShapeError) as e:
        R.render_mesh(R.Mesh(verts[..., :2], faces), cam)
    assert e.value.name == "vertices"


def test_mesh_value_normals_batch_items_and_vertices():
    verts, faces = _quad()
    mesh = R.Mesh(verts[0], faces)  # (V,3) is a batch of one
    assert mesh.vertices.shape == (1, 4, 3) and mesh.batch_size == 1 and mesh.texture_faces is None
    sh = torch.zeros(1, 9, 3, dtype=D)
    sh[0, 0], sh[0, 2] = 0.5 / R.SH_C0, 0.3  # ambient plus light from +z
    computed = mesh.vertex_normals()
    assert torch.allclose(computed, torch.tensor([0.0, 0.0, 1.0], dtype=D).expand(1, 4, 3))
    plain = R.render_mesh(mesh, _cam(), sh=sh, antialias=False)
    given = R.render_mesh(R.Mesh(verts, faces, normals=computed), _cam(), sh=sh, antialias=False)
    flipped = R.render_mesh(R.Mesh(verts, faces, normals=-computed), _cam(), sh=sh, antialias=False)
    inside = plain.tri_id[0] >= 0
    assert torch.equal(plain.image, given.image)
    assert float((plain.image - flipped.image)[0][inside].abs().min()) > 0.1  # the given normals shade
    pair = R.Mesh(torch.cat([verts, verts + 0.1]), faces, uvs=torch.zeros(4, 2, dtype=D))
    assert torch.equal(pair.item(1).vertices, verts + 0.1) and pair.texture_faces is faces
    moved = mesh.with_vertices(verts * 2)
    assert moved.faces is faces and torch.equal(moved.vertices, verts * 2) and moved.normals is None


def test_backend_registry_and_missing_optional_backends():
    assert R.available_backends() == ["torch"]
    assert R.current_backend() == "torch"
    for name in ("nvdiffrast", "pytorch3d"):
        with pytest.raises(MissingDependencyError) as e:
            R.set_backend(name)
        assert name in str(e.value) and "pip install" in str(e.value)
        with pytest.raises(MissingDependencyError):
            R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (4, 4), backend=name)
    assert R.current_backend() == "torch"
    with pytest.raises(BackendError):
        R.set_backend("opengl")
    R.set_backend("torch")


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rodrigues(r):
    th = r.norm().clamp(min=1e-12)
    k = r / th
    z = torch.zeros((), dtype=r.dtype)
    Kx = torch.stack((torch.stack((z, -k[2], k[1])), torch.stack((k[2], z, -k[0])), torch.stack((-k[1], k[0], z))))
    return torch.eye(3, dtype=r.dtype) + torch.sin(th) * Kx + (1 - torch.cos(th)) * Kx @ Kx


def test_pose_recovery_from_silhouette_and_shading(one_thread):
    """Start 10° and 5 cm off; recover rotation and translation to < 0.5° and < 2 mm."""
    v, f = icosphere(2, torch.float32)
    bump = 1 + 0.12 * torch.sin(5 * v[:, 0]) * torch.cos(4 * v[:, 1]) + 0.08 * torch.sin(7 * v[:, 2] + 1)
    v = v * bump[:, None] * torch.tensor([0.08, 0.10, 0.07])
    S = 64
    cam = R.PerspectiveCamera(R.perspective_from_fov(35.0, S, S), t=torch.tensor([0.0, 0.0, -0.5]), width=S, height=S)
    sh = R.ambient_sh(0.6)
    sh[0, 1:5] = torch.tensor([0.3, 0.5, -0.4, 0.2])[:, None]

    def render(r, t):
        return R.render_mesh(R.Mesh((v @ _rodrigues(r).T + t)[None], f), cam, sh=sh).image

    target = render(torch.zeros(3), torch.zeros(3)).detach()
    g = torch.Generator().manual_seed(0)
    r = (torch.nn.functional.normalize(torch.randn(3, generator=g), dim=0) * math.radians(10)).requires_grad_(True)
    t = (torch.nn.functional.normalize(torch.randn(3, generator=g), dim=0) * 0.05).requires_grad_(True)
    steps = 100
    opt = torch.optim.Adam([r, t], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        (render(r, t) - target).abs().mean().backward()
        opt.step()
        sched.step()
    assert math.degrees(r.norm().item()) < 0.5
    assert t.norm().item() < 0.002


def test_fragment_shading_equals_dense_primitive_shading(monkeypatch):
    """render_mesh shades covered pixels only on the built-in backend; the dense path used for
    nvdiffrast (full-image primitives) must give identical images and gradients."""
    from face3d.renderers import render as render_module

    v, f = icosphere(2)
    g = torch.Generator().manual_seed(4)
    verts = (v * 0.3 + torch.tensor([0, 0, -2.0], dtype=D))[None].repeat(2, 1, 1)
    verts[1] += 0.05
    uvs = torch.rand(v.shape[0], 2, generator=g, dtype=D)
    tex = torch.rand(2, 8, 8, 3, generator=g, dtype=D)
    sh = R.ambient_sh(0.6, batch=2, dtype=D)
    sh[:, 1:4] = 0.2
    bg = torch.rand(2, 24, 32, 3, generator=g, dtype=D)

    def run():
        vv = verts.clone().requires_grad_(True)
        tt = tex.clone().requires_grad_(True)
        out = R.render_mesh(R.Mesh(vv, f, uvs=uvs), _cam(), texture=tt, sh=sh, background=bg)
        (out.image.sin().sum() + out.depth.sum()).backward()
        return out, vv.grad, tt.grad

    sparse, gv, gt = run()

    class DenseBackend:
        NAME = "nvdiffrast"

    monkeypatch.setattr(render_module, "get_backend", lambda name=None: DenseBackend)
    dense, dv, dtex = run()
    for name in ("image", "alpha", "depth", "normals", "albedo", "shading"):
        assert torch.allclose(getattr(sparse, name), getattr(dense, name)), name
    assert torch.allclose(gv, dv) and torch.allclose(gt, dtex)
    assert (sparse.alpha > 0).sum() > 100
