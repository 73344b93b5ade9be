"""Work the save stage does once per model instead of once per photo (issue 26, save26c): a linear
model's ARKit deltas, their sparse GLB encoding, and the overlay rendered in the face's rectangle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.arkit import ARKIT_NAMES
from face3d.errors import BadInputError
from face3d.models.model import ModelArrays, MorphableModel


def _grid(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.06, 0.06, n))
    v = np.stack([xs.ravel(), ys.ravel(), 0.02 * np.cos(xs.ravel() * 20)], 1).astype(np.float32)
    f = [[i * n + j, i * n + j + 1, i * n + j + n] for i in range(n - 1) for j in range(n - 1)]
    f += [[i * n + j + 1, i * n + j + n + 1, i * n + j + n] for i in range(n - 1) for j in range(n - 1)]
    return v, np.array(f)


def _model(names: list[str], seed: int = 0, cls: type[MorphableModel] = MorphableModel) -> MorphableModel:
    rng = np.random.default_rng(seed)
    v, f = _grid()
    lm_tri = np.arange(0, 2 * 68, 2) % f.shape[0]
    arrays = ModelArrays(v, f, id_basis=rng.normal(0, 0.02, (4, v.shape[0], 3)), exp_basis=rng.normal(0, 0.003, (52, v.shape[0], 3)),
                         exp_names=names, embeddings={"ibug68": (lm_tri, np.full((68, 3), 1 / 3))})
    return cls(arrays, name=f"syn{seed}")


class _Bulging(MorphableModel):
    """An identity-dependent model: expressions scaled by the first identity coefficient."""

    def forward(self, shape=None, expression=None, pose=None, jaw=None, **kwargs):  # type: ignore[override]
        e = expression if shape is None or expression is None else expression * (1 + shape[:, :1])
        return super().forward(shape=shape, expression=e, pose=pose, jaw=jaw, **kwargs)


def _run_deltas(m: MorphableModel, M: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The ARKit deltas by running the model (the path of any model): face with shape k minus the neutral face."""
    s = torch.as_tensor(shape, dtype=torch.float32)[None]
    with torch.no_grad():
        base = m(shape=s, expression=torch.zeros(1, m.n_expression))
        moved = m(shape=s.expand(len(M), -1), expression=torch.as_tensor(M, dtype=torch.float32))
    return (moved - base).numpy()


