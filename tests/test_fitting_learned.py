"""The learned regressor's 68 points in the fit (FitTarget.learned68, FitConfig.w_learned)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.fitting import FitConfig, FitTarget, fit
from face3d.fitting.camera import intrinsics, project
from face3d.fitting.stages import LearnedPoints, learned_gate, LearnedPoints, add_learned_targets, set_landmarks
from face3d.fitting.synthetic import random_face
from face3d.reconstruction import get_model


@pytest.fixture(scope="module")
def basic():
    return get_model("basic")


def _targets(n: int, sigmas: list[float]) -> list[FitTarget]:
    out = []
    for s in sigmas:
        learned = np.zeros((68, 3), np.float32)
        learned[:, :2] = np.arange(136, dtype=np.float32).reshape(68, 2)
        learned[:, 2] = s
        out.append(FitTarget(np.zeros((n, 3), np.float32), "mediapipe478", 200, 200, None, learned))
    return out


def test_add_learned_targets_weights_by_confidence():
    pts = np.zeros((2, 478, 2), np.float32)
    pts[:, 1] = 100.0  # a landmark box diagonal of 100·√2 px
    w = np.linspace(0.1, 1.0, 478).astype(np.float32)
    diag = 100 * np.sqrt(2)
    name, p2, w2 = add_learned_targets(_targets(478, [0.01 * diag, 0.01 * diag * 0.5]), "mediapipe478", pts, w, 3.0)
    assert name == "mediapipe478+ibug68" and p2.shape == (2, 546, 2) and w2.shape == (2, 546)
    np.testing.assert_allclose(w2[:, :478], np.stack([w, w]))
    np.testing.assert_allclose(p2[1, 478:], np.arange(136).reshape(68, 2))
    np.testing.assert_allclose(w2[0, 478:], 3.0, rtol=1e-5)  # sigma at the reference: weight = scale
    np.testing.assert_allclose(w2[1, 478:], 3.0 * LearnedPoints().weight_max, rtol=1e-5)  # twice as sure: 4, clipped to 2
    _, _, w3 = add_learned_targets(_targets(478, [1e3, 1e3]), "mediapipe478", pts, w, 1.0)
    np.testing.assert_allclose(w3[:, 478:], LearnedPoints().weight_min)
    for args in ((_targets(478, [1.0, 1.0]), "mediapipe478", pts, w, 0.0), (_targets(68, [1.0, 1.0]), "ibug68", pts[:, :68], w[:68], 1.0),
                 ([_targets(478, [1.0])[0], FitTarget(np.zeros((478, 3)), "mediapipe478", 200, 200)], "mediapipe478", pts, w, 1.0)):
        name, same_p, same_w = add_learned_targets(*args)
        assert name == args[1] and same_p is args[2] and same_w is args[3]


def test_set_landmarks_joins_sets(basic):
    v = basic.template[None]
    both = set_landmarks(basic, v, "mediapipe478+ibug68")
    assert both.shape == (1, 546, 3)
    torch.testing.assert_close(both[:, 478:], basic.landmarks(v, "ibug68"))
    torch.testing.assert_close(both[:, :478], basic.landmarks(v, "mediapipe478"))


def test_fit_follows_learned_points_over_biased_mediapipe(basic):
    """MediaPipe's points pulled toward the mean face, the learned 68 exact and sure: with
    ``w_learned`` the fitted 68 points land nearer the truth than without."""
    f = random_face(basic, np.random.default_rng(3), size=256, yaw_deg=20, pitch_deg=5, id_scale=1.5)
    with torch.no_grad():
        K = intrinsics(torch.tensor([f.focal]), 256.0, 256.0)
        mean_v = basic(expression=torch.as_tensor(f.expression)[None], pose=torch.as_tensor(f.pose)[None]) + torch.as_tensor(f.translation)
        true_v = basic(shape=torch.as_tensor(f.shape)[None], expression=torch.as_tensor(f.expression)[None],
                       pose=torch.as_tensor(f.pose)[None]) + torch.as_tensor(f.translation)
        mp_true = project(basic.landmarks(true_v, "mediapipe478"), K)[0].numpy()
        mp_mean = project(basic.landmarks(mean_v, "mediapipe478"), K)[0].numpy()
        lm68 = project(basic.landmarks(true_v, "ibug68"), K)[0].numpy()
    biased = mp_true + 0.8 * (mp_mean - mp_true)
    learned = np.concatenate([lm68, np.full((68, 1), 0.5)], 1).astype(np.float32)
    tg = FitTarget(np.concatenate([biased, np.zeros((478, 1))], 1).astype(np.float32), "mediapipe478", 256, 256, None, learned)

    def err(w: float) -> float:
        r = fit(basic, [tg], FitConfig(photometric=False, w_learned=w, learned={"yaw_deg_min": 0.0, "yaw_deg_max": 0.0}))  # no yaw gate
        assert r.landmark_set == "mediapipe478" and r.landmark_targets.shape == (1, 478, 2)
        with torch.no_grad():
            v = basic(shape=r.shape, expression=r.expression, pose=r.pose) + r.translation[:, None]
            got = project(basic.landmarks(v, "ibug68"), intrinsics(r.focal, 256.0, 256.0))[0].numpy()
        return float(np.linalg.norm(got - lm68, axis=1).mean())

    without, with_learned = err(0.0), err(50.0)
    assert with_learned < 0.3 * without, (with_learned, without)  # measured 0.87 against 6.61 px

    # The fit reports what it followed: the learned points once the gate reaches report_gate.
    from face3d.pipeline import FitStage, Origin

    r = fit(basic, [tg], FitConfig(photometric=False, w_learned=50.0, learned={"yaw_deg_min": 0.0, "yaw_deg_max": 0.0}))
    assert r.learned_followed is not None and bool(r.learned_followed[0])
    torch.testing.assert_close(r.learned_targets[0], torch.as_tensor(lm68, dtype=torch.float32))
    st = FitStage.from_fit(basic, r, 0, Origin(f.image), {})
    assert st.landmark_set == "ibug68" and np.allclose(st.landmark_targets, lm68, atol=1e-4)
    assert st.landmark_error < 0.02  # against the exact learned points; MediaPipe's were pulled 80 % to the mean face


def test_learned_gate_by_yaw():
    """Learned points weigh 0 below 45° of yaw, fully above 60° (smoothstep), whatever the sign."""
    from scipy.spatial.transform import Rotation

    yaws = [0.0, 30.0, 52.5, -52.5, 70.0, -89.0]
    pose = torch.as_tensor(np.stack([Rotation.from_euler("y", y, degrees=True).as_rotvec() for y in yaws]), dtype=torch.float32)
    np.testing.assert_allclose(learned_gate(pose, LearnedPoints()), [0, 0, 0.5, 0.5, 1, 1], atol=1e-5)
    np.testing.assert_allclose(learned_gate(pose, LearnedPoints(yaw_deg_min=0.0, yaw_deg_max=0.0)), 1.0)


def test_learned_gate_counts_pitch_with_yaw():
    """A profile seen from above or below is as far from frontal as its total turn: pitch 45° then yaw
    78° turns the face 81.5° from the camera, though its forward axis has only 0.69 sideways (44° by
    yaw alone, the gate's old reading, which handed such faces to MediaPipe); the learned points
    weigh fully there, and the same turn by pitch alone counts as much as by yaw."""
    from scipy.spatial.transform import Rotation

    turns = [("xy", (45.0, 78.0)), ("xy", (40.0, 40.0)), ("x", (52.5,)), ("x", (30.0,)), ("xy", (10.0, 30.0))]
    pose = torch.as_tensor(np.stack([Rotation.from_euler(seq, a, degrees=True).as_rotvec() for seq, a in turns]), dtype=torch.float32)
    fwd = Rotation.from_rotvec(pose.double().numpy()).as_matrix()[:, :, 2]
    assert abs(fwd[0, 0]) < np.sin(np.radians(45.0))  # by yaw alone (asin of the sideways part) this face read below 45°
    angle = np.degrees(np.arccos(fwd[:, 2]))
    np.testing.assert_allclose(angle, [81.55, 54.07, 52.5, 30.0, 31.47], atol=0.01)
    t = np.clip((angle - 45.0) / 15.0, 0.0, 1.0)
    np.testing.assert_allclose(learned_gate(pose, LearnedPoints()), t * t * (3 - 2 * t), atol=1e-5)
    np.testing.assert_allclose(learned_gate(pose, LearnedPoints())[[0, 2, 3, 4]], [1.0, 0.5, 0.0, 0.0], atol=1e-5)


def test_frontal_fit_ignores_learned_points_by_default(basic):
    """With the default gate a frontal face's fit is the MediaPipe-only fit, bit for bit."""
    f = random_face(basic, np.random.default_rng(4), size=256, yaw_deg=5, pitch_deg=5)
    with torch.no_grad():
        v = basic(shape=torch.as_tensor(f.shape)[None], expression=torch.as_tensor(f.expression)[None],
                  pose=torch.as_tensor(f.pose)[None]) + torch.as_tensor(f.translation)
        K = intrinsics(torch.tensor([f.focal]), 256.0, 256.0)
        mp = project(basic.landmarks(v, "mediapipe478"), K)[0].numpy()
        lm68 = project(basic.landmarks(v, "ibug68"), K)[0].numpy()
    learned = np.concatenate([lm68 + 5.0, np.ones((68, 1))], 1).astype(np.float32)  # 5 px off on purpose
    pts = np.concatenate([mp, np.zeros((478, 1))], 1).astype(np.float32)
    a = fit(basic, [FitTarget(pts, "mediapipe478", 256, 256, None, learned)], FitConfig(photometric=False))
    b = fit(basic, [FitTarget(pts, "mediapipe478", 256, 256, None, None)], FitConfig(photometric=False))
    assert torch.equal(a.shape, b.shape) and torch.equal(a.pose, b.pose)
    assert a.learned_followed is None and a.learned_targets is None  # reported against MediaPipe's points


@pytest.mark.parametrize("seed", [2, 4])
def test_a_profile_seen_from_below_follows_the_learned_points(seed):
    """A rendered face at yaw 75° and pitch 40° (78.6° from the camera, 48° by its sideways part
    alone): the fit follows the regressor's 68 points and lands within 6 % NME of the exact labels.
    Read by yaw alone, these faces went to MediaPipe: 19 % and 46 % NME."""
    import face3d
    from face3d.landmarks.mapping import nme_bbox
    from face3d.synth.shards import make_synthesizer

    s = make_synthesizer("default", "skimage", 256).sample(np.random.default_rng(seed), yaw_deg=(75.0, 75.0), pitch_deg=(40.0, 40.0),
                                                           roll_deg=(0.0, 0.0))
    rec = face3d.reconstruct(s.image, texture=False, detail=False)
    assert rec.landmark_set == "ibug68"
    assert nme_bbox(rec.landmarks2d("ibug68"), s.landmarks68) < 0.06
