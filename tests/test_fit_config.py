"""FitConfig holds every tuning number of the fitter: nested groups serialise, load back, merge
into presets, are checked, and each reaches the stage it names."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import face3d
from face3d.errors import BadInputError
from face3d.fitting import FitTarget, fit, fit_video
from face3d.fitting.stages import (LandmarkStage, LightingStage, PhotometricStage, TemporalWeights, FitConfig, _crop_boxes)
from face3d.fitting.synthetic import random_face


@pytest.fixture(scope="module")
def basic():
    return face3d.load_model("basic")


@pytest.fixture(scope="module")
def targets(basic):
    faces = [random_face(basic, np.random.default_rng(40 + i), size=128, yaw_deg=20.0) for i in range(2)]
    return [FitTarget(f.landmarks68, "ibug68", 128, 128, f.image.astype(np.float32) / 255) for f in faces]


def test_nested_settings_round_trip_through_json():
    cfg = FitConfig.preset("fast", landmark_stage={"lr_shape": 4.0}, temporal=TemporalWeights(pose=3.0), w_temporal=0.2)
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert d["landmark_stage"]["lr_shape"] == 4.0 and d["landmark_stage"]["lr_pose"] == 0.5
    assert d["temporal"] == {"expression": 1.0, "pose": 3.0, "translation": 100.0}
    assert d["photometric_stage"]["crop_scale"] == 1.6 and d["lighting_stage"]["min_pixels"] == 30
    back = FitConfig.from_dict(d)
    assert back == cfg and isinstance(back.landmark_stage, LandmarkStage) and back.landmark_steps == 30
    with pytest.raises(BadInputError, match=r"unknown name\(s\) \['nope'\]"):
        FitConfig.from_dict({**d, "nope": 1})


def test_nested_overrides_merge_and_are_checked():
    cfg = FitConfig(photometric_stage={"lr_albedo": 1.5})
    assert cfg.photometric_stage == PhotometricStage(lr_albedo=1.5) and cfg.photometric_stage.lr_shape == 2.0
    assert dataclasses.replace(cfg, lighting_stage={"coverage": 0.5}).lighting_stage == LightingStage(coverage=0.5)
    with pytest.raises(BadInputError, match=r"setting 'photometric_stage.occluder_every': 0 is out of range"):
        FitConfig(photometric_stage={"occluder_every": 0})
    with pytest.raises(BadInputError, match=r"setting 'temporal.pose': expected"):
        TemporalWeights(pose="a lot")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match=r"setting 'landmark_stage': unknown field\(s\) \['lr'\]"):
        FitConfig(landmark_stage={"lr": 1.0})
    with pytest.raises(BadInputError, match=r"expected a LightingStage or a dict"):
        FitConfig(lighting_stage=0.5)  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="albedo_gain_min 4.0 is above albedo_gain_max 3.0"):
        PhotometricStage(albedo_gain_min=4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.photometric_stage.lr_albedo = 2.0  # type: ignore[misc]


def test_crop_scale_sets_the_crop_side():
    lm = np.array([[[40.0, 40.0], [60.0, 70.0]]], np.float32)  # extent 30 px
    assert _crop_boxes(lm, [(400, 400)])[0, 2] == pytest.approx(30 * 1.6)
    assert _crop_boxes(lm, [(400, 400)], 2.5)[0, 2] == pytest.approx(75.0)


def test_stage_learning_rates_reach_their_stage(basic, targets):
    quick = dict(landmark_steps=15, photometric_steps=3, render_size=64)
    lm_only = fit(basic, targets[:1], FitConfig(photometric=False, **quick))
    frozen = fit(basic, targets[:1], FitConfig(photometric_stage={"lr_shape": 0.0}, **quick))
    moved = fit(basic, targets[:1], FitConfig(**quick))
    assert float(lm_only.shape.abs().max()) > 0
    assert np.array_equal(frozen.shape.numpy(), lm_only.shape.numpy())  # photometric stage left the shape alone
    assert not np.array_equal(moved.shape.numpy(), lm_only.shape.numpy())
    still = fit(basic, targets[:1], FitConfig(landmark_stage={"lr_shape": 0.0}, photometric=False, **quick))
    assert float(still.shape.abs().max()) == 0.0


def test_temporal_weights_reach_the_temporal_term(basic, targets):
    quick = dict(landmark_steps=20, photometric=False, w_temporal=1.0)
    dpose = lambda r: float((r.pose[1] - r.pose[0]).norm())  # noqa: E731
    default = fit_video(basic, targets, FitConfig(**quick))
    off = fit_video(basic, targets, FitConfig(temporal={"expression": 0.0, "pose": 0.0, "translation": 0.0}, **quick))
    none = fit_video(basic, targets, FitConfig(**{**quick, "w_temporal": 0.0}))
    stiff = fit_video(basic, targets, FitConfig(temporal={"pose": 1e4}, **quick))
    np.testing.assert_allclose(off.pose.numpy(), none.pose.numpy(), atol=1e-6)
    assert dpose(stiff) < 0.9 * dpose(default) and dpose(default) <= dpose(none) + 1e-6


def test_cli_set_reaches_nested_settings():
    from face3d.apps.commands.reconstruct import parse_settings

    s = parse_settings(["landmark_stage.lr_shape=4", "landmark_stage.first_drop=0.5", "temporal.pose=2", "lr=0.01"])
    assert s == {"landmark_stage": {"lr_shape": 4, "first_drop": 0.5}, "temporal": {"pose": 2}, "lr": 0.01}
    cfg = FitConfig.preset("fast", **s)
    assert (cfg.landmark_stage.lr_shape, cfg.landmark_stage.first_drop, cfg.landmark_stage.lr_pose) == (4, 0.5, 0.5)
    assert cfg.temporal == TemporalWeights(pose=2.0) and cfg.landmark_steps == 30
    for bad in ("a.b.c=1", "temporal.=1"):
        with pytest.raises(BadInputError, match="GROUP.KEY=VALUE"):
            parse_settings([bad])
    with pytest.raises(BadInputError, match="already set as a whole"):
        parse_settings(["temporal=1", "temporal.pose=2"])
