"""Several photos of one person: one identity and albedo, per-photo expression, pose, camera
and lighting (the batch form of :func:`face3d.fitting.stages.fit` with shared identity)."""

from __future__ import annotations

import dataclasses

from face3d.errors import BadInputError
from face3d.fitting.stages import FitConfig, FitResult, FitTarget, Progress, fit
from face3d.models.model import MorphableModel


def fit_multiview(model: MorphableModel, targets: list[FitTarget], config: FitConfig | None = None, device: str = "cpu",
                  progress: Progress | None = None) -> FitResult:
    """Fit B >= 1 photos jointly; ``result.shape`` and ``result.albedo`` have batch size 1."""
    if not targets:
        raise BadInputError("fit_multiview: no photos given")
    cfg = dataclasses.replace(config or FitConfig(), share_identity=True)
    return fit(model, targets, cfg, device=device, progress=progress)
