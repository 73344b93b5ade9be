"""Unit tests of face3d.fitting: initialisation, losses, priors, optimiser, landmark fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from face3d.errors import BadInputError
from face3d.fitting import FitConfig, FitTarget, fit, solve_pnp, umeyama
from face3d.fitting import losses, priors
from face3d.fitting.camera import crop_intrinsics, intrinsics, project
from face3d.fitting.init import default_focal, weak_perspective
from face3d.fitting.optim import Adam


@pytest.fixture(scope="module")
def basic():
    from face3d.reconstruction import get_model

    return get_model("basic")


def _project_np(X, rotvec, t, f, w, h):
    Xc = X @ Rotation.from_rotvec(rotvec).as_matrix().T + t
    return np.stack([f * Xc[:, 0] / -Xc[:, 2] + w / 2, h / 2 - f * Xc[:, 1] / -Xc[:, 2]], 1)


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    R = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    dst = 1.7 * src @ R.T + np.array([0.1, -2.0, 3.0])
    s, R2, t = umeyama(src, dst)
    assert s == pytest.approx(1.7, rel=1e-9)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(t, [0.1, -2.0, 3.0], atol=1e-9)
    with pytest.raises(BadInputError):
        umeyama(src[:2], dst[:2])


def test_camera_projection_and_crop():
    K = intrinsics(torch.tensor([500.0]), 640.0, 480.0)
    p = project(torch.tensor([[[0.1, 0.05, -1.0]]]), K)[0, 0]
    assert p.tolist() == pytest.approx([320 + 50, 240 - 25])
    Kc = crop_intrinsics(K, torch.tensor([[300.0, 200.0, 100.0]]), 50)
    pc = project(torch.tensor([[[0.1, 0.05, -1.0]]]), Kc)[0, 0]
    assert pc.tolist() == pytest.approx([(370 - 300) / 2, (215 - 200) / 2])


@pytest.mark.parametrize("fixed_focal", [True, False])
def test_solve_pnp_recovers_pose(basic, fixed_focal):
    X = basic.landmarks(basic.template[None], "ibug68")[0].numpy().astype(np.float64)
    rot = np.array([0.15, -0.5, 0.05])
    t = np.array([0.02, -0.01, -0.6])
    f = 700.0
    x = _project_np(X, rot, t, f, 512, 512)
    r = solve_pnp(X, x, 512, 512, focal=f if fixed_focal else None)
    err = (Rotation.from_rotvec(r.rotation).inv() * Rotation.from_rotvec(rot)).magnitude()
    assert math.degrees(err) < (0.01 if fixed_focal else 2.0)
    assert r.error < 0.5
    if fixed_focal:
        np.testing.assert_allclose(r.translation, t, atol=1e-5)
    else:
        assert abs(r.translation[2] / r.focal - t[2] / f) < 0.05 * abs(t[2] / f)


def test_weak_perspective_is_rotation():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 3))
    x = rng.uniform(0, 100, (20, 2))
    s, R, off = weak_perspective(X, x, 100, 100)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert default_focal(3, 4) == pytest.approx(2.5 / math.tan(math.radians(23.4)))


def test_robust_penalties_and_landmark_loss():
    r2 = torch.tensor([0.0, 1.0, 100.0])
    gm = losses.robust(r2, 1.0, "gm")
    assert gm.tolist() == pytest.approx([0.0, 0.5, 100 / 101])
    assert losses.robust(torch.tensor([3.0 ** 2]), 1.0, "charbonnier").item() == pytest.approx(math.sqrt(10) - 1)
    with pytest.raises(ValueError):
        losses.robust(r2, 1.0, "bogus")
    tgt = torch.rand(2, 68, 2) * 100
    w = torch.ones(68)
    assert losses.landmark_loss(tgt, tgt, w, torch.tensor([100.0, 100.0])).abs().max() == 0
    worse = losses.landmark_loss(tgt + 5, tgt, w, torch.tensor([100.0, 100.0]))
    assert (worse > 0).all()


def test_contour_weights_follow_yaw():
    R = torch.as_tensor(Rotation.from_rotvec([0, 0.6, 0]).as_matrix(), dtype=torch.float32)[None]
    w = losses.contour_weights(R, 68, list(range(8)), list(range(9, 17)))
    # turned towards image right (+yaw about +Y): the image-left contour is hidden
    assert w[0, 0] < 0.2 and w[0, 12] == 1.0 and w[0, 30] == 1.0
    w0 = losses.contour_weights(torch.eye(3)[None], 68, list(range(8)), list(range(9, 17)))
    assert torch.allclose(w0, torch.ones(1, 68))


def test_outlier_weights_drop_occluder():
    img = torch.full((1, 20, 20, 3), 0.5)
    rend = img.clone() + 0.01 * torch.rand(1, 20, 20, 3)
    rend[0, :5, :5] = 1.0  # an occluder-sized residual block
    w = losses.outlier_weights(rend, img, torch.ones(1, 20, 20))
    assert w[0, :5, :5].max() < 0.05 and w[0, 10:, 10:].min() > 0.99


def test_skin_mask_excludes_eyes_and_mouth(basic):
    from face3d.fitting.synthetic import random_face

    f = random_face(basic, np.random.default_rng(3), size=256, yaw_deg=5, pitch_deg=5, roll_deg=2)
    img = f.image.astype(np.float32) / 255
    m = losses.skin_mask(img, f.landmarks68)
    lm = f.landmarks68
    eye = np.round(lm[36:42].mean(0)).astype(int)
    cheek = np.round(0.5 * lm[2] + 0.5 * lm[31]).astype(int)
    assert m[eye[1], eye[0]] == 0
    assert m[cheek[1], cheek[0]] > 0.5
    assert m[2, 2] == 0  # background corner


def test_priors():
    v = np.array([[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0], [0.0, 0.02, 0.01]])
    idx = priors.mirror_indices(v)
    assert idx.tolist() == [1, 0, 2]
    priors.mirror_indices(v)[0] = 2  # memoised: callers get copies
    assert priors.mirror_indices(v).tolist() == [1, 0, 2]
    assert priors.mirror_indices(v, tol=0.0).tolist() == [0, 1, 2]  # the tolerance is part of the key
    alb = torch.tensor([[[0.5, 0.4, 0.3], [0.5, 0.4, 0.3], [0.9, 0.1, 0.1]]])
    assert priors.albedo_symmetry(alb, torch.as_tensor(idx)).item() == 0
    alb2 = alb.clone()
    alb2[0, 0, 0] = 0.8
    assert priors.albedo_symmetry(alb2, torch.as_tensor(idx)).item() > 0
    e = torch.tensor([[0.5, 0.5], [-0.2, 1.3]])
    p = priors.expression_prior(e, bounded=True)
    assert p[0].item() == pytest.approx(0.5)
    assert p[1].item() > 100 * (0.04 + 0.09) * 0.99
    assert priors.gaussian_prior(torch.tensor([[2.0, 4.0]]), torch.tensor([2.0, 2.0])).item() == pytest.approx(5.0)
    from face3d import renderers

    white = renderers.ambient_sh(1.0)
    tinted = white.clone()
    tinted[0, 0, 0] *= 1.5
    assert priors.sh_prior(white).item() == pytest.approx(0.0, abs=1e-9)
    assert priors.sh_prior(tinted).item() > 0


def test_adam_minimises_quadratic():
    x = torch.tensor([3.0, -2.0], requires_grad=True)
    opt = Adam([([x], 0.1)])
    for _ in range(300):
        opt.zero_grad()
        ((x - torch.tensor([1.0, 1.0])) ** 2).sum().backward()
        opt.step()
    assert torch.allclose(x.detach(), torch.tensor([1.0, 1.0]), atol=1e-2)


def test_landmark_fit_recovers_pose(basic):
    from face3d.fitting.synthetic import random_face

    rng = np.random.default_rng(5)
    f = random_face(basic, rng, size=512, yaw_deg=35, pitch_deg=15)
    res = fit(basic, [FitTarget(f.landmarks68, "ibug68", 512, 512, None)], FitConfig(landmark_steps=60))
    err = (Rotation.from_rotvec(res.pose[0].numpy()).inv() * Rotation.from_rotvec(f.pose)).magnitude()
    assert math.degrees(err) < 4.0
    assert res.shape.shape == (1, basic.n_shape) and res.landmark_set == "ibug68"
    assert set(res.timings) == {"init", "landmarks"} and res.losses["landmarks"] < 0.05
    with pytest.raises(BadInputError):
        fit(basic, [])
    with pytest.raises(BadInputError):
        fit(basic, [FitTarget(f.landmarks68, "dlib5", 512, 512, None)])
