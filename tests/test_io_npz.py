"""face3d.io.npz.read_npz: arrays back by name, typed errors for missing, corrupt and pickled files."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.errors import FileFormatError, ModelFileError
from face3d.io.npz import read_npz


def test_read_npz_returns_every_array(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(6).reshape(2, 3), name=np.array("basic"))
    d = read_npz(tmp_path / "a.npz")
    assert sorted(d) == ["name", "x"]
    np.testing.assert_array_equal(d["x"], [[0, 1, 2], [3, 4, 5]])
    assert str(d["name"]) == "basic"


def test_read_npz_errors_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(ModelFileError, match="missing.npz: file not found"):
        read_npz(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    with pytest.raises(FileFormatError, match="bad.npz: not a readable animation npz") as info:
        read_npz(tmp_path / "bad.npz", "animation npz", FileFormatError)
    assert not isinstance(info.value, ModelFileError)
    np.savez(tmp_path / "pickled.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="pickled.npz: not a readable npz file"):
        read_npz(tmp_path / "pickled.npz")
