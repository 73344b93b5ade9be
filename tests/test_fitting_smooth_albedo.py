"""The smooth tone field of models without an albedo space, and the fit presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face3d
from face3d.errors import BadInputError
from face3d.fitting import smooth_albedo
from face3d.fitting.camera import intrinsics, project
from face3d.fitting.stages import PRESETS, FitConfig, fitting_region
from face3d.fitting.synthetic import random_face, random_sh
from face3d.models.ict import load_ict
from face3d.reconstruction import get_model
from face3d.testing import shared_data


@pytest.fixture(scope="module")
def ict_face(tmp_path_factory):
    import os

    old = os.environ.get("FACE3D_CACHE")
    os.environ["FACE3D_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield load_ict(shared_data() / "ict_facekit" / "ict_facekit.npz", parts="face")
    finally:
        if old is None:
            os.environ.pop("FACE3D_CACHE", None)
        else:
            os.environ["FACE3D_CACHE"] = old


def test_basis_is_standardised_monomials(ict_face):
    assert not ict_face.per_vertex_albedo
    b = smooth_albedo.smooth_albedo_basis(ict_face)
    assert b.shape == (ict_face.n_vertices, 9) and b.dtype == torch.float32
    np.testing.assert_allclose(b.std(0).numpy(), 1.0, atol=1e-4)
    v = ict_face.template.double()
    x = ((v - v.mean(0)) / v.std(0)).float()
    np.testing.assert_allclose(b[:, :3].numpy(), (x / x.std(0)).numpy(), atol=1e-4)  # degree 1 first: x, y, z
    xy = x[:, 0] * x[:, 1]
    np.testing.assert_allclose(b[:, 4].numpy(), (xy / xy.std()).numpy(), atol=1e-4)  # then (x,x), (x,y), ...
    assert smooth_albedo.smooth_albedo_basis(ict_face, degree=3).shape[1] == 19
    assert smooth_albedo.smooth_albedo_basis(ict_face, degree=0).shape[1] == 0


def test_models_with_an_albedo_space_get_no_field():
    basic = get_model("basic")
    assert basic.per_vertex_albedo
    assert smooth_albedo.smooth_albedo_basis(basic).shape == (basic.n_vertices, 0)


def test_apply_smooth_albedo_values():
    a = torch.full((2, 4, 3), 0.5)
    basis = torch.tensor([[1.0], [-1.0], [0.0], [2.0]])
    c = torch.tensor([[[0.1, 0.0, -0.2]], [[0.0, 0.0, 0.0]]])
    out = smooth_albedo.apply_smooth_albedo(a, basis, c)
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0.55, 0.45, 0.5, 0.6], atol=1e-6)
    np.testing.assert_allclose(out[0, :, 2].numpy(), [0.4, 0.6, 0.5, 0.3], atol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), 0.5)
    assert smooth_albedo.apply_smooth_albedo(a, torch.zeros(4, 0), torch.zeros(2, 0, 3)) is a


#: Settings that let the photometric stage move the shape (the removed 'shape' preset).
SHADING_DRIVEN = {"photometric_landmark_scale": 0.0, "photometric_prior_scale": 0.03, "photometric_steps": 100, "render_size": 256}


def test_presets():
    assert FitConfig.preset() == FitConfig()
    s = FitConfig.preset("fast")
    assert s.landmark_steps == 30 and not s.photometric and s.render_size == FitConfig().render_size
    assert FitConfig.preset("fast", landmark_steps=7).landmark_steps == 7
    assert set(PRESETS) == {"default", "fast"}
    with pytest.raises(BadInputError, match="preset"):
        FitConfig.preset("nope")
    with pytest.raises(BadInputError, match="'shape' was removed.*5 of 23"):
        FitConfig.preset("shape")
    with pytest.raises(BadInputError, match="preset"):
        face3d.reconstruct(np.zeros((64, 64, 3), np.uint8), landmarks=np.zeros((68, 2)), preset="nope")


def _render(model, shape, expr, pose, trans, focal, albedo, sh, size=384):
    from face3d import renderers

    with torch.no_grad():
        posed = model(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None], pose=torch.as_tensor(pose)[None])
        K = intrinsics(torch.tensor([focal]), float(size), float(size))
        cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.as_tensor(trans)[None], width=size, height=size)
        out = renderers.render_mesh(renderers.Mesh(posed, model.faces), cam, vertex_colors=torch.as_tensor(albedo)[None], sh=torch.as_tensor(sh)[None],
                                    background=0.5)
    return np.round(out.image[0].clamp(0, 1).numpy() * 255).astype(np.uint8), K


@pytest.mark.slow
def test_fit_recovers_a_planted_tone_field(ict_face):
    """An ICT face rendered with a known smooth, left-right symmetric albedo (the symmetry prior
    suppresses antisymmetric fields by design): the fitted field follows it, and it reaches
    Reconstruction.vertex_albedo and params.json."""
    rng = np.random.default_rng(5)
    basis = smooth_albedo.smooth_albedo_basis(ict_face).numpy()
    c = np.zeros((9, 3), np.float32)
    c[1] = [-0.06, -0.03, -0.03]  # redder toward the chin (−y)
    c[3] = [-0.05, -0.05, -0.05]  # darker toward the sides (x²)
    albedo = (np.array([0.7, 0.52, 0.43], np.float32) * (1 + basis @ c)).astype(np.float32)
    shape = np.zeros(ict_face.n_shape, np.float32)
    expr = np.zeros(ict_face.n_expression, np.float32)
    pose = np.array([0.05, 0.2, 0.0], np.float32)
    trans = np.array([0.0, 0.0, -0.6], np.float32)
    img, K = _render(ict_face, shape, expr, pose, trans, 900.0, albedo, random_sh(rng))
    with torch.no_grad():
        posed = ict_face(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None], pose=torch.as_tensor(pose)[None])
        lm = project(ict_face.landmarks(posed, "ibug68") + torch.as_tensor(trans), K)[0].numpy()
    rec = face3d.reconstruct(img, model=ict_face, landmarks=lm, texture=False, detail=False, photometric_steps=60)
    assert rec.albedo_smooth.shape == (9, 3)
    seen = (fitting_region(ict_face) > 0.5).numpy()
    fitted = rec.vertex_albedo()[seen].mean(1)
    true = albedo[seen].mean(1)
    assert np.corrcoef(fitted, true)[0, 1] > 0.7
    assert rec.albedo_smooth[1, 0] < -0.02 and rec.albedo_smooth[3].mean() < -0.02  # the planted terms, with their signs
    assert len(rec.to_dict()["albedo"]["smooth_coeffs"]) == 9


@pytest.mark.slow
def test_shading_driven_settings_recover_shape_from_biased_landmarks(ict_face):
    """Landmarks biased toward the average face (as a detector's are): the default fit follows
    them; settings that free the photometric stage from the landmarks (what the removed 'shape'
    preset set) let shading pull the identity back toward the truth on a smooth albedo."""
    rng = np.random.default_rng(2)
    f = random_face(ict_face, rng, size=384, yaw_deg=25, pitch_deg=10)
    with torch.no_grad():
        mean_posed = ict_face(shape=torch.zeros(1, ict_face.n_shape), expression=torch.as_tensor(f.expression)[None],
                              pose=torch.as_tensor(f.pose)[None])
        K = intrinsics(torch.tensor([f.focal]), 384.0, 384.0)
        mean_lm = project(ict_face.landmarks(mean_posed, "ibug68") + torch.as_tensor(f.translation), K)[0].numpy()
    biased = f.landmarks68 + 0.7 * (mean_lm - f.landmarks68)  # 70 % of the way to the mean face's landmarks
    region = ict_face.regions["face"].numpy() if "face" in ict_face.regions else np.ones(ict_face.n_vertices, bool)

    def shape_error(**kw):
        from face3d.fitting.init import umeyama

        rec = face3d.reconstruct(f.image, model=ict_face, landmarks=biased, texture=False, detail=False, **kw)
        v, gt = rec.vertices()[region], f.vertices[region]
        s, R, t = umeyama(v, gt)
        return float(np.linalg.norm(s * v @ R.T + t - gt, axis=1).mean())

    default, shaped = shape_error(), shape_error(**SHADING_DRIVEN)
    assert shaped < 0.9 * default  # measured 2.99 against 3.51 mm
