"""Gradient checks (float64, central differences) for the differentiable primitives."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from face3d import renderers as R

D = torch.float64


def _mesh():
    """Two triangles forming a fan with one shared edge, seen with perspective (varying w)."""
    pos = torch.tensor(
        [
            [-0.71, -0.63, 0.10, 1.00],
            [0.66, -0.52, 0.20, 1.15],
            [0.05, 0.74, -0.10, 0.90],
            [-0.80, 0.55, 0.05, 1.05],
        ],
        dtype=D,
    ).unsqueeze(0)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return pos, tri


def test_interpolate_gradcheck_wrt_attributes_and_positions():
    pos, tri = _mesh()
    attr = torch.randn(1, 4, 3, dtype=D, generator=torch.Generator().manual_seed(0))
    H, W = 9, 11

    def f(p, a):
        return R.interpolate(a, R.rasterize(p, tri, (H, W)), tri)

    out = f(pos, attr)
    assert (out.abs().sum(-1) > 0).sum() > 30
    assert gradcheck(f, (pos.clone().requires_grad_(True), attr.clone().requires_grad_(True)), eps=1e-6, atol=1e-6)


def test_rasterize_zw_gradcheck_wrt_positions():
    pos, tri = _mesh()
    assert gradcheck(lambda p: R.rasterize(p, tri, (7, 8))[..., :3], (pos.clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_texture_gradcheck_wrt_texels_and_uv_both_boundaries():
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(2, 5, 6, 2, dtype=D, generator=g)
    uv = torch.rand(2, 3, 4, 2, dtype=D, generator=g) * 1.6 - 0.3
    for mode in ("wrap", "clamp"):
        assert gradcheck(
            lambda t, u: R.texture(t, u, boundary_mode=mode),
            (tex.clone().requires_grad_(True), uv.clone().requires_grad_(True)),
            eps=1e-6,
            atol=1e-6,
        )


def test_texture_values_bilinear_wrap_clamp_and_nearest():
    tex = torch.arange(12, dtype=D).reshape(1, 3, 4, 1)
    # texel centres are at ((i + 0.5) / 4, (j + 0.5) / 3)
    uv = torch.tensor([[[[1.5 / 4, 0.5 / 3], [2.0 / 4, 1.0 / 3], [0.0, 0.5 / 3], [0.5 / 4, 1.5 / 3]]]], dtype=D)
    lin = R.texture(tex, uv)[0, 0, :, 0]
    # (1.5,0.5) → tex[0,1]; halfway between texel cols 1,2 and rows 0,1 → mean(1,2,5,6);
    # u = 0 wraps: halfway between col 3 and col 0 of row 0 → 1.5; exact texel (0,1) → 4
    assert torch.allclose(lin, torch.tensor([1.0, 3.5, 1.5, 4.0], dtype=D))
    clamp = R.texture(tex, uv, boundary_mode="clamp")[0, 0, :, 0]
    assert torch.allclose(clamp, torch.tensor([1.0, 3.5, 0.0, 4.0], dtype=D))
    near = R.texture(tex, uv, filter_mode="nearest")[0, 0, :, 0]
    assert torch.allclose(near, torch.tensor([1.0, 6.0, 0.0, 4.0], dtype=D))


def test_sh_shading_gradcheck_wrt_normals_and_coefficients():
    g = torch.Generator().manual_seed(2)
    n = torch.nn.functional.normalize(torch.randn(2, 5, 3, dtype=D, generator=g), dim=-1)
    sh = torch.randn(2, 9, 3, dtype=D, generator=g)
    assert gradcheck(R.sh_shade, (n.requires_grad_(True), sh.requires_grad_(True)), eps=1e-6, atol=1e-6)


def test_antialias_gradcheck_wrt_positions_and_colours():
    pos, tri = _mesh()
    cols = torch.tensor([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.1, 0.3, 0.9], [0.7, 0.7, 0.2]], dtype=D).unsqueeze(0)
    H, W = 10, 12

    def f(p, c):
        rast = R.rasterize(p, tri, (H, W))
        return R.antialias(R.interpolate(c, rast, tri), rast, p, tri)

    rast = R.rasterize(pos, tri, (H, W))
    plain = R.interpolate(cols, rast, tri)
    aa = f(pos, cols)
    assert (aa - plain).abs().amax(-1).gt(1e-3).sum() > 5
    assert gradcheck(f, (pos.clone().requires_grad_(True), cols.clone().requires_grad_(True)), eps=1e-6, atol=1e-6)


def test_antialias_coverage_and_silhouette_gradient_match_geometry():
    """White triangle on black: edge pixels get their exact coverage along the pair axis, and the
    gradient of total coverage w.r.t. a vertex equals the area swept by its edges."""
    H, W = 12, 12
    pos = torch.tensor([[[-0.6, -0.7, 0.0, 1.0], [0.33, -0.7, 0.0, 1.0], [0.33, 0.7, 0.0, 1.0]]], dtype=D)
    tri = torch.tensor([[0, 1, 2]])
    p = pos.clone().requires_grad_(True)
    rast = R.rasterize(p, tri, (H, W))
    img = R.antialias((rast[..., 3:] > 0).to(D), rast, p, tri)
    # right edge at screen x = (0.33 + 1) / 2 * 12 = 7.98: column 7 covers [7, 7.98]
    # rows whose column-7 centre lies inside (right of the hypotenuse from (2.4, 1.8) to (7.98, 10.2))
    rows = [r for r in range(H) if 1.8 < r + 0.5 < 10.2 and 2.4 + (r + 0.5 - 1.8) / 8.4 * 5.58 < 7.5]
    assert len(rows) == 7
    assert torch.allclose(img[0, rows, 7, 0], torch.full((len(rows),), 0.98, dtype=D), atol=1e-9)
    assert torch.all(img[0, rows, 8, 0] == 0)
    img.sum().backward()
    # moving vertex 1 (screen y = 1.8) by dx in clip moves the right edge at row centre y by
    # 6·dx·(1 − (y − 1.8)/8.4) pixels
    expected = sum(6.0 * (1.0 - (r + 0.5 - 1.8) / 8.4) for r in rows)
    assert torch.allclose(p.grad[0, 1, 0], torch.tensor(expected, dtype=D), atol=1e-9)
    # a pure translation keeps the covered area: the x-gradients cancel up to row sampling
    assert abs(float(p.grad[0, :, 0].sum())) < 0.1 * expected


def test_edge_neighbours_marks_boundary_shared_and_non_manifold_edges():
    from face3d.renderers.topology import edge_neighbours

    # two triangles sharing edge (0,2); a third sharing (2,3) with the second; (0,4) non-manifold ×3
    tri = torch.tensor([[0, 1, 2], [0, 2, 3], [3, 2, 5], [0, 4, 6], [4, 0, 7], [0, 4, 8]])
    nbr = edge_neighbours(tri.numpy())
    # edges of triangle 0: (0,1) boundary, (1,2) boundary, (2,0) shared with triangle 1
    assert nbr[0].tolist() == [-1, -1, 1]
    # triangle 1: (0,2) ↔ 0, (2,3) ↔ 2, (3,0) boundary
    assert nbr[1].tolist() == [0, 2, -1]
    assert nbr[2].tolist() == [1, -1, -1]
    assert nbr[3, 0] == -1 and nbr[4, 0] == -1 and nbr[5, 0] == -1
    assert edge_neighbours(torch.zeros(0, 3, dtype=torch.long).numpy()).shape == (0, 3)
