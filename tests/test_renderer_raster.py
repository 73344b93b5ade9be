"""rasterize / interpolate: analytic coverage, depth, perspective correctness, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d import renderers as R
from face3d.errors import ShapeError
from face3d.renderers.reference import rasterize_reference


def screen_tri(points_px, H, W, z=0.0, w=1.0, dtype=torch.float64):
    """Clip-space vertices (1,3,4) of a triangle given in screen pixels (x right, y down)."""
    p = torch.tensor(points_px, dtype=dtype)
    x = (p[:, 0] / W * 2 - 1) * w
    y = (p[:, 1] / H * 2 - 1) * w
    zz = torch.full_like(x, z) * w if not isinstance(z, list) else torch.tensor(z, dtype=dtype) * w
    return torch.stack((x, y, zz, torch.full_like(x, w)), -1).unsqueeze(0)


def test_single_triangle_covers_exactly_the_pixels_whose_centres_are_inside():
    H, W = 16, 20
    pos = screen_tri([(2.0, 2.0), (12.2, 2.0), (2.0, 12.2)], H, W)
    rast = R.rasterize(pos, torch.tensor([[0, 1, 2]]), (H, W))
    j, i = np.mgrid[0:H, 0:W]
    cx, cy = i + 0.5, j + 0.5
    expected = (cx >= 2) & (cy >= 2) & (cx + cy <= 14.2)
    got = rast[0, ..., 3].numpy() > 0
    assert expected.sum() == 55
    np.testing.assert_array_equal(got, expected)
    assert got[:2].sum() == 0 and got[2:5].sum() > 0
    assert torch.all(rast[0, ..., 3][torch.from_numpy(got)] == 1.0)


def test_depth_test_picks_nearer_triangle_in_either_order():
    H, W = 12, 12
    near = screen_tri([(1.0, 1.0), (11.0, 1.0), (1.0, 11.0)], H, W, z=-0.2)
    far = screen_tri([(1.0, 1.0), (11.0, 1.0), (11.0, 11.0)], H, W, z=0.5)
    one = torch.tensor([[0, 1, 2]])
    overlap = (R.rasterize(near, one, (H, W))[0, ..., 3] > 0) & (R.rasterize(far, one, (H, W))[0, ..., 3] > 0)
    assert overlap.sum() > 10
    pos = torch.cat((far, near), 1)
    for tri, near_id in ((torch.tensor([[0, 1, 2], [3, 4, 5]]), 2), (torch.tensor([[3, 4, 5], [0, 1, 2]]), 1)):
        rast = R.rasterize(pos, tri, (H, W))
        assert torch.all(rast[0, ..., 3][overlap] == near_id)
        assert torch.allclose(rast[0, ..., 2][overlap], torch.tensor(-0.2, dtype=torch.float64))


def _perspective_scene(dtype=torch.float64):
    K = torch.tensor([[40.0, 0, 16.0], [0, 40.0, 12.0], [0, 0, 1]], dtype=dtype)
    cam = R.PerspectiveCamera(K, width=32, height=24, near=0.1, far=20.0)
    # slanted quad: plane Z = -(3 + 0.8 X + 0.3 Y), x, y in [-1, 1]
    xy = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=dtype)
    Z = -(3.0 + 0.8 * xy[:, 0] + 0.3 * xy[:, 1])
    verts = torch.cat((xy, Z[:, None]), 1).unsqueeze(0)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return cam, verts, faces


def test_perspective_correct_interpolation_on_slanted_quad_matches_closed_form():
    cam, verts, faces = _perspective_scene()
    rast = R.rasterize(cam.to_clip(verts), faces, (24, 32))
    X = R.interpolate(verts, rast, faces)[0]
    mask = rast[0, ..., 3] > 0
    assert mask.sum() > 200
    j, i = torch.meshgrid(torch.arange(24.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64), indexing="ij")
    dx = (i + 0.5 - 16.0) / 40.0
    dy = -(j + 0.5 - 12.0) / 40.0
    # ray s·(dx, dy, -1) meets Z = -(3 + 0.8 X + 0.3 Y): s = 3 / (1 - 0.8 dx - 0.3 dy)
    s = 3.0 / (1.0 - 0.8 * dx - 0.3 * dy)
    closed = torch.stack((s * dx, s * dy, -s), -1)
    assert torch.allclose(X[mask], closed[mask], atol=1e-9)
    # plain screen-space (affine) interpolation would be far off on this quad
    assert (closed[mask][:, 2] + 3.0).abs().max() > 0.5


def test_barycentrics_are_a_partition_of_unity_and_zw_matches_depth():
    cam, verts, faces = _perspective_scene()
    clip = cam.to_clip(verts)
    rast = R.rasterize(clip, faces, (24, 32))
    mask = rast[0, ..., 3] > 0
    u, v = rast[0, ..., 0][mask], rast[0, ..., 1][mask]
    w2 = 1 - u - v
    assert torch.all(u >= -1e-12) and torch.all(v >= -1e-12) and torch.all(w2 >= -1e-12)
    ones = R.interpolate(torch.ones(1, 4, 1, dtype=torch.float64), rast, faces)[0, ..., 0]
    assert torch.allclose(ones[mask], torch.ones_like(ones[mask]))
    assert torch.all(ones[~mask] == 0)
    d = R.interpolate(-verts[..., 2:], rast, faces)[0, ..., 0][mask]
    n, f = cam.near, cam.far
    zw = (f + n) / (f - n) - 2 * f * n / ((f - n) * d)
    assert torch.allclose(rast[0, ..., 2][mask], zw, atol=1e-9)
    assert rast[0, ..., 2][mask].min() >= -1 and rast[0, ..., 2][mask].max() <= 1


def random_soup(B, F, seed, dtype=torch.float64):
    """Clip positions (B,3F,4) of F small random triangles, and tri (F,3)."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(B, F, 1, 2, generator=g, dtype=dtype) * 2.4 - 1.2
    xy = centre + 0.25 * torch.randn(B, F, 3, 2, generator=g, dtype=dtype)
    z = 0.8 * torch.rand(B, F, 3, 1, generator=g, dtype=dtype) - 0.4
    w = 1.0 + torch.rand(B, F, 3, 1, generator=g, dtype=dtype)
    pos = torch.cat((xy * w, z * w, w), -1).reshape(B, 3 * F, 4)
    return pos, torch.arange(3 * F).reshape(F, 3)


