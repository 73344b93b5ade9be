"""Animated GLB export: Khronos validator (zero errors) and re-import with pygltflib and trimesh."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.animation.animation import Animation
from face3d.animation.avatar import Avatar
from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError
from face3d.models.model import ModelArrays, MorphableModel
from face3d.io.mesh import SPARSE_EPS, load_mesh
from face3d.testing import validate_gltf as validate


def _vertex_ids(split: np.ndarray, original: np.ndarray) -> np.ndarray:
    """For each vertex of a seam-split GLB, the index of the model vertex at the same position."""
    d = np.linalg.norm(split[:, None] - original[None], axis=2)
    assert d.min(1).max() < 1e-6
    return d.argmin(1)


def _model(textured: bool) -> MorphableModel:
    rng = np.random.default_rng(0)
    n = 8
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    f = np.array([[i * n + j, i * n + j + 1, (i + 1) * n + j] for i in range(n - 1) for j in range(n - 1)]
                 + [[i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j] for i in range(n - 1) for j in range(n - 1)])
    kw = {}
    if textured:
        # a seam: the last column's UVs are duplicated (uv index = vertex index, + n*n for the seam copies)
        uvs = np.concatenate([np.stack([(xs.ravel() + 0.05) * 10, (ys.ravel() + 0.05) * 10], 1), np.full((n * n, 2), 0.5)])
        uvf = f.copy()
        half = uvf[: len(f) // 2]
        half[f[: len(f) // 2] % n == n - 1] += n * n  # the right column has other UVs in half of its faces
        kw = dict(uvs=uvs, uv_faces=uvf, albedo_mean=rng.uniform(size=(16, 16, 3)))
    else:
        kw = dict(albedo_mean=rng.uniform(size=(n * n, 3)))
    return MorphableModel(ModelArrays(v, f, exp_basis=rng.normal(0, 0.002, (52, n * n, 3)), exp_names=list(ARKIT_NAMES), **kw), name="grid")


def _anim(T: int = 24, pose: bool = True) -> Animation:
    rng = np.random.default_rng(1)
    hp = np.stack([np.zeros(T), np.linspace(-0.5, 0.5, T), np.zeros(T)], 1) if pose else None
    return Animation(fps=24, arkit=rng.uniform(0, 1, (T, 52)), head_pose=hp, audio="speech.wav")


@pytest.mark.parametrize("textured", [True, False])
def test_glb_validates_and_reimports(tmp_path, textured):
    import pygltflib
    import trimesh

    m = _model(textured)
    anim = _anim()
    p = anim.to_gltf(m, tmp_path / "face.glb")
    report = validate(p)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    g = pygltflib.GLTF2().load(str(p))
    mesh = g.meshes[0]
    assert mesh.extras["targetNames"] == list(ARKIT_NAMES)
    prim = mesh.primitives[0]
    assert len(prim.targets) == 52
    assert g.accessors[g.animations[0].samplers[0].input].count == anim.n_frames
    assert g.accessors[g.animations[0].samplers[0].output].count == anim.n_frames * 52
    paths = sorted(c.target.path for c in g.animations[0].channels)
    assert paths == ["rotation", "weights"]
    assert g.scenes[0].extras["audio"] == "speech.wav"
    assert g.animations[0].extras["audio"] == "speech.wav"
    if textured:
        assert prim.attributes.TEXCOORD_0 is not None and len(g.images) == 1
        corners = np.unique(m.faces.numpy() * 1000 + m.uv_faces.numpy()).size
        assert g.accessors[prim.attributes.POSITION].count == corners > m.n_vertices  # seam vertices duplicated
    else:
        assert prim.attributes.COLOR_0 is not None
    # weights decoded from the binary buffer equal the animation's
    blob = g.binary_blob()
    acc = g.accessors[g.animations[0].samplers[0].output]
    bv = g.bufferViews[acc.bufferView]
    w = np.frombuffer(blob[bv.byteOffset : bv.byteOffset + bv.byteLength], np.float32).reshape(-1, 52)
    np.testing.assert_allclose(w, anim.arkit, atol=1e-7)
    # every target's deltas (sparse accessors, decoded by load_mesh) equal the model's, within SPARSE_EPS
    loaded = load_mesh(p)
    assert loaded.morph_names == list(ARKIT_NAMES) and loaded.morph_weights.tolist() == [0.0] * 52
    vid = _vertex_ids(loaded.vertices, m.template.numpy())
    np.testing.assert_allclose(loaded.morph_deltas, m.exp_basis.numpy()[:, vid], atol=SPARSE_EPS + 1e-7)
    assert all(g.accessors[t["POSITION"]].sparse is not None for t in prim.targets)
    # smooth normals: unit length, +Z for this flat grid facing the viewer
    assert prim.attributes.NORMAL is not None
    np.testing.assert_allclose(loaded.normals, np.tile([0.0, 0.0, 1.0], (len(loaded.vertices), 1)), atol=1e-6)
    scene = trimesh.load(str(p))
    geom = list(scene.geometry.values())[0]
    assert len(geom.faces) == m.faces.shape[0]


def test_used_targets_only_and_errors(tmp_path):
    m = _model(False)
    w = np.zeros((10, 52), np.float32)
    w[:, ARKIT_INDEX["jawOpen"]] = np.linspace(0, 1, 10)
    p = Animation(fps=30, arkit=w).to_gltf(Avatar(m), tmp_path / "used.glb", targets="used")
    assert validate(p)["issues"]["numErrors"] == 0
    import pygltflib

    g = pygltflib.GLTF2().load(str(p))
    assert g.meshes[0].extras["targetNames"] == ["jawOpen"] and len(g.meshes[0].primitives[0].targets) == 1
    with pytest.raises(BadInputError, match=".glb"):
        Animation(fps=30, arkit=w).to_gltf(m, tmp_path / "x.gltf")
    with pytest.raises(BadInputError, match="ARKit"):
        Animation(fps=30, head_pose=np.zeros((3, 3))).to_gltf(m, tmp_path / "y.glb")


@pytest.mark.slow
def test_glb_basic_model_60s(tmp_path):
    import time

    import face3d

    basic = face3d.load_model("basic")
    rng = np.random.default_rng(2)
    anim = Animation(fps=30, arkit=rng.uniform(0, 1, (1800, 52)), head_pose=rng.normal(0, 0.1, (1800, 3)))
    t0 = time.perf_counter()
    p = anim.to_gltf(basic, tmp_path / "basic.glb")
    assert time.perf_counter() - t0 < 30
    report = validate(p)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]


def _reconstruction(textured: bool = True):
    """A Reconstruction of the basic model with a random identity and expression (no fitting run)."""
    import face3d
    from face3d.result import Reconstruction

    m = face3d.load_model("basic")
    rng = np.random.default_rng(3)
    tex = dict(texture=np.full((32, 32, 3), 0.6, np.float32), normal_map=np.full((32, 32, 3), (0.5, 0.5, 1.0), np.float32)) if textured else {}
    sh = np.zeros((9, 3), np.float32)
    sh[0] = 1.0
    return Reconstruction(model_name="basic", model_version=str(m.version), shape=rng.normal(0, 1, m.n_shape).astype(np.float32),
                          expression=rng.uniform(0, 0.6, m.n_expression).astype(np.float32), pose=np.zeros(3, np.float32),
                          translation=np.array([0, 0, -0.6], np.float32), focal=120.0, image_size=(64, 64), sh=sh,
                          albedo_coeffs=np.zeros(m.n_albedo, np.float32), albedo_gain=np.ones(3, np.float32), landmark_set="ibug68",
                          landmark_targets=np.zeros((68, 2), np.float32), landmark_error=0.0, expression_names=list(m.exp_names),
                          model=m, **tex)


@pytest.mark.parametrize("textured", [True, False])
def test_reconstruction_glb_carries_arkit_shapes_in_the_fitted_identity(tmp_path, textured):
    import pygltflib
    import torch

    from face3d.animation.retarget import arkit_retargeting
    from face3d.io.mesh import split_seams
    from face3d.result import FITTED_EXPRESSION

    rec = _reconstruction(textured)
    m = rec.model
    p = rec.save_animatable_glb(tmp_path / "mesh.glb")
    report = validate(p)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    g = pygltflib.GLTF2().load(str(p))
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.NORMAL is not None
    assert (prim.attributes.TANGENT is not None and g.materials[0].normalTexture is not None) == textured
    got = load_mesh(p)
    assert got.morph_names == [*ARKIT_NAMES, FITTED_EXPRESSION]
    assert got.morph_weights.tolist() == [0.0] * 52 + [1.0]
    vid = split_seams(m.faces.numpy(), m.uv_faces.numpy())[0] if textured else np.arange(m.n_vertices)
    # at its resting weights the GLB is the fitted face; its base is the fitted identity, neutral
    rest = got.vertices + np.tensordot(got.morph_weights, got.morph_deltas, 1)
    np.testing.assert_allclose(rest, rec.vertices()[vid], atol=SPARSE_EPS + 1e-6)
    shape = torch.as_tensor(rec.shape)[None]
    with torch.no_grad():
        neutral = m(shape=shape)[0].numpy()
        M = torch.as_tensor(arkit_retargeting(m).matrix)
        jaw = m(shape=shape, expression=M[ARKIT_INDEX["jawOpen"]][None])[0].numpy() - neutral
    np.testing.assert_allclose(got.vertices, neutral[vid], atol=SPARSE_EPS + 1e-6)
    np.testing.assert_allclose(got.morph_deltas[ARKIT_INDEX["jawOpen"]], jaw[vid], atol=SPARSE_EPS + 1e-7)
    assert np.abs(jaw).max() > 0.005  # jawOpen moves the chin by more than 5 mm
    # sparse storage: far fewer stored rows than vertices x targets
    stored = sum(g.accessors[t["POSITION"]].sparse.count for t in prim.targets)
    assert stored < 0.25 * len(prim.targets) * len(got.vertices)


def test_avatar_from_folder_keeps_normal_map_and_identity(tmp_path):
    import pygltflib

    from face3d.animation.avatar import load_avatar

    rec = _reconstruction(True)
    rec.save(tmp_path / "out")
    av = load_avatar(tmp_path / "out")
    assert av.normal_map is not None and av.normal_map.shape == (32, 32, 3)
    w = np.zeros((5, 52), np.float32)
    w[:, ARKIT_INDEX["jawOpen"]] = np.linspace(0, 1, 5)
    p = Animation(fps=25, arkit=w, audio="talk.wav").to_gltf(tmp_path / "out", tmp_path / "talk.glb")
    report = validate(p)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    g = pygltflib.GLTF2().load(str(p))
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.NORMAL is not None and prim.attributes.TANGENT is not None
    assert g.materials[0].normalTexture is not None and len(g.images) == 2
    got, static = load_mesh(p), load_mesh(tmp_path / "out" / "mesh.glb")
    np.testing.assert_allclose(got.vertices, static.vertices, atol=1e-6)  # same neutral identity as mesh.glb
    np.testing.assert_allclose(got.morph_deltas, static.morph_deltas[:52], atol=1e-6)
    np.testing.assert_allclose(got.normal_map, static.normal_map, atol=1 / 255)


def test_reconstruction_glb_without_retargeting_source_keeps_the_fitted_face(tmp_path, monkeypatch):
    from face3d.animation import retarget
    from face3d.errors import ModelNotFoundError
    from face3d.io.mesh import split_seams
    from face3d.result import FITTED_EXPRESSION

    def no_ict(*args, **kwargs):
        raise ModelNotFoundError("unknown model 'ict'")

    monkeypatch.setattr(retarget, "arkit_retargeting", no_ict)  # the linear and the model-run ARKit deltas both ask it
    rec = _reconstruction(True)
    got = load_mesh(rec.save_animatable_glb(tmp_path / "mesh.glb"))
    assert got.morph_names == [FITTED_EXPRESSION] and got.morph_weights.tolist() == [1.0]
    vid = split_seams(rec.model.faces.numpy(), rec.model.uv_faces.numpy())[0]
    np.testing.assert_allclose(got.vertices + got.morph_deltas[0], rec.vertices()[vid], atol=SPARSE_EPS + 1e-6)
    assert any("needs ICT-FaceKit" in n and "unknown model 'ict'" in n for n in rec.notes)
