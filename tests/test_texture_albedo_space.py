"""ICT's photo-built albedo space: EM-PCA, split, shipped file, attachment, held-out reproduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.errors import BadInputError, ModelFileError, ShapeError
from face3d.texture import albedo_space as A


def _low_rank(rng, n=40, t=300, rank=3):
    mean = rng.uniform(0.3, 0.7, (t, 3))
    modes = rng.normal(0, 1, (rank, t, 3)) * 0.05
    c = rng.normal(0, 1, (n, rank))
    data = mean[None] + np.einsum("nk,ktc->ntc", c, modes) + rng.normal(0, 0.003, (n, t, 3))
    w = (rng.uniform(size=(n, t)) > 0.3).astype(np.float64)  # 30 % of each texture unseen
    return data, w


def test_build_pca_fills_unseen_texels_and_is_deterministic():
    rng = np.random.default_rng(0)
    data, w = _low_rank(rng)
    mean, basis, std = A.build_pca(data[:30], w[:30], n_modes=5)
    mean2, basis2, std2 = A.build_pca(data[:30], w[:30], n_modes=5)
    assert np.array_equal(mean, mean2) and np.array_equal(basis, basis2) and np.array_equal(std, std2)
    assert basis.shape == (5, 900) and mean.shape == (900,)
    np.testing.assert_allclose(basis @ basis.T, np.eye(5), atol=1e-4)
    assert std[2] > 2.5 * std[3]  # rank 3: the 4th mode is noise (plus the refill of unseen texels)
    # held-out textures: 3 modes fitted on the seen texels predict the unseen ones
    for k in range(30, 40):
        seen, unseen = w[k], 1 - w[k]
        rec = A.project(mean, basis, std, data[k].reshape(-1), seen, n_modes=3)
        err_modes = A.masked_rms(rec, data[k].reshape(-1), unseen)
        err_mean = A.masked_rms(mean, data[k].reshape(-1), unseen)
        assert err_modes < 0.3 * err_mean


def test_build_pca_rejects_bad_input():
    with pytest.raises(ShapeError):
        A.build_pca(np.zeros((3, 4, 2)), np.ones((3, 4)))
    with pytest.raises(BadInputError):
        A.build_pca(np.zeros((1, 4, 3)), np.ones((1, 4)))


def test_make_split_holds_out_the_benchmark_photos_and_their_people():
    names = ["a.jpg", "b.jpg", "openface_x_1.jpg", "openface_x_2.jpg", "c.jpg"]
    s = A.make_split(names, {"b.jpg", "openface_x_2.jpg"})
    assert s == {"train": ["a.jpg", "c.jpg"], "test": ["b.jpg", "openface_x_1.jpg", "openface_x_2.jpg"]}


def test_split_file_matches_the_benchmark_rule():
    from face3d.testing import shared_data

    split = A.read_split()
    held = A.benchmark_held_out(shared_data())
    assert not held & set(split["train"])
    assert held & set(split["test"]) == held - set(split["skipped"]) - set(split["excluded"])


def test_ita_degrees_values():
    # a light and a dark skin colour (sRGB) fall in the expected ITA classes
    assert A.ita_class(A.ita_degrees(np.array([[0.93, 0.78, 0.69]]))) in ("very light", "light")
    assert A.ita_class(A.ita_degrees(np.array([[0.36, 0.22, 0.15]]))) in ("brown", "dark")
    assert A.ita_degrees(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(np.degrees(np.arctan((53.39 - 50) / 1.0)), abs=0.5)


@pytest.fixture(scope="module")
def ict_full():
    from face3d.models import load_model

    return load_model("ict", parts="full", albedo_space=False)


def test_per_vertex_samples_the_uv_maps(ict_full):
    lay = A.face_layout(ict_full, 64)
    uv = torch.as_tensor(lay.raster.index)  # flat texel ids
    R = 64
    u = ((uv % R).double() + 0.5) / R
    v = 1 - ((uv // R).double() + 0.5) / R
    mean = torch.stack([u, v, torch.full_like(u, 0.5)], 1).numpy().reshape(-1)
    basis = np.stack([np.tile([1.0, 0.0, 0.0], len(u)), np.tile([0.0, 0.0, 1.0], len(u))]) / np.sqrt(len(u))
    space = A.AlbedoSpace(mean.astype(np.float32), basis.astype(np.float32), np.ones(2, np.float32), R, lay.texels)
    vm, vb = A.per_vertex(space, ict_full)
    assert vm.shape == (ict_full.n_vertices, 3) and vb.shape == (2, ict_full.n_vertices, 3)
    from face3d.texture.symmetry import vertex_uv_index

    face = np.arange(9409)  # ICT's face submesh: its UVs fill the [0, 1]² tile
    ti = vertex_uv_index(ict_full.faces.numpy(), ict_full.uv_faces.numpy(), ict_full.uvs.numpy())
    uvv = ict_full.uvs.numpy()[ti[face]]
    inside = ((uvv > 0.03) & (uvv < 0.97)).all(1)
    err = np.abs(vm[face][inside, :2] - uvv[inside])
    assert np.median(err) < 1.0 / R and np.percentile(err, 95) < 3.0 / R
    # vertices off the tile (eyeballs, neck) take the face average
    np.testing.assert_allclose(vm[22000], mean.reshape(-1, 3).mean(0), atol=1e-5)
    # a mean-only space (no modes) samples the same mean
    vm0, vb0 = A.per_vertex(A.AlbedoSpace(space.mean, space.basis[:0], space.std[:0], R, lay.texels), ict_full)
    assert vb0.shape == (0, ict_full.n_vertices, 3)
    np.testing.assert_allclose(vm0, vm)


def test_shipped_space_file_metadata():
    f = A.load_albedo_space()
    split = A.read_split()
    K = f.albedo_basis.shape[0]
    assert K >= 10
    assert f.albedo_mean.shape == (A.ICT_FULL_VERTICES, 3) and f.albedo_basis.shape == (K, A.ICT_FULL_VERTICES, 3)
    assert np.all(np.diff(f.albedo_std) <= 0) and f.albedo_std[0] > 0
    assert f.meta["build"]["seed"] == A.SEED
    photos = f.meta["photos"]
    assert photos == split["train"]
    assert not set(photos) & set(split["test"])
    assert not any(p.startswith("aflw2000") for p in photos + split["test"])
    # skin-like mean: red > green > blue over the face tile
    m = f.space.mean.reshape(-1, 3).mean(0)
    assert m[0] > m[1] > m[2] and 0.2 < m[1] < 0.8


def test_attach_albedo_space_to_ict_face(tmp_path):
    from face3d.fitting.smooth_albedo import smooth_albedo_basis
    from face3d.models import load_model

    full = load_model("ict", parts="full", albedo_space=False)
    face = load_model("ict", parts="face", albedo_space=False)
    ids = A.ict_vertex_ids(face)
    np.testing.assert_array_equal(face.template.numpy(), full.template.numpy()[ids])
    m = A.attach_albedo_space(face, n_modes=10)
    f = A.load_albedo_space()
    assert m.per_vertex_albedo and m.n_albedo == 10 and face.albedo_mean is None
    np.testing.assert_allclose(m.albedo_mean.numpy(), f.albedo_mean[ids])
    assert smooth_albedo_basis(m).shape[1] == 0  # the fitter explains the image with the space
    assert load_model("ict", parts="face").n_albedo == f.albedo_basis.shape[0]
    with pytest.raises(ShapeError):
        A.attach_albedo_space(face, vertex_ids=np.arange(10))
    bad = tmp_path / "x.npz"
    np.savez(bad, albedo_mean=np.zeros((3, 3)))
    with pytest.raises(ModelFileError):
        A.load_albedo_space(bad)


@pytest.mark.slow
def test_space_reproduces_a_held_out_baked_texture():
    """A held-out photo (never in the build) baked into ICT's UVs: its seen texels are explained
    better by the mean + 10 modes than by the mean alone."""
    from face3d.testing import shared_data

    split = A.read_split()
    name = sorted(split["test"])[0]
    path = next(p for p in A.candidate_photos(shared_data()) if p.name == name)
    f = A.load_albedo_space()
    b = A.bake_photo(path, resolution=f.space.resolution)
    (err_mean, err_5, err_10, err_20), = A.evaluate_held_out(f, [b])
    assert err_10 < 0.8 * err_mean, (err_10, err_mean)
    assert err_20 <= err_10 <= err_5


def test_remove_residual_shading_divides_out_planted_lighting():
    """Photos of one albedo under different SH lights become alike; a real albedo difference
    between photos (one darker person) survives."""
    from face3d import renderers

    rng = np.random.default_rng(1)
    n = rng.normal(0, 1, (400, 3))
    n[:, 2] = np.abs(n[:, 2]) + 0.3
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    albedo = rng.uniform(0.4, 0.7, (400, 3))
    shades = []
    for k in range(6):
        sh = renderers.ambient_sh(1.0)[0].numpy().astype(np.float64)
        sh[1:4] += rng.normal(0, 0.4, (3, 1))
        shades.append(renderers.shading.sh_shade(torch.as_tensor(n, dtype=torch.float32)[None], torch.as_tensor(sh, dtype=torch.float32)[None])[0, :, 0].double().numpy())
    data = np.stack([albedo * s[:, None] for s in shades])
    data[5] *= 0.5  # a darker face
    w = np.ones((6, 400))
    out = A.remove_residual_shading(data, w, n)
    spread = lambda x: float(np.std(x[:5] / x[:5].mean(1, keepdims=True), axis=0).mean())  # noqa: E731
    assert spread(out) < 0.1 * spread(data)
    assert np.median(out[5] @ [0.3, 0.6, 0.1]) < 0.6 * np.median(out[0] @ [0.3, 0.6, 0.1])
    # a photo lit hard from one side: its bright texels on the dim side would divide to above 1
    sh = renderers.ambient_sh(1.0)[0].numpy().astype(np.float64)
    sh[3] += 3.0  # ambient is 3.54: shade 0.2-1.8 across the normals
    hard = renderers.shading.sh_shade(torch.as_tensor(n, dtype=torch.float32)[None], torch.as_tensor(sh, dtype=torch.float32)[None])[0, :, 0].double().numpy()
    lit = np.concatenate([data[:5], np.clip(albedo * hard[:, None], 0, 1)[None]])
    lit[5, np.argsort(hard)[:10]] = 0.9
    assert A.remove_residual_shading(lit, w, n).max() <= 1.0  # 1.65 without the clip


def test_space_in_the_default_models_vertex_order(tmp_path):
    from face3d.models import load_model
    from face3d.models.default import attach_albedo_space, ict_to_default_ids

    f = A.load_albedo_space()
    path = A.write_default_albedo(f, tmp_path / "albedo_space.npz")
    m = attach_albedo_space(load_model("default"), path)
    d = ict_to_default_ids(np.arange(A.ICT_FULL_VERTICES))
    keep = np.nonzero(d >= 0)[0]
    assert m.per_vertex_albedo and m.n_albedo == f.albedo_basis.shape[0]
    np.testing.assert_allclose(m.albedo_mean.numpy()[d[keep]], f.albedo_mean[keep], atol=1e-3)
    np.testing.assert_allclose(m.albedo_basis.numpy()[3][d[keep]], f.albedo_basis[3][keep], atol=1e-3)


def test_fill_unseen_copies_the_nearest_seen_texel():
    R = 8
    texels = np.array([0 * R + 0, 0 * R + 1, 0 * R + 7, 5 * R + 5, 5 * R + 6])  # (row, col): (0,0) (0,1) (0,7) (5,5) (5,6)
    layout = A.UVLayout(R, texels, None)
    mean = np.arange(15, dtype=np.float32) + 1
    basis = np.stack([mean * 10, -mean]).astype(np.float32)
    seen = np.array([True, False, False, True, False])
    m, b = A.fill_unseen(mean.copy(), basis.copy(), seen, layout)
    m3, b3 = m.reshape(-1, 3), b.reshape(2, -1, 3)
    src = mean.reshape(-1, 3)
    # (0,1) is nearest (0,0); (0,7) is nearer (5,5) (distance 5.4) than (0,0) (7); (5,6) takes (5,5)
    assert np.array_equal(m3[1], src[0]) and np.array_equal(m3[2], src[3]) and np.array_equal(m3[4], src[3])
    assert np.array_equal(m3[[0, 3]], src[[0, 3]])
    assert np.array_equal(b3[:, 2], basis.reshape(2, -1, 3)[:, 3])


def test_shipped_space_has_no_unseen_zero_texels():
    f = A.load_albedo_space()
    texel_mean = f.space.mean.reshape(-1, 3)
    dead = (np.abs(texel_mean).max(1) == 0) & (np.abs(f.space.basis.reshape(f.space.n_modes, -1, 3)).max((0, 2)) == 0)
    assert int(dead.sum()) == 0  # 200 such texels before fill_unseen (inner lips, jaw by the ears)
    assert (f.albedo_mean.max(1) > 0.02).all()  # every vertex has some albedo
    assert float(texel_mean.max()) <= 1.0 and float(f.albedo_mean.max()) <= 1.0  # a reflectance: was up to 2.9 at the inner lips
