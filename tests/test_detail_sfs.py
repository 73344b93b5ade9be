"""Shape-from-shading detail: recover a planted displacement from a render; maps and meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d import renderers as r
from face3d.detail import DetailOptions, recover_detail, subdivide
from face3d.errors import BadInputError, ShapeError
from face3d.mesh import Mesh, View
from face3d.texture.uv_raster import rasterize_uv
from test_texture_bake import camera, face_patch, texture_image

R = 128


def planted(uv: torch.Tensor) -> torch.Tensor:
    """A known displacement (metres) as a function of UV: a bump, a dent and a ripple."""
    u, v = uv[:, 0], uv[:, 1]
    return (
        0.0008 * torch.exp(-((u - 0.35) ** 2 + (v - 0.6) ** 2) / 0.04**2)
        - 0.0006 * torch.exp(-((u - 0.65) ** 2 + (v - 0.4) ** 2) / 0.05**2)
        + 0.0005 * torch.sin(40 * u) * torch.exp(-(((v - 0.3) / 0.08) ** 2))
    )


def texel_uvs(raster) -> torch.Tensor:
    rows, cols = raster.index // R, raster.index % R
    return torch.stack([(cols + 0.5) / R, 1.0 - (rows + 0.5) / R], -1)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def bumped():
    verts, faces, uvs = face_patch(121)
    normals = r.vertex_normals(verts[None], faces)[0]
    truth = planted(uvs)
    detailed = verts + truth[:, None] * normals
    cam = camera(15.0, 320)
    sh = r.ambient_sh(0.6)
    sh[0, 3], sh[0, 1], sh[0, 2] = 0.5, 0.4, 0.3
    tex = texture_image(R)
    img = r.render_mesh(r.Mesh(detailed[None], faces, uvs=uvs, uv_faces=faces), cam, texture=tex, sh=sh).image[0]
    res = recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), tex, resolution=R, subdivide_mesh=True)
    return verts, faces, uvs, truth, normals, cam, sh, tex, img, res


def test_planted_bump_is_recovered(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, img, res = bumped
    raster = rasterize_uv(uvs, faces, R)
    gt = planted(texel_uvs(raster))
    est = res.displacement.reshape(-1)[raster.index]
    seen = res.visibility.reshape(-1)[raster.index] > 0.5
    assert float(seen.float().mean()) > 0.7
    assert corr(est[seen], gt[seen]) > 0.8
    ratio = float(est[seen].std() / gt[seen].std())
    assert 0.3 < ratio < 2.0  # right order of magnitude (metres)
    assert res.losses[1] < 0.2 * res.losses[0]
    # displaced vertices follow the planted field
    offset = ((res.vertices_detailed - verts) * normals).sum(-1)
    assert np.corrcoef(offset.numpy(), truth.numpy())[0, 1] > 0.8


def test_no_detail_on_a_smooth_render(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, _, _ = bumped
    img = r.render_mesh(r.Mesh(verts[None], faces, uvs=uvs, uv_faces=faces), cam, texture=tex, sh=sh).image[0]
    res = recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), tex, resolution=R)
    assert float(res.displacement.abs().max()) < 1e-4
    nm = res.normal_map
    assert torch.allclose(nm.mean((0, 1)), torch.tensor([0.5, 0.5, 1.0]), atol=0.01)


def test_normal_map_encodes_the_bump_slopes(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, img, res = bumped
    nm = res.normal_map
    assert nm.shape == (R, R, 3) and float(nm.min()) >= 0.0 and float(nm.max()) <= 1.0
    assert float(nm[..., 2].min()) > 0.5  # all normals point out of the surface
    # a bump at (u, v) = (0.35, 0.6): left of its centre the normal tilts to -u (red < 0.5), right of it to +u
    row = int((1 - 0.6) * R)
    left, right = nm[row, int(0.31 * R), 0], nm[row, int(0.39 * R), 0]
    assert float(left) < 0.49 and float(right) > 0.51
    # above the centre (+v, smaller row) the normal tilts to +v (green > 0.5) — OpenGL convention
    assert float(nm[int((1 - 0.64) * R), int(0.35 * R), 1]) > 0.51


def test_subdivided_detailed_mesh(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, img, res = bumped
    v2, f2, t2, tf2 = res.subdivided
    assert f2.shape[0] == 4 * faces.shape[0]
    n_edges = torch.unique(torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1).values, dim=0).shape[0]
    assert v2.shape[0] == verts.shape[0] + n_edges and t2.shape[0] == v2.shape[0]
    assert torch.allclose(v2[: verts.shape[0]], res.vertices_detailed, atol=5e-5)  # original vertices come first
    plain, plain_faces, _, _ = subdivide(verts, faces, uvs, faces)
    n2 = r.vertex_normals(plain[None], plain_faces)[0]
    signed = ((v2 - plain) * n2).sum(-1)
    assert np.corrcoef(signed.numpy(), planted(t2).numpy())[0, 1] > 0.8


def test_subdivide_midpoints():
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    f = torch.tensor([[0, 1, 2], [1, 3, 2]])
    v2, f2, t2, tf2 = subdivide(v, f, v[:, :2], f)
    assert v2.shape == (9, 3) and f2.shape == (8, 3) and t2.shape == (9, 2)
    mids = {tuple(x) for x in v2[4:].tolist()}
    assert mids == {(0.5, 0.0, 0.0), (0.0, 0.5, 0.0), (0.5, 0.5, 0.0), (1.0, 0.5, 0.0), (0.5, 1.0, 0.0)}
    area = lambda vv, ff: torch.cross(vv[ff[:, 1]] - vv[ff[:, 0]], vv[ff[:, 2]] - vv[ff[:, 0]], dim=-1).norm(dim=-1).sum() / 2  # noqa: E731
    assert torch.isclose(area(v2, f2), area(v, f))


def test_bad_inputs(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, img, res = bumped
    with pytest.raises(BadInputError, match="sh"):
        recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam), tex)
    with pytest.raises(ShapeError, match="albedo_uv"):
        recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), torch.zeros(4, 4))
    with pytest.raises(ShapeError, match="vertices"):
        recover_detail(Mesh(verts[:, :2], faces, uvs, faces), View(img, cam, sh[0]), tex)
    with pytest.raises(ShapeError, match="mask"):
        View(img, cam, sh[0], torch.ones(3, 3))
    with pytest.raises(BadInputError, match="max_displacement"):
        recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), tex, options=DetailOptions(max_displacement=0.0))


def test_maps_are_upsampled_from_a_coarser_solve(bumped):
    verts, faces, uvs, truth, normals, cam, sh, tex, img, res = bumped
    fine = recover_detail(Mesh(verts, faces, uvs, faces), View(img, cam, sh[0]), tex, resolution=2 * R,
                          options=DetailOptions(solve_resolution=R // 2))
    assert fine.displacement.shape == (2 * R, 2 * R) and fine.normal_map.shape == (2 * R, 2 * R, 3)
    coarse = torch.nn.functional.interpolate(fine.displacement[None, None], size=(R, R), mode="area")[0, 0]
    seen = res.visibility > 0.5
    assert corr(coarse[seen], res.displacement[seen]) > 0.8
    length = (fine.normal_map * 2 - 1).norm(dim=-1)
    assert torch.allclose(length, torch.ones_like(length), atol=1e-3)


@pytest.fixture(scope="module")
def normal_system():
    """A Gauss-Newton system on a 32² UV raster of the face patch: random per-texel JᵀJ sums, an
    active set with holes, and the same matrix H[active][:, active] assembled explicitly (scipy)."""
    import scipy.sparse as sp

    from face3d.detail.sfs import _Differences, _grid_neighbours, _System

    verts, faces, uvs = face_patch(121)
    R = 32
    raster = rasterize_uv(uvs, faces, R)
    nbr = _grid_neighbours(raster)
    diff = _Differences(nbr[:4], nbr[4], R)
    n, M = raster.index.shape[0], diff.rows.shape[0]
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, M, 3)) * 0.02
    coef = np.stack([(a * a).sum(1), (a * b).sum(1), (b * b).sum(1)])
    active = (raster.index.numpy() % R < 20) & (rng.uniform(size=n) < 0.9)  # a region with holes
    lam = (0.5 / n, 0.01 / n)
    k = np.arange(M)
    S = lambda plus, minus, w: sp.csr_matrix((np.concatenate([w * np.ones(M), -w * np.ones(M)]),  # noqa: E731
                                              (np.concatenate([k, k]), np.concatenate([plus, minus]))), shape=(M, n))
    Su, Sv = S(diff.r, diff.l, diff.h), S(diff.u, diff.d, diff.h)
    L = sp.csr_matrix((np.concatenate([np.ones(4 * M), -4.0 * np.ones(M)]),
                       (np.tile(k, 5), np.concatenate([diff.u, diff.l, diff.r, diff.d, diff.rows]))), shape=(M, n))
    d = lambda x: sp.diags(x)  # noqa: E731
    H = (Su.T @ d(coef[0]) @ Su + Su.T @ d(coef[1]) @ Sv + Sv.T @ d(coef[1]) @ Su + Sv.T @ d(coef[2]) @ Sv
         + lam[0] * (L.T @ L) + lam[1] * sp.identity(n)).tocsr()
    idx = np.nonzero(active)[0]
    return diff, _System(diff, active), coef, lam, (Su, Sv, L), H[idx][:, idx], idx


def test_pcg_kernel_gives_the_iterates_of_the_textbook_loop_and_solves_the_system(normal_system):
    """_pcg (one numba loop, matrix-free over the stencils of the active texels) takes the textbook
    loop's steps on the explicitly assembled H[active][:, active], up to the summation order,
    whether it stops at the iteration cap or at the tolerance; run to convergence it gives a
    direct sparse solve's solution."""
    import scipy.sparse.linalg as spla

    from face3d.detail.sfs import _pcg

    diff, system, coef, lam, _, H, idx = normal_system

    def textbook(A, b, iterations, rtol):
        inv = 1.0 / A.diagonal()
        x, r = np.zeros_like(b), b.copy()
        z = inv * r
        p, rz = z.copy(), float(r @ z)
        for _ in range(iterations):
            Ap = A @ p
            alpha = rz / float(p @ Ap)
            x += alpha * p
            r -= alpha * Ap
            if float(r @ r) <= rtol**2 * float(b @ b):
                break
            z = inv * r
            rz_new = float(r @ z)
            p = z + (rz_new / rz) * p
            rz = rz_new
        return x

    assert np.array_equal(system.texels[: system.n_active], idx) and system.keep.shape[0] < diff.rows.shape[0]
    coef_kept = coef[:, system.keep]
    b = np.random.default_rng(6).normal(size=idx.shape[0])
    for iterations in (10, 30):  # stopped by the cap, far from the solution: the same iterate
        x = _pcg(system, coef_kept, lam, b, iterations, 1e-12)
        ref = textbook(H, b, iterations, 1e-12)
        assert np.abs(x - ref).max() <= 1e-10 * np.abs(ref).max()
        assert np.linalg.norm(H @ x - b) > 1e-3 * np.linalg.norm(b)
    x = _pcg(system, coef_kept, lam, b, 100_000, 1e-10)
    assert np.linalg.norm(H @ x - b) <= 1e-10 * np.linalg.norm(b) * 1.0001
    exact = spla.spsolve(H.tocsc(), b)
    assert np.abs(x - exact).max() <= 1e-6 * np.abs(exact).max()


