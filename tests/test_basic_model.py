"""The embedded ``basic`` model: rebuild == asset, anatomy, modes, ARKit semantics, albedo, mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.models.basic import load_basic
from face3d.models.basic_build import build, load_mediapipe_embedding, write_asset
from face3d.models.model import MorphableModel


@pytest.fixture(scope="module")
def built():
    return build()


@pytest.fixture(scope="module")
def model() -> MorphableModel:
    return load_basic()


def _lm(m: MorphableModel, expression: dict[str, float] | None = None, shape: dict[str, float] | None = None) -> np.ndarray:
    e = torch.zeros(1, m.n_expression)
    for k, w in (expression or {}).items():
        e[0, ARKIT_INDEX[k]] = w
    s = torch.zeros(1, m.n_shape)
    for k, w in (shape or {}).items():
        s[0, m.meta["id_names"].index(k)] = w
    return m.landmarks(m(shape=s, expression=e), "ibug68")[0].numpy()


def test_rebuild_matches_asset(built, model):
    fresh, _ = built
    for key in ["template", "faces", "id_basis", "id_std", "exp_basis", "uvs", "uv_faces", "albedo_mean", "albedo_basis", "albedo_std"]:
        a, b = getattr(fresh, key), getattr(model, key)
        assert a.shape == b.shape, key
        assert torch.allclose(a.float(), b.float(), atol=1e-6), key
    assert fresh.regions.keys() == model.regions.keys()
    for k in fresh.regions:
        assert torch.equal(fresh.regions[k], model.regions[k]), k
    for k, e in fresh.embeddings.items():
        assert torch.equal(e.tri, model.embeddings[k].tri)
        assert torch.allclose(e.bary, model.embeddings[k].bary, atol=1e-6)
    assert fresh.exp_names == model.exp_names == list(ARKIT_NAMES)
    assert fresh.meta["id_names"] == model.meta["id_names"]
    assert fresh.meta["id_measurements"] == model.meta["id_measurements"]  # sources and SDs too


def test_write_asset_roundtrip(built, tmp_path):
    fresh, _ = built
    out = write_asset(tmp_path / "b.npz", model=fresh)
    again = MorphableModel.from_npz(out)
    assert torch.equal(again.faces, fresh.faces) and torch.allclose(again.exp_basis, fresh.exp_basis)
    assert out.stat().st_size < 8e6


def test_sizes_names_regions(model):
    assert 5000 <= model.n_vertices <= 15000
    assert model.n_shape >= 40 and len(model.meta["id_names"]) == model.n_shape
    assert len(set(model.meta["id_names"])) == model.n_shape
    assert torch.all(model.id_std > 0) and torch.all(model.id_std < 0.2)
    assert model.exp_names == list(ARKIT_NAMES) and model.has_arkit
    assert model.n_albedo >= 5 and torch.all(model.albedo_std > 0)
    for r in ["face", "skin", "eyes", "eye_left", "eye_right", "mouth_interior", "lips", "brows", "scalp", "ears", "neck"]:
        assert int(model.regions[r].sum()) > 10, r
    v = model.template
    assert float(v[model.regions["eye_left"], 0].min()) > 0 and float(v[model.regions["eye_right"], 0].max()) < 0
    assert float(v[model.regions["scalp"], 1].mean()) > float(v[model.regions["eyes"], 1].mean()) + 0.03
    assert float(v[model.regions["neck"], 1].mean()) < -0.1
    assert float(v[model.regions["ears"], 0].abs().min()) > 0.06
    mi = model.regions["mouth_interior"]
    assert float(v[mi, 2].max()) <= float(v[model.regions["lips"], 2].max())
    assert "ibug68" in model.embeddings and model.embeddings["ibug68"].tri.shape == (68,)


def test_adult_dimensions(model):
    v = model.template.numpy()
    band = (v[:, 1] > 0.045) & (v[:, 1] < 0.08)  # eurion level, above the ears
    breadth = v[band, 0].max() - v[band, 0].min()
    length = v[band, 2].max() - v[band, 2].min()
    assert 0.14 <= breadth <= 0.16, breadth
    assert 0.18 <= length <= 0.21, length
    cheek = (np.abs(v[:, 1]) < 0.01) & (v[:, 2] > 0.03) & ~model.regions["ears"].numpy()
    assert 0.125 <= 2 * np.abs(v[cheek, 0]).max() <= 0.145  # bizygomatic
    jaw = (np.abs(v[:, 1] + 0.072) < 0.004) & (v[:, 2] > -0.01) & ~model.regions["ears"].numpy()
    assert 0.09 <= 2 * np.abs(v[jaw, 0]).max() <= 0.125  # bigonial (neck included)
    lm = _lm(model)
    assert 0.08 <= np.linalg.norm(lm[36] - lm[45]) <= 0.10  # outer canthi
    assert 0.045 <= np.linalg.norm(lm[48] - lm[54]) <= 0.058  # mouth width
    assert 0.105 <= np.linalg.norm(lm[27] - lm[8]) <= 0.13  # nasion-chin
    assert lm[36, 0] < 0 < lm[45, 0] and lm[48, 0] < 0 < lm[54, 0] and lm[0, 0] < 0 < lm[16, 0]
    assert lm[30, 2] == lm[:, 2].max()  # the nose tip is the most forward landmark
    assert abs(v.mean(0)[0]) < 1e-6 and np.abs(v.mean(0)).max() < 0.05


def test_mesh_closed_manifold_oriented(model):
    f = model.faces.numpy()
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(x) for x in e.tolist()}
    assert len(directed) == len(e)  # each directed edge once: consistently oriented, manifold
    assert all((b, a) in directed for a, b in directed)  # every edge has its twin: closed
    V, E, F = model.n_vertices, len(e) // 2, len(f)
    assert V - E + F == 2  # a sphere
    v = model.template.numpy().astype(np.float64)
    cr = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (np.linalg.norm(cr, axis=1) > 0).all()
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert 0.003 < volume < 0.008  # positive: outward normals; litres of an adult head + neck


def test_uv_layout(model):
    uv = model.uvs.numpy()
    assert uv.min() >= 0 and uv.max() <= 1
    uf = model.uv_faces.numpy()
    assert uf.shape == model.faces.shape
    tip = model.embeddings["ibug68"].tri[30]
    u, v = uv[uf[tip]].mean(0)
    assert 0.45 < u < 0.55 and 0.35 < v < 0.65  # face in the middle of the chart
    a = uv[uf[:, 1]] - uv[uf[:, 0]]
    b = uv[uf[:, 2]] - uv[uf[:, 0]]
    area = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    face = model.regions["face"].numpy()[model.faces.numpy()].all(1)
    assert (area[face] > 0).all()  # no flipped UV triangles on the face chart (v up)


def test_identity_modes_localised(built, model):
    _, hm = built
    names = model.meta["id_names"]
    v = model.template.numpy()
    lm = _lm(model)
    expect = {"nose_length": lm[30], "nose_tip_protrusion": lm[30], "nose_width": lm[35], "mouth_width": lm[54],
              "chin_protrusion": lm[8] + [0, 0.01, 0.01], "eye_spacing": lm[42], "brow_ridge": (lm[21] + lm[22]) / 2}
    for name, target in expect.items():
        d = np.linalg.norm(model.id_basis[names.index(name)].numpy(), axis=1)
        p = v[np.argmax(d)] * [np.sign(target[0]) * np.sign(v[np.argmax(d), 0]) or 1, 1, 1]  # either side
        assert np.linalg.norm(p - target) < 0.02, name
    basis = model.id_basis.numpy()
    mirrored = basis[:, hm.mirror] * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(mirrored, basis, atol=1e-5)  # identity modes are symmetric
    # calibrated modes change their measurement by one SD per SD of coefficient
    k = names.index("mouth_width")
    w0 = np.linalg.norm(lm[48] - lm[54])
    w1 = np.linalg.norm(*np.diff(_lm(model, shape={"mouth_width": float(model.id_std[k])})[[48, 54]], axis=0))
    assert abs((w1 - w0) - float(model.id_std[k])) < 0.25 * float(model.id_std[k])
    k = names.index("face_height")
    h1 = _lm(model, shape={"face_height": float(model.id_std[k])})
    assert abs(np.linalg.norm(h1[27] - h1[8]) - np.linalg.norm(lm[27] - lm[8]) - float(model.id_std[k])) < 0.3 * float(model.id_std[k])
    # every mode is localised: it moves less than 60% of the vertices by more than 5% of its peak
    d = np.linalg.norm(basis, axis=2)
    frac = (d > 0.05 * d.max(1, keepdims=True)).mean(1)
    assert (frac < 0.6).all(), dict(zip(names, frac.round(2)))


def test_jaw_open_and_mouth_close(model):
    n = _lm(model)
    o = _lm(model, {"jawOpen": 1.0})
    assert np.linalg.norm(n[62] - n[66]) < 0.002
    assert np.linalg.norm(o[62] - o[66]) > 0.02  # the mouth opens
    assert np.linalg.norm(o[8] - n[8]) > 0.02 and np.linalg.norm(o[27] - n[27]) < 1e-4  # chin moves, nasion stays
    c = _lm(model, {"jawOpen": 1.0, "mouthClose": 1.0})
    assert np.linalg.norm(c[62] - c[66]) < 0.004  # lips closed over the open jaw
    assert c[8, 1] < n[8, 1] - 0.015
    t = model(expression=torch.eye(52)[ARKIT_INDEX["tongueOut"]][None])[0]
    mi = model.regions["mouth_interior"]
    assert float(t[mi, 2].max()) > float(model.template[mi, 2].max()) + 0.01


def test_blink_and_gaze(model):
    n = _lm(model)
    b = _lm(model, {"eyeBlinkLeft": 1.0})
    gap = lambda p, i, j: np.linalg.norm(p[i] - p[j])  # noqa: E731
    assert gap(n, 43, 47) > 0.006 and gap(n, 44, 46) > 0.006  # subject's left eye open
    gap_xy = lambda p, i, j: np.linalg.norm(p[i, :2] - p[j, :2])  # noqa: E731  (frontal view)
    assert gap_xy(b, 43, 47) < 0.0012 and gap_xy(b, 44, 46) < 0.0012  # ... closed
    assert gap(b, 43, 47) < 0.003 and gap(b, 44, 46) < 0.003
    assert abs(gap(b, 37, 41) - gap(n, 37, 41)) < 1e-5  # right eye untouched
    w = _lm(model, {"eyeWideLeft": 1.0})
    assert gap(w, 43, 47) > gap(n, 43, 47) + 0.0015
    s = _lm(model, {"eyeSquintLeft": 1.0})
    assert gap(s, 43, 47) < gap(n, 43, 47) - 0.001
    eye = model.regions["eye_left"]
    for name, axis, sign in [("eyeLookOutLeft", 0, 1), ("eyeLookInLeft", 0, -1), ("eyeLookUpLeft", 1, 1), ("eyeLookDownLeft", 1, -1)]:
        d = model.exp_basis[ARKIT_INDEX[name]][eye]
        assert float(d[:, axis].mean()) * sign > 0.0005, name


def test_smile_frown_brows(model):
    n = _lm(model)
    s = _lm(model, {"mouthSmileLeft": 1.0})
    assert s[54, 1] > n[54, 1] + 0.004 and abs(s[48, 1] - n[48, 1]) < 0.001
    f = _lm(model, {"mouthFrownRight": 1.0})
    assert f[48, 1] < n[48, 1] - 0.003
    bu = _lm(model, {"browInnerUp": 1.0})
    assert bu[21, 1] > n[21, 1] + 0.004 and bu[22, 1] > n[22, 1] + 0.004
    bd = _lm(model, {"browDownLeft": 1.0})
    assert bd[24, 1] < n[24, 1] - 0.002
    p = model(expression=torch.eye(52)[ARKIT_INDEX["mouthPucker"]][None])[0] - model.template
    assert float(p[model.regions["lips"], 2].mean()) > 0.005


# iBUG-68 index of each landmark's mirror image (subject's left <-> right)
_FLIP68 = [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1), 45, 44, 43, 42, 47, 46, 39, 38, 37, 36,
           41, 40, *range(54, 47, -1), *range(59, 54, -1), *range(64, 59, -1), 67, 66, 65]
# ARKit semantics: signed displacements (m) that must each exceed 1 mm. d: landmark displacements (68,3);
# p(where, side): mean displacement of the skin patch at the front of the head at a named point (side -1: subject's right).
# Written for "Left" (+x) shapes; "Right" shapes are checked mirrored.
_ARKIT_DIRECTIONS = {
    "jawForward": lambda d, p: [d[8, 2]],  # chin forward
    "mouthFunnel": lambda d, p: [d[48, 0], -d[54, 0], d[51, 2], d[57, 2], d[62, 1] - d[66, 1]],  # corners in, lips out and apart
    "mouthPucker": lambda d, p: [d[48, 0], -d[54, 0], d[51, 2], d[57, 2]],  # corners in, lips out
    "mouthDimpleLeft": lambda d, p: [d[54, 0], -d[54, 2]],  # corner out and back
    "mouthStretchLeft": lambda d, p: [d[54, 0], -d[54, 1]],  # corner out and down
    "mouthRollLower": lambda d, p: [-d[57, 2], -d[66, 2]],  # lower lip rolls in
    "mouthRollUpper": lambda d, p: [-d[51, 2], -d[62, 2]],
    "mouthShrugLower": lambda d, p: [d[57, 1], d[66, 1]],  # lower lip pushed up
    "mouthShrugUpper": lambda d, p: [d[51, 1], d[62, 1]],
    "mouthPressLeft": lambda d, p: [d[65, 1], d[65, 1] - d[63, 1]],  # lower lip pressed up against the upper one
    "mouthLowerDownLeft": lambda d, p: [-d[55, 1], -d[56, 1]],
    "mouthUpperUpLeft": lambda d, p: [d[52, 1], d[53, 1]],
    "browOuterUpLeft": lambda d, p: [d[25, 1], d[26, 1]],
    "cheekPuff": lambda d, p: [p("cheek")[0], -p("cheek", -1)[0]],  # both cheeks outward
    "cheekSquintLeft": lambda d, p: [p("under_eye")[1]],
    "noseSneerLeft": lambda d, p: [p("nose_side")[1]],
}


@pytest.mark.parametrize("name", [*_ARKIT_DIRECTIONS, *(k.replace("Left", "Right") for k in _ARKIT_DIRECTIONS if "Left" in k)])
def test_arkit_directions(model, name):
    n = _lm(model)
    assert np.allclose(n[_FLIP68] * [-1, 1, 1], n, atol=1e-5)  # the mirror table is right (the mean face is symmetric)
    s = -1.0 if name.endswith("Right") else 1.0
    d = _lm(model, {name: 1.0}) - n
    d = d[_FLIP68] * [-1, 1, 1] if s < 0 else d
    v, skin, D = model.template.numpy(), model.regions["skin"].numpy(), model.exp_basis[ARKIT_INDEX[name]].numpy()
    at = {"cheek": ((n[54, 0] + n[13, 0]) / 2, (n[33, 1] + n[54, 1]) / 2), "under_eye": (n[46, 0], n[46, 1] - 0.02),
          "nose_side": (n[35, 0], n[30, 1])}

    def p(where: str, side: float = 1.0) -> np.ndarray:
        x, y = at[where][0] * side * s, at[where][1]
        column = skin & (np.hypot(v[:, 0] - x, v[:, 1] - y) < 0.004)
        front = v[column][np.argmax(v[column, 2])]
        return D[skin & (np.linalg.norm(v - front, axis=1) < 0.01)].mean(0) * [s, 1, 1]

    moved = np.array(_ARKIT_DIRECTIONS[name.replace("Right", "Left")](d, p))
    assert (moved > 0.001).all(), moved


def test_float32_buffers_and_gradients(model):
    for key in ["template", "id_basis", "id_std", "exp_basis", "uvs", "albedo_mean", "albedo_basis", "albedo_std"]:
        assert getattr(model, key).dtype == torch.float32, key
    assert all(e.bary.dtype == torch.float32 for e in model.embeddings.values())
    g = torch.Generator().manual_seed(0)
    shape = (torch.randn(2, model.n_shape, generator=g) * model.id_std).requires_grad_()
    expr = torch.rand(2, 52, generator=g).requires_grad_()
    pose = torch.tensor([[0.1, 0.3, 0.0], [-0.2, 0.0, 0.1]], requires_grad=True)
    v = model(shape=shape, expression=expr, pose=pose)
    assert v.dtype == torch.float32 and v.shape == (2, model.n_vertices, 3)
    w = torch.randn(v.shape, generator=g)
    (v * w).sum().backward()
    # v = (template + shape @ id + expr @ exp) @ R^T: d/dshape = id_basis . (w @ R), likewise for expr
    from face3d.models.model import axis_angle_to_matrix

    wr = (w @ axis_angle_to_matrix(pose.detach())).reshape(2, -1)
    torch.testing.assert_close(shape.grad, wr @ model.id_basis.reshape(model.n_shape, -1).T, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(expr.grad, wr @ model.exp_basis.reshape(52, -1).T, rtol=1e-3, atol=1e-4)
    assert float(expr.grad.abs().min(1).values.min()) > 0 and torch.isfinite(pose.grad).all() and (pose.grad.abs().sum(1) > 1e-3).all()


def test_left_right_mirror_and_sides(built, model):
    _, hm = built
    sign = np.array([-1.0, 1.0, 1.0])
    exp = model.exp_basis.numpy()
    v = model.template.numpy()
    pairs = [(n, n.replace("Left", "Right")) for n in ARKIT_NAMES if "Left" in n]
    assert len(pairs) == 20
    for left, right in pairs:
        l, r = exp[ARKIT_INDEX[left]], exp[ARKIT_INDEX[right]]
        assert np.allclose(l[hm.mirror] * sign, r, atol=1e-6), left
        mag = np.linalg.norm(l, axis=1)
        assert mag.max() > 0.0015, left
        assert (mag * v[:, 0]).sum() / mag.sum() > 0.0 or left in ("jawLeft", "mouthLeft"), left
    for name in ["jawLeft", "mouthLeft"]:
        assert exp[ARKIT_INDEX[name]][:, 0].max() > 0.005  # moves toward +X (subject's left)
    for name in ["jawOpen", "jawForward", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRollLower", "mouthRollUpper",
                 "mouthShrugLower", "mouthShrugUpper", "browInnerUp", "cheekPuff", "tongueOut"]:
        d = exp[ARKIT_INDEX[name]]
        assert np.allclose(d[hm.mirror] * sign, d, atol=1e-6), name
        assert np.linalg.norm(d, axis=1).max() > 0.002, name


def test_albedo_model(model):
    mean = model.albedo_mean.numpy()
    assert mean.min() >= 0 and mean.max() <= 1
    r = model.regions
    skin = (r["face"] & ~r["lips"] & ~r["brows"] & ~r["eyes"]).numpy()
    lum = lambda c: c.mean(-1)  # noqa: E731
    lips, brows, scalp = mean[r["lips"].numpy()], mean[r["brows"].numpy()], mean[r["scalp"].numpy()]
    assert (lips[:, 0] / lips[:, 1]).mean() > (mean[skin, 0] / mean[skin, 1]).mean() + 0.3  # redder lips
    assert lum(brows).mean() < lum(mean[skin]).mean() - 0.2 and lum(scalp).mean() < lum(mean[skin]).mean() - 0.2
    eyes = mean[r["eyes"].numpy()]
    assert lum(eyes).max() > 0.8 and lum(eyes).min() < 0.15  # sclera and pupil
    names = model.meta["albedo_names"]
    std = model.albedo_std
    dark = model.albedo(torch.eye(model.n_albedo)[names.index("skin_tone")][None] * std[names.index("skin_tone")])[0].numpy()
    assert lum(dark[skin]).mean() < lum(mean[skin]).mean() - 0.08
    red = model.albedo(torch.eye(model.n_albedo)[names.index("redness")][None] * std[names.index("redness")])[0].numpy()
    assert (red[skin, 0] - red[skin, 1]).mean() > (mean[skin, 0] - mean[skin, 1]).mean() + 0.01
    basis = model.albedo_basis.numpy().reshape(model.n_albedo, -1)
    assert np.linalg.matrix_rank(basis) == model.n_albedo
    lipmode = np.abs(model.albedo_basis[names.index("lip_colour")].numpy()).sum(1)
    assert lipmode[r["lips"].numpy()].mean() > 10 * lipmode[skin].mean()  # regional mode


def test_missing_and_corrupt_asset(monkeypatch, tmp_path):
    import face3d.models.basic as basic

    with pytest.raises(BadInputError, match="parts"):
        basic.load_basic(parts="face")
    monkeypatch.setattr(basic, "assets_dir", lambda: tmp_path)
    with pytest.raises(ModelNotFoundError, match="basic_model.npz"):
        basic.load_basic()
    (tmp_path / "basic").mkdir()
    (tmp_path / "basic" / "basic_model.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="basic_model.npz"):
        basic.load_basic()


def test_mediapipe_embedding_file(tmp_path):
    p = tmp_path / "mp.npz"
    assert load_mediapipe_embedding(p, 100) is None
    np.savez(p, tri=np.arange(478), bary=np.full((478, 3), 1 / 3))
    tri, bary = load_mediapipe_embedding(p, 1000)
    assert tri.shape == (478,) and np.allclose(bary.sum(1), 1)
    with pytest.raises(ModelFileError, match="re-run the calibration"):
        load_mediapipe_embedding(p, 100)
    np.savez(p, tri=np.arange(10), bary=np.zeros((10, 3)))
    with pytest.raises(ModelFileError, match="478"):
        load_mediapipe_embedding(p, 1000)
    p.write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="mp.npz"):
        load_mediapipe_embedding(p, 1000)


def test_shipped_mediapipe_embedding_matches_ibug68(model):
    from face3d.models.calibrate import compare_ibug68

    assert "mediapipe478" in model.embeddings and model.embeddings["mediapipe478"].tri.shape == (478,)
    d = compare_ibug68(model)
    assert np.median(d[17:]) < 0.005  # brows, nose, eyes, lips: MediaPipe's and ours agree within 5 mm
    assert np.median(d[36:48]) < 0.003


@pytest.mark.slow
def test_mediapipe_sees_the_face():
    """External judge: MediaPipe finds a face in renders of the mean head at yaw -30..30 and its
    478 landmarks fall near the shipped embedding (median / inter-ocular distance)."""
    pytest.importorskip("mediapipe")
    from face3d.models.calibrate import check_embedding

    chk = check_embedding(load_basic(), yaws=(-30.0, -15.0, 0.0, 15.0, 30.0))
    assert chk.all_detected, chk.detected
    assert chk.nme[2] < 0.01
    assert max(chk.nme) < 0.03, chk.nme  # measured 2.6 / 1.3 / 0.4 / 1.5 / 2.7 % (issue 3 target: 3 %)
