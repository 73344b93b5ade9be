"""Synthetic round trip: render known parameters with the `basic` model, reconstruct through
the public API (landmarks + photometric stages), recover pose, shape and lighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import face3d
from face3d.fitting.init import umeyama
from face3d.fitting.synthetic import random_face
from face3d.reconstruction import get_model


@pytest.fixture(scope="module")
def basic():
    return get_model("basic")


@pytest.mark.slow
def test_round_trip_basic(basic):
    rng = np.random.default_rng(11)
    f = random_face(basic, rng, size=512, yaw_deg=30, pitch_deg=15)
    rec = face3d.reconstruct(f.image, model=basic, landmarks=f.landmarks68, texture=False)
    # pose within 3 degrees
    err = (Rotation.from_rotvec(rec.pose).inv() * Rotation.from_rotvec(f.pose)).magnitude()
    assert math.degrees(err) < 3.0
    # face-region geometry within 4 mm mean after similarity alignment (the mean face is ~6 mm off)
    mask = basic.regions["face"].numpy()
    v = rec.vertices()[mask]
    gt = f.vertices[mask]
    s, R, t = umeyama(v, gt)
    aligned = np.linalg.norm(s * v @ R.T + t - gt, axis=1).mean()
    mean_face = basic.template.numpy()[mask]
    s0, R0, t0 = umeyama(mean_face, gt)
    baseline = np.linalg.norm(s0 * mean_face @ R0.T + t0 - gt, axis=1).mean()
    assert aligned < 0.004 and aligned < baseline
    # landmarks reprojected within 2 % of the eye distance
    assert rec.landmark_error < 0.02
    # lighting and albedo: the fitted render matches the synthetic image inside the face outline
    img = f.image.astype(np.float32) / 255
    ren = rec.render(background="black", textured=False)
    from face3d.fitting.losses import polygon_mask

    lm = f.landmarks68
    inside = polygon_mask(np.concatenate([lm[0:17], lm[26:16:-1]]), 512, 512)
    assert np.abs(ren[inside] - img[inside]).mean() < 0.08
    assert {"init", "landmarks", "lighting", "photometric", "total"} <= set(rec.timings)



def test_photometric_stage_landmark_weight_and_prior_scale(basic):
    """FitConfig.photometric_landmark_scale / photometric_prior_scale act on the photometric stage only:
    with noisy landmarks, a low landmark weight lets shading move the fit away from them."""
    rng = np.random.default_rng(3)
    f = random_face(basic, rng, size=512, yaw_deg=30, pitch_deg=15)
    noisy = f.landmarks68 + rng.normal(0, 3.0, f.landmarks68.shape)

    def run(**kw):
        rec = face3d.reconstruct(f.image, model=basic, landmarks=noisy, texture=False, detail=False, photometric_steps=30, **kw)
        return rec.landmark_error, rec.shape

    lm_default, shape_default = run()
    lm_low, shape_low = run(photometric_landmark_scale=0.03, photometric_prior_scale=0.3)
    _, shape_nophoto = run(photometric_landmark_scale=0.03, photometric=False)
    assert lm_low > 1.1 * lm_default
    assert np.abs(shape_low - shape_default).max() > 0.1 * np.abs(shape_default).max()
    np.testing.assert_allclose(shape_nophoto, run(photometric=False)[1])
