"""``face3d models install ict`` offline: a file:// zip of a synthetic FaceXModel; checksums; CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from face3d.apps.cli import main
from face3d.arkit import ARKIT_INDEX
from face3d.errors import DownloadError
from face3d.models import load_model
from face3d.models import install as inst
from face3d.models.obj_folder import read_facexmodel
from face3d.testing import shared_ict


def _obj(v, polys=None, uvs=None):
    lines = [f"v {a:.9g} {b:.9g} {c:.9g}" for a, b, c in v]
    if polys is not None:
        lines += [f"vt {a:.6f} {b:.6f}" for a, b in uvs]
        lines.append("usemtl M_Face")
        lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in p) for p in polys]
    return "\n".join(lines) + "\n"


def make_archive(path: Path, seed: int = 0) -> dict:
    """GitHub's layout: ICT-FaceKit-<commit>/FaceXModel/*.obj + vertex_indices.json (plus other files)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(6, 3)) * 5
    polys = [[0, 1, 2, 3], [2, 3, 4, 5]]
    root = f"ICT-FaceKit-{inst.ICT_COMMIT}"
    deltas = {n: rng.normal(size=v.shape) * 0.2 for n in ("identity000", "jawOpen", "cheekPuff_L", "cheekPuff_R")}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/README.md", "ICT FaceKit")
        zf.writestr(f"{root}/FaceXModel/generic_neutral_mesh.obj", _obj(v, polys, rng.random((6, 2))))
        for n, d in deltas.items():
            zf.writestr(f"{root}/FaceXModel/{n}.obj", _obj(v + d))
        zf.writestr(f"{root}/FaceXModel/vertex_indices.json",
                    json.dumps({"expressions": ["jawOpen", "cheekPuff_L", "cheekPuff_R"], "idx_to_landmark_verts": [2] * 68}))
    return {"v": v, "deltas": deltas}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACE3D_ICT", raising=False)
    return tmp_path / "cache"


def test_install_from_file_url(tmp_path, cache, monkeypatch):
    zpath = tmp_path / "upload" / "facekit.zip"
    zpath.parent.mkdir()
    spec = make_archive(zpath)
    arrays = read_facexmodel(zpath)
    topo, fp = inst.topology_sha256(arrays), inst.content_fingerprint(arrays)
    digest = inst.file_sha256(zpath)
    res = inst.install_ict(url=zpath.as_uri(), sha256=digest, topology=topo, fingerprint=fp)
    assert res.archive_sha256 == digest and Path(res.model_path) == cache / "models" / "ict" / "ict-full.npz"
    assert json.loads((cache / "models" / "ict" / "install.json").read_text())["commit"] == inst.ICT_COMMIT
    # load_model('ict') now finds the installed model
    m = load_model("ict")
    np.testing.assert_allclose(m.template.numpy(), spec["v"] * 0.01, atol=1e-7)
    d = spec["deltas"]
    np.testing.assert_allclose(m.exp_basis[ARKIT_INDEX["cheekPuff"]].numpy(), (d["cheekPuff_L"] + d["cheekPuff_R"]) * 0.01, atol=1e-7)
    assert m.meta["source"].startswith(inst.ICT_URL)
    # second call: already installed, nothing downloaded
    monkeypatch.setattr(inst, "download", lambda *a, **k: pytest.fail("downloaded again"))
    assert inst.install_ict(url=zpath.as_uri(), topology=topo).archive_sha256 == digest


def test_bad_checksums_delete_archive(tmp_path, cache):
    zpath = tmp_path / "facekit.zip"
    make_archive(zpath)
    with pytest.raises(DownloadError, match="sha256 .* differs"):
        inst.install_ict(url=zpath.as_uri(), sha256="0" * 64)
    assert not inst.manual_archive_path().exists()
    with pytest.raises(DownloadError, match="not the pinned version"):
        inst.install_ict(url=zpath.as_uri())  # synthetic mesh != the pinned topology
    assert not inst.manual_archive_path().exists()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"no zip here")
    with pytest.raises(DownloadError, match="not a zip"):
        inst.install_ict(url=junk.as_uri())
    # same topology, other geometry (e.g. another upstream version): refused by the content fingerprint
    other = tmp_path / "other.zip"
    make_archive(other, seed=5)
    arrays = read_facexmodel(zpath)
    with pytest.raises(DownloadError, match="geometry is not the pinned version .*'neutral' differs in shape 0"):
        inst.install_ict(url=other.as_uri(), topology=inst.topology_sha256(arrays), fingerprint=inst.content_fingerprint(arrays))
    assert not inst.manual_archive_path().exists()


