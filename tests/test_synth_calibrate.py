"""MediaPipe-478 calibration on random photo-textured faces (face3d.synth.calibrate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face3d
from face3d.errors import BadInputError
from face3d.fitting.camera import intrinsics, project
from face3d.synth import calibrate as SC


@pytest.fixture(scope="module")
def model():
    return face3d.load_model("default")


def _camera(size: int, focal: float, t: tuple[float, float, float]):
    from face3d import renderers

    K = intrinsics(torch.tensor([focal]), float(size), float(size))
    return K, renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.tensor([t]), width=size, height=size)


def test_lift_to_template_recovers_the_rest_pose_point(model):
    """Project known surface points of a posed, non-mean face; lifting them gives their *template*
    positions (not the posed ones), within the pixel blend (< 1 mm)."""
    g = torch.Generator().manual_seed(3)
    shape = torch.randn(1, model.n_shape, generator=g) * model.id_std
    expr = torch.zeros(1, model.n_expression)
    expr[0, 0] = 0.5
    pose = torch.tensor([[0.05, 0.3, 0.0]])
    with torch.no_grad():
        posed = model(shape=shape, expression=expr, pose=pose)[0]
    K, cam = _camera(512, 1100.0, (0.0, 0.0, -0.6))
    ids = model.embeddings["mediapipe478"].tri[[1, 4, 6, 168, 199]]  # nose ridge and chin: visible at this yaw
    verts = model.faces[ids, 0]
    px = project((posed[verts] + torch.tensor([0.0, 0.0, -0.6]))[None], K)[0].numpy()
    got = SC.lift_to_template(model, posed, cam, px)
    want = model.template[verts].numpy()
    assert np.linalg.norm(got - want, axis=1).max() < 1e-3
    assert np.linalg.norm(posed[verts].numpy() - want, axis=1).min() > 5e-3  # posed != template: the lift undid the pose


def test_fill_unseen_takes_the_median_of_seen_texels():
    alb = np.zeros((4, 4, 3), np.float32)
    alb[:2] = [0.8, 0.6, 0.5]
    alb[2, :3] = [0.2, 0.2, 0.2]
    w = np.zeros((4, 4), np.float32)
    w[:3] = 1.0
    out = SC.fill_unseen(alb, w)
    np.testing.assert_allclose(out[3], np.tile([0.8, 0.6, 0.5], (4, 1)))  # 8 of 12 seen texels are skin
    np.testing.assert_allclose(out[:3], alb[:3])
    with pytest.raises(BadInputError):
        SC.fill_unseen(alb, np.zeros((4, 4), np.float32))


def test_calibrate_on_faces_lands_near_the_shipped_embedding(model):
    """Three textured faces already put most points within a few mm of the shipped embedding
    (calibrated on 200 faces); the samples are rest-pose points on the mesh."""
    tex = np.ones((64, 64, 3), np.float32) * np.array([0.75, 0.55, 0.45], np.float32)
    cal = SC.calibrate_on_faces(model, [tex], n=3, seed=1, yaw_deg=20.0)
    assert cal.n_faces == 3 and cal.n_detected >= 2
    assert cal.tri.shape == (478,) and cal.bary.shape == (478, 3)
    assert np.allclose(cal.bary.sum(1), 1, atol=1e-4) and (cal.bary >= -1e-5).all()
    assert cal.samples.shape[1:] == (478, 3) and np.isfinite(cal.samples).all(-1).mean() > 0.95
    got = model.landmarks(model.template[None], "mediapipe478")[0].numpy()
    model_pts = (model.template[model.faces[torch.as_tensor(cal.tri)]] * torch.as_tensor(cal.bary)[..., None]).sum(1).numpy()
    d = np.linalg.norm(model_pts - got, axis=1) * 1000
    assert np.median(d) < 5.0, np.median(d)
    assert np.median(cal.spread_mm) < 10.0


def test_calibrate_on_faces_rejects_bad_input(model):
    with pytest.raises(BadInputError, match="no textures"):
        SC.calibrate_on_faces(model, [], n=2)
    with pytest.raises(BadInputError, match="n must be"):
        SC.calibrate_on_faces(model, [np.ones((8, 8, 3), np.float32)], n=0)


def test_spread_weights_are_inverse_variance_and_clipped():
    from face3d.fitting.mediapipe_sets import WEIGHT_RANGE, spread_weights

    s = np.full(478, 3.0)
    s[0], s[1], s[2], s[3] = 6.0, 1.5, 100.0, np.nan
    w = spread_weights(s)
    assert w.dtype == np.float32 and w.shape == (478,)
    assert w[10] == pytest.approx(1.0) and w[0] == pytest.approx(0.25) and w[1] == pytest.approx(2.0)  # (3/1.5)² = 4, clipped
    assert w[2] == pytest.approx(WEIGHT_RANGE[0]) and w[3] == 1.0


def test_shipped_weights_trust_eye_corners_more_than_the_contour():
    """The fit's MediaPipe weights come from the shipped spread file (python -m face3d.synth.calibrate)."""
    import json

    from face3d.fitting.mediapipe_sets import MP_CONTOUR_LEFT, MP_CONTOUR_RIGHT, SPREAD_FILE, mediapipe_weights, spread_weights
    from face3d.paths import assets_dir

    doc = json.loads((assets_dir() / SPREAD_FILE).read_text())
    assert len(doc["spread_mm"]) == 478 and doc["faces"] >= 100
    w = mediapipe_weights()
    np.testing.assert_array_equal(w, spread_weights(np.asarray(doc["spread_mm"])))
    contour = w[list(MP_CONTOUR_LEFT + MP_CONTOUR_RIGHT)]
    assert np.median(contour) < 0.5 < np.median(w[[33, 133, 263, 362]])  # measured ~0.1 against ~1.5
