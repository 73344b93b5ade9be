"""Landmark sets calibrated on labelled photos (face3d.fitting.labelled_landmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face3d
from face3d.errors import BadInputError, ModelFileError, ShapeError
from face3d.fitting.camera import intrinsics, project
from face3d.fitting.labelled_landmarks import (
    LabelledLandmarkSet,
    calibrate_labelled_set,
    choose_vertices,
    labelled_photos,
    load_labelled_set,
    save_labelled_set,
)
from face3d.fitting.synthetic import random_face
from face3d.models.calibrate import topology_fingerprint
from face3d.models.model import vertex_embedding
from face3d.reconstruction import get_model


@pytest.fixture(scope="module")
def basic():
    return get_model("basic")


def test_choose_vertices_finds_the_labelled_vertices():
    rng = np.random.default_rng(0)
    projected = rng.uniform(0, 400, (5, 300, 2))
    planted = np.array([7, 150, 299, 42])
    labels = projected[:, planted] + rng.normal(0, 0.5, (5, 4, 2))
    labels[2, 1] = np.nan  # point 1 not labelled in photo 2
    vertices, error = choose_vertices(projected, labels)
    np.testing.assert_array_equal(vertices, planted)
    size = np.sqrt(np.prod(np.nanmax(labels, 1) - np.nanmin(labels, 1), axis=1))
    expected = np.linalg.norm(projected[:, planted[0]] - labels[:, 0], axis=1) / size
    assert error[0] == pytest.approx(expected.mean())
    assert np.all(error < 0.01)
    # candidates restrict the choice: without vertex 150, point 1 takes another vertex
    others = np.setdiff1d(np.arange(300), [150])
    v2, e2 = choose_vertices(projected, labels, others)
    assert v2[1] != 150 and e2[1] > error[1] and v2[0] == 7


def test_choose_vertices_rejects_bad_input():
    with pytest.raises(ShapeError):
        choose_vertices(np.zeros((2, 10, 3)), np.zeros((2, 4, 2)))
    with pytest.raises(ShapeError):
        choose_vertices(np.zeros((2, 10, 2)), np.zeros((3, 4, 2)))
    labels = np.random.default_rng(1).uniform(0, 10, (2, 4, 2))
    labels[:, 3] = np.nan
    with pytest.raises(BadInputError, match="label 3 is missing in every photo"):
        choose_vertices(np.zeros((2, 10, 2)), labels)


def test_set_attaches_as_a_vertex_embedding_and_round_trips(basic, tmp_path):
    vertices = np.array([0, 5, basic.n_vertices - 1, 5])
    s = LabelledLandmarkSet("studio4", vertices, np.array([0.01, 0.02, 0.03, 0.02]), ("a.jpg", "b.jpg"), basic.name,
                            topology_fingerprint(basic))
    tri, bary = s.embedding(basic)
    faces = basic.faces.numpy()
    assert np.all(faces[tri, np.argmax(bary, 1)] == vertices) and np.all(bary.sum(1) == 1)
    model = get_model("basic", "cpu")
    s.attach(model)
    pts = model.landmarks(model.template[None], "studio4")[0]
    torch.testing.assert_close(pts, model.template[torch.as_tensor(vertices)])
    path = save_labelled_set(tmp_path / "set.npz", s)
    back = load_labelled_set(path)
    assert back.name == "studio4" and back.photos == ("a.jpg", "b.jpg") and back.topology == s.topology
    np.testing.assert_array_equal(back.vertices, vertices)
    np.testing.assert_allclose(back.error, s.error)
    faces3 = np.array([[0, 1, 2], [2, 1, 3], [3, 4, 2]])
    t3, b3 = vertex_embedding(faces3, np.array([3, 2, 0]))
    assert t3.tolist() == [1, 0, 0] and b3.tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
    with pytest.raises(BadInputError, match=r"landmark vertices \[6\] are used by no triangle"):
        vertex_embedding(faces3, np.array([1, 6]))
    other = LabelledLandmarkSet("x", vertices, s.error, (), "ict", "0123456789abcdef")
    with pytest.raises(BadInputError, match="calibrated on model 'ict'"):
        other.embedding(basic)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelFileError):
        load_labelled_set(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", vertices=vertices)
    with pytest.raises(ModelFileError, match="missing error, name, model, topology"):
        load_labelled_set(tmp_path / "partial.npz")


def _project(face, model, points):
    from scipy.spatial.transform import Rotation

    posed = points @ Rotation.from_rotvec(face.pose).as_matrix().T + face.translation
    size = float(face.image.shape[0])
    return project(torch.as_tensor(posed, dtype=torch.float32)[None], intrinsics(torch.tensor([face.focal]), size, size))[0].numpy()


def test_calibration_on_fitted_faces_recovers_a_planted_convention(basic):
    """Labels are the projections of 12 chosen face vertices of each true face (a convention the
    model does not know); calibrated on 4 fitted faces, the set lands near those vertices."""
    rng = np.random.default_rng(3)
    region = np.flatnonzero(basic.regions["face"].numpy()) if "face" in basic.regions else np.arange(basic.n_vertices)
    planted = rng.choice(region, 12, replace=False)
    fits, labels = [], []
    for _ in range(4):
        f = random_face(basic, rng, size=256, yaw_deg=30, pitch_deg=10)
        rec = face3d.reconstruct(f.image, model=basic, landmarks=f.landmarks68, texture=False, detail=False)
        fits.append(rec)
        labels.append(_project(f, basic, f.vertices[planted]))
    s = calibrate_labelled_set(fits, labels, "planted", [f"face{i}" for i in range(4)])
    assert s.model == basic.name and s.photos[0] == "face0" and s.vertices.shape == (12,)
    assert np.median(s.error) < 0.02  # 2 % of the label box
    template = basic.template.numpy()
    miss_mm = 1000 * np.linalg.norm(template[s.vertices] - template[planted], axis=1)
    assert np.median(miss_mm) < 5.0, miss_mm
    with pytest.raises(BadInputError, match="one label array per fit"):
        calibrate_labelled_set(fits, labels[:2], "x")


def test_labelled_photos_pairs_photos_with_their_label_files(tmp_path):
    for name in ("a.jpg", "b.png", "c.jpg", "dlib_x.jpg"):
        (tmp_path / name).write_bytes(b"")
    for name in ("a.lm68.txt", "b.lm68.txt", "dlib_x.lm68.txt", "c.pts"):
        (tmp_path / name).write_text("")
    pairs = labelled_photos(tmp_path, exclude=["dlib_*"])
    assert [(p.name, lb.name) for p, lb in pairs] == [("a.jpg", "a.lm68.txt"), ("b.png", "b.lm68.txt")]
    assert [p.name for p, _ in labelled_photos(tmp_path, suffix=".pts")] == ["c.jpg"]
    with pytest.raises(BadInputError, match="not a folder"):
        labelled_photos(tmp_path / "missing")
