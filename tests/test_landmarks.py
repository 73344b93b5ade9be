"""face3d.landmarks: MediaPipe detection, multi-face, no/small face, the 478->68 table, user files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from face3d.errors import BadInputError, FileFormatError, ImageError, NoFaceError
from face3d.io.images import demo_image, read_image
from face3d.landmarks import FaceLandmarks, detect_landmarks, load_landmarks_file, mediapipe_to_ibug68
from face3d.landmarks import build_mapping
from face3d.landmarks.mapping import load_mapping, nme_bbox
from face3d.testing import shared_data

FACES = shared_data() / "faces"


@pytest.fixture(scope="module")
def astronaut() -> FaceLandmarks:
    faces = detect_landmarks(demo_image())
    assert len(faces) == 1
    return faces[0]


def test_astronaut_478_landmarks_are_anatomically_placed(astronaut):
    p = astronaut.points
    assert p.shape == (478, 3) and p.dtype == np.float32
    assert astronaut.image_size == (512, 512) and astronaut.score > 0.5
    # the face of the astronaut lies in the upper middle of the picture
    x0, y0, x1, y1 = astronaut.bbox
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200
    assert 80 < astronaut.size < 140
    # eyes above nose tip above mouth (y down); iris centres between their eye corners
    eye_y = p[[33, 263], 1].mean()
    assert eye_y < p[1, 1] < p[13, 1]
    for iris, (a, b) in [(468, (33, 133)), (473, (362, 263))]:
        lo, hi = sorted([p[a, 0], p[b, 0]])
        assert lo < p[iris, 0] < hi
    assert 30 < astronaut.interocular < 70
    lm68 = astronaut.ibug68()
    assert lm68.shape == (68, 3)
    assert lm68[36, 0] < lm68[45, 0] and lm68[8, 1] > lm68[57, 1] > lm68[30, 1]


@pytest.mark.parametrize("name", ["3ddfa_v2_trump_hillary.jpg", "facerec_two_people.jpg"])
def test_two_faces_all_and_largest(name):
    path = FACES / name
    faces = detect_landmarks(read_image(path), which="all")
    assert len(faces) == 2
    assert faces[0].size >= faces[1].size
    c0, c1 = (np.mean(np.reshape(f.bbox, (2, 2)), 0) for f in faces)
    assert np.linalg.norm(c0 - c1) > faces[0].size  # two different people, side by side
    largest = detect_landmarks(str(path))
    assert len(largest) == 1
    np.testing.assert_allclose(largest[0].points, faces[0].points, atol=1e-3)


def test_small_face_in_large_image_found_by_crop_and_consistent(astronaut):
    img = demo_image()
    canvas = np.full((2400, 2400, 3), 90, np.uint8)
    canvas[1500:2012, 300:812] = img  # same scale, far from the centre of a big canvas
    faces = detect_landmarks(canvas)
    assert len(faces) == 1
    moved = faces[0].points[:, :2] - np.array([300, 1500])
    err = np.linalg.norm(moved - astronaut.points[:, :2], axis=1)
    assert np.median(err) < 0.02 * astronaut.size


def test_no_face_raises_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    noise = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    with pytest.raises(NoFaceError, match="synthetic_noise.png"):
        detect_landmarks(noise, path_for_errors="synthetic_noise.png")
    p = tmp_path / "gray wall é.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(p)
    with pytest.raises(NoFaceError) as ei:
        detect_landmarks(str(p))
    assert str(p) in str(ei.value) and ei.value.exit_code == 2


def test_face_too_small_is_a_clear_error(astronaut):
    small = np.asarray(Image.fromarray(demo_image()).resize((256, 256), Image.Resampling.LANCZOS))
    canvas = np.full((512, 512, 3), 90, np.uint8)
    canvas[128:384, 128:384] = small  # face about 50 px
    with pytest.raises(ImageError, match="face too small") as ei:
        detect_landmarks(canvas, path_for_errors="group.jpg")
    assert "group.jpg" in str(ei.value)
    faces = detect_landmarks(canvas, min_face_px=32)
    assert 40 < faces[0].size < 64


def test_bad_arguments():
    with pytest.raises(BadInputError, match="which"):
        detect_landmarks(demo_image(), which="biggest")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="max_faces"):
        detect_landmarks(demo_image(), max_faces=0)


@pytest.fixture(scope="module")
def aflw():
    return build_mapping.aflw2000_samples(FACES)


def test_mapping_table_nme_on_aflw2000(aflw):
    names, mps, gts = aflw
    assert len(names) == 10
    nmes = np.array([nme_bbox(mediapipe_to_ibug68(m), g) for m, g in zip(mps, gts)])
    # in-sample error of the shipped table; frontal photos are well under 4 %
    assert np.median(nmes) < 0.05 and nmes[names.index("aflw2000_image00050.jpg")] < 0.035
    table = json.loads(build_mapping.ASSET.read_text())
    loo = build_mapping.leave_one_out_nme(mps, gts)
    assert loo.mean() < 0.075 and np.median(loo) < 0.055
    np.testing.assert_allclose(loo, table["leave_one_out_nme_bbox"]["per_image"], atol=2e-3)


def test_mapping_table_is_reproducible(tmp_path):
    """Rebuilding the table with the shipped script gives the shipped asset."""
    out = tmp_path / "table.json"
    assert build_mapping.main([str(out)]) == 0
    idx, w = load_mapping(str(out))
    idx0, w0 = load_mapping()
    same_support = [set(idx[j][w[j] > 0.05]) == set(idx0[j][w0[j] > 0.05]) for j in range(68)]
    assert np.mean(same_support) > 0.95
    np.testing.assert_allclose(w0.sum(1), 1.0, atol=1e-6)
    fresh = json.loads(out.read_text())["leave_one_out_nme_bbox"]["median"]
    assert fresh == pytest.approx(json.loads(build_mapping.ASSET.read_text())["leave_one_out_nme_bbox"]["median"], abs=2e-3)


def test_mapping_commutes_with_similarity_transforms(astronaut):
    p = astronaut.points.astype(np.float64)
    R = np.array([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    q = 1.7 * p @ R.T + np.array([5.0, -3.0, 2.0])
    np.testing.assert_allclose(mediapipe_to_ibug68(q), 1.7 * mediapipe_to_ibug68(p) @ R.T + [5.0, -3.0, 2.0], atol=1e-6)
    batch = mediapipe_to_ibug68(np.stack([p, q]))
    assert batch.shape == (2, 68, 3)
    with pytest.raises(BadInputError, match="478"):
        mediapipe_to_ibug68(p[:468])


def test_load_landmarks_files(tmp_path):
    gt = np.loadtxt(FACES / "aflw2000_image00050.lm68.txt")
    lm = load_landmarks_file(FACES / "aflw2000_image00050.lm68.txt", image_size=(450, 450))
    assert lm.scheme == "ibug68" and lm.points.shape == (68, 3)
    np.testing.assert_allclose(lm.points, gt, atol=1e-4)
    (tmp_path / "a.csv").write_text("x,y\n" + "\n".join(f"{x},{y}" for x, y in gt[:, :2]))
    pts = "version: 1\nn_points: 68\n{\n" + "\n".join(f"{x} {y}" for x, y in gt[:, :2]) + "\n}\n"
    (tmp_path / "a.pts").write_text(pts)
    (tmp_path / "a.json").write_text(json.dumps({"landmarks": gt[:, :2].tolist()}))
    for name in ["a.csv", "a.pts", "a.json"]:
        got = load_landmarks_file(tmp_path / name)
        np.testing.assert_allclose(got.points[:, :2], gt[:, :2], atol=1e-4, err_msg=name)
        assert np.all(got.points[:, 2] == 0)
    mp = np.random.default_rng(1).random((478, 3)) * 100
    np.save(tmp_path / "mp.npy", mp)
    got = load_landmarks_file(tmp_path / "mp.npy")
    assert got.scheme == "mediapipe478"
    np.testing.assert_allclose(got.points, mp, atol=1e-4)
    got.ibug68()


def test_bad_landmark_files(tmp_path):
    (tmp_path / "few.txt").write_text("\n".join("1 2" for _ in range(67)))
    with pytest.raises(BadInputError, match="68 .* or 478 .* got 67") as ei:
        load_landmarks_file(tmp_path / "few.txt")
    assert "few.txt" in str(ei.value)
    (tmp_path / "nan.txt").write_text("\n".join("nan 2" for _ in range(68)))
    with pytest.raises(BadInputError, match="NaN"):
        load_landmarks_file(tmp_path / "nan.txt")
    (tmp_path / "junk.txt").write_text("1 2\nhello world\n")
    with pytest.raises(FileFormatError, match="line 2"):
        load_landmarks_file(tmp_path / "junk.txt")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FileFormatError, match="JSON"):
        load_landmarks_file(tmp_path / "bad.json")
    with pytest.raises(FileFormatError, match="not found"):
        load_landmarks_file(tmp_path / "missing.txt")
    (tmp_path / "far.txt").write_text("\n".join("5000 2" for _ in range(68)))
    with pytest.raises(BadInputError, match="outside"):
        load_landmarks_file(tmp_path / "far.txt", image_size=(100, 100))


def test_bad_mapping_tables(tmp_path):
    from face3d.errors import ModelFileError

    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ModelFileError, match="broken.json"):
        load_mapping(str(tmp_path / "broken.json"))
    rows = [{"indices": [1, 2], "weights": [0.5, 0.4]}] * 68  # weights do not sum to 1
    (tmp_path / "sum.json").write_text(json.dumps({"landmarks": rows}))
    with pytest.raises(ModelFileError, match="sum"):
        load_mapping(str(tmp_path / "sum.json"))
    with pytest.raises(ModelFileError, match="not found"):
        load_mapping(str(tmp_path / "missing.json"))
