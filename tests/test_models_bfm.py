"""BFM loaders on synthetic files of the real layouts (2009 .mat, Deep3DFaceRecon front .mat, 2017/2019 .h5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
import trimesh

from face3d.errors import ModelFileError, ModelNotFoundError
from face3d.models import load_model
from face3d.models.bfm import load_bfm, orient_outward
from face3d.models.registry import detect_format

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def head():
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.08)
    v = np.asarray(m.vertices) * np.array([0.9, 1.2, 1.0])
    return v, np.asarray(m.faces)


def _ortho(rng, n, k):
    q, _ = np.linalg.qr(rng.normal(size=(n, k)))
    return q


def test_bfm2009(tmp_path, head):
    v, f = head
    V, rng = len(v), np.random.default_rng(0)
    pc, ev = _ortho(rng, 3 * V, 10), np.linspace(30000, 3000, 10)[:, None]  # micrometres
    tpc, tev = _ortho(rng, 3 * V, 6), np.linspace(40, 5, 6)[:, None]
    tex = rng.uniform(80, 200, size=(3 * V, 1))
    path = tmp_path / "01_MorphableModel.mat"
    scipy.io.savemat(path, {"shapeMU": (v * 1e6).reshape(-1, 1), "shapePC": pc, "shapeEV": ev, "texMU": tex, "texPC": tpc,
                            "texEV": tev, "tl": f[:, [0, 2, 1]] + 1, "segbin": np.eye(4)[np.arange(V) % 4]})
    assert detect_format(path) == "bfm2009"
    m = load_model(path, landmarks=np.arange(68))
    assert m.n_vertices == V and m.n_shape == 10 and m.n_expression == 0 and m.n_albedo == 6
    np.testing.assert_allclose(m.template.numpy(), v, atol=1e-6)
    np.testing.assert_array_equal(m.faces.numpy(), f)  # 1-based inward 'tl' -> 0-based outward
    s = torch.zeros(1, 10)
    s[0, 3] = 1.5
    expect = v + 1.5 * (pc[:, 3] * ev[3, 0]).reshape(V, 3) * 1e-6
    np.testing.assert_allclose(m(shape=s)[0].numpy(), expect, atol=1e-6)
    assert torch.all(m.id_std == 1)
    np.testing.assert_allclose(m.albedo()[0].numpy(), tex.reshape(V, 3) / 255, rtol=1e-6)
    np.testing.assert_allclose(m.albedo(torch.eye(6)[:1])[0].numpy(), (tex.reshape(V, 3) + (tpc[:, 0] * tev[0, 0]).reshape(V, 3)) / 255, rtol=1e-5)
    np.testing.assert_allclose(m.landmarks(m.template[None])[0].numpy(), v[:68], atol=1e-6)
    # segbin columns: nose, eyes, mouth, cheeks (vertex i is in segment i % 4 here)
    assert m.regions["mouth_region"].nonzero().flatten().tolist() == list(range(2, V, 4))
    assert int(m.regions["face"].sum()) == V and not (m.regions["nose"] & m.regions["cheeks"]).any()
    scipy.io.savemat(path, {"shapeMU": (v * 1e6).reshape(-1, 1), "shapePC": pc, "shapeEV": ev, "tl": f + 1, "segbin": np.ones((V, 3))})
    with pytest.raises(ModelFileError, match=r"01_MorphableModel.mat.*'segbin' has shape"):
        load_model(path)


def test_bfm_front(tmp_path, head):
    v, f = head
    V, rng = len(v), np.random.default_rng(1)
    idb = rng.normal(size=(3 * V, 80)) * 0.01  # decimetres, std-scaled
    exb = rng.normal(size=(3 * V, 64)) * 0.005
    keypoints = rng.choice(V, 68, replace=False)
    path = tmp_path / "BFM_model_front.mat"
    scipy.io.savemat(path, {"meanshape": (v * 10).reshape(1, -1), "idBase": idb, "exBase": exb,
                            "meantex": rng.uniform(0, 255, (1, 3 * V)), "texBase": rng.normal(size=(3 * V, 80)),
                            "tri": f + 1, "keypoints": (keypoints + 1)[None].astype(np.float64),
                            "point_buf": np.ones((V, 8)), "skinmask": (rng.random((1, V)) > 0.5).astype(np.float64)})
    assert detect_format(path) == "bfm_front"
    m = load_bfm(path)
    assert m.n_shape == 80 and m.n_expression == 64 and m.exp_names[0] == "exp000"
    np.testing.assert_allclose(m.template.numpy(), v, atol=1e-6)
    e = torch.zeros(1, 64)
    e[0, 5] = 2.0
    np.testing.assert_allclose(m(expression=e)[0].numpy(), v + 2 * exb[:, 5].reshape(V, 3) * 0.1, atol=1e-6)
    np.testing.assert_allclose(m.landmarks(m.template[None])[0].numpy(), v[keypoints], atol=1e-6)
    assert m.regions["skin"].shape == (V,)


def test_bfm_h5(tmp_path, head):
    v, f = head
    V, rng = len(v), np.random.default_rng(2)
    path = tmp_path / "model2019_face12.h5"
    pb, var = _ortho(rng, 3 * V, 8), np.linspace(400, 10, 8)  # mm^2
    eb, evar = _ortho(rng, 3 * V, 5), np.linspace(100, 4, 5)
    with h5py.File(path, "w") as h:
        h["shape/model/mean"] = (v * 1000).ravel().astype(np.float32)
        h["shape/model/pcaBasis"] = pb.astype(np.float32)
        h["shape/model/pcaVariance"] = var.astype(np.float32)
        h["shape/model/noiseVariance"] = np.float32(0.0)
        h["shape/representer/points"] = (v * 1000).T.astype(np.float32)
        h["shape/representer/cells"] = f.T.astype(np.uint32)
        h["expression/model/mean"] = np.zeros(3 * V, np.float32)
        h["expression/model/pcaBasis"] = eb.astype(np.float32)
        h["expression/model/pcaVariance"] = evar.astype(np.float32)
        h["color/model/mean"] = np.full(3 * V, 0.5, np.float32)
        h["color/model/pcaBasis"] = _ortho(rng, 3 * V, 4).astype(np.float32)
        h["color/model/pcaVariance"] = np.ones(4, np.float32) * 0.01
    assert detect_format(path) == "bfm_h5"
    m = load_model(path, n_shape=6)
    assert m.version == "2019" and m.n_shape == 6 and m.n_expression == 5 and m.n_albedo == 4
    np.testing.assert_allclose(m.template.numpy(), v, atol=1e-6)
    s = torch.zeros(1, 6)
    s[0, 1] = -1.0
    e = torch.zeros(1, 5)
    e[0, 0] = 1.0
    expect = v + (-pb[:, 1] * np.sqrt(var[1]) + eb[:, 0] * np.sqrt(evar[0])).reshape(V, 3) * 1e-3
    np.testing.assert_allclose(m(shape=s, expression=e)[0].numpy(), expect, atol=1e-6)
    np.testing.assert_array_equal(m.faces.numpy(), f)


def test_orient_outward(head):
    v, f = head
    np.testing.assert_array_equal(orient_outward(v, f[:, [0, 2, 1]]), f)
    np.testing.assert_array_equal(orient_outward(v, f), f)


def test_errors(tmp_path, head, monkeypatch):
    v, f = head
    wrong = tmp_path / "other.mat"
    scipy.io.savemat(wrong, {"foo": np.ones(3)})
    with pytest.raises(ModelFileError, match="other.mat.*shapeMU"):
        load_model(wrong)
    notl = tmp_path / "01_MorphableModel.mat"
    scipy.io.savemat(notl, {"shapeMU": v.reshape(-1, 1), "shapePC": np.ones((v.size, 2)), "shapeEV": np.ones((2, 1))})
    with pytest.raises(ModelFileError, match="01_MorphableModel.mat.*'tl'"):
        load_bfm(notl)
    corrupt = tmp_path / "broken.h5"
    corrupt.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(ModelFileError, match="broken.h5"):
        load_model(corrupt)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as h:
        h["shape/model/mean"] = np.zeros(9)
    with pytest.raises(ModelFileError, match="empty.h5.*shape/model"):
        load_bfm(empty)
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACE3D_BFM", raising=False)
    with pytest.raises(ModelNotFoundError, match="faces.dmi.unibas.ch"):
        load_model("bfm")