def test_normal_apply_gives_the_gauss_newton_gradient(normal_system):
    """With c0..c2 = 0 and (Σa·res, Σb·res) in c3, c4, _normal_apply gives Suᵀ y_u + Svᵀ y_v +
    (lam_s LᵀL + lam_m I) D on the active texels (D = 0 elsewhere)."""
    from face3d.detail.sfs import _normal_apply

    diff, system, _, lam, (Su, Sv, L), _, idx = normal_system
    rng = np.random.default_rng(7)
    n, M = diff.n, diff.rows.shape[0]
    D = np.zeros(n)
    D[idx] = rng.normal(size=idx.shape[0]) * 1e-3
    y = rng.normal(size=(2, M))
    want = Su.T @ y[0] + Sv.T @ y[1] + lam[0] * (L.T @ (L @ D)) + lam[1] * D
    coef = np.concatenate([np.zeros((3, system.keep.shape[0])), y[:, system.keep]])
    out = np.empty(system.texels.shape[0])
    _normal_apply(D[system.texels], system.nb, coef, (lam[0], lam[1], diff.h), out)
    got = out[: system.n_active]
    assert np.abs(got - want[idx]).max() <= 1e-12 * np.abs(want[idx]).max()


def test_fused_colour_kernels_match_the_renderers_shading(normal_system):
    """_shading_terms (numba) gives the renderer's colours A · sh_shade(n'(G)) at the
    displacement gradients G of D: the Charbonnier data term, and the forward-difference Jacobian
    with the IRLS weights, to rounding."""
    import torch.nn.functional as F

    from face3d.detail.sfs import _shading_polynomials, _shading_terms

    diff = normal_system[0]
    rng = np.random.default_rng(3)
    n = diff.n
    N = F.normalize(torch.from_numpy(rng.normal(size=(n, 3))) + torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64), dim=-1)
    Tu, Tv = torch.from_numpy(rng.normal(0, 0.2, (n, 3))), torch.from_numpy(rng.normal(0, 0.2, (n, 3)))
    ginv = torch.from_numpy(rng.normal(0, 20.0, (n, 2, 2)))
    A, target = torch.from_numpy(rng.uniform(0.2, 0.9, (n, 3))), torch.from_numpy(rng.uniform(0.1, 0.8, (n, 3)))
    D = rng.normal(0, 3e-4, n)
    G = torch.zeros(n, 2, dtype=torch.float64)
    G[diff.rows, 0] = torch.from_numpy(diff.h * D[diff.r] - diff.h * D[diff.l])
    G[diff.rows, 1] = torch.from_numpy(diff.h * D[diff.u] - diff.h * D[diff.d])
    w = torch.from_numpy(np.where(rng.uniform(size=n) < 0.2, 0.0, rng.uniform(0.1, 1.0, n)))
    sh = r.ambient_sh(0.6, dtype=torch.float64)
    sh[0, 1:4] = torch.tensor([[0.3, 0.2, 0.1], [0.4, 0.3, 0.3], [0.5, 0.5, 0.4]], dtype=torch.float64)
    sh[0, 6], sigma, eps = -0.1, 0.03, 1e-4

    def colour(g):
        coef = (ginv @ g[..., None])[..., 0]
        return A * r.sh_shade(F.normalize(N - coef[:, :1] * Tu - coef[:, 1:] * Tv, dim=-1)[None], sh)[0]

    c0 = colour(G)
    r2 = ((c0 - target) ** 2).sum(-1)
    ref = float((w * 2 * sigma**2 * (torch.sqrt(1 + r2 / sigma**2) - 1)).sum())
    geo = tuple(x.numpy() for x in (N, Tu, Tv, ginv))
    poly, photo = _shading_polynomials(sh[0]), (A.numpy(), target.numpy())
    got = _shading_terms(D, diff.stencil, geo, photo, w.numpy(), poly, (eps, sigma), np.empty((0, n)))
    assert abs(got - ref) <= 1e-12 * abs(ref) and ref > 0
    s = (w * (1 + r2 / sigma**2) ** -0.25)[:, None]
    a = s * (colour(G + torch.tensor([eps, 0.0], dtype=G.dtype)) - c0) / eps
    b = s * (colour(G + torch.tensor([0.0, eps], dtype=G.dtype)) - c0) / eps
    res = s * (c0 - target)
    want = torch.stack([(a * a).sum(1), (a * b).sum(1), (b * b).sum(1), (a * res).sum(1), (b * res).sum(1)]).numpy()
    out = np.empty((5, n))
    assert _shading_terms(D, diff.stencil, geo, photo, w.numpy(), poly, (eps, sigma), out) == got
    assert np.abs(out - want).max() <= 1e-8 * np.abs(want).max()
    assert np.all(out[:, w.numpy() == 0] == 0) and np.abs(want[0]).min() < np.abs(want[0]).max()
    assert (G.abs().sum(1) == 0).any() and (G.abs().sum(1) > 0).sum() > n // 2  # non-interior texels (G = 0) and interior ones


