"""Animated GLB export: Khronos validator (zero errors) and re-import with pygltflib and trimesh."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.animation.animation import Animation
from face3d.animation.avatar import Avatar
from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError
from face3d.models.model import MorphableModel
from face3d.testing import validate_gltf as validate


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
    return MorphableModel(v, f, exp_basis=rng.normal(0, 0.002, (52, n * n, 3)), exp_names=list(ARKIT_NAMES), name="grid", **kw)


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
    # jawOpen target delta equals the model's jawOpen delta on the first vertex
    tacc = g.accessors[prim.targets[ARKIT_INDEX["jawOpen"]]["POSITION"]]
    tbv = g.bufferViews[tacc.bufferView]
    d = np.frombuffer(blob[tbv.byteOffset : tbv.byteOffset + tbv.byteLength], np.float32).reshape(-1, 3)
    np.testing.assert_allclose(d[0], m.exp_basis[ARKIT_INDEX["jawOpen"], 0].numpy(), atol=1e-7)
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
