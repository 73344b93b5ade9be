"""FLAME pickles and DECA-style .npy embeddings are unpickled with an allow-list: arrays load,
code-running globals are refused before they run."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import scipy.sparse

from face3d.errors import ModelFileError
from face3d.models.flame import _npy_dict, read_pickle


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_arrays_sparse_matrices_and_sets_load(tmp_path):
    data = {"v": np.arange(6, dtype=np.float64).reshape(2, 3), "J": scipy.sparse.csc_matrix(np.eye(3)), "s": {1, 2}, "name": "lbs"}
    for proto in (2, 4, 5):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=proto))
        d = read_pickle(tmp_path / "ok.pkl")
        np.testing.assert_array_equal(d["v"], data["v"])
        np.testing.assert_array_equal(d["J"], np.eye(3))  # sparse matrices come back dense
        assert d["s"] == {1, 2} and d["name"] == "lbs"


@pytest.mark.parametrize("suffix", [".pkl", ".npy"])
def test_code_running_pickle_is_refused_before_it_runs(tmp_path, suffix):
    target = tmp_path / "created_by_pickle"
    path = tmp_path / f"evil{suffix}"
    payload = {"lmk_face_idx": np.zeros(3, np.int64), "x": _Exploit(str(target))}
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps(payload, protocol=2))
        reader = read_pickle
    else:
        np.save(path, np.array(payload, dtype=object), allow_pickle=True)
        reader = _npy_dict
    with pytest.raises(ModelFileError, match=r"evil.*refusing to load global '(posix|os|nt)\.makedirs'"):
        reader(path)
    assert not target.exists()


def test_deca_style_npy_dict_loads(tmp_path):
    emb = {"static_lmk_faces_idx": np.array([3, 1, 2]), "static_lmk_bary_coords": np.full((3, 3), 1 / 3)}
    np.save(tmp_path / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    d = _npy_dict(tmp_path / "landmark_embedding.npy")
    np.testing.assert_array_equal(d["static_lmk_faces_idx"], [3, 1, 2])
    np.testing.assert_allclose(d["static_lmk_bary_coords"], 1 / 3)


class _EvilStorage:
    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.blob,))


def test_torch_tensors_load_but_their_storage_bytes_cannot_run_code(tmp_path):
    import torch

    (tmp_path / "t.pkl").write_bytes(pickle.dumps({"idx": torch.arange(6).reshape(2, 3)}, protocol=2))
    np.testing.assert_array_equal(read_pickle(tmp_path / "t.pkl")["idx"], np.arange(6).reshape(2, 3))
    target = tmp_path / "created_by_storage"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": _EvilStorage(pickle.dumps(_Exploit(str(target)), protocol=2))}, protocol=2))
    with pytest.raises(ModelFileError, match="evil.pkl: not a readable pickle"):
        read_pickle(tmp_path / "evil.pkl")
    assert not target.exists()
