"""ICT-FaceKit loader: the shared compact npz, FaceXModel OBJ folders, ARKit mapping, parts, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.models import ict as ict_mod
from face3d.models import load_model
from face3d.models.ict import ict_to_arkit_name, load_ict
from face3d.models.install import ICT_TOPOLOGY_SHA256, topology_sha256
from face3d.models.obj_folder import read_facexmodel, read_obj, triangulate_fan
from face3d.testing import shared_data


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    old = os.environ.get("FACE3D_CACHE")
    os.environ["FACE3D_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["FACE3D_CACHE"])
    if old is None:
        os.environ.pop("FACE3D_CACHE", None)
    else:
        os.environ["FACE3D_CACHE"] = old


@pytest.fixture(scope="module")
def npz_path() -> Path:
    return shared_data() / "ict_facekit" / "ict_facekit.npz"


@pytest.fixture(scope="module")
def raw(npz_path):
    with np.load(npz_path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def full(cache_env, npz_path):
    return load_ict(npz_path, parts="full")


@pytest.fixture(scope="module")
def face(cache_env, npz_path):
    return load_ict(npz_path, parts="face")


def test_name_mapping():
    assert ict_to_arkit_name("eyeBlink_L") == "eyeBlinkLeft"
    assert ict_to_arkit_name("mouthSmile_R") == "mouthSmileRight"
    assert ict_to_arkit_name("browInnerUp_R") == "browInnerUp"
    assert ict_to_arkit_name("cheekPuff_L") == "cheekPuff"
    assert ict_to_arkit_name("jawOpen") == "jawOpen"


def test_full_model_layout_and_units(full, raw):
    assert full.n_vertices == 26719 and full.faces.shape == (52220, 3)
    assert full.n_shape == 100 and torch.all(full.id_std == 1)
    assert full.exp_names == list(ARKIT_NAMES) and full.has_arkit
    assert full.uvs.shape == (28911, 2) and full.uv_faces.shape == (52220, 3)
    np.testing.assert_allclose(full.template.numpy(), raw["neutral_vertices"] * 0.01, rtol=1e-6)
    lm = full.landmarks(full.template[None])[0]
    # outer eye corners 8.92 cm apart in the source (README): now metres
    assert abs(float((lm[36] - lm[45]).norm()) - 0.0892) < 5e-4
    assert float(lm[36, 0]) < 0 < float(lm[45, 0])  # landmark 36 = subject's right eye = -x
    np.testing.assert_allclose(lm.numpy(), full.template.numpy()[raw["landmarks_multipie68"]], atol=1e-7)
    regions = full.regions
    assert int(regions["face"].sum()) == 9409 and int(regions["eyes"].sum()) == 3140
    assert int(regions["mouth_interior"].sum()) == 2046 + 2977 + 4412
    assert not bool((regions["skin"] & regions["mouth_interior"]).any())


def test_expression_mapping_values(full, raw):
    names = list(raw["expression_names"])
    d = raw["expression_deltas"].astype(np.float32) * 0.01
    eb = full.exp_basis.numpy()
    np.testing.assert_allclose(eb[ARKIT_INDEX["eyeBlinkLeft"]], d[names.index("eyeBlink_L")], atol=1e-7)
    np.testing.assert_allclose(eb[ARKIT_INDEX["browInnerUp"]], d[names.index("browInnerUp_L")] + d[names.index("browInnerUp_R")], atol=1e-7)
    np.testing.assert_allclose(eb[ARKIT_INDEX["cheekPuff"]], d[names.index("cheekPuff_L")] + d[names.index("cheekPuff_R")], atol=1e-7)
    assert float(np.abs(eb[ARKIT_INDEX["tongueOut"]]).max()) == 0.0
    assert full.meta["zero_expressions"] == ["tongueOut"]
    # eyeBlinkLeft moves the subject's left eye (+x side), not the right one
    mag = np.linalg.norm(eb[ARKIT_INDEX["eyeBlinkLeft"]], axis=1)
    x = full.template.numpy()[:, 0]
    assert mag[x > 0.01].max() > 0.01 and mag[x < -0.01].max() < 1e-3
    # a blink closes the eye: upper-lid landmark 37 meets lower-lid 41
    e = torch.zeros(1, 52)
    lm0 = full.landmarks(full(expression=e))[0]
    e[0, ARKIT_INDEX["eyeBlinkRight"]] = 1
    lm1 = full.landmarks(full(expression=e))[0]
    assert float((lm1[37] - lm1[41]).norm()) < 0.3 * float((lm0[37] - lm0[41]).norm())


def test_identity_prior_is_orthogonal_pca(full):
    B = full.id_basis.reshape(100, -1).double()
    G = B @ B.T
    n = G.diagonal().sqrt()
    cos = G / n[:, None] / n[None]
    assert float((cos - torch.eye(100, dtype=torch.float64)).abs().max()) < 1e-3
    assert float(n[0]) > float(n[50]) > float(n[99])  # variance ordered as PCA modes


def test_face_parts(full, face):
    assert face.n_vertices == 15156 and face.faces.shape[0] == 30168
    assert "teeth" not in face.regions and "mouth_interior" not in face.regions
    assert int(face.faces.max()) == face.n_vertices - 1
    assert len(torch.unique(face.faces)) == face.n_vertices  # no dangling vertex
    assert int(face.uv_faces.max()) == face.uvs.shape[0] - 1
    mask = np.logical_or.reduce([full.regions[p].numpy() for p in ict_mod.FACE_PARTS])
    g = torch.Generator().manual_seed(0)
    s, e = torch.randn(2, 100, generator=g), torch.rand(2, 52, generator=g)
    pose = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.3, 0.0]])
    vf, vfull = face(shape=s, expression=e, pose=pose), full(shape=s, expression=e, pose=pose)
    torch.testing.assert_close(vf, vfull[:, torch.from_numpy(mask)])
    for k in ("ibug68", "ibug68_jawline", "jawline_left_extended"):
        torch.testing.assert_close(face.landmarks(vf, k), full.landmarks(vfull, k))


def test_jawline_set_differs_only_on_contour(full):
    a = full.landmarks(full.template[None], "ibug68")[0]
    b = full.landmarks(full.template[None], "ibug68_jawline")[0]
    same = (a - b).norm(dim=1) < 1e-9
    assert bool(same[17:].all()) and bool(same[8]) and not bool(same[:8].all())


def test_cache_reused(cache_env, npz_path, full, monkeypatch):
    files = sorted((cache_env / "models" / "ict").glob("ict-full-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(ict_mod, "build_ict_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt")))
    again = load_ict(npz_path, parts="full")
    torch.testing.assert_close(again.exp_basis, full.exp_basis)
    assert again.exp_names == full.exp_names and sorted(again.embeddings) == sorted(full.embeddings)


def test_load_model_name_needs_an_installed_or_named_source(cache_env, monkeypatch, face, npz_path):
    """The library never looks in the test data: ICT comes from FACE3D_ICT or the installed model."""
    monkeypatch.delenv("FACE3D_ICT", raising=False)
    assert all("shared" not in str(p) for p in ict_mod.default_sources())
    with pytest.raises(ModelNotFoundError, match="face3d models install ict"):
        load_model("ict", parts="face")
    monkeypatch.setenv("FACE3D_ICT", str(cache_env / "nowhere.npz"))
    with pytest.raises(ModelNotFoundError, match="nowhere.npz"):
        load_model("ict", parts="face")
    monkeypatch.setenv("FACE3D_ICT", str(npz_path))
    assert load_model("ict", parts="face").n_vertices == face.n_vertices


def test_errors(tmp_path, raw, cache_env):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="corrupt.npz"):
        load_ict(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, neutral_vertices=raw["neutral_vertices"], faces=raw["faces"])
    with pytest.raises(ModelFileError, match="identity_deltas"):
        load_ict(partial, cache=False)
    with pytest.raises(BadInputError, match="parts"):
        load_ict(partial, parts="teeth")
    with pytest.raises(ModelNotFoundError, match="basic, ict, flame, bfm"):
        load_model("nosuchmodel")


# ---------------------------------------------------------------------------- FaceXModel folders
def _write_obj(path: Path, v: np.ndarray, uvs=None, polys=None, uv_polys=None, mats=None) -> None:
    lines = ["mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {a:.9g} {b:.9g} {c:.9g}" for a, b, c in v]
    if uvs is not None:
        lines += [f"vt {a:.9g} {b:.9g}" for a, b in uvs]
        starts = dict(mats or [])
        for i, (p, t) in enumerate(zip(polys, uv_polys)):
            if i in starts:
                lines.append(f"usemtl {starts[i]}")
            lines.append("f " + " ".join(f"{a + 1}/{b + 1}" for a, b in zip(p, t) if a >= 0))
    path.write_text("\n".join(lines) + "\n")


def _tiny_folder(root: Path) -> dict:
    """A 3x3-vertex-grid 'face' (M_Face) plus a 1-quad 'teeth' block (M_Teeth), 2 identities, 5 expressions."""
    rng = np.random.default_rng(1)
    gx, gy = np.meshgrid(np.arange(3.0), np.arange(3.0))
    face_v = np.stack([gx.ravel() - 1, gy.ravel() - 1, np.zeros(9)], 1) * 5.0
    teeth_v = np.array([[0, -2, 3], [1, -2, 3], [1, -3, 3], [0, -3, 3]], float)
    v = np.concatenate([face_v, teeth_v])
    quads = [[0, 1, 4, 3], [1, 2, 5, 4], [3, 4, 7, 6], [4, 5, 8, 7]]
    polys = np.array(quads + [[9, 10, 11, -1], [9, 11, 12, -1]])
    uvs = rng.random((13, 2))
    root.mkdir()
    _write_obj(root / "generic_neutral_mesh.obj", v, uvs, polys, polys, [(0, "M_Face"), (4, "M_Teeth")])
    exps = ["eyeBlink_L", "eyeBlink_R", "browInnerUp_L", "browInnerUp_R", "jawOpen"]
    deltas = {n: rng.normal(size=v.shape) * 0.1 for n in exps + ["identity000", "identity001"]}
    for n, d in deltas.items():
        _write_obj(root / f"{n}.obj", v + d)
    (root / "vertex_indices.json").write_text(json.dumps({"expressions": exps, "idx_to_landmark_verts": [4] * 68}))
    return {"v": v, "polys": polys, "deltas": deltas}


def test_tiny_facexmodel_folder(tmp_path, cache_env):
    spec = _tiny_folder(tmp_path / "FaceXModel")
    m = load_model(tmp_path, cache=False)  # the repository root holding FaceXModel/
    assert m.n_vertices == 13 and m.faces.shape == (10, 3) and m.n_shape == 2
    np.testing.assert_allclose(m.template.numpy(), spec["v"] * 0.01, atol=1e-8)
    d = spec["deltas"]
    np.testing.assert_allclose(m.id_basis[1].numpy(), d["identity001"] * 0.01, atol=1e-7)
    np.testing.assert_allclose(m.exp_basis[ARKIT_INDEX["browInnerUp"]].numpy(), (d["browInnerUp_L"] + d["browInnerUp_R"]) * 0.01, atol=1e-7)
    np.testing.assert_allclose(m.exp_basis[ARKIT_INDEX["eyeBlinkRight"]].numpy(), d["eyeBlink_R"] * 0.01, atol=1e-7)
    assert float(m.exp_basis[ARKIT_INDEX["mouthSmileLeft"]].abs().max()) == 0
    assert set(m.meta["zero_expressions"]) == set(ARKIT_NAMES) - {"eyeBlinkLeft", "eyeBlinkRight", "browInnerUp", "jawOpen"}
    assert m.regions["face"].numpy().tolist() == [True] * 9 + [False] * 4
    assert m.regions["material_M_Teeth"].numpy().tolist() == [False] * 9 + [True] * 4
    np.testing.assert_allclose(m.landmarks(m.template[None])[0].numpy(), np.repeat(spec["v"][4:5] * 0.01, 68, 0), atol=1e-8)
    with pytest.raises(BadInputError, match="parts='face'"):
        load_ict(tmp_path, parts="face", cache=False)
    (tmp_path / "FaceXModel" / "jawOpen.obj").unlink()
    with pytest.raises(ModelFileError, match="jawOpen.obj"):
        load_ict(tmp_path, cache=False)


def test_obj_parsing_and_fan_triangulation():
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl A\nf 1/1 2/2 3/3 4/4\nusemtl B\nf 2/2 5/1 3/3\n"
    mesh = read_obj(text)
    assert mesh.polygons.tolist() == [[0, 1, 2, 3], [1, 4, 2, -1]]
    assert mesh.materials == [("A", 0), ("B", 1)]
    faces, f2p, uvf = triangulate_fan(mesh.polygons, mesh.uv_polygons)
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]] and f2p.tolist() == [0, 0, 1]
    assert uvf.tolist() == [[0, 1, 2], [0, 2, 3], [1, 0, 2]]
    with pytest.raises(ModelFileError, match="bad face line"):
        read_obj("v 0 0 0\nf 1/a 1 1\n", "x.obj")


@pytest.mark.slow
def test_real_layout_folder_matches_npz(tmp_path, raw, cache_env):
    """A FaceXModel folder written from the real geometry (a few shapes) loads like the npz."""
    root = tmp_path / "FaceXModel"
    root.mkdir()
    neutral = raw["neutral_vertices"].astype(np.float64)
    mats = [(int(a), str(n)) for n, (a, _) in zip(raw["material_names"], raw["material_polygon_ranges"])]
    _write_obj(root / "generic_neutral_mesh.obj", neutral, raw["uvs"], raw["polygons"], raw["uv_polygons"], mats)
    exps = ["cheekPuff_L", "cheekPuff_R", "jawOpen"]
    names = list(raw["expression_names"])
    for n in exps:
        _write_obj(root / f"{n}.obj", neutral + raw["expression_deltas"][names.index(n)].astype(np.float64))
    for k in range(2):
        _write_obj(root / f"identity{k:03d}.obj", neutral + raw["identity_deltas"][k].astype(np.float64))
    (root / "vertex_indices.json").write_text(json.dumps({"expressions": exps, "idx_to_landmark_verts": raw["landmarks_multipie68"].tolist()}))
    arrays = read_facexmodel(root)
    assert topology_sha256(arrays) == ICT_TOPOLOGY_SHA256  # the install check accepts the real mesh
    for key in ("faces", "face_to_polygon", "uv_faces"):
        np.testing.assert_array_equal(arrays[key], raw[key])
    np.testing.assert_array_equal(arrays["neutral_vertices"], raw["neutral_vertices"])
    m = load_ict(root, parts="face", cache=False)
    ref = load_ict(shared_data() / "ict_facekit" / "ict_facekit.npz", parts="face")
    torch.testing.assert_close(m.template, ref.template)
    torch.testing.assert_close(m.faces, ref.faces)
    torch.testing.assert_close(m.id_basis, ref.id_basis[:2], atol=1e-7, rtol=0)
    for n in ("cheekPuff", "jawOpen"):
        torch.testing.assert_close(m.exp_basis[ARKIT_INDEX[n]], ref.exp_basis[ARKIT_INDEX[n]], atol=1e-7, rtol=0)
    torch.testing.assert_close(m.landmarks(m.template[None]), ref.landmarks(ref.template[None]))
