"""Video: identity from all frames, per-frame expression and pose with temporal smoothness.

Frames are fitted as one batch with a shared identity; the temporal term penalises squared
differences of expression, pose and translation between consecutive sampled frames
(``FitConfig.w_temporal``). Frames without a detected face are skipped by the caller and
reported in the result's notes.
"""

from __future__ import annotations

import dataclasses

from face3d.errors import BadInputError
from face3d.fitting.stages import PRESETS, FitConfig, FitResult, FitTarget, Progress, fit
from face3d.models.model import MorphableModel

#: Default temporal weight and cheaper photometric settings for video (many frames per batch).
VIDEO_DEFAULTS = {"w_temporal": 0.05, "photometric_steps": 10, "render_size": 128}


def video_config(preset: str = "default", **settings: object) -> FitConfig:
    """The :class:`FitConfig` for a video: preset ``preset``, then ``settings``; each of
    :data:`VIDEO_DEFAULTS` that neither names takes its video value (a setting given explicitly
    keeps its value, even one equal to the photo default). Identity is always shared."""
    FitConfig.preset(preset)  # an unknown preset fails with its own message
    unset = {k: v for k, v in VIDEO_DEFAULTS.items() if k not in PRESETS[preset] and k not in settings}
    return FitConfig.preset(preset, **{**unset, **settings, "share_identity": True})


def fit_video(model: MorphableModel, targets: list[FitTarget], config: FitConfig | None = None, device: str = "cpu",
              progress: Progress | None = None) -> FitResult:
    """Fit the frames (in time order) of one face track; shared identity, smoothed motion.

    ``config``: None for :func:`video_config`'s defaults; a given config is used as it is (every
    field counts as chosen; build it with :func:`video_config` to get the video defaults), except
    that identity is always shared."""
    if not targets:
        raise BadInputError("fit_video: no frames with a face")
    cfg = video_config() if config is None else dataclasses.replace(config, share_identity=True)
    return fit(model, targets, cfg, device=device, progress=progress)
