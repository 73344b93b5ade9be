"""Synthetic faces with known parameters, rendered by our renderer (tests and benchmarks).

A face is a random identity (``N(0, id_std²)`` scaled by ``id_scale``), random expression
(ARKit models: a few blendshapes active in [0, 0.7]; others: small Gaussian), head yaw/pitch/
roll within given ranges, a perspective camera at 0.5–1.2 m with a 35–70 mm-equivalent lens,
random SH lighting (dominant ambient + a directional term) and a random, smoothly varying
skin albedo (per vertex), rendered at ``size``² over a flat background.

:func:`render_face` re-renders such a face (same geometry, pose and camera) with other lighting
and, optionally, a UV albedo texture (e.g. one baked from a real photo: real brows, lips, eye
make-up) on the triangles that own the model's face texture; :func:`texture_vertex_albedo`
gives the per-vertex albedo that matches such a texture (eyes, neck) and :func:`scaled_sh`
brings lighting fitted on a real photo to a chosen ambient level with an added directional light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from face3d.errors import BadInputError
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
    from face3d import renderers

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
    from scipy.spatial.transform import Rotation

    from face3d import renderers

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
        out = renderers.render_mesh(renderers.Mesh(posed, model.faces), cam, vertex_colors=torch.as_tensor(albedo)[None], sh=torch.as_tensor(sh)[None],
                                    background=bg)
        lm = project(model.landmarks(posed, "ibug68") + torch.as_tensor(trans), K)[0].numpy()
    img = np.round(out.image[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    return SyntheticFace(img, shape, expr, pose, trans, focal, sh, albedo, verts[0].numpy(), lm)


SCLERA = np.array([0.78, 0.74, 0.70], np.float32)
IRIS_COLOURS = np.array([[0.22, 0.13, 0.07], [0.35, 0.22, 0.10], [0.25, 0.32, 0.38], [0.30, 0.30, 0.18]], np.float32)


def texture_vertex_albedo(model: MorphableModel, texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex albedo (V, 3) that goes with a UV ``texture`` (R, R, 3) in [0, 1] of the model's
    layout: the texture's colour at the vertices of the texture-owning triangles
    (:func:`face3d.fitting.stages.texture_face_mask`), the median of those elsewhere (neck, scalp,
    eye sockets), a sclera colour and a random iris colour on the eyeballs (regions
    'sclera_*' / 'iris_*' when the model has them)."""
    import torch.nn.functional as F

    from face3d.fitting.stages import texture_face_mask
    from face3d.texture.symmetry import vertex_uv_index
    from face3d.texture.uv_raster import uv_to_grid

    if model.uvs is None or model.uv_faces is None:
        raise BadInputError(f"model '{model.name}' has no UV layout for a texture")
    faces, uv_faces = model.faces.numpy(), model.uv_faces.numpy()
    keep = texture_face_mask(model)
    textured = np.unique(faces[keep])
    uv_idx = vertex_uv_index(faces[keep], uv_faces[keep], model.uvs.numpy())[textured]
    tex = torch.as_tensor(np.asarray(texture, np.float32)).permute(2, 0, 1)[None]
    grid = uv_to_grid(model.uvs[uv_idx].float())[None, None]
    colours = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T.numpy()
    albedo = np.tile(np.median(colours, 0), (model.n_vertices, 1)).astype(np.float32)
    albedo[textured] = colours
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    for name, value in model.regions.items():
        if name.startswith("sclera"):
            albedo[value.numpy()] = SCLERA
        elif name.startswith("iris"):
            albedo[value.numpy()] = iris
    return np.clip(albedo, 0.0, 1.0)


def scaled_sh(sh: np.ndarray, rng: np.random.Generator, ambient: tuple[float, float] = (0.7, 1.1),
              directional: tuple[float, float] = (0.1, 0.4)) -> np.ndarray:
    """SH lighting (9, 3) from ``sh`` (e.g. fitted on a real photo): scaled so its mean ambient
    (DC) irradiance is uniform in ``ambient`` (its direction and colour kept), plus a directional
    light from a random frontal-hemisphere direction whose strength (as irradiance, relative to
    ambient 1) is uniform in ``directional``."""
    from face3d import renderers

    sh = np.asarray(sh, np.float64)
    dc = float(sh[0].mean()) * renderers.SH_C0
    if dc <= 1e-6:
        raise BadInputError("scaled_sh: lighting with no ambient term")
    out = sh * (rng.uniform(*ambient) / dc)
    d = rng.normal(0, 1, 3)
    d[2] = abs(d[2]) + 0.5
    d /= np.linalg.norm(d)
    strength = rng.uniform(*directional) / renderers.SH_C0
    out[1] += strength * 0.5 * d[1]
    out[2] += strength * 0.5 * d[2]
    out[3] += strength * 0.5 * d[0]
    return out.astype(np.float32)


def render_face(model: MorphableModel, face: SyntheticFace, texture: np.ndarray | None = None, background: float = 0.5) -> SyntheticFace:
    """Render ``face`` again (its geometry, pose, camera, ``face.sh`` and ``face.albedo``) over a
    flat ``background``; with a UV ``texture`` (R, R, 3) in [0, 1] in the model's UV layout, the
    texture-owning triangles (:func:`face3d.fitting.stages.texture_face_mask`) take their albedo
    from it and the others keep ``face.albedo`` (per vertex; see :func:`texture_vertex_albedo`).
    Returns a copy of ``face`` with the new image."""
    import dataclasses

    from face3d import renderers
    from face3d.fitting.stages import texture_face_mask

    size_h, size_w = face.image.shape[:2]
    with torch.no_grad():
        posed = model(shape=torch.as_tensor(face.shape)[None], expression=torch.as_tensor(face.expression)[None],
                      pose=torch.as_tensor(face.pose)[None])
        K = intrinsics(torch.tensor([face.focal]), float(size_w), float(size_h))
        cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.as_tensor(face.translation)[None], width=size_w, height=size_h)
        sh = torch.as_tensor(np.asarray(face.sh, np.float32))[None]
        out = renderers.render_mesh(renderers.Mesh(posed, model.faces), cam, vertex_colors=torch.as_tensor(face.albedo)[None], sh=sh, background=background)
        img = out.image[0]
        if texture is not None:
            if model.uvs is None or model.uv_faces is None:
                raise BadInputError(f"model '{model.name}' has no UV layout for a texture")
            tex = torch.as_tensor(np.asarray(texture, np.float32))
            tout = renderers.render_mesh(renderers.Mesh(posed, model.faces, uvs=model.uvs.float(), uv_faces=model.uv_faces), cam, texture=tex, sh=sh,
                                         background=background)
            owns = torch.as_tensor(np.append(texture_face_mask(model), False))  # index -1 (background) -> False
            img = torch.where(owns[out.tri_id[0]][..., None], tout.image[0], img)
    image = np.round(img.clamp(0, 1).numpy() * 255).astype(np.uint8)
    return dataclasses.replace(face, image=image)
