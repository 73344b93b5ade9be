"""The fits whose numbers tests/test_fit_reference.py pins (shared by the test and its recorder)."""

from __future__ import annotations

import numpy as np


def reference_fits() -> dict[str, np.ndarray]:
    """shape / expression / pose / translation / focal / sh of: ``reconstruct`` on a synthetic face
    with the basic and the default model (texture off; every default FitConfig setting, both
    stages), and ``fit_video`` of three basic-model frames (the temporal term)."""
    import face3d
    from face3d.fitting import FitTarget, fit_video
    from face3d.fitting.synthetic import random_face
    from face3d.fitting.video import video_config

    out: dict[str, np.ndarray] = {}
    for name in ("basic", "default"):
        model = face3d.load_model(name)
        f = random_face(model, np.random.default_rng(7), size=256, yaw_deg=30.0)
        rec = face3d.reconstruct(f.image, model=model, landmarks=f.landmarks68, texture=False, detail=False)
        for k in ("shape", "expression", "pose", "translation", "sh"):
            out[f"{name}_{k}"] = np.asarray(getattr(rec, k), np.float32)
        out[f"{name}_focal"] = np.asarray([rec.focal], np.float32)
    basic = face3d.load_model("basic")
    frames = [random_face(basic, np.random.default_rng(20 + i), size=192, yaw_deg=20.0) for i in range(3)]
    targets = [FitTarget(f.landmarks68, "ibug68", 192, 192, f.image.astype(np.float32) / 255) for f in frames]
    res = fit_video(basic, targets, video_config(landmark_steps=30, photometric_steps=6, render_size=96, w_temporal=0.5))
    for k in ("shape", "expression", "pose", "translation", "sh", "albedo_gain"):
        out[f"video_{k}"] = getattr(res, k).numpy().astype(np.float32)
    return out
