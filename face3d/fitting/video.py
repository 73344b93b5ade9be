"""Video: identity from all frames, per-frame expression and pose with temporal smoothness.

Frames are fitted as one batch with a shared identity; the temporal term penalises squared
differences of expression, pose and translation between consecutive sampled frames
(``FitConfig.w_temporal``). Frames without a detected face are skipped by the caller and
reported in the result's notes.
"""

from __future__ import annotations

import dataclasses

from face3d.errors import BadInputError
from face3d.fitting.stages import FitConfig, FitResult, FitTarget, Progress, fit
from face3d.models.model import MorphableModel

#: Default temporal weight and cheaper photometric settings for video (many frames per batch).
VIDEO_DEFAULTS = {"w_temporal": 0.05, "photometric_steps": 10, "render_size": 128}


def video_config(config: FitConfig | None = None, **overrides: object) -> FitConfig:
    """A :class:`FitConfig` with the video defaults (user overrides win)."""
    base = config or FitConfig()
    values = {k: v for k, v in VIDEO_DEFAULTS.items() if getattr(base, k) == getattr(FitConfig(), k)}
    values.update(overrides)
    return dataclasses.replace(base, share_identity=True, **values)


def fit_video(model: MorphableModel, targets: list[FitTarget], config: FitConfig | None = None, device: str = "cpu",
              progress: Progress | None = None) -> FitResult:
    """Fit the frames (in time order) of one face track; shared identity, smoothed motion."""
    if not targets:
        raise BadInputError("fit_video: no frames with a face")
    return fit(model, targets, video_config(config), device=device, progress=progress)
