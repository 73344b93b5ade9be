"""The fallback face search (face3d.landmarks.search): windows, the regressor's faceness test, a
synthetic profile nothing else finds, and face-free images that must stay face-free."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.errors import NoFaceError
from face3d.landmarks import regressor as R
from face3d.landmarks.detector import _LOCK, detect_landmarks
from face3d.landmarks.mapping import nme_bbox
from face3d.landmarks.search import FACENESS_MAX, consistency_error, search_faces, search_hits, search_windows


@pytest.fixture(scope="module")
def shipped():
    R._SHIPPED.clear()
    got = R.shipped_regressor()
    if got is None:
        pytest.fail("assets/landmarks/regressor68.pt is missing (python -m face3d.synth.train, recipe in its docstring)")
    yield got
    R._SHIPPED.clear()


@pytest.fixture(scope="module")
def profile():
    """A synthetic profile (yaw −67°) in a 384-px frame that BlazeFace and FaceMesh miss on the
    whole image: the calibration set's face 179 (``benchmarks/face_search.py``, seed 777_777)."""
    from face3d.synth.generator import SynthConfig
    from face3d.synth.shards import make_synthesizer, sample_rng
    from face3d.testing import use_shared_ict

    use_shared_ict()
    synth = make_synthesizer("default", "skimage", 384, "mixed")
    synth.config = SynthConfig(crop_size=384, box_scale=(2.0, 3.2))
    s = synth.sample(sample_rng(777_777, 179))
    assert -70 < s.euler_deg[1] < -60
    return s


def test_windows_cover_the_image_at_three_scales():
    wins = search_windows(450, 450)
    assert len(wins) == 4 + 9 + 16  # sides 360, 270, 202.5 at stride half a side
    assert sorted({w[2] for w in wins}) == [202.5, 270.0, 360.0]
    for h, w in ((450, 450), (300, 640), (1000, 333)):
        wins = search_windows(h, w)
        assert all(x >= 0 and y >= 0 and x + s <= w + 1e-6 and y + s <= h + 1e-6 for x, y, s in wins)
        covered = np.zeros((h, w), bool)
        for x, y, s in wins:
            covered[int(y):int(np.ceil(y + s)), int(x):int(np.ceil(x + s))] = True
        assert covered.all()


def test_both_readings_average_to_the_mirrored_prediction(shipped):
    crops = np.random.default_rng(3).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    pts, sig = shipped.predict_both(crops)
    assert pts.shape == (2, 2, 68, 2) and sig.shape == (2, 2, 68)
    direct = shipped.predict_crops(crops, mirror=False)
    np.testing.assert_allclose(pts[0], direct[0], atol=1e-4)
    mean = R.mirror_average(pts, sig**2)
    got = shipped.predict_crops(crops, mirror=True)
    np.testing.assert_allclose(mean[0], got[0], atol=1e-4)
    np.testing.assert_allclose(mean[1], got[1], rtol=1e-6)


def test_consistency_error_is_small_on_a_face_and_large_on_noise(shipped, profile):
    gt = profile.landmarks68.astype(np.float64)
    box = (gt[:, 0].min(), gt[:, 1].min(), gt[:, 0].max(), gt[:, 1].max())
    face = consistency_error(shipped, profile.image, box)
    noise = np.random.default_rng(0).integers(0, 256, profile.image.shape, dtype=np.uint8)
    clutter = consistency_error(shipped, noise, box)
    assert face < FACENESS_MAX < clutter / 2, (face, clutter)


def test_search_finds_a_synthetic_profile_nothing_else_finds(shipped, profile):
    with pytest.raises(NoFaceError):
        detect_landmarks(profile.image, search=False)
    faces = detect_landmarks(profile.image, which="all")
    assert len(faces) == 1
    face = faces[0]
    assert face.extra["search"]["error"] <= FACENESS_MAX and face.extra["search"]["score"] >= 0.5
    assert face.learned68 is not None
    nme = nme_bbox(face.learned68[:, :2].astype(np.float64), profile.landmarks68.astype(np.float64))
    assert nme < 0.05, nme  # measured 0.030: the regressor's 68 points, which the fit follows on a profile
    with pytest.raises(NoFaceError):  # without the regressor there is no faceness test, so no search
        detect_landmarks(profile.image, learned=False)


def test_face_free_images_stay_face_free(shipped):
    """A motorcycle whose headlight BlazeFace takes for a face in several windows (the hardest
    face-free calibration image), and noise: the faceness test rejects every hit."""
    from pathlib import Path

    import skimage.data
    from PIL import Image

    photo = Image.open(Path(skimage.data.__file__).parent / "motorcycle_right.png").convert("RGB")
    photo.thumbnail((512, 512))  # as benchmarks/face_search.py reads it
    img = np.asarray(photo)
    with _LOCK:
        hits = search_hits(img)
        assert len(hits) > 0 and max(h.score for h in hits) > 0.7  # the candidates exist ...
        assert search_faces(img, shipped) == []  # ... and none passes
    with pytest.raises(NoFaceError, match="motorcycle"):
        detect_landmarks(img, path_for_errors="motorcycle.png")
    noise = np.random.default_rng(1).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        detect_landmarks(noise)
