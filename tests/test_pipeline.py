"""The one-way pipeline (face3d.pipeline, Reconstruction.assemble) gives what the code before it
gave: tests/data/pipeline_reference.npz was recorded by ``face3d.reconstruct`` at commit 624691b
(before stages returned values) on a synthetic 'basic' face, texture and detail at 32², and
re-recorded (:func:`record_reference`) when issue 26's subset blend shapes and numpy landmark stage
changed the fit's float rounding (expression by 4.5e-5, texture by 1.9e-5): ``python -c "import sys;
sys.path.insert(0, 'tests'); from test_pipeline import record_reference; record_reference()"``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import face3d
from face3d.fitting.synthetic import random_face
from face3d.mesh import FaceMesh, View
from face3d.models import load_model
from face3d.pipeline import (
    DetailStage,
    FitStage,
    Origin,
    SdfStage,
    TextureStage,
    detail_stage,
    real_views,
    texture_stage,
)
from face3d.result import Reconstruction

REF = Path(__file__).parent / "data" / "pipeline_reference.npz"
OPTIONS = {"texture_resolution": 32, "detail_resolution": 32, "landmark_steps": 40, "photometric_steps": 10}
PARAMS = ("shape", "expression", "pose", "translation", "focal", "sh", "albedo_coeffs", "albedo_gain", "albedo_smooth")


@pytest.fixture(scope="module")
def case():
    m = load_model("basic")
    face = random_face(m, np.random.default_rng(3), size=192, yaw_deg=20)
    ref = dict(np.load(REF))
    assert int(face.image.astype(np.int64).sum()) == int(ref["image_sum"])  # the same synthetic photo
    return m, face, ref


def record_reference(path: Path = REF) -> None:
    """Write the reference: ``reconstruct`` of the test's synthetic face with ``OPTIONS``."""
    m = load_model("basic")
    face = random_face(m, np.random.default_rng(3), size=192, yaw_deg=20)
    rec = face3d.reconstruct(face.image, model="basic", device="cpu", landmarks=face.landmarks68, **OPTIONS)
    arrays = {k: np.asarray(getattr(rec, k), np.float64 if k == "focal" else np.float32) for k in PARAMS}
    arrays.update(landmark_targets=np.asarray(rec.landmark_targets, np.float32), landmark_error=np.float64(rec.landmark_error),
                  texture=rec.texture, displacement=rec.displacement, normal_map=rec.normal_map,
                  vertices_detailed_every16=np.asarray(rec.vertices_detailed[::16], np.float64),
                  image_sum=np.int64(face.image.astype(np.int64).sum()))
    np.savez_compressed(path, **arrays)


def fit_from_reference(m, face, ref) -> FitStage:
    p = {k: ref[k] for k in PARAMS}
    return FitStage(m, m.name, str(m.version), p["shape"], p["expression"], p["pose"], p["translation"], float(p["focal"]),
                    face.image.shape[:2], p["sh"], p["albedo_coeffs"], p["albedo_gain"], p["albedo_smooth"], "ibug68",
                    ref["landmark_targets"], float(ref["landmark_error"]), tuple(m.exp_names), {"fit": 1.0}, {}, face.image,
                    None, None, None, 0, ())


def test_texture_and_detail_stages_reproduce_the_reference(case):
    m, face, ref = case
    fit = fit_from_reference(m, face, ref)
    tex = texture_stage(fit, 32)
    det = detail_stage(fit, tex, 32)
    assert np.abs(tex.texture - ref["texture"]).max() <= 1e-6
    assert np.abs(det.displacement - ref["displacement"]).max() <= 1e-6
    assert np.abs(det.normal_map - ref["normal_map"]).max() <= 1e-6
    assert np.abs(det.vertices_detailed[::16] - ref["vertices_detailed_every16"]).max() <= 1e-6
    assert float(np.abs(ref["displacement"]).max()) > 1e-5  # the reference has detail to compare
    with pytest.raises(dataclasses.FrozenInstanceError):
        tex.texture = None  # type: ignore[misc]