def test_kernel_matches_dense_reference_on_random_meshes():
    pos, tri = random_soup(3, 300, seed=3)
    a = R.rasterize(pos, tri, (40, 56))
    b = rasterize_reference(pos, tri, (40, 56))
    assert torch.equal(a[..., 3], b[..., 3])
    assert torch.allclose(a, b)
    assert 0.3 < (a[..., 3] > 0).double().mean() < 1
    assert a[..., 3].unique().numel() > 100


def test_culling_behind_camera_and_depth_clipping():
    H, W = 10, 10
    base = screen_tri([(1.0, 1.0), (9.0, 1.0), (1.0, 9.0)], H, W, z=0.0)
    behind = base.clone()
    behind[0, 2] = torch.tensor([0.3, 0.2, 0.1, -0.5], dtype=torch.float64)
    far = screen_tri([(1.0, 1.0), (9.0, 1.0), (1.0, 9.0)], H, W, z=1.5)
    partly = screen_tri([(1.0, 1.0), (9.0, 1.0), (1.0, 9.0)], H, W, z=[0.0, 0.0, 3.0])
    tri = torch.tensor([[0, 1, 2]])
    assert (R.rasterize(base, tri, (H, W))[..., 3] > 0).sum() > 20
    for pos in (behind, far):
        rast = R.rasterize(pos, tri, (H, W))
        assert torch.all(rast == 0)
    rast = R.rasterize(partly, tri, (H, W))
    full = (R.rasterize(base, tri, (H, W))[..., 3] > 0).sum()
    got = (rast[..., 3] > 0).sum()
    assert 0 < got < full
    assert torch.all(rast[..., 2][rast[..., 3] > 0] <= 1)


def test_degenerate_empty_and_zero_face_inputs():
    H, W = 8, 8
    pos = screen_tri([(1.0, 1.0), (7.0, 1.0), (1.0, 7.0)], H, W).requires_grad_(True)
    degenerate = torch.tensor([[0, 0, 1], [1, 1, 1]])
    rast = R.rasterize(pos, degenerate, (H, W))
    assert torch.all(rast == 0) and torch.isfinite(rast).all()
    empty = R.rasterize(pos, torch.zeros(0, 3, dtype=torch.long), (H, W))
    assert empty.shape == (1, H, W, 4) and torch.all(empty == 0)
    offscreen = pos.detach() + torch.tensor([5.0, 0, 0, 0], dtype=torch.float64)
    assert torch.all(R.rasterize(offscreen, torch.tensor([[0, 1, 2]]), (H, W)) == 0)
    out = R.interpolate(torch.ones(3, 2, dtype=torch.float64), rast, degenerate)
    assert out.shape == (1, H, W, 2) and torch.all(out == 0)
    (R.interpolate(pos[0], rast, degenerate).sum()).backward()
    assert pos.grad is not None and torch.all(pos.grad == 0)


