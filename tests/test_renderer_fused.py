"""The fused CPU kernels (face3d.renderers.fused) equal their torch-op references in value and gradient."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from face3d import renderers as R
from face3d.renderers import _kernels
from face3d.renderers.backends.torch_cpu import rast_from_ids_torch
from face3d.renderers.fragments import fragments, interp_torch, sample_torch
from face3d.renderers.fused import (
    barycentrics_cpu,
    interp_cpu,
    sample_cpu,
    sh_basis_cpu,
    vertex_normals_cpu,
)
from face3d.renderers.shading import (
    _monomial_matrix,
    sh_basis_torch,
    vertex_normals_torch,
)
from face3d.renderers.topology import cached_neighbours


def _grads(out: torch.Tensor, weight: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad((out * weight).sum(), inputs, retain_graph=True)


def _soup(seed: int = 0, B: int = 2, V: int = 40, F: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, V, 3, generator=g, dtype=torch.float64)
    f = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    return v, f


def _scene(B: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two overlapping perspective triangles per batch item (different depths and w), 24²."""
    pos = torch.tensor([[-0.8, -0.7, 0.1, 1.0], [0.9, -0.6, 0.3, 1.5], [0.0, 0.9, 0.5, 1.2], [0.7, 0.8, -0.2, 0.9]],
                       dtype=torch.float64)
    pos = torch.stack([pos, pos * torch.tensor([1.1, 0.9, 1.0, 1.05], dtype=torch.float64)][:B])
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    ids = torch.from_numpy(_kernels.rasterize_ids(pos.numpy(), tri.numpy(), 24, 24))
    return pos, tri, ids


def test_vertex_normals_kernel_matches_torch_and_gradchecks():
    v, f = _soup()
    v.requires_grad_(True)
    a, b = vertex_normals_cpu(v, f), vertex_normals_torch(v, f)
    assert torch.allclose(a, b, atol=1e-12)
    w = torch.randn_like(a)
    assert torch.allclose(_grads(a, w, v)[0], _grads(b, w, v)[0], atol=1e-10)
    assert gradcheck(lambda x: vertex_normals_cpu(x, f), (v,))
    unused = vertex_normals_cpu(torch.cat((v, torch.ones(2, 1, 3, dtype=v.dtype)), 1), f)[:, -1]
    assert torch.equal(unused, torch.zeros_like(unused))


def test_barycentrics_kernel_matches_torch_and_gradchecks():
    pos, tri, ids = _scene()
    assert int((ids > 0).sum()) > 300
    pos.requires_grad_(True)
    a, b = barycentrics_cpu(pos, tri, ids), rast_from_ids_torch(pos, tri, ids)
    assert torch.allclose(a, b, atol=1e-12)
    w = torch.randn_like(a)
    w[..., 3] = 0
    assert torch.allclose(_grads(a, w, pos)[0], _grads(b, w, pos)[0], atol=1e-10)
    assert gradcheck(lambda p: barycentrics_cpu(p, tri, ids)[..., :3], (pos,))


def test_sh_basis_kernel_matches_torch_and_gradchecks():
    n = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=1).requires_grad_(True)
    M = _monomial_matrix(torch.float64, n.device)
    a, b = sh_basis_cpu(n, M), sh_basis_torch(n)
    assert torch.allclose(a, b, atol=1e-14)
    w = torch.randn_like(a)
    assert torch.allclose(_grads(a, w, n)[0], _grads(b, w, n)[0], atol=1e-12)
    assert gradcheck(lambda x: sh_basis_cpu(x, M), (n,))


def test_interp_kernel_matches_torch_for_batched_and_shared_attributes():
    pos, tri, ids = _scene()
    pos.requires_grad_(True)
    for Ba in (1, 2):
        frag = fragments(barycentrics_cpu(pos, tri, ids))
        attr = torch.randn(Ba, 4, 5, dtype=torch.float64, requires_grad=True)
        a, b = interp_cpu(attr, tri, frag.f, frag.b, frag.bary), interp_torch(frag, attr, tri)
        assert torch.allclose(a, b, atol=1e-12)
        w = torch.randn_like(a)
        for ga, gb in zip(_grads(a, w, attr, pos), _grads(b, w, attr, pos)):
            assert torch.allclose(ga, gb, atol=1e-10)
    attr = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    bary = frag.bary.detach().clone().requires_grad_(True)
    assert gradcheck(lambda x, y: interp_cpu(x, tri, frag.f, frag.b, y), (attr, bary))


