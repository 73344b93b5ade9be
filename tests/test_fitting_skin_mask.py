"""The photometric term only looks at skin: a planted hair-coloured patch over a cheek is
masked out by the per-image skin-colour model, and the fit ignores it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.fitting import FitConfig, FitTarget, fit, losses
from face3d.fitting.stages import fitting_region
from face3d.fitting.synthetic import random_face

HAIR = (0.15, 0.10, 0.07)  # dark brown


@pytest.fixture(scope="module")
def basic():
    from face3d.reconstruction import get_model

    return get_model("basic")


def _face_with_patch(model, seed: int):
    f = random_face(model, np.random.default_rng(seed), size=256, yaw_deg=20, pitch_deg=10, roll_deg=5)
    img = f.image.astype(np.float32) / 255
    lm = f.landmarks68
    # a patch over the image-left cheek, from the jaw line to the side of the nose
    patch = losses.polygon_mask(np.stack([lm[1], lm[3], 0.5 * lm[5] + 0.5 * lm[48], lm[31], 0.5 * lm[29] + 0.5 * lm[1]]), 256, 256)
    covered = img.copy()
    covered[patch] = HAIR
    background = np.all(np.abs(img - img[1, 1]) < 2 / 255, -1)
    return f, img, covered, patch, background


def test_skin_sample_points_lie_in_the_face_region(basic):
    f = random_face(basic, np.random.default_rng(1), size=256, yaw_deg=5, pitch_deg=5, roll_deg=2)
    region = losses.face_region(f.landmarks68, 256, 256)
    pts = np.round(losses.skin_sample_points(f.landmarks68) - 0.5).astype(int)
    assert pts.shape == (9, 2)
    assert region[pts[:, 1], pts[:, 0]].all()


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_skin_mask_removes_planted_hair_patch(basic, seed):
    f, img, covered, patch, background = _face_with_patch(basic, seed)
    m = losses.skin_mask(covered, f.landmarks68) > 0.5
    skin = losses.face_region(f.landmarks68, 256, 256) & ~background & ~patch
    assert patch.sum() > 80
    assert m[patch].mean() <= 0.10  # >= 90 % of the patch excluded
    assert m[skin].mean() >= 0.80  # >= 80 % of the visible skin kept
    # without the colour model the patch is inside the region
    region_only = losses.skin_mask(covered, f.landmarks68, colour=False) > 0.5
    assert region_only[patch].mean() > 0.9


def test_skin_mask_drops_background_inside_region(basic):
    f = random_face(basic, np.random.default_rng(5), size=256, yaw_deg=5, pitch_deg=5, roll_deg=2, background=0.05)
    img = f.image.astype(np.float32) / 255
    m = losses.skin_mask(img, f.landmarks68)
    dark = np.all(np.abs(img - 0.05) < 2 / 255, -1) & losses.face_region(f.landmarks68, 256, 256)
    if dark.any():
        assert (m[dark] > 0.5).mean() < 0.05
    assert 0.0 <= float(m.min()) and float(m.max()) <= 1.0


@pytest.mark.slow
def test_fit_ignores_planted_patch(basic):
    """Shading-driven fit (landmarks only initialise it): with the skin-colour
    mask the patch moves the face by a fraction of what it moves it without."""
    f, img, covered, patch, _ = _face_with_patch(basic, 0)
    region = fitting_region(basic).bool().numpy()
    cfg = dict(photometric_steps=60, render_size=128)

    def run(image, colour):
        r = fit(basic, [FitTarget(f.landmarks68, "ibug68", 256, 256, image)], FitConfig(photometric_landmark_scale=0.0, photometric_prior_scale=0.03, skin_colour=colour, **cfg))
        with torch.no_grad():
            return basic(shape=r.shape, expression=r.expression)[0].numpy()

    clean = run(img, True)
    with_patch = run(covered, True)
    unmasked = run(covered, False)
    err = lambda v: float(np.linalg.norm(v - f.vertices, axis=1)[region].mean() * 1000)  # noqa: E731
    moved = float(np.linalg.norm(with_patch - clean, axis=1)[region].mean() * 1000)
    moved_unmasked = float(np.linalg.norm(unmasked - clean, axis=1)[region].mean() * 1000)
    assert moved < 2.0, moved
    assert moved < 0.3 * moved_unmasked, (moved, moved_unmasked)
    assert err(with_patch) < err(clean) + 1.0
    assert err(unmasked) > err(with_patch) + 1.0
