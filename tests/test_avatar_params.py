"""``load_avatar`` reads a reconstruct folder back as it was fitted: the model variant (ICT
``parts="face"``) and the resolved fit settings in params.json."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import face3d
from face3d.animation.avatar import load_avatar
from face3d.errors import FileFormatError
from face3d.fitting.stages import FitConfig, LandmarkStage
from face3d.fitting.synthetic import random_face
from face3d.testing import use_shared_ict


def test_load_model_records_the_options_of_the_variant():
    assert face3d.load_model("basic").load_options == {}
    if use_shared_ict() is None:
        pytest.skip("ICT-FaceKit is not available")
    face = face3d.load_model("ict", parts="face")
    assert face.load_options == {"parts": "face"}
    assert face3d.load_model("ict", **face.load_options).n_vertices == face.n_vertices < face3d.load_model("ict").n_vertices


def test_load_avatar_loads_the_model_variant_params_json_names(tmp_path):
    if use_shared_ict() is None:
        pytest.skip("ICT-FaceKit is not available")
    face = face3d.load_model("ict", parts="face")
    shape = np.linspace(-1, 1, face.n_shape)
    fit = dataclasses.asdict(FitConfig(landmark_steps=7, landmark_stage=LandmarkStage(lr_pose=0.25)))
    info = {"model": {"name": "ict", "version": str(face.version), "options": face.load_options}, "shape": shape.tolist(),
            "settings": {"preset": "default", "fit": fit, "options": {}, "method": "3dmm"}}
    (tmp_path / "params.json").write_text(json.dumps(info))
    av = load_avatar(tmp_path)
    assert av.model.n_vertices == face.n_vertices == 15156  # was the full 26,719-vertex head
    np.testing.assert_allclose(av.shape, shape, rtol=1e-6)
    cfg = av.fit_config()
    assert cfg is not None and cfg.landmark_steps == 7 and cfg.landmark_stage.lr_pose == 0.25
    info["shape"] = shape[:10].tolist()
    (tmp_path / "params.json").write_text(json.dumps(info))
    with pytest.raises(FileFormatError, match="10 identity coefficients, but model 'ict' has 100"):
        load_avatar(tmp_path)


@pytest.mark.slow
def test_a_saved_reconstruction_gives_back_its_settings(tmp_path):
    basic = face3d.load_model("basic")
    f = random_face(basic, np.random.default_rng(3), size=128)
    rec = face3d.reconstruct(f.image, model="basic", landmarks=f.landmarks68, texture=False, detail=False,
                             photometric_steps=3, render_size=64, landmark_stage={"lr_shape": 4.0})
    av = load_avatar(rec.save(tmp_path / "out"))
    cfg = av.fit_config()
    assert cfg == FitConfig(photometric_steps=3, render_size=64, landmark_stage=LandmarkStage(lr_shape=4.0))
    assert av.settings["preset"] == "default" and av.settings["method"] == "3dmm"
    assert av.model.name == "basic" and av.model.load_options == {}
    np.testing.assert_allclose(av.shape, rec.shape, rtol=1e-6)
    assert load_avatar("basic").fit_config() is None


@pytest.mark.slow
def test_a_saved_ict_face_reconstruction_loads_back_as_the_face_model(tmp_path):
    """params.json names ICT's parts='face' (model.options), so load_avatar reloads the 15,156-vertex face, not the full head."""
    if use_shared_ict() is None:
        pytest.skip("ICT-FaceKit is not available")
    face = face3d.load_model("ict", parts="face")
    f = random_face(face, np.random.default_rng(5), size=160)
    rec = face3d.reconstruct(f.image, model=face, landmarks=f.landmarks68, texture=False, detail=False, photometric=False,
                             landmark_steps=10)
    folder = rec.save(tmp_path / "out")
    assert json.loads((folder / "params.json").read_text())["model"]["options"] == {"parts": "face"}
    av = load_avatar(folder)
    assert av.model.n_vertices == face.n_vertices == 15156