def test_pinned_fingerprint_is_the_shared_conversion_of_the_pinned_commit():
    """assets/ict/content_fingerprint.json matches the shared npz (float16 deltas) within the
    tolerance, and a 0.05 mm change of one expression over part of the face does not."""
    from face3d.models.ict import read_ict_source
    from face3d.testing import shared_data

    assert json.loads(inst.ICT_FINGERPRINT.read_text())["commit"] == inst.ICT_COMMIT
    pinned = inst.pinned_fingerprint()
    arrays = read_ict_source(shared_data() / "ict_facekit" / "ict_facekit.npz")
    assert inst.topology_sha256(arrays) == inst.ICT_TOPOLOGY_SHA256
    fp = inst.content_fingerprint(arrays)
    assert len(fp["identity"]) == 4 * 100 and len(fp["expression"]) == 4 * 53
    assert inst.fingerprint_mismatch(fp, pinned) is None
    # a float32 conversion of the same OBJs differs only by float16 rounding: simulate that bound
    rng = np.random.default_rng(0)
    noisy = dict(arrays, expression_deltas=arrays["expression_deltas"].astype(np.float32)
                 + rng.uniform(-1e-3, 1e-3, arrays["expression_deltas"].shape).astype(np.float32))
    assert inst.fingerprint_mismatch(inst.content_fingerprint(noisy), pinned) is None
    tampered = arrays["expression_deltas"].astype(np.float32)
    tampered[7, :5000, 1] += 0.05  # cm, expression 7 on a fifth of the vertices
    why = inst.fingerprint_mismatch(inst.content_fingerprint(dict(arrays, expression_deltas=tampered)), pinned)
    assert why is not None and "'expression' differs in shape 7" in why


def test_offline_message_and_manual_copy(tmp_path, cache):
    with pytest.raises(DownloadError) as err:
        inst.install_ict(url=(tmp_path / "missing.zip").as_uri())
    msg = str(err.value)
    assert str(inst.manual_archive_path()) in msg and inst.ICT_COMMIT in msg
    # the user follows the message: the manual copy is used without any network access
    inst.manual_archive_path().parent.mkdir(parents=True, exist_ok=True)
    make_archive(inst.manual_archive_path(), seed=3)
    arrays = read_facexmodel(inst.manual_archive_path())
    res = inst.install_ict(url="http://127.0.0.1:9/unreachable.zip", topology=inst.topology_sha256(arrays),
                           fingerprint=inst.content_fingerprint(arrays))
    assert Path(res.model_path).exists()


def test_cli(tmp_path, cache, capsys, monkeypatch):
    zpath = tmp_path / "facekit.zip"
    make_archive(zpath)
    assert main(["models", "install", "ict", "--url", zpath.as_uri()]) == 2  # wrong topology -> DownloadError, exit 2
    assert "not the pinned version" in capsys.readouterr().err
    assert main(["models", "install", "flame"]) == 2
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "ict" in out and "flame" in out and "missing" in out
    assert main(["models", "info", "ict", "--json"]) == 2  # nothing installed, FACE3D_ICT unset
    assert "face3d models install ict" in capsys.readouterr().err
    monkeypatch.setenv("FACE3D_ICT", str(shared_ict()))
    assert main(["models", "info", "ict", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vertices"] == 26719 and info["expression"] == 52 and info["arkit"] and info["landmark_sets"]["ibug68"] == 68
    assert main(["models", "info", "nosuch"]) == 2
    assert "available models" in capsys.readouterr().err