def test_reconstruct_reproduces_the_reference(case):
    _, face, ref = case
    rec = face3d.reconstruct(face.image, model="basic", device="cpu", landmarks=face.landmarks68, **OPTIONS)
    for k in PARAMS:
        assert np.allclose(np.asarray(getattr(rec, k)), ref[k], atol=1e-5, rtol=0), k
    assert np.abs(rec.texture - ref["texture"]).max() <= 1e-5
    assert np.abs(rec.displacement - ref["displacement"]).max() <= 1e-5
    assert np.abs(rec.normal_map - ref["normal_map"]).max() <= 1e-5
    assert np.abs(rec.vertices_detailed[::16] - ref["vertices_detailed_every16"]).max() <= 1e-5
    assert {"texture", "detail", "total"} <= set(rec.timings)


def test_assemble_takes_each_stage_and_the_sdf_replaces_the_shading_detail(case):
    from face3d.detail.sdf import SDFResult
    from face3d.detail.sdf.network import ResidualSDF
    from face3d.detail.sdf.optimize import SDFFitLog

    m, face, ref = case
    fit = fit_from_reference(m, face, ref)
    V = m.n_vertices
    tex = TextureStage(np.full((8, 8, 3), 0.5, np.float32), 0.1)
    det = DetailStage(np.zeros((8, 8), np.float32), np.full((8, 8, 3), 0.5, np.float32), np.zeros((V, 3), np.float32), 0.2)
    plain = Reconstruction.assemble(fit, tex, det, settings={"method": "3dmm"}, notes=["a note"], total=3.0)
    assert plain.texture is tex.texture and plain.vertices_detailed is det.vertices_detailed and plain.sdf is None
    assert plain.timings == {"fit": 1.0, "texture": 0.1, "detail": 0.2, "total": 3.0} and plain.notes == ["a note"]
    assert np.array_equal(plain.vertices(), fit.vertices()) and plain.settings == {"method": "3dmm"}
    res = SDFResult(torch.zeros(V, 3), torch.zeros(V), None, None, None, None, None, torch.ones(2, 2, 3), ResidualSDF(torch.zeros(3), 0.1),
                    SDFFitLog(), {"total": 5.0})
    ones = np.ones((V, 3))
    with_sdf = Reconstruction.assemble(fit, tex, det, SdfStage(res, ones, None, None, {"sdf": 5.0}), settings={}, notes=[], total=9.0)
    assert with_sdf.vertices_detailed is ones and with_sdf.displacement is det.displacement and with_sdf.sdf is res
    fell = dataclasses.replace(res, fell_back=True, warning="SDF refinement fell back")
    kept = Reconstruction.assemble(fit, tex, det, SdfStage(fell, None, None, None, {"sdf": 5.0}), settings={}, notes=["x"], total=9.0)
    assert kept.vertices_detailed is det.vertices_detailed and kept.notes == ["SDF refinement fell back", "x"]
    assert fit.timings == {"fit": 1.0}  # the stage values are not written to


def test_fit_stage_values_mesh_view_and_real_views(case):
    m, face, ref = case
    fit = fit_from_reference(m, face, ref)
    mesh = fit.posed_mesh()
    assert isinstance(mesh, FaceMesh) and mesh.vertices.shape == (1, m.n_vertices, 3) and mesh.uvs is m.uvs
    assert set(mesh.regions) == set(m.regions)
    assert np.allclose(mesh.vertices[0].numpy(), fit.vertices(posed=True), atol=1e-6)
    view = fit.view()
    assert isinstance(view, View) and view.image.shape == (1, 192, 192, 3) and view.sh.shape == (1, 9, 3)
    assert torch.equal(view.image[0], torch.as_tensor(face.image.astype(np.float32) / 255))
    # a second photo taken with the same pose is a view with identity rotation and its own camera
    other = dataclasses.replace(fit, translation=fit.translation + np.float32(0.01))
    (v,) = real_views(fit, [other])
    assert torch.allclose(v.camera.R[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(v.camera.t[0], torch.as_tensor(other.translation))
    origin = Origin(face.image, "x.png", frame=3, time=0.3)
    assert origin.frame == 3 and origin.notes == ()
