"""Registry (names, format detection, native files) and MorphableModel.subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.models import MorphableModel, available_models, load_model
from face3d.models.model import ModelArrays
from face3d.models.registry import detect_format, model_info
from face3d.testing import shared_data


def small_model() -> MorphableModel:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [1, 3, 2], [3, 4, 5], [2, 3, 5]])
    arrays = ModelArrays(v, f, id_basis=rng.normal(size=(2, 6, 3)), id_std=np.array([1.0, 0.5]), exp_basis=rng.normal(size=(3, 6, 3)),
                         uvs=rng.random((7, 2)), uv_faces=np.array([[0, 1, 2], [1, 3, 2], [3, 4, 6], [2, 3, 6]]),
                         albedo_mean=rng.random((6, 3)), albedo_basis=rng.normal(size=(2, 6, 3)),
                         regions={"left": np.array([True, True, True, False, False, False])},
                         embeddings={"a": (np.array([0, 1]), np.array([[1, 0, 0], [0.2, 0.3, 0.5]])), "b": (np.array([2]), np.array([[0, 0, 1]]))})
    return MorphableModel(arrays, name="small")


def test_subset():
    m = small_model()
    keep = np.array([True, True, True, True, False, False])
    s = m.subset(keep)
    assert s.n_vertices == 4 and s.faces.tolist() == [[0, 1, 2], [1, 3, 2]]
    assert s.uv_faces.tolist() == [[0, 1, 2], [1, 3, 2]] and s.uvs.shape == (4, 2)
    torch.testing.assert_close(s.uvs, m.uvs[:4])
    assert sorted(s.embeddings) == ["a"] and s.meta["dropped_embeddings"] == ["b"]
    c = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.5, 0.1, -0.2]])
    full_v, sub_v = m(shape=c[0], expression=c[1]), s(shape=c[0], expression=c[1])
    torch.testing.assert_close(sub_v, full_v[:, :4])
    torch.testing.assert_close(s.landmarks(sub_v, "a"), m.landmarks(full_v, "a"))
    torch.testing.assert_close(s.albedo(torch.ones(1, 2)), m.albedo(torch.ones(1, 2))[:, :4])
    assert s.regions["left"].tolist() == [True, True, True, False]
    assert m.subset(np.array([0, 1, 2])).faces.tolist() == [[0, 1, 2]]
    with pytest.raises(BadInputError, match="no vertex"):
        m.subset(np.zeros(6, bool))
    with pytest.raises(BadInputError):
        m.subset(np.array([7]))


def test_native_roundtrip_and_detection(tmp_path):
    m = small_model()
    p = m.to_npz(tmp_path / "small.npz")
    assert detect_format(p) == "native"
    back = load_model(p)
    torch.testing.assert_close(back.exp_basis, m.exp_basis)
    assert back.name == "small" and back.id_std.tolist() == [1.0, 0.5]
    with pytest.raises(BadInputError, match="no options"):
        load_model(p, parts="face")
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=np.ones(3))
    with pytest.raises(ModelFileError, match="odd.npz.*unknown layout"):
        load_model(odd)
    with pytest.raises(ModelFileError, match="unknown model file type"):
        detect_format(__file__)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(tmp_path / "absent.npz")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelFileError, match="neither a FaceXModel"):
        load_model(tmp_path / "folder")


def test_names(monkeypatch, tmp_path):
    assert available_models() == ["default", "basic", "ict", "flame", "bfm"]
    with pytest.raises(ModelNotFoundError, match="available models: default, basic, ict, flame, bfm"):
        load_model("flam")
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path))
    monkeypatch.delenv("FACE3D_FLAME", raising=False)
    info = model_info("flame")
    assert not info.installed and "flame.is.tue.mpg.de" in info.how_to_get
    monkeypatch.setenv("FACE3D_ICT", str(tmp_path / "x.npz"))
    (tmp_path / "x.npz").write_bytes(b"")
    assert model_info("ict").installed and model_info("ict").location == str(tmp_path / "x.npz")


def test_ict_npz_by_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path))
    src = shared_data() / "ict_facekit" / "ict_facekit.npz"
    assert detect_format(src) == "ict"
    m = load_model(str(src))
    assert m.exp_names == list(ARKIT_NAMES) and m.has_arkit and m.n_vertices == 26719 and m.n_shape == 100
    lm = m.landmarks(m(expression=torch.eye(52)[ARKIT_INDEX["jawOpen"]][None]))[0] - m.landmarks(m.template[None])[0]
    assert float(lm[8, 1]) < -0.01  # jawOpen drops the chin: an ARKit basis in metres
    cached = list((tmp_path / "models" / "ict").glob("ict-full-*.npz"))
    assert len(cached) == 1 and detect_format(cached[0]) == "native"  # conversion cached under FACE3D_CACHE
    torch.testing.assert_close(load_model(src).exp_basis, m.exp_basis)
    np.savez(tmp_path / "half.npz", neutral_vertices=np.zeros((3, 3)))  # one ICT key is not the ICT layout
    with pytest.raises(ModelFileError, match=r"half\.npz.*unknown layout.*neutral_vertices"):
        load_model(tmp_path / "half.npz")
    np.savez(tmp_path / "partial.npz", neutral_vertices=np.zeros((3, 3)), identity_deltas=np.zeros((1, 3, 3)))
    assert detect_format(tmp_path / "partial.npz") == "ict"
    with pytest.raises(ModelFileError, match=r"partial\.npz.*'faces'"):
        load_model(tmp_path / "partial.npz")
