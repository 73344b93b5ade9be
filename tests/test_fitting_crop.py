"""The photometric stage's square crop stays inside the image (faces near the border)."""

from __future__ import annotations

import numpy as np

from face3d.fitting.stages import _crop_boxes, _crop_images


def _face(cx: float, cy: float, half: float) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([cx + half * np.cos(a), cy + half * np.sin(a)], 1).astype(np.float32)


def test_crop_near_border_is_clamped_to_the_image():
    W, H = 200, 120
    lm = np.stack([_face(20, 100, 15), _face(100, 60, 15), _face(190, 10, 80)])  # corner, centre, larger than H
    boxes = _crop_boxes(lm, [(W, H)] * 3)
    x0, y0, side = boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + side <= W + 1e-4).all() and (y0 + side <= H + 1e-4).all()
    np.testing.assert_allclose(boxes[1], [100 - 24, 60 - 24, 48], atol=1e-4)  # centred face: 1.6 × its extent, unmoved
    np.testing.assert_allclose(boxes[0], [0, H - 48, 48], atol=1e-4)  # moved inside, same size
    np.testing.assert_allclose(boxes[2], [W - H, 0, H], atol=1e-4)  # at most the shorter side
    lo, hi = lm[0].min(0), lm[0].max(0)  # the border face's landmarks are still inside its crop
    assert (lo >= boxes[0, :2]).all() and (hi <= boxes[0, :2] + boxes[0, 2]).all()
    # resampled crops hold image pixels only (the zero padding outside the image never enters)
    crops = _crop_images([np.ones((H, W, 3), np.float32)] * 3, boxes, 32)
    assert float(crops.min()) > 0.99
