"""FLAME loader: equals smplx.FLAME on a synthetic model of the real array shapes; chumpy pickles; albedo."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.models import load_model
from face3d.models.flame import FlameFiles, FlameModel, load_flame, read_flame_albedo, read_pickle

V, F = 5023, 9976


def synthetic_flame(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    template = rng.normal(size=(V, 3)) * 0.05
    template[:, 1] += 0.02
    J = rng.random((5, V)) ** 8
    J /= J.sum(1, keepdims=True)
    w = rng.dirichlet(np.full(5, 0.3), size=V)
    return {
        "v_template": template,
        "f": rng.integers(0, V, size=(F, 3)).astype(np.uint32),
        "shapedirs": rng.normal(size=(V, 3, 400)) * 1e-3,
        "posedirs": rng.normal(size=(V, 3, 36)) * 1e-3,
        "J_regressor": J,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": w,
    }


def embeddings(seed: int = 1) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    static = {"lmk_face_idx": rng.integers(0, F, 51).astype(np.uint32), "lmk_b_coords": rng.dirichlet(np.ones(3), 51)}
    dynamic = {"lmk_face_idx": rng.integers(0, F, (79, 17)).astype(np.int64), "lmk_b_coords": rng.dirichlet(np.ones(3), (79, 17))}
    return static, dynamic


@pytest.fixture(scope="module")
def flame_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("flame")
    with open(d / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(synthetic_flame(), fh, protocol=2)
    static, dynamic = embeddings()
    with open(d / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump(static, fh, protocol=2)
    np.save(d / "flame_dynamic_embedding.npy", np.array(dynamic, dtype=object), allow_pickle=True)
    return d


@pytest.fixture(scope="module")
def model(flame_dir) -> FlameModel:
    return load_flame(flame_dir / "FLAME_NEUTRAL.pkl")


@pytest.fixture(scope="module")
def reference(flame_dir):
    smplx = pytest.importorskip("smplx")
    return smplx.FLAME(model_path=str(flame_dir), num_betas=300, num_expression_coeffs=100, batch_size=4,
                       use_face_contour=True)


def test_matches_smplx(model, reference):
    g = torch.Generator().manual_seed(3)
    B = 4
    shape, expr = torch.randn(B, 300, generator=g), torch.randn(B, 100, generator=g)
    pose, neck, jaw = (torch.randn(B, 3, generator=g) * 0.3 for _ in range(3))
    eyes = torch.randn(B, 6, generator=g) * 0.2
    with torch.no_grad():
        ref = reference(betas=shape, expression=expr, global_orient=pose, neck_pose=neck, jaw_pose=jaw,
                        leye_pose=eyes[:, :3], reye_pose=eyes[:, 3:])
        ours = model(shape=shape, expression=expr, pose=pose, neck=neck, jaw=jaw, eyes=eyes)
    assert ours.shape == (B, V, 3)
    err = float((ours - ref.vertices).abs().max())
    assert err < 1e-5, err
    # a posed head really moved (the comparison is not between two rest meshes)
    assert float((ours - model(shape=shape, expression=expr)).abs().max()) > 1e-2
    # landmarks: smplx returns 51 static then 17 dynamic after the 5 joints; ours are iBUG order (contour first)
    with torch.no_grad():
        ref0 = reference(betas=shape, expression=expr, global_orient=pose, jaw_pose=jaw, neck_pose=torch.zeros(B, 3),
                         leye_pose=eyes[:, :3], reye_pose=eyes[:, 3:])
        v0 = model(shape=shape, expression=expr, pose=pose, jaw=jaw, eyes=eyes)
        lm = model.landmarks(v0, "ibug68", pose=pose)
    ref_lm = ref0.joints[:, 5:]
    torch.testing.assert_close(lm[:, 17:], ref_lm[:, :51], atol=1e-5, rtol=0)
    torch.testing.assert_close(lm[:, :17], ref_lm[:, 51:], atol=1e-5, rtol=0)


def test_gradients_and_layout(model):
    assert model.n_shape == 300 and model.n_expression == 100 and model.exp_names[0] == "exp000"
    pose = torch.zeros(2, 3, requires_grad=True)
    jaw = torch.full((2, 3), 0.1, requires_grad=True)
    v = model(pose=pose, jaw=jaw)
    v.sum().backward()
    assert pose.grad is not None and float(jaw.grad.abs().sum()) > 0
    lm = model.landmarks(model.template[None], "ibug68")
    assert lm.shape == (1, 68, 3)
    # frontal ibug68 contour = row 0 of the dynamic table
    _, dynamic = embeddings()
    f = model.faces[torch.as_tensor(dynamic["lmk_face_idx"][0])]
    expect = (model.template[f] * torch.as_tensor(dynamic["lmk_b_coords"][0], dtype=torch.float32)[..., None]).sum(1)
    torch.testing.assert_close(lm[0, :17], expect)
    with pytest.raises(BadInputError, match="licence"):
        model.to_npz("/tmp/never-written.npz")
    with pytest.raises(BadInputError, match="subset"):
        model.subset(np.ones(V, bool))
    rows = model.contour_rows(torch.tensor([[0.0, 0.2, 0.0], [0.0, -0.2, 0.0], [0.0, 1.2, 0.0]]))
    # yaw +11.5 deg -> row 39 - (-11) = 50; -11.5 deg -> row 11; beyond 39 deg -> last row 78 (smplx's table layout)
    assert rows.tolist() == [50, 11, 78]


def _install_fake_chumpy():
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # mimics chumpy.ch.Ch pickling: default reduce with a state dict holding 'x'
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    return Ch


def test_chumpy_pickle(tmp_path, model, flame_dir):
    data = synthetic_flame()
    Ch = _install_fake_chumpy()
    try:
        for k in ("v_template", "shapedirs", "posedirs", "weights"):
            data[k] = Ch(data[k])
        data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
        data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
        blob = pickle.dumps(data, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    assert b"chumpy.ch" in blob
    (tmp_path / "generic_model.pkl").write_bytes(blob)
    for f in ("flame_static_embedding.pkl", "flame_dynamic_embedding.npy"):
        (tmp_path / f).write_bytes((flame_dir / f).read_bytes())
    m = load_model(tmp_path)  # folder -> FLAME by detection
    assert isinstance(m, FlameModel) and "ibug68" in m.embeddings
    s = torch.randn(2, 300)
    pose = torch.tensor([[0.1, 0.4, -0.2], [0.0, 0.0, 0.3]])
    torch.testing.assert_close(m(shape=s, pose=pose, jaw=pose), model(shape=s, pose=pose, jaw=pose))
    assert read_pickle(tmp_path / "generic_model.pkl")["bs_style"] == "lbs"


def test_flame2023_pickle(tmp_path, model):
    data = synthetic_flame()
    data["J"] = np.zeros((5, 3))  # FLAME 2023 files carry extra keys, written by Python 3
    data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
    with open(tmp_path / "flame2023.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    with open(tmp_path / "generic_model.pkl", "wb") as fh:
        pickle.dump(synthetic_flame(seed=9), fh, protocol=2)
    m = load_model(tmp_path)  # the folder's flame2023.pkl wins over older names
    assert isinstance(m, FlameModel) and m.version == "flame2023" and m.meta["source"].endswith("flame2023.pkl")
    sd = torch.as_tensor(data["shapedirs"], dtype=torch.float32)
    assert m.n_shape == 300 and m.n_expression == 100
    torch.testing.assert_close(m.id_basis[299], sd[:, :, 299])
    torch.testing.assert_close(m.exp_basis[0], sd[:, :, 300])  # 400 columns: 300 shape then 100 expression
    g = torch.Generator().manual_seed(1)
    s, e, jaw = torch.randn(2, 300, generator=g), torch.randn(2, 100, generator=g), torch.randn(2, 3, generator=g) * 0.2
    torch.testing.assert_close(m(shape=s, expression=e, jaw=jaw), model(shape=s, expression=e, jaw=jaw))
    few = load_model(tmp_path / "flame2023.pkl", n_shape=100, n_expression=50)
    assert few.n_shape == 100 and few.n_expression == 50
    torch.testing.assert_close(few.exp_basis[0], sd[:, :, 300])  # truncating shapes does not shift the expressions


def _deca_embedding(seed: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    return {"static_lmk_faces_idx": rng.integers(0, F, 51), "static_lmk_bary_coords": rng.dirichlet(np.ones(3), 51),
            "dynamic_lmk_faces_idx": rng.integers(0, F, (79, 17)), "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)),
            "full_lmk_faces_idx": rng.integers(0, F, (1, 68)), "full_lmk_bary_coords": rng.dirichlet(np.ones(3), (1, 68))}


def test_deca_landmark_embedding(tmp_path, flame_dir):
    (tmp_path / "generic_model.pkl").symlink_to(flame_dir / "FLAME_NEUTRAL.pkl")
    emb = _deca_embedding()
    np.save(tmp_path / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    m = load_model(tmp_path)
    v, f = m.template.numpy(), m.faces.numpy()
    np.testing.assert_allclose(v, synthetic_flame()["v_template"], atol=1e-7)
    at = lambda tri, bary: np.einsum("lk,lkc->lc", bary, v[f[tri]])
    static = at(emb["static_lmk_faces_idx"], emb["static_lmk_bary_coords"])
    np.testing.assert_allclose(m.landmarks(m.template[None], "flame51")[0].numpy(), static, atol=1e-6)
    lm = m.landmarks(m.template[None], "ibug68")[0].numpy()
    np.testing.assert_allclose(lm[17:], static, atol=1e-6)
    np.testing.assert_allclose(lm[:17], at(emb["dynamic_lmk_faces_idx"][0], emb["dynamic_lmk_bary_coords"][0]), atol=1e-6)
    pose = torch.tensor([[0.0, -0.2, 0.0]])  # yawed 11.5 degrees: contour row 11
    turned = m.landmarks(m.template[None], "ibug68", pose=pose)[0, :17].numpy()
    np.testing.assert_allclose(turned, at(emb["dynamic_lmk_faces_idx"][11], emb["dynamic_lmk_bary_coords"][11]), atol=1e-6)


def test_bad_landmark_embedding(tmp_path, flame_dir):
    (tmp_path / "generic_model.pkl").symlink_to(flame_dir / "FLAME_NEUTRAL.pkl")
    path = tmp_path / "landmark_embedding.npy"
    path.write_bytes(b"\x93NUMPY junk")
    with pytest.raises(ModelFileError, match="landmark_embedding.npy.*not a readable numpy file"):
        load_model(tmp_path)
    np.save(path, np.arange(5))
    with pytest.raises(ModelFileError, match="landmark_embedding.npy.*pickled dict"):
        load_model(tmp_path)
    emb = _deca_embedding()
    emb["dynamic_lmk_faces_idx"] = emb["dynamic_lmk_faces_idx"][0]  # one row, not (yaw bins, 17)
    np.save(path, np.array(emb, dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match=r"landmark_embedding.npy.*\(yaw bins, 17\).*got \(17,\)"):
        load_model(tmp_path)
    emb = {k: x for k, x in _deca_embedding().items() if not k.startswith("static")}
    np.save(path, np.array(emb, dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="landmark_embedding.npy.*static_lmk_faces_idx"):
        load_model(tmp_path)
    emb = _deca_embedding()
    emb["static_lmk_bary_coords"] = emb["static_lmk_bary_coords"].T  # (3, 51): would scramble the landmarks
    np.save(path, np.array(emb, dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match=r"landmark_embedding.npy.*must be \(51, 3\).*got \(3, 51\)"):
        load_model(tmp_path)
    emb = _deca_embedding()
    emb["dynamic_lmk_faces_idx"][40, 3] = F + 7  # a bad id in a contour row other than the frontal one
    np.save(path, np.array(emb, dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match=rf"landmark_embedding.npy.*triangle ids outside \[0, {F}\)"):
        load_model(tmp_path)


def test_deca_embedding_with_torch_tensors(tmp_path, flame_dir):
    """DECA's own landmark_embedding.npy holds its dynamic tables as torch tensors."""
    (tmp_path / "generic_model.pkl").symlink_to(flame_dir / "FLAME_NEUTRAL.pkl")
    emb = _deca_embedding()
    emb["dynamic_lmk_faces_idx"] = torch.from_numpy(emb["dynamic_lmk_faces_idx"])
    emb["dynamic_lmk_bary_coords"] = torch.from_numpy(emb["dynamic_lmk_bary_coords"]).float()
    np.save(tmp_path / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    m = load_model(tmp_path)
    v, f = m.template.numpy(), m.faces.numpy()
    row0 = np.einsum("lk,lkc->lc", emb["dynamic_lmk_bary_coords"][0].numpy(), v[f[emb["dynamic_lmk_faces_idx"][0].numpy()]])
    np.testing.assert_allclose(m.landmarks(m.template[None], "ibug68")[0, :17].numpy(), row0, atol=1e-6)


def test_albedo(tmp_path, flame_dir):
    rng = np.random.default_rng(0)
    mu = rng.random((1, 8 * 8 * 3))
    pc = rng.normal(size=(8 * 8 * 3, 5))
    np.savez(tmp_path / "FLAME_albedo_from_BFM.npz", MU=mu, PC=pc, specMU=mu, specPC=pc)
    mean, basis, _ = read_flame_albedo(tmp_path / "FLAME_albedo_from_BFM.npz")
    assert mean.shape == (8, 8, 3) and basis.shape == (5, 8, 8, 3)
    img = mu.reshape(8, 8, 3)
    np.testing.assert_allclose(mean[..., 0], img[..., 2], rtol=1e-6)  # BGR -> RGB
    np.testing.assert_allclose(basis[2, 3, 4, 1], pc.reshape(8, 8, 3, 5)[3, 4, 1, 2], rtol=1e-6)
    np.savez(tmp_path / "FLAME_texture.npz", mean=mu.reshape(8, 8, 3) * 255, tex_dir=pc.reshape(8, 8, 3, 5) * 255,
             vt=rng.random((20, 2)), ft=rng.integers(0, 20, (F, 3)))
    m = load_flame(flame_dir / "FLAME_NEUTRAL.pkl", FlameFiles(albedo=tmp_path / "FLAME_texture.npz"), n_albedo=3)
    assert m.n_albedo == 3 and m.uvs.shape == (20, 2)
    a = m.albedo(torch.tensor([[1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(a[0].numpy(), mean + basis[0], rtol=1e-5, atol=1e-5)
    np.savez(tmp_path / "bad.npz", foo=mu)
    with pytest.raises(ModelFileError, match="bad.npz.*'MU'"):
        read_flame_albedo(tmp_path / "bad.npz")


def test_errors(tmp_path, monkeypatch):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ModelFileError, match="junk.pkl"):
        load_flame(tmp_path / "junk.pkl")
    d = synthetic_flame()
    del d["posedirs"]
    with open(tmp_path / "partial.pkl", "wb") as fh:
        pickle.dump(d, fh)
    with pytest.raises(ModelFileError, match="partial.pkl.*'posedirs'"):
        load_model(tmp_path / "partial.pkl")
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACE3D_FLAME", raising=False)
    with pytest.raises(ModelNotFoundError, match="flame.is.tue.mpg.de"):
        load_model("flame")


def test_masks_and_uv_template(tmp_path):
    """FLAME_masks.pkl becomes named regions; head_template.obj gives a UV albedo its coordinates."""
    d = synthetic_flame()
    with open(tmp_path / "generic_model.pkl", "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    masks = {"face": np.arange(0, 40), "left_eyeball": np.arange(40, 50), "right_eyeball": np.arange(50, 60),
             "neck": np.arange(60, 70), "right_ear": np.array([70, 71])}
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump(masks, fh, protocol=2)
    side = 8
    np.savez(tmp_path / "FLAME_albedo_from_BFM.npz", MU=np.full((1, side * side * 3), 0.5), PC=np.zeros((side * side * 3, 2)))
    with pytest.warns(UserWarning, match="without texture coordinates"):
        m = load_flame(tmp_path / "generic_model.pkl")
    assert m.albedo_mean is None and m.uvs is None
    assert sorted(m.regions) == ["ear_right", "eyeball_left", "eyeball_right", "eyes", "face", "neck", "skin"]
    assert m.regions["eyeball_left"].nonzero().flatten().tolist() == list(range(40, 50))
    assert int(m.regions["eyes"].sum()) == 20 and int(m.regions["skin"].sum()) == V - 20
    vt = np.random.default_rng(0).random((V, 2))
    lines = [f"v {a} {b} {c}" for a, b, c in d["v_template"]] + [f"vt {a} {b}" for a, b in vt]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in tri) for tri in d["f"].astype(np.int64)]
    (tmp_path / "head_template.obj").write_text("\n".join(lines) + "\n")
    m = load_flame(tmp_path / "generic_model.pkl")
    assert m.albedo_mean is not None and m.uvs.shape == (V, 2)
    np.testing.assert_allclose(m.uvs.numpy(), vt, atol=1e-6)
    np.testing.assert_array_equal(m.uv_faces.numpy(), d["f"].astype(np.int64))
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump({"face": np.array([0, V + 5])}, fh, protocol=2)
    with pytest.raises(ModelFileError, match=r"FLAME_masks.pkl.*mask 'face' must hold vertex indices"):
        load_flame(tmp_path / "generic_model.pkl")


def test_is_articulated(model):
    """FLAME has joints (a forward override): fitting and Animation.apply take its full forward pass."""
    assert model.is_articulated
    assert model.embeddings["ibug68"].tri.shape == (68,) and "emb_bary__ibug68" in dict(model.named_buffers())