def test_sample_kernel_matches_torch_including_wraparound():
    pos, tri, ids = _scene()
    frag = fragments(barycentrics_cpu(pos, tri, ids))
    g = torch.Generator().manual_seed(3)
    uv = (torch.rand(frag.count, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3).requires_grad_(True)  # crosses 0 and 1
    for Bt in (1, 2):
        tex = torch.rand(Bt, 7, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
        a, b = sample_cpu(tex, uv, frag.b), sample_torch(frag, tex, uv)
        assert torch.allclose(a, b, atol=1e-12)
        w = torch.randn_like(a)
        for ga, gb in zip(_grads(a, w, tex, uv), _grads(b, w, tex, uv)):
            assert torch.allclose(ga, gb, atol=1e-10)
    tex = torch.rand(2, 5, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    uv_in = (torch.rand(12, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    b12 = torch.tensor([0, 1] * 6)
    assert gradcheck(lambda t, u: sample_cpu(t, u, b12), (tex, uv_in))


def test_camera_clip_matrix_matches_projection_and_depth():
    K = torch.tensor([[500.0, 2.0, 130.0], [0.0, 480.0, 120.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    ang = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    Rm = torch.linalg.matrix_exp(torch.tensor([[0, -ang[2], ang[1]], [ang[2], 0, -ang[0]], [-ang[1], ang[0], 0]], dtype=torch.float64))
    cam = R.PerspectiveCamera(K=K, R=Rm, t=torch.tensor([0.01, 0.02, -0.6], dtype=torch.float64), width=256, height=240)
    p = torch.randn(1, 50, 3, dtype=torch.float64) * 0.1
    clip = cam.to_clip(p)
    pix = cam.project(p)
    ndc = clip[..., :2] / clip[..., 3:]
    assert torch.allclose((ndc[..., 0] * 0.5 + 0.5) * 256, pix[..., 0], atol=1e-9)
    assert torch.allclose((ndc[..., 1] * 0.5 + 0.5) * 240, pix[..., 1], atol=1e-9)
    assert torch.allclose(clip[..., 3], cam.depth(p), atol=1e-12)
    zn = clip[..., 2] / clip[..., 3]
    near_far = R.PerspectiveCamera(K=K, width=256, height=240).to_clip(torch.tensor([[[0.0, 0.0, -0.01], [0.0, 0.0, -10.0]]], dtype=torch.float64))
    assert torch.allclose(near_far[..., 2] / near_far[..., 3], torch.tensor([[-1.0, 1.0]], dtype=torch.float64), atol=1e-9)
    assert bool(((zn > -1) & (zn < 1)).all())


def test_neighbour_cache_follows_in_place_edits_of_the_index_tensor():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    first = cached_neighbours(tri)
    assert first.tolist() == [[-1, 1, -1], [0, -1, -1]]
    assert cached_neighbours(tri) is first
    tri[1] = torch.tensor([3, 4, 5])
    after = cached_neighbours(tri)
    assert (after == -1).all()


def test_antialias_blend_kernel_matches_torch_on_a_silhouette():
    import numpy as np

    from face3d.renderers.backends.torch_cpu import _np, antialias_blend_torch
    from face3d.renderers.fused import antialias_blend_cpu

    pos, tri, ids = _scene()
    rast = barycentrics_cpu(pos, tri, ids)
    H, W = ids.shape[1:]
    p = _np(pos)
    scr = _kernels.screen_positions(p, H, W)
    facing = _kernels.tri_facing(scr, p, tri.numpy())
    pairs = torch.from_numpy(_kernels.silhouette_pairs(_np(rast[..., 3]).astype(np.int32), _np(rast[..., 2]),
                                                       scr, tri.numpy(), cached_neighbours(tri), facing))
    assert pairs.shape[0] > 20 and set(pairs[:, 5].tolist()) == {0, 1}
    pos.requires_grad_(True)
    color = torch.rand(2, H, W, 3, dtype=torch.float64, requires_grad=True)
    a, b = antialias_blend_cpu(color, pos, pairs), antialias_blend_torch(color, pos, pairs)
    assert torch.allclose(a, b, atol=1e-12) and not torch.allclose(a, color)
    w = torch.randn_like(a)
    for ga, gb in zip(_grads(a, w, color, pos), _grads(b, w, color, pos)):
        assert torch.allclose(ga, gb, atol=1e-10)
    # w.r.t. pos the torch reference is gradchecked in test_renderer_grad (away from t = 1/2, where
    # the blend switches pixel); here the colour path, exactly linear
    assert gradcheck(lambda c: antialias_blend_cpu(c, pos.detach(), pairs), (color,))


def test_silhouette_pairs_equal_a_scan_of_every_pixel_pair():
    """The search over visible silhouette triangles finds exactly the pairs, in the order, of the
    reference scan over all adjacent pixel pairs: on closed spheres seen from inside and outside,
    and on random triangle soups (open edges, both facings, overlaps)."""
    import numpy as np

    from face3d.renderers._kernels import silhouette_pairs, silhouette_pairs_scan
    from test_renderer_shading import icosphere

    cases = []
    v, f = icosphere(3)
    for z, s in ((-2.5, 0.8), (0.0, 3.0), (-1.2, 0.9)):  # outside, inside, cut by the near side
        pos = torch.cat((v * s, torch.ones(v.shape[0], 1, dtype=v.dtype)), 1)[None].double()
        pos[..., 3] = -(pos[..., 2] + z)  # w = depth in front of a camera at the origin
        pos[..., 2] = pos[..., 3] * 0.5
        cases.append((pos.numpy(), f.numpy(), 40, 52))
    for seed in range(12):
        pos, tri = _soup(seed, B=2, V=40, F=70)
        p = torch.cat((pos[..., :2] * 0.5, pos[..., 2:] * 0.3, torch.ones_like(pos[..., :1])), -1)
        cases.append((p.numpy(), tri.numpy(), 24 + seed, 30))
    found = 0
    for pos, tri, H, W in cases:
        ids, scr, facing = _kernels.visibility(pos, tri, H, W)
        zw = np.random.default_rng(H).random(ids.shape).astype(np.float32)
        nbr = cached_neighbours(torch.from_numpy(tri))
        got, ref = silhouette_pairs(ids, zw, scr, tri, nbr, facing), silhouette_pairs_scan(ids, zw, scr, tri, nbr, facing)
        assert np.array_equal(got, ref)
        found += len(got)
    assert found > 200


def test_antialias_with_coverage_equals_antialias_of_the_concatenation():
    from face3d.renderers.backends.torch_cpu import AAInputs, antialias, antialias_with_coverage
    from face3d.renderers.fused import antialias_blend2_cpu, set_fused

    pos, tri, ids = _scene()
    pos.requires_grad_(True)
    rast = barycentrics_cpu(pos, tri, ids)
    H, W = ids.shape[1:]
    image = torch.rand(2, H, W, 3, dtype=torch.float64, requires_grad=True)
    cover = (rast[..., 3:] > 0).double()
    wi, wa = torch.randn(2, H, W, 3, dtype=torch.float64), torch.randn(2, H, W, 1, dtype=torch.float64)
    both = antialias(torch.cat((image, cover), -1), rast, pos, tri)
    ref = (both[..., :3], both[..., 3:])
    ref_g = _grads(ref[0], wi, image, pos)
    ref_ga = _grads(ref[1], wa, pos)
    assert not torch.equal(ref[1], cover)  # the silhouette blends the coverage too
    for fused in (True, False):  # fused: one pass over two images; otherwise the concatenation's path
        set_fused(fused)
        try:
            for in_place in (False, True):
                fresh = (image * 1.0, cover.clone())  # nothing else holds them: may be blended in place
                got = antialias_with_coverage(AAInputs(*fresh, in_place=in_place), rast, pos, tri)
                assert all(g.is_contiguous() or not fused for g in got)
                assert (got[0] is fresh[0] and got[1] is fresh[1]) == (fused and in_place)
                assert torch.allclose(got[0], ref[0], atol=1e-12) and torch.allclose(got[1], ref[1], atol=1e-12)
                for ga, gb in zip(_grads(got[0], wi, image, pos), ref_g):
                    assert torch.allclose(ga, gb, atol=1e-10)
                assert torch.allclose(_grads(got[1], wa, pos)[0], ref_ga[0], atol=1e-10)
        finally:
            set_fused(True)
    # the kernel itself on a 2-channel second image: both blended with the same crossing
    extra = torch.stack((cover[..., 0], 2.0 * cover[..., 0]), -1)
    before = (image.detach().clone(), extra.clone())
    pairs_img, pairs_extra = antialias_blend2_cpu(image, extra, pos, _pairs_of(rast, pos, tri))
    assert torch.allclose(pairs_extra[..., 1], 2.0 * pairs_extra[..., 0]) and torch.allclose(pairs_img, ref[0], atol=1e-12)
    assert torch.equal(image, before[0]) and torch.equal(extra, before[1])  # not in place: inputs kept


def _pairs_of(rast, pos, tri):
    from face3d.renderers.backends.torch_cpu import _silhouette_pairs

    return _silhouette_pairs(rast, pos, tri, None, None)


def test_scatter_kernel_matches_index_copy_and_gradchecks():
    from face3d.renderers.fused import scatter_cpu

    sel = torch.tensor([7, 2, 11, 0])
    values = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    a = scatter_cpu(values, sel, 12, 0.25)
    b = torch.full((12, 3), 0.25, dtype=torch.float64).index_copy(0, sel, values)
    assert torch.equal(a, b)
    w = torch.randn_like(a)
    assert torch.equal(_grads(a, w, values)[0], _grads(b, w, values)[0])
    assert gradcheck(lambda v: scatter_cpu(v, sel, 12, -1.0), (values,))


def test_sh_shade_kernel_matches_basis_times_coefficients_per_batch():
    from face3d.renderers.fused import sh_shade_cpu

    g = torch.Generator().manual_seed(5)
    n = torch.nn.functional.normalize(torch.randn(30, 3, generator=g, dtype=torch.float64), dim=1).requires_grad_(True)
    b = torch.randint(0, 2, (30,), generator=g)
    M = _monomial_matrix(torch.float64, n.device)
    for Bs in (1, 2):
        sh = torch.randn(Bs, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
        a = sh_shade_cpu(n, sh, b, M)
        ref = torch.einsum("nk,nkc->nc", sh_basis_torch(n), sh[b if Bs > 1 else torch.zeros_like(b)])
        assert torch.allclose(a, ref, atol=1e-12)
        w = torch.randn_like(a)
        for ga, gb in zip(_grads(a, w, n, sh), _grads(ref, w, n, sh)):
            assert torch.allclose(ga, gb, atol=1e-10)
        assert gradcheck(lambda x, s: sh_shade_cpu(x, s, b, M), (n, sh))


def test_index_validation_sees_in_place_edits_of_cached_faces():
    from face3d.errors import ShapeError

    v, f = _soup(B=1)
    cam = R.PerspectiveCamera(R.perspective_from_fov(40.0, 16, 16), t=torch.tensor([0.0, 0.0, -6.0]), width=16, height=16)
    R.render_mesh(R.Mesh(v.float(), f), cam)
    f[0, 0] = 10_000
    try:
        R.render_mesh(R.Mesh(v.float(), f), cam)
    except ShapeError as e:
        assert "10000" in str(e)
    else:
        raise AssertionError("out-of-range face index after an in-place edit was not caught")


def test_affine_kernel_matches_matmul_with_batch_broadcasting():
    from face3d.renderers.fused import affine_cpu

    g = torch.Generator().manual_seed(7)
    for bp, bl, bo in ((1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 2)):
        p = torch.randn(bp, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
        lin = torch.randn(bl, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
        off = torch.randn(bo, 4, generator=g, dtype=torch.float64, requires_grad=True)
        a = affine_cpu(p, lin, off)
        ref = torch.matmul(p, lin.transpose(-1, -2)) + off.unsqueeze(-2)
        assert a.shape == ref.shape and torch.allclose(a, ref, atol=1e-12)
        w = torch.randn_like(a)
        for ga, gb in zip(_grads(a, w, p, lin, off), _grads(ref, w, p, lin, off)):
            assert torch.allclose(ga, gb, atol=1e-10)
        assert gradcheck(affine_cpu, (p, lin, off))


def test_render_mesh_with_and_without_fused_kernels_agree():
    """End to end: render_mesh (texture, SH, antialias) and its gradients w.r.t. vertices,
    texture and SH are the same through the fused kernels and through plain torch ops."""
    v, f = _soup(seed=4, B=2, V=60, F=120)
    v = (0.3 * v).float()
    cam = R.PerspectiveCamera(R.perspective_from_fov(35.0, 32, 32), t=torch.tensor([0.0, 0.0, -2.0]), width=32, height=32)
    g = torch.Generator().manual_seed(2)
    uvs = torch.rand(60, 2, generator=g)
    tex = torch.rand(2, 8, 8, 3, generator=g)
    sh = R.ambient_sh(0.6, batch=2)
    sh[:, 1:4] = 0.2
    outs = []
    for fused in (True, False):
        R.set_fused(fused)
        try:
            vv, tt, ss = v.clone().requires_grad_(True), tex.clone().requires_grad_(True), sh.clone().requires_grad_(True)
            out = R.render_mesh(R.Mesh(vv, f, uvs=uvs), cam, texture=tt, sh=ss)
            (out.image * torch.linspace(0, 1, 32)[:, None, None]).sum().backward()
            outs.append((out.image.detach(), out.normals.detach(), out.depth.detach(), vv.grad, tt.grad, ss.grad))
        finally:
            R.set_fused(True)
    assert outs[0][0].abs().sum() > 0 and outs[0][3].abs().sum() > 0
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4)


def _shade_inputs(kind: str, Ba: int, with_sh: bool):
    """A _ShadeInputs over _scene() (4 vertices, 2 triangles, 24²) with float64 leaves to differentiate."""
    from face3d.renderers.render import _ShadeInputs

    pos, tri, ids = _scene()
    pos.requires_grad_(True)
    rast = barycentrics_cpu(pos, tri, ids)
    g = torch.Generator().manual_seed(11)
    leaf = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64).requires_grad_(True)
    vn = torch.nn.functional.normalize(torch.randn(2, 4, 3, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    depth_v = leaf(2, 4, 1)
    tex = uvs = vc = None
    if kind == "texture":
        tex, uvs = leaf(Ba, 5, 7, 3), leaf(4, 2)
    elif kind == "vertex":
        vc = leaf(Ba, 4, 3)
    sh = (torch.randn(Ba, 9, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True) if with_sh else None
    inputs = _ShadeInputs(rast, tri, vn, depth_v, tex, uvs, tri.flip(1) if kind == "texture" else None, vc, sh, 0.25)
    leaves = [t for t in (pos, vn, depth_v, tex, uvs, vc, sh) if t is not None]
    return inputs, leaves


def test_fused_pixel_shading_equals_the_fragment_path_in_value_and_gradient():
    from face3d.renderers.render import _shade_fragments, _shade_pixels

    for kind, Ba, with_sh in (("vertex", 2, True), ("vertex", 1, False), ("texture", 1, True), ("texture", 2, False), ("white", 2, True)):
        inputs, leaves = _shade_inputs(kind, Ba, with_sh)
        ref = _shade_fragments(inputs)
        got = _shade_pixels(inputs)
        assert got[0].shape[-1] == 3
        for a, b in zip(got, ref):
            assert torch.allclose(a, b, atol=1e-12), (kind, Ba, with_sh)
        assert int(ref[1].sum()) > 300
        g = torch.Generator().manual_seed(2)
        ws = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in ref]
        loss_ref = sum((t * w).sum() for t, w in zip(ref, ws))
        loss_got = sum((t * w).sum() for t, w in zip(got, ws))
        for a, b in zip(torch.autograd.grad(loss_got, leaves, retain_graph=True), torch.autograd.grad(loss_ref, leaves, retain_graph=True)):
            assert torch.allclose(a, b, atol=1e-10), (kind, Ba, with_sh)


def test_fused_pixel_shading_gradchecks():
    from face3d.renderers.fused_shade import (
        TEXTURE,
        VERTEX,
        ShadeSpec,
        shade_pixels_cpu,
    )

    for kind in ("vertex", "texture"):
        inputs, _ = _shade_inputs(kind, 2, True)
        spec = ShadeSpec(inputs.faces, inputs.uv_idx, TEXTURE if kind == "texture" else VERTEX, 0.25)
        colour = inputs.tex if kind == "texture" else inputs.vc
        rast = inputs.rast.detach()

        def f(ruv, vn, dv, col, sh, uvs=inputs.uvs, spec=spec, rast=rast):  # (u, v) differentiable; z/w and ids fixed
            out = shade_pixels_cpu(spec, torch.cat((ruv, rast[..., 2:]), -1), vn, dv, col, uvs, sh)
            return out[0], out[2], out[3], out[4], out[5]

        args = (rast[..., :2].clone(), inputs.vn.detach(), inputs.depth_v.detach(), colour.detach(), inputs.sh.detach())
        assert gradcheck(f, tuple(a.requires_grad_(True) for a in args), fast_mode=True)
    uvs = inputs.uvs.detach().clone().requires_grad_(True)
    assert gradcheck(lambda u: shade_pixels_cpu(spec, rast.detach(), inputs.vn.detach(), inputs.depth_v.detach(),
                                                colour.detach(), u, inputs.sh.detach())[0], (uvs,), fast_mode=True)
