"""MediaPipe's left-right mirror table and the detector's retry crops (face3d.landmarks.mirror, detector)."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.errors import BadInputError
from face3d.landmarks import detector as D
from face3d.landmarks.mirror import build_permutation, mirror_permutation, unmirror

#: Pairs every MediaPipe user knows: outer / inner eye corners, mouth corners, cheek contour, iris centres.
PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (127, 356), (172, 397), (468, 473))


def test_build_permutation_matches_mirrored_points():
    rng = np.random.default_rng(0)
    half = rng.uniform(0.1, 1, (5, 3))
    pts = np.concatenate([half, half * [-1, 1, 1], [[0, 0.3, 0.2], [0, -0.5, 0.1]]])  # 0-4 <-> 5-9, two on the midline
    order = rng.permutation(len(pts))
    pts = pts[order]
    perm = build_permutation(pts, pts * [-1, 1, 1] + rng.normal(0, 1e-3, pts.shape))
    inv = np.argsort(order)
    for i in range(5):  # original i and i + 5 are mirror images
        assert perm[inv[i]] == inv[i + 5] and perm[inv[i + 5]] == inv[i]
    assert perm[inv[10]] == inv[10] and perm[inv[11]] == inv[11]
    with pytest.raises(BadInputError):
        build_permutation(pts, pts[:3])


def test_shipped_permutation_pairs_the_known_points():
    perm = mirror_permutation()
    assert np.array_equal(perm[perm], np.arange(478))
    for a, b in PAIRS:
        assert perm[a] == b and perm[b] == a
    for mid in (1, 4, 10, 152):  # nose tip, forehead, chin: on the midline
        assert perm[mid] == mid


def test_unmirror_flips_and_renumbers():
    pts = np.random.default_rng(1).uniform(0, 100, (478, 3))
    out = unmirror(pts, 100.0)
    assert out[33, 0] == pytest.approx(100.0 - pts[263, 0]) and out[33, 2] == pts[263, 2]
    np.testing.assert_allclose(unmirror(out, 100.0), pts)
    with pytest.raises(BadInputError):
        unmirror(pts[:68], 100.0)


def test_mirrored_crop_gives_the_same_landmarks(demo_rgb):
    """FaceMesh on the mirrored crop, read back through the mirror table, lands on the points it
    finds on the crop itself (within 2 % of the eye distance, median)."""
    box = D._detect_boxes(demo_rgb)[0][0]
    plain = D._mesh_in_crop(demo_rgb, box, D.CROP_FACTOR, mirrored=False)
    mirrored = D._mesh_in_crop(demo_rgb, box, D.CROP_FACTOR, mirrored=True)
    eye = np.linalg.norm(plain[33, :2] - plain[263, :2])
    assert np.median(np.linalg.norm(mirrored[:, :2] - plain[:, :2], axis=1)) < 0.02 * eye
    assert mirrored[33, 0] < mirrored[263, 0]  # the subject's right eye stays on the image left


def test_retry_crops_are_tried_in_order_after_a_miss(monkeypatch, demo_rgb):
    calls = []

    def fake(rgb, box, factor, mirrored):
        calls.append((round(factor / D.CROP_FACTOR, 2), mirrored))
        return np.zeros((478, 3)) if len(calls) == 4 else None

    monkeypatch.setattr(D, "_mesh_in_crop", fake)
    assert D._landmarks_in_box(demo_rgb, (10.0, 10.0, 110.0, 110.0)) is not None
    assert calls[0] == (1.0, False) and calls[1:] == [(s, m) for s, _, m in D.RETRY_CROPS[:3]]
    calls.clear()
    monkeypatch.setattr(D, "_mesh_in_crop", lambda *a: calls.append(a) and None)
    assert D._landmarks_in_box(demo_rgb, (10.0, 10.0, 110.0, 110.0)) is None
    assert len(calls) == 1 + len(D.RETRY_CROPS) == 24


@pytest.fixture(scope="module")
def demo_rgb():
    from face3d.io.images import demo_image  # the README's photo

    return np.ascontiguousarray(demo_image())
