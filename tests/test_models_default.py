"""The embedded ``default`` model (ICT-FaceKit-derived): asset = build, contents, shapes, albedo contract, default use."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import face3d
from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, ModelFileError
from face3d.io.npz import read_npz
from face3d.models import default as D
from face3d.models import default_build as DB
from face3d.models.registry import available_models, model_info

ASSET = D.asset_dir() / D.MODEL_FILE


@pytest.fixture(scope="module")
def model():
    return face3d.load_model("default")


@pytest.fixture(scope="module")
def reference():
    """ICT-FaceKit from the shared data, float32, all 100 modes, restricted to the default's vertices."""
    return DB.select_default(DB.full_model())


def test_asset_equals_what_the_build_script_writes(tmp_path):
    out = tmp_path / "rebuilt.npz"
    assert DB.main(["-o", str(out)]) == 0
    shipped, rebuilt = read_npz(ASSET), read_npz(out)
    assert sorted(shipped) == sorted(rebuilt)
    for key in shipped:
        assert shipped[key].dtype == rebuilt[key].dtype and np.array_equal(shipped[key], rebuilt[key]), key
    header = json.loads(str(shipped["header_json"]))
    assert header["meta"]["n_identity"] == DB.N_IDENTITY and header["meta"]["storage"] == {"id_basis": DB.ID_STORAGE, "exp_basis": DB.EXP_STORAGE}
    assert shipped["id_basis_q0"].dtype == np.int16 and shipped["id_basis_q1"].dtype == np.int8 and "emb_tri__mediapipe478" in shipped
    assert ASSET.stat().st_size < 25e6 and (D.asset_dir() / D.LICENSE_FILE).read_text().startswith("MIT License")


