"""Several photos of one person share one identity; video frames are smoothed in time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face3d.errors import BadInputError
from face3d.fitting import FitConfig, FitTarget, fit, fit_multiview, fit_video
from face3d.fitting.synthetic import random_face
from face3d.fitting.video import video_config
from face3d.reconstruction import get_model


@pytest.fixture(scope="module")
def basic():
    return get_model("basic")


def test_multiview_shares_identity(basic):
    rng = np.random.default_rng(4)
    base = random_face(basic, rng, size=384)
    targets, truths = [], []
    for yaw in (-0.5, 0.0, 0.5):
        f = random_face(basic, np.random.default_rng(int(100 + yaw * 10)), size=384, yaw_deg=0, pitch_deg=5)
        # replace the identity with the shared one and the pose with a known yaw, re-project landmarks
        with torch.no_grad():
            posed = basic(shape=torch.as_tensor(base.shape)[None], expression=torch.as_tensor(f.expression)[None],
                          pose=torch.tensor([[0.0, yaw, 0.0]]))
            from face3d.fitting.camera import intrinsics, project

            K = intrinsics(torch.tensor([f.focal]), 384.0, 384.0)
            lm = project(basic.landmarks(posed, "ibug68") + torch.as_tensor(f.translation), K)[0].numpy()
        targets.append(FitTarget(lm, "ibug68", 384, 384, None))
        truths.append(yaw)
    res = fit_multiview(basic, targets, FitConfig(landmark_steps=80))
    assert res.shape.shape == (1, basic.n_shape)
    assert res.expression.shape == (3, basic.n_expression) and res.pose.shape == (3, 3)
    np.testing.assert_allclose(res.pose[:, 1].numpy(), truths, atol=0.08)
    p0, p2 = res.per_image(0), res.per_image(2)
    assert torch.equal(p0["shape"], p2["shape"])
    # joint identity is at least as close to the truth as the average single-view identity
    single = [fit(basic, [t], FitConfig(landmark_steps=80)).shape[0] for t in targets]
    gt = torch.as_tensor(base.shape)
    vert = lambda s: basic(shape=s[None])[0]  # noqa: E731
    err_joint = (vert(res.shape[0]) - vert(gt)).norm(dim=-1).mean()
    err_single = torch.stack([(vert(s) - vert(gt)).norm(dim=-1).mean() for s in single]).mean()
    assert err_joint <= err_single * 1.05


def test_video_temporal_smoothing(basic):
    rng = np.random.default_rng(9)
    f = random_face(basic, rng, size=384, yaw_deg=10, pitch_deg=5)
    noise = np.random.default_rng(1)
    targets = [FitTarget(f.landmarks68 + noise.normal(0, 1.5, f.landmarks68.shape), "ibug68", 384, 384, None) for _ in range(5)]
    smooth = fit_video(basic, targets, FitConfig(landmark_steps=60, w_temporal=1.0))
    rough = fit(basic, targets, FitConfig(landmark_steps=60, w_temporal=0.0))
    jitter = lambda r: (r.pose[1:] - r.pose[:-1]).norm(dim=-1).mean()  # noqa: E731
    assert jitter(smooth) < jitter(rough)
    assert smooth.shape.shape[0] == 1
    cfg = video_config()
    assert cfg.w_temporal > 0 and cfg.share_identity and cfg.photometric_steps < FitConfig().photometric_steps


def test_video_config_keeps_explicit_settings():
    """Only settings nobody named take the video defaults; an explicit value equal to the photo
    default stays (photometric_steps=20 used to become 10)."""
    assert video_config(photometric_steps=20).photometric_steps == 20
    assert video_config(render_size=160).render_size == 160 and video_config(render_size=160).photometric_steps == 10
    fast = video_config("fast", photometric=True)  # the preset's own values win over the video defaults
    assert (fast.landmark_steps, fast.photometric_steps, fast.render_size, fast.w_temporal) == (30, 10, 128, 0.05)
    assert video_config(w_temporal=0.0).w_temporal == 0.0
    with pytest.raises(BadInputError, match="preset"):
        video_config("nope")


def test_reconstruct_video_keeps_explicit_photometric_steps(tmp_path, monkeypatch):
    """reconstruct(video, photometric_steps=20) fits with 20 photometric steps, not the video's 10."""
    from face3d.fitting import video
    from face3d.io.video import write_video
    from face3d.reconstruction import reconstruct

    seen = []

    def spy(model, targets, config, **kw):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(video, "fit", spy)
    clip = write_video(tmp_path / "clip.mp4", np.full((2, 64, 64, 3), 128, np.uint8), fps=10)
    lm = np.random.default_rng(0).uniform(16, 48, (68, 2)).astype(np.float32)
    for options, steps in (({"photometric_steps": 20}, 20), ({}, 10), ({"preset": "fast", "photometric": True}, 10)):
        with pytest.raises(_Stop):
            reconstruct(clip, model="basic", landmarks=lm, device="cpu", **options)
        assert seen[-1].photometric_steps == steps and seen[-1].share_identity


class _Stop(Exception):
    pass