def test_non_contiguous_and_int32_inputs_give_identical_results():
    cam, verts, faces = _perspective_scene()
    clip = cam.to_clip(verts)
    ref = R.rasterize(clip, faces, (24, 32))
    nc_pos = clip.transpose(1, 2).contiguous().transpose(1, 2)
    assert not nc_pos.is_contiguous()
    nc_tri = faces.t().contiguous().t()
    assert not nc_tri.is_contiguous()
    assert torch.equal(R.rasterize(nc_pos, nc_tri, (24, 32)), ref)
    assert torch.equal(R.rasterize(clip, faces.int(), (24, 32)), ref)
    attr = torch.randn(4, 5, dtype=torch.float64)
    a = R.interpolate(attr.t().contiguous().t(), ref, faces.int())
    assert torch.allclose(a, R.interpolate(attr, ref, faces))
    f32 = R.rasterize(clip.float(), faces, (24, 32))
    assert f32.dtype == torch.float32
    # float32 clip coordinates may flip pixel centres lying exactly on the shared diagonal
    assert (f32[..., 3] != ref[..., 3].float()).double().mean() < 0.03


def test_batch_of_four_equals_four_single_calls():
    pos, tri = random_soup(4, 40, seed=1)
    attr = torch.randn(4, pos.shape[1], 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rast = R.rasterize(pos, tri, (20, 24))
    col = R.interpolate(attr, rast, tri)
    aa = R.antialias(col, rast, pos, tri)
    assert not torch.equal(aa, col)
    for b in range(4):
        r1 = R.rasterize(pos[b : b + 1], tri, (20, 24))
        assert torch.equal(r1, rast[b : b + 1])
        c1 = R.interpolate(attr[b : b + 1], r1, tri)
        assert torch.equal(c1, col[b : b + 1])
        assert torch.allclose(R.antialias(c1, r1, pos[b : b + 1], tri), aa[b : b + 1])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: R.rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), (4, 4)), "pos"),
        (lambda: R.rasterize(torch.zeros(3, 4), torch.tensor([[0, 1, 2]]), (4, 4)), "pos"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4, dtype=torch.long), torch.tensor([[0, 1, 2]]), (4, 4)), "pos"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1]]), (4, 4)), "tri"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0.0, 1, 2]]), (4, 4)), "tri"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 3]]), (4, 4)), "tri"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (4,)), "resolution"),
        (lambda: R.rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (0, 4)), "resolution"),
        (lambda: R.interpolate(torch.zeros(1, 3), torch.zeros(1, 4, 4, 3), torch.tensor([[0, 1, 2]])), "rast"),
        (lambda: R.interpolate(torch.zeros(2, 3, 1), torch.zeros(3, 4, 4, 4), torch.tensor([[0, 1, 2]])), "attr"),
        (lambda: R.interpolate(torch.zeros(3), torch.zeros(1, 4, 4, 4), torch.tensor([[0, 1, 2]])), "attr"),
        (lambda: R.texture(torch.zeros(4, 4, 3), torch.zeros(1, 2, 2, 2)), "tex"),
        (lambda: R.texture(torch.zeros(1, 4, 4, 3), torch.zeros(1, 2, 2, 3)), "uv"),
        (lambda: R.texture(torch.zeros(1, 4, 4, 3), torch.zeros(1, 2, 2, 2), filter_mode="cubic"), "filter_mode"),
        (lambda: R.texture(torch.zeros(1, 4, 4, 3), torch.zeros(1, 2, 2, 2), boundary_mode="mirror"), "boundary_mode"),
        (lambda: R.antialias(torch.zeros(1, 4, 5, 3), torch.zeros(1, 4, 4, 4), torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]])), "color"),
        (lambda: R.antialias(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 4), torch.zeros(2, 3, 4), torch.tensor([[0, 1, 2]])), "pos"),
    ],
)
def test_wrong_inputs_raise_shape_error_naming_the_argument(call, name):
    with pytest.raises(ShapeError) as info:
        call()
    assert info.value.name == name
    assert f"'{name}'" in str(info.value)