@pytest.mark.parametrize("n_in,n_out", [(32, 128), (32, 80), (5, 7)])
def test_normal_map_upsampling_kernel_matches_interpolate_and_normalise(n_in, n_out):
    """_upsample_normal_map gives F.interpolate (bilinear, align_corners=False) of the RGB map,
    renormalised to unit vectors and clamped, to float32 rounding."""
    import torch.nn.functional as F

    from face3d.detail.sfs import _bilinear_taps, _upsample_normal_map

    rng = np.random.default_rng(9)
    n = rng.normal(size=(n_in, n_in, 3)) * [0.3, 0.3, 0.1] + [0.0, 0.0, 1.0]
    rgb = torch.from_numpy((n / np.linalg.norm(n, axis=-1, keepdims=True) * 0.5 + 0.5).astype(np.float32))
    up = F.interpolate(rgb.permute(2, 0, 1)[None].double(), size=(n_out, n_out), mode="bilinear", align_corners=False)[0] * 2 - 1
    want = (F.normalize(up, dim=0) * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    out = np.empty((n_out, n_out, 3), np.float32)
    _upsample_normal_map(rgb.numpy(), *_bilinear_taps(n_in, n_out), out)
    assert np.abs(out - want).max() <= 1e-6
    assert np.abs(out - np.repeat(np.repeat(rgb.numpy(), -(-n_out // n_in), 0), -(-n_out // n_in), 1)[:n_out, :n_out]).max() > 1e-3


def test_fused_normal_map_kernel_matches_the_torch_functions(bumped):
    """_normal_rgb_kernel gives tangent_space_normals(perturbed_normals(D)) (float32, rounding)."""
    from face3d.detail.sfs import _grid_neighbours, _normal_rgb_kernel, perturbed_normals, tangent_frames, tangent_space_normals

    verts, faces, uvs, truth, *_ = bumped
    raster = rasterize_uv(uvs, faces, R)
    frames, nbr = tangent_frames(verts, faces, raster)
    D = torch.from_numpy(np.random.default_rng(4).normal(0, 5e-4, raster.index.shape[0]).astype(np.float32))
    want = tangent_space_normals(perturbed_normals(D, frames, nbr, R), frames)
    got = _normal_rgb_kernel(D.numpy(), tuple(np.ascontiguousarray(i.clamp_min(0).numpy(), np.uint32) for i in _grid_neighbours(raster)[:4]),
                             tuple(x.numpy() for x in (frames.N, frames.Tu, frames.Tv, frames.ginv)), frames.interior.numpy(),
                             np.float32(2.0 / R))
    assert np.abs(got - want.numpy()).max() <= 1e-6
    assert float((want - 0.5).abs().max()) > 0.05 and not frames.interior.all()  # tilted normals, and flat border texels


def test_tangent_frames_kernel_matches_the_torch_expressions(bumped):
    """tangent_frames (numba after the interpolation) gives the torch expressions' tangents, inverse
    metric and interior flags (seams: one-sided steps that disagree; degenerate metrics)."""
    import torch.nn.functional as F

    from face3d.detail.sfs import _grid_neighbours, tangent_frames

    verts, faces, uvs, *_ = bumped
    v = verts.clone()
    v[::97] += 0.004  # bumps: some texels' one-sided steps disagree by more than 3x
    raster = rasterize_uv(uvs, faces, R)
    frames, _ = tangent_frames(v, faces, raster)
    right, left, up, down, interior = _grid_neighbours(raster)
    P = raster.interpolate(v, faces)
    Tu = torch.where(interior[:, None], (P[right.clamp_min(0)] - P[left.clamp_min(0)]) / (2.0 / R), 0.0)
    Tv = torch.where(interior[:, None], (P[up.clamp_min(0)] - P[down.clamp_min(0)]) / (2.0 / R), 0.0)
    g00, g01, g11 = (Tu * Tu).sum(-1), (Tu * Tv).sum(-1), (Tv * Tv).sum(-1)
    det = g00 * g11 - g01**2
    ok = interior & (det > 1e-14)
    for a, b in ((right, left), (up, down)):
        fwd, bwd = (P[a.clamp_min(0)] - P).norm(dim=-1), (P - P[b.clamp_min(0)]).norm(dim=-1)
        ok = ok & (torch.maximum(fwd, bwd) <= 3.0 * torch.minimum(fwd, bwd) + 1e-9)
    det = torch.where(ok, det, 1.0)
    ginv = torch.stack([torch.stack([g11, -g01], -1), torch.stack([-g01, g00], -1)], -2) / det[:, None, None]
    assert torch.equal(frames.interior, ok) and 0 < int((interior & ~ok).sum()) < int(ok.sum())
    for got, want in ((frames.Tu, Tu), (frames.Tv, Tv), (frames.ginv, ginv)):
        assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())
    assert torch.allclose(frames.N, F.normalize(raster.interpolate(r.vertex_normals(v[None], faces)[0], faces), dim=-1))