def test_loads_offline_from_assets_only(monkeypatch, tmp_path, model):
    monkeypatch.setenv("FACE3D_SHARED_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("FACE3D_ICT", str(tmp_path / "absent.npz"))
    m = D.load_default()
    assert m.name == "default" and m.n_vertices == D.N_VERTICES == 24591 and m.faces.shape == (48836, 3)
    for t in (m.template, m.id_basis, m.exp_basis, m.id_std, m.uvs):
        assert t.dtype == torch.float32
    assert torch.equal(m.id_basis, model.id_basis)
    # the photo-built albedo space (face3d.texture.albedo_space --default-out) ships and is attached
    z = read_npz(D.asset_dir() / D.ALBEDO_FILE)
    K = z["albedo_std"].shape[0]
    assert K >= 10 and m.per_vertex_albedo and m.n_albedo == K and m.meta["albedo"] == D.ALBEDO_FILE
    assert tuple(m.albedo_mean.shape) == (D.N_VERTICES, 3) and tuple(m.albedo_basis.shape) == (K, D.N_VERTICES, 3)
    for t in (m.albedo_mean, m.albedo_basis, m.albedo_std):
        assert t.dtype == torch.float32
    for key in ("albedo_mean", "albedo_basis", "albedo_std"):
        assert np.array_equal(getattr(m, key).numpy(), z[key].astype(np.float32)), key
    assert bool(torch.isfinite(m.albedo_mean).all()) and float(m.albedo_mean.min()) >= 0.0


def test_shipped_albedo_space_equals_the_build(tmp_path):
    """assets/default/albedo_space.npz is ICT's shipped space rewritten in the default vertex order."""
    from face3d.texture import albedo_space as A

    rebuilt = read_npz(A.write_default_albedo(A.load_albedo_space(A.assets_path(A.ASSET_FILE)), tmp_path / D.ALBEDO_FILE))
    shipped = read_npz(D.asset_dir() / D.ALBEDO_FILE)
    assert sorted(shipped) == sorted(rebuilt)
    for key in shipped:
        assert shipped[key].dtype == rebuilt[key].dtype and np.array_equal(shipped[key], rebuilt[key]), key
    assert sum(f.stat().st_size for f in D.asset_dir().iterdir()) < 15e6  # whole folder, budget 25 MB
    assert "default" in available_models()
    info = model_info("default")
    assert info.installed and "MIT" in info.licence
    with pytest.raises(BadInputError, match="no options"):
        D.load_default(parts="face")
    from face3d.models.install import install

    with pytest.raises(face3d.errors.ModelNotFoundError, match="'default' ships with face3d"):
        install("default")


def test_contents_regions_embeddings(model, reference):
    assert model.n_shape == 100 and model.exp_names == list(ARKIT_NAMES) and torch.all(model.id_std == 1)
    assert torch.equal(model.template, reference.template) and torch.equal(model.faces, reference.faces)
    # UV layout unchanged: the same UV coordinates at every triangle corner as ICT's
    assert torch.equal(model.uvs[model.uv_faces], reference.uvs[reference.uv_faces])
    n = {k: int(r.sum()) for k, r in model.regions.items()}
    assert n["face"] == 9409 and n["head_and_neck"] == 1839 and n["teeth"] == 4412 and n["eyes"] == 3140
    assert n["mouth_interior"] == 2046 + 2977 + 4412 and n["eye_sockets"] == 768
    assert not any(k.startswith(("eyelashes", "lacrimal", "eye_blend", "eye_occlusion")) for k in model.regions)
    assert model.embeddings["ibug68"].tri.shape == (68,) and model.embeddings["mediapipe478"].tri.shape == (478,)
    lm = model.landmarks(model.template[None], "ibug68_ict")[0]
    ids = torch.as_tensor(read_npz(DB.ict_source())["landmarks_multipie68"].astype(np.int64))
    assert torch.allclose(lm, model.template[ids], atol=1e-7)  # exactly ICT's landmark vertices
    # ibug68: ICT's, with the contour (0-7, 9-16) on ICT's jawline substitutes (3D convention)
    lm68, jaw = model.landmarks(model.template[None], "ibug68")[0], model.landmarks(model.template[None], "ibug68_jawline")[0]
    assert torch.equal(lm68, jaw) and torch.allclose(lm68[17:], lm[17:]) and torch.allclose(lm68[8], lm[8])
    assert float((lm68[:8] - lm[:8]).norm(dim=-1).max()) > 0.01  # the upper contour moved back to the jaw line
    mp = model.landmarks(model.template[None], "mediapipe478")[0]
    eye_dist = (mp[263] - mp[33]).norm()
    assert 0.08 < float(eye_dist) < 0.11 and mp[263, 0] > 0  # outer eye corners; 263 is the subject's left


def test_quantised_bases_match_float32_ict(model, reference):
    g = torch.Generator().manual_seed(0)
    shape = torch.randn(16, 100, generator=g)
    expr = torch.rand(16, 52, generator=g) * (torch.rand(16, 52, generator=g) < 0.25)
    expr[:, ARKIT_INDEX["mouthClose"]] = torch.minimum(expr[:, ARKIT_INDEX["mouthClose"]], expr[:, ARKIT_INDEX["jawOpen"]])
    err = (model(shape=shape, expression=expr) - reference(shape=shape, expression=expr)).norm(dim=-1)
    assert float(err.max()) < 2e-4  # 0.2 mm worst vertex over 16 random faces
    assert float(err.square().mean().sqrt()) < 5e-5


def _lm(model, **w):
    e = torch.zeros(1, 52)
    for k, v in w.items():
        e[0, ARKIT_INDEX[k]] = v
    return model.landmarks(model(expression=e), "ibug68")[0]


def test_arkit_shapes_move_the_right_way(model):
    rest = _lm(model)
    assert float(rest[42:48, 0].min()) > 0  # iBUG 42-47 is the subject's left eye, at +x
    jaw = _lm(model, jawOpen=1.0)
    assert float(rest[8, 1] - jaw[8, 1]) > 0.005  # chin drops more than 5 mm
    gap = lambda lm, up, lo: float((lm[up, 1] - lm[lo, 1]).mean())  # noqa: E731
    left_open, right_open = gap(rest, [43, 44], [47, 46]), gap(rest, [37, 38], [41, 40])
    blink = _lm(model, eyeBlinkLeft=1.0)
    assert gap(blink, [43, 44], [47, 46]) < 0.3 * left_open  # subject-left eye closes
    assert gap(blink, [37, 38], [41, 40]) == pytest.approx(right_open, abs=3e-4)  # the other stays open
    smile = _lm(model, mouthSmileLeft=1.0)
    assert float(smile[54, 0] - rest[54, 0]) > 0.002 and float(smile[54, 1] - rest[54, 1]) > 0.002  # left corner out and up
    assert float(model.exp_basis[ARKIT_INDEX["tongueOut"]].abs().max()) == 0.0


def test_ict_to_default_ids(model, reference):
    ids = D.ict_to_default_ids([0, 9409, 24590, 24591, 26718])
    assert ids.tolist() == [0, 9409, 24590, -1, -1]
    with pytest.raises(BadInputError, match="26719"):
        D.ict_to_default_ids([26719])
    with pytest.raises(BadInputError):
        D.ict_to_default_ids([-1])
    full = DB.full_model()
    keep = D.ict_to_default_ids(np.arange(full.n_vertices))
    assert torch.equal(full.template[torch.as_tensor(keep >= 0)], model.template)


def test_albedo_space_contract(tmp_path, model, monkeypatch):
    V, K = D.N_VERTICES, 3
    rng = np.random.default_rng(1)
    mean = rng.uniform(0.2, 0.8, (V, 3)).astype(np.float32)
    basis = rng.normal(0, 0.05, (K, V, 3)).astype(np.float32)
    std = np.array([2.0, 1.0, 0.5], np.float32)
    folder = tmp_path / "default"
    folder.mkdir()
    shutil.copy(ASSET, folder / D.MODEL_FILE)
    np.savez(folder / D.ALBEDO_FILE, albedo_mean=mean, albedo_basis=basis, albedo_std=std)
    monkeypatch.setattr(D, "asset_dir", lambda: folder)
    m = face3d.load_model("default")
    assert m.per_vertex_albedo and m.n_albedo == K and torch.equal(m.albedo_std, torch.as_tensor(std))
    c = torch.tensor([[1.0, -2.0, 0.5]])
    want = mean + np.tensordot(c.numpy()[0], basis, 1)
    assert np.allclose(m.albedo(c)[0].numpy(), want, atol=1e-6)
    np.savez(folder / D.ALBEDO_FILE, albedo_mean=mean[:-1], albedo_basis=basis, albedo_std=std)
    with pytest.raises(ModelFileError, match="albedo_mean"):
        face3d.load_model("default")
    np.savez(folder / D.ALBEDO_FILE, albedo_mean=mean)
    with pytest.raises(ModelFileError, match="albedo_basis"):
        face3d.load_model("default")


def test_corrupt_asset_is_a_typed_error(tmp_path, monkeypatch):
    arrays = read_npz(ASSET)
    del arrays["exp_basis_q0"]
    np.savez(tmp_path / D.MODEL_FILE, **arrays)
    monkeypatch.setattr(D, "asset_dir", lambda: tmp_path)
    with pytest.raises(ModelFileError, match="exp_basis"):
        D.load_default()
    (tmp_path / D.MODEL_FILE).unlink()
    with pytest.raises(face3d.errors.ModelNotFoundError, match="default_build"):
        D.load_default()


def test_quantize_round_trip():
    b = np.random.default_rng(2).normal(0, 0.01, (4, 50, 3)).astype(np.float32)
    b[2] = 0.0
    for storage, tol in (("float32", 0), ("float16", 1e-3), ("int16", 0.5 / 32767), ("int8", 0.5 / 127)):
        packed = DB.quantize(b, storage)
        back = D.dequantize(packed, "basis")
        peak = np.abs(b).reshape(4, -1).max(1)[:, None, None]
        assert back.dtype == np.float32 and np.all(np.abs(back - b) <= tol * np.maximum(peak, 1e-12) + 1e-9), storage
    mixed = DB.quantize(b, "int16:1+float16:2+int8")
    assert [mixed[f"basis_q{i}"].dtype for i in range(3)] == [np.int16, np.float16, np.int8] and mixed["basis_q2"].shape == (1, 50, 3)
    assert np.allclose(D.dequantize(mixed, "basis"), b, atol=0.5 / 127 * np.abs(b).max())
    assert DB.storage_groups("int16:10+int8", 100) == [("int16", 10), ("int8", 90)]
    for bad in ("int4", "int8+int16", "int16:x+int8", "int16:5"):
        with pytest.raises(BadInputError, match="storage"):
            DB.quantize(b, bad)


def test_reconstruct_uses_default_when_no_model_is_named():
    from face3d.io.images import demo_image

    rec = face3d.reconstruct(demo_image(), texture=False, photometric=False)
    assert rec.model_name == "default" and rec.model.n_vertices == D.N_VERTICES
    assert rec.landmark_error < 0.03


def test_shipped_mediapipe_embedding_matches_mediapipe(model):
    """The calibrated 478 embedding (built into the asset; calibrated on 200 random photo-textured
    faces by face3d.synth.calibrate) against MediaPipe on fresh faces it was not calibrated on:
    random identities, expressions and poses wearing the albedo mean, and the mean face itself."""
    import dataclasses

    from face3d.fitting.camera import intrinsics, project
    from face3d.fitting.synthetic import random_face, random_sh, render_face
    from face3d.landmarks import detect_landmarks
    from face3d.models import calibrate as C

    tri, bary = C.load_embedding(D.asset_dir() / D.MEDIAPIPE_FILE, model)  # fails with 'regenerate' if the topology changed
    assert np.array_equal(tri, model.embeddings["mediapipe478"].tri.numpy()) and np.allclose(bary, model.embeddings["mediapipe478"].bary.numpy())
    rng = np.random.default_rng(12345)
    errs = []
    for _ in range(6):
        f = random_face(model, rng, size=512, yaw_deg=30, pitch_deg=10)
        f = render_face(model, dataclasses.replace(f, albedo=model.albedo_mean.numpy(), sh=random_sh(rng)), background=0.5)
        det = detect_landmarks(f.image, which="largest")[0].points[:, :2]
        with torch.no_grad():
            posed = model(shape=torch.as_tensor(f.shape)[None], expression=torch.as_tensor(f.expression)[None], pose=torch.as_tensor(f.pose)[None])
            K = intrinsics(torch.tensor([f.focal]), 512.0, 512.0)
            p = project(model.landmarks(posed, "mediapipe478") + torch.as_tensor(f.translation), K)[0].numpy()
        errs.append(np.median(np.linalg.norm(p - det, axis=1)) / np.linalg.norm(det[33] - det[263]))
    assert np.median(errs) < 0.03, errs  # measured 1.8-3.1 %, median 2.4 % of the eye distance
    chk = C.check_embedding(model, yaws=(-30.0, 0.0, 30.0), resolution=512)
    assert chk.all_detected and chk.worst <= 0.03, chk.nme  # the mean face: measured 2.5 / 2.0 / 2.5 %


def test_dequantize_is_exactly_codes_times_scale():
    from face3d.models.default import dequantize

    rng = np.random.default_rng(7)
    arrays = {"b_q0": rng.integers(-32768, 32767, (3, 50, 3)).astype(np.int16),
              "b_q1": rng.integers(-128, 127, (4, 50, 3)).astype(np.int8),
              "b_q2": rng.normal(size=(2, 50, 3)).astype(np.float16),
              "b_scale": rng.random(9).astype(np.float32) * 1e-4}
    want = np.concatenate([arrays[f"b_q{i}"].astype(np.float32) for i in range(3)]) * arrays["b_scale"][:, None, None]
    got = dequantize(arrays, "b")
    assert got.dtype == np.float32 and np.array_equal(got, want)
    with pytest.raises(ValueError):
        dequantize({**arrays, "b_scale": arrays["b_scale"][:5]}, "b")
