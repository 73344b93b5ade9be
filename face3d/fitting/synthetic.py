"""Synthetic faces with known parameters, rendered by our renderer (tests and benchmarks).

A face is a random identity (``N(0, id_std²)`` scaled by ``id_scale``), random expression
(ARKit models: a few blendshapes active in [0, 0.7]; others: small Gaussian), head yaw/pitch/
roll within given ranges, a perspective camera at 0.5–1.2 m with a 35–70 mm-equivalent lens,
random SH lighting (dominant ambient + a directional term) and a random, smoothly varying
skin albedo (per vertex), rendered at ``size``² over a flat background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from face3d.fitting.camera import intrinsics, project
from face3d.models.model import MorphableModel


@dataclass
class SyntheticFace:
    """image (H, W, 3) uint8; shape, expression, pose (3,), translation (3,), focal; sh (9, 3);
    albedo (V, 3); vertices (V, 3) model space (expression applied, no pose); landmarks68 (68, 2) px."""

    image: np.ndarray
    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    translation: np.ndarray
    focal: float
    sh: np.ndarray
    albedo: np.ndarray
    vertices: np.ndarray
    landmarks68: np.ndarray


def random_albedo(model: MorphableModel, rng: np.random.Generator) -> np.ndarray:
    """A plausible skin albedo (V, 3): random base tone plus low-frequency variation."""
    base = np.array([0.72, 0.52, 0.42]) * rng.uniform(0.6, 1.15) + rng.normal(0, 0.03, 3)
    v = model.template.numpy()
    k = rng.normal(0, 1, (3, 3)) * 8.0
    waves = np.sin(v @ k.T + rng.uniform(0, 6.28, 3))  # (V, 3)
    return np.clip(base + 0.04 * waves, 0.05, 0.95).astype(np.float32)


def random_sh(rng: np.random.Generator) -> np.ndarray:
    """SH irradiance coefficients (9, 3): ambient 0.7–1.1 plus a random directional light."""
    import renderers

    amb = rng.uniform(0.7, 1.1)
    sh = renderers.ambient_sh(float(amb))[0].numpy().astype(np.float64)
    d = rng.normal(0, 1, 3)
    d[2] = abs(d[2]) + 0.5
    d /= np.linalg.norm(d)
    strength = rng.uniform(0.1, 0.5) / renderers.SH_C0
    sh[1] += strength * 0.5 * d[1]
    sh[2] += strength * 0.5 * d[2]
    sh[3] += strength * 0.5 * d[0]
    tint = 1 + rng.normal(0, 0.04, 3)
    return (sh * tint).astype(np.float32)


def random_face(model: MorphableModel, rng: np.random.Generator, size: int = 512, yaw_deg: float = 45.0, pitch_deg: float = 20.0,
                roll_deg: float = 10.0, id_scale: float = 1.0, background: float | None = None) -> SyntheticFace:
    """Render one random face with ``model`` (see module docstring)."""
    import renderers
    from scipy.spatial.transform import Rotation

    shape = (rng.normal(0, 1, model.n_shape) * id_scale * model.id_std.numpy()).astype(np.float32)
    expr = np.zeros(model.n_expression, np.float32)
    if model.n_expression:
        if model.has_arkit:
            idx = rng.choice(model.n_expression, size=min(4, model.n_expression), replace=False)
            expr[idx] = rng.uniform(0, 0.7, len(idx))
        else:
            expr = rng.normal(0, 0.5, model.n_expression).astype(np.float32)
    ang = np.radians([rng.uniform(-pitch_deg, pitch_deg), rng.uniform(-yaw_deg, yaw_deg), rng.uniform(-roll_deg, roll_deg)])
    pose = Rotation.from_euler("ZYX", ang[::-1]).as_rotvec().astype(np.float32)
    dist = rng.uniform(0.5, 1.2)
    focal = float(size * rng.uniform(35, 70) / 36.0)
    # head (~0.25 m) in the image ~ focal * 0.25 / dist: keep it within 30–60 % of the frame
    dist = float(np.clip(dist, focal * 0.25 / (0.6 * size), focal * 0.25 / (0.3 * size)))
    trans = np.array([rng.normal(0, 0.01), rng.normal(0, 0.01), -dist], np.float32)
    sh = random_sh(rng)
    albedo = random_albedo(model, rng)
    with torch.no_grad():
        verts = model(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None])
        posed = model(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None], pose=torch.as_tensor(pose)[None])
        K = intrinsics(torch.tensor([focal]), float(size), float(size))
        cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.as_tensor(trans)[None], width=size, height=size)
        bg = float(rng.uniform(0.2, 0.8)) if background is None else background
        out = renderers.render_mesh(posed, model.faces, cam, vertex_colors=torch.as_tensor(albedo)[None], sh=torch.as_tensor(sh)[None],
                                    background=bg)
        lm = project(model.landmarks(posed, "ibug68") + torch.as_tensor(trans), K)[0].numpy()
    img = np.round(out.image[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    return SyntheticFace(img, shape, expr, pose, trans, focal, sh, albedo, verts[0].numpy(), lm)