def test_linear_arkit_deltas_are_the_exact_product_computed_once(tmp_path, monkeypatch):
    from face3d.animation import retarget

    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path))
    src = _model(list(ARKIT_NAMES), seed=5)
    other = _model([f"e{i}" for i in range(52)], seed=6)  # not ARKit-named: a least-squares matrix from src
    M = retarget.arkit_retargeting(other, source=src).matrix
    assert np.abs(M - np.eye(52)).max() > 0.01
    d = retarget.linear_arkit_deltas(other)
    B = other.exp_basis.numpy().reshape(52, -1).astype(np.float64)
    np.testing.assert_array_equal(d, (M.astype(np.float64) @ B).astype(np.float32).reshape(52, -1, 3))
    shape = np.array([1.5, -2.0, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(d, _run_deltas(other, M, shape), rtol=0, atol=1e-7)  # the identity does not matter
    assert not d.flags.writeable and retarget.linear_arkit_deltas(other) is d
    with pytest.raises(ValueError):
        d[0, 0, 0] = 1.0
    from face3d.result import FITTED_EXPRESSION, Reconstruction

    rec = Reconstruction(model_name=other.name, model_version="0", shape=shape, expression=np.full(52, 0.3, np.float32),
                         pose=np.zeros(3, np.float32), translation=np.array([0, 0, -1], np.float32), focal=100.0, image_size=(32, 32),
                         sh=np.zeros((9, 3), np.float32), albedo_coeffs=np.zeros(0, np.float32), albedo_gain=np.ones(3, np.float32),
                         landmark_set="ibug68", landmark_targets=np.zeros((68, 2), np.float32), landmark_error=0.0, model=other)
    morphs = rec.arkit_morphs()
    assert morphs.shared is d and morphs.names[-1] == FITTED_EXPRESSION and np.array_equal(morphs.deltas[:52], d)
    copy = retarget.arkit_deltas(other, shape)  # the public function hands out a writeable copy of the same values
    assert copy.flags.writeable and copy is not d and np.array_equal(copy, d)
    with torch.no_grad():
        other.exp_basis.mul_(2.0)  # changed in place: computed again (with the new basis' matrix)
    M2 = retarget.arkit_retargeting(other, source=src).matrix
    d2 = retarget.linear_arkit_deltas(other)
    assert d2 is not d
    np.testing.assert_array_equal(d2, (M2.astype(np.float64) @ (2 * B)).astype(np.float32).reshape(52, -1, 3))


def test_identity_dependent_models_are_run():
    from face3d.animation import retarget

    m = _model(list(ARKIT_NAMES), seed=7, cls=_Bulging)
    assert retarget.linear_arkit_deltas(m) is None
    shape = np.array([0.5, 0.0, 0.0, 0.0], np.float32)
    got = retarget.arkit_deltas(m, shape)
    np.testing.assert_array_equal(got, _run_deltas(m, np.eye(52, dtype=np.float32), shape))
    np.testing.assert_allclose(got, 1.5 * m.exp_basis.numpy(), rtol=1e-5, atol=1e-8)  # the identity scales them


def test_shared_morph_targets_are_encoded_once_with_the_same_bytes(tmp_path, monkeypatch):
    from face3d.io import mesh as meshio

    rng = np.random.default_rng(3)
    v, f = _grid()
    uvs = np.stack([v[:, 0] * 8 + 0.5, v[:, 1] * 6 + 0.5], 1)
    shared = rng.normal(0, 2e-5, (5, len(v), 3)).astype(np.float32)  # values on both sides of SPARSE_EPS
    shared[1] = 0.0
    shared.flags.writeable = False
    calls = []
    real = meshio.sparse_parts
    monkeypatch.setattr(meshio, "sparse_parts", lambda d, rows: calls.append(len(d)) or real(d, rows))
    for i in range(3):
        last = rng.normal(0, 1e-3, (1, len(v), 3)).astype(np.float32)  # a new per-photo target each time
        deltas = np.concatenate([shared, last])
        names = tuple(f"t{k}" for k in range(6))
        a = meshio.save_glb(tmp_path / f"a{i}.glb", v, f, uvs, f, morphs=meshio.MorphTargets(names, deltas, shared=shared))
        b = meshio.save_glb(tmp_path / f"b{i}.glb", v, f, uvs, f, morphs=meshio.MorphTargets(names, deltas))
        assert a.read_bytes() == b.read_bytes()
        back = meshio.load_mesh(a).morph_deltas
        vid = meshio.split_seams(f, f)[0]
        np.testing.assert_array_equal(back, np.where(np.abs(deltas.astype(np.float64)) > meshio.SPARSE_EPS, deltas, 0)[:, vid])
    assert calls == [5, 1, 6, 1, 6, 1, 6]  # the shared five encoded on the first save only
    other = np.ascontiguousarray(shared[::-1])
    other.flags.writeable = False
    for bad in (shared.copy(), other):  # writeable (may change between saves); not the leading targets
        with pytest.raises(BadInputError, match="morphs.shared"):
            meshio.save_glb(tmp_path / "bad.glb", v, f, morphs=meshio.MorphTargets(names, deltas, shared=bad))


def _full_frame(rec, textured: bool, black: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The render composited over the whole photo or black (Reconstruction.render before save26c), and its alpha."""
    from face3d import renderers

    m = rec.model
    v = torch.as_tensor(rec.vertices(posed=True), dtype=torch.float32)[None]
    sh = torch.as_tensor(rec.sh, dtype=torch.float32)[None]
    if textured:
        from face3d.fitting.stages import texture_face_mask

        keep = torch.as_tensor(texture_face_mask(m))
        out = renderers.render_mesh(renderers.Mesh(v, m.faces[keep], m.uvs, m.uv_faces[keep]), rec.camera(),
                                    texture=torch.as_tensor(rec.texture, dtype=torch.float32), sh=sh)
    else:
        out = renderers.render_mesh(renderers.Mesh(v, m.faces), rec.camera(), vertex_colors=torch.as_tensor(rec.vertex_albedo())[None], sh=sh)
    img, a = out.image[0].clamp(0, 1).numpy(), out.alpha[0].numpy()
    bg = np.zeros(img.shape, np.float32) if black else rec.image.astype(np.float32) / 255
    return (a * img + (1 - a) * bg).astype(np.float32), a


def _small_face(textured: bool):
    """test_io_save_bytes' random reconstruction with a plausible head (its random identity
    shrunk) 1 m in front of the camera, about half the 64-px photo high."""
    from test_io_save_bytes import _reconstruction

    rec = _reconstruction(textured)
    rec.shape = rec.shape * 0.01
    rec.translation = np.array([0.0, 0.0, -1.0], np.float32)
    return rec


@pytest.mark.parametrize("shift", [0.0, 0.26])  # the face inside the photo; across its right border
def test_overlay_and_render_equal_the_full_frame_composite(shift):
    rec = _small_face(True)
    rec.vertices_detailed = None
    rec.translation = rec.translation + np.array([shift, 0.0, 0.0], np.float32)
    y0, y1, x0, x1 = rec.face_window()
    H, W = rec.image_size
    assert 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W
    assert (x1 == W) == (shift > 0) and (x1 - x0) * (y1 - y0) < H * W
    for textured in (True, False):
        want, alpha = _full_frame(rec, textured)
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        assert alpha[..., 0][inside].max() > 0.5 and not alpha[..., 0][~inside].any()  # the face, all of it, in the window
        np.testing.assert_array_equal(rec.render(textured=textured), want)
    photo = rec.image
    np.testing.assert_array_equal(rec.overlay(), np.concatenate([photo, np.round(want * 255).astype(np.uint8)], 1))
    np.testing.assert_array_equal(rec.render(background="black", textured=False), _full_frame(rec, False, black=True)[0])



def test_face_window_of_a_face_behind_the_camera_or_outside_the_photo():
    rec = _small_face(False)
    H, W = rec.image_size
    rec.translation = np.array([0.0, 0.0, 0.05], np.float32)  # the head around the camera: the whole photo
    assert rec.face_window() == (0, H, 0, W)
    rec.translation = np.array([5.0, 0.0, -0.6], np.float32)  # far to the right: an empty pixel
    assert rec.face_window() == (0, 1, 0, 1)
    np.testing.assert_array_equal(rec.overlay()[:, W:], rec.image)


def test_glb_bytes_are_what_pygltflib_writes(tmp_path, monkeypatch):
    """mesh.glb_bytes against pygltflib's save_to_bytes on the GLTF2 objects save_glb builds:
    textured with a normal map, vertex-coloured, morph targets with an animation, extras and audio."""
    from face3d.io import mesh as meshio

    rng = np.random.default_rng(5)
    v, f = _grid()
    uvs = np.stack([v[:, 0] * 8 + 0.5, v[:, 1] * 6 + 0.5], 1)
    checked = []
    real = meshio.glb_bytes

    def both(gltf, chunks):
        ours = real(gltf, chunks)
        gltf.set_binary_blob(b"".join(chunks))
        theirs = b"".join(gltf.save_to_bytes())
        checked.append(ours == theirs)
        return ours

    monkeypatch.setattr(meshio, "glb_bytes", both)
    tex = rng.random((16, 16, 3)).astype(np.float32)
    morphs = meshio.MorphTargets(("a", "b"), rng.normal(0, 1e-3, (2, len(v), 3)), default=np.array([0.0, 1.0]),
                                 frames=rng.random((7, 2)), fps=25.0, rotation=np.tile([0.0, 0.0, 0.0, 1.0], (7, 1)),
                                 extras={"audio": {"uri": "talk.wav", "offset_s": 0.0}, "note": "é ünïcode"})
    meshio.save_glb(tmp_path / "t.glb", v, f, uvs, f, meshio.Material(tex, tex[::-1].copy()), morphs=morphs, name="héad")
    meshio.save_glb(tmp_path / "c.glb", v, f, material=meshio.Material(vertex_colors=rng.random((len(v), 3))))
    meshio.save_glb(tmp_path / "p.glb", v, f)
    assert checked == [True, True, True]
    back = meshio.load_mesh(tmp_path / "t.glb")
    np.testing.assert_allclose(back.texture, np.round(tex * 255) / 255, atol=1e-6)
    import pygltflib

    g = pygltflib.GLTF2().load(str(tmp_path / "t.glb"))
    assert g.meshes[0].name == "héad" and g.scenes[0].extras["note"] == "é ünïcode" and len(g.animations[0].channels) == 2
    g.extensionsUsed = ["KHR_materials_unlit"]
    with pytest.raises(BadInputError, match="glb_bytes"):
        real(g, [g.binary_blob()])


def _tangents_before(vertices, faces, uvs, normals):
    """mesh.vertex_tangents_np as it was before save26c (every row's fallback computed, UV edges per call)."""
    from face3d.io.mesh import corner_sums

    p, t = vertices[faces], uvs[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(np.abs(det) > 1e-20, det, 1.0), 0.0)[:, None]
    su = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    sv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tu, tv = corner_sums(faces, su, vertices), corner_sums(faces, sv, vertices)
    t_ortho = tu - (tu * normals).sum(1, keepdims=True) * normals
    length = np.linalg.norm(t_ortho, axis=1, keepdims=True)
    fallback = np.cross(normals, np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    t_ortho = np.where(length > 1e-12, t_ortho / np.maximum(length, 1e-12), fallback / np.linalg.norm(fallback, axis=1, keepdims=True))
    w = np.where((np.cross(normals, t_ortho) * tv).sum(1) < 0.0, -1.0, 1.0)
    return np.concatenate([t_ortho, w[:, None]], 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vertex_tangents_are_the_same_bits_with_the_uv_edges_kept(dtype):
    from face3d.io import mesh as meshio

    rng = np.random.default_rng(11)
    v, f = _grid()
    v = (v + rng.normal(0, 1e-3, v.shape)).astype(dtype)
    uvs = np.stack([v[:, 0] * 8 + 0.5, v[:, 1] * 6 + 0.5], 1).astype(dtype)
    uvs[:12] = 0.25  # the first row's UVs collapse to a point: no UV gradient there, the fallback tangent
    normals = meshio.vertex_normals_np(v, f).astype(dtype)
    want = _tangents_before(v, f, uvs, normals)
    got = meshio.vertex_tangents_np(v, f, uvs, normals)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.abs(np.linalg.norm(got[:12, :3], axis=1) - 1).max() < 1e-5  # fallback rows used
    d1, d2, r = meshio.uv_edges(f, uvs)
    again = meshio.uv_edges(f.copy(), uvs.copy())  # found by content
    assert again[0] is d1 and not r.flags.writeable and (r == 0).any()
    uvs2 = uvs.copy()
    uvs2[20] += 0.01
    assert meshio.uv_edges(f, uvs2)[0] is not d1
    v2 = v * 1.5  # another mesh of the layout: the kept UV edges, the right tangents
    np.testing.assert_array_equal(meshio.vertex_tangents_np(v2, f, uvs, normals), _tangents_before(v2, f, uvs, normals))
