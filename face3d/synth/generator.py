"""Synthetic training faces with exact labels, rendered by ``face3d.renderers``.

One :class:`SynthSample` is a square face crop (``crop_size``² px) of a random face: identity
``N(0, 1)`` per model mode (times ``id_std``), sparse ARKit expression, albedo from an
:class:`~face3d.synth.sources.AlbedoSource`, head pose (yaw ±90°, pitch ±40°, roll ±25° by
default), a pinhole camera with a 20–200 mm (35 mm-equivalent) lens on a ``frame_px``² frame,
SH lighting plus a directional light, a background, occluders, blur, noise and JPEG.

The crop is the square box around the projected 68 points (side = box size × ``box_scale``,
centre jittered) rendered directly through the crop's intrinsics, so labels are exact: the
68 points are the model's ``ibug68`` embedding (the 300W-LP / AFLW2000-3D 3D convention: fixed
mesh points along the jaw, not the silhouette) projected with ``K`` (crop pixels, x right,
y down); ``visible68`` flags points hidden by the head itself (depth test) or outside the crop.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from face3d.errors import BadInputError
from face3d.fitting.camera import crop_intrinsics, intrinsics, project
from face3d.fitting.synthetic import random_sh
from face3d.models.model import MorphableModel
from face3d.synth.sources import (
    AlbedoSource,
    MixedBackgrounds,
    SmoothAlbedo,
    UVAlbedo,
    add_occluders,
)

#: ICT shells that are transparent in the original (rendered opaque they would hide the eyes).
TRANSPARENT_REGIONS = ("lacrimal_fluid_left", "lacrimal_fluid_right", "eye_blend_left", "eye_blend_right",
                       "eye_occlusion_left", "eye_occlusion_right", "eyelashes_left", "eyelashes_right")
#: Approximate face height (brow to chin) used to size the head in the frame, metres.
FACE_HEIGHT_M = 0.2


@dataclass(frozen=True)
class SynthConfig:
    """Sampling ranges of the generator (angles in degrees, lengths in pixels unless noted)."""

    crop_size: int = 128
    yaw_deg: tuple[float, float] = (-90.0, 90.0)
    pitch_deg: tuple[float, float] = (-40.0, 40.0)
    roll_deg: tuple[float, float] = (-25.0, 25.0)
    focal_mm: tuple[float, float] = (20.0, 200.0)
    frame_px: int = 640
    face_frac: tuple[float, float] = (0.15, 0.6)
    box_scale: tuple[float, float] = (1.15, 1.6)
    box_shift: float = 0.08
    id_scale: float = 1.0
    max_expressions: int = 8
    occluder_prob: float = 0.4
    blur_prob: float = 0.3
    noise_std: tuple[float, float] = (0.0, 0.04)
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        if not 32 <= self.crop_size <= 1024:
            raise BadInputError(f"SynthConfig.crop_size must be in [32, 1024], got {self.crop_size}")
        for name in ("yaw_deg", "pitch_deg", "roll_deg", "focal_mm", "face_frac", "box_scale", "noise_std", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise BadInputError(f"SynthConfig.{name}: low {lo} > high {hi}")
        if self.focal_mm[0] <= 0:
            raise BadInputError("SynthConfig.focal_mm must be positive")


@dataclass(frozen=True)
class SynthSample:
    """One rendered face crop and its exact labels.

    image (S, S, 3) uint8; landmarks68 (68, 2) float32 crop px (x right, y down); visible68 (68,)
    bool (self-occlusion and crop only); occluded68 (68,) bool, under a painted occluder; landmarks478 (478, 2) float32 crop px or None (model without a 'mediapipe478' set);
    shape (K_id,), expression (K_exp,) model coefficients; pose (3,) axis-angle radians (head
    rotation about the model origin); euler_deg (3,) (pitch, yaw, roll) it was drawn from;
    translation (3,) metres, camera space = posed model + translation (camera at the origin
    looking down −Z); K (3, 3) crop intrinsics; focal_mm 35 mm-equivalent focal length;
    landmarks68_3d (68, 3) camera-space metres.
    """

    image: np.ndarray
    landmarks68: np.ndarray
    visible68: np.ndarray
    landmarks478: np.ndarray | None
    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    euler_deg: np.ndarray
    translation: np.ndarray
    K: np.ndarray
    focal_mm: float
    landmarks68_3d: np.ndarray = field(repr=False)
    occluded68: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(68, bool))


def render_model(model: MorphableModel) -> MorphableModel:
    """The model restricted to opaque geometry: ICT's transparent shells (see
    :data:`TRANSPARENT_REGIONS`) removed when the model names them; other models unchanged."""
    present = [r for r in TRANSPARENT_REGIONS if r in model.regions and bool(model.regions[r].any())]
    if not present:
        return model
    drop = torch.stack([model.regions[r] for r in present]).any(0)
    return model.subset(~drop)


def sample_expression(model: MorphableModel, rng: np.random.Generator, max_active: int) -> np.ndarray:
    """Sparse expression weights (K_exp,): ARKit models get 0..max_active shapes in [0, 1]
    (``mouthClose`` <= ``jawOpen``, ``tongueOut`` 0); other models a small Gaussian."""
    e = np.zeros(model.n_expression, np.float32)
    if not model.n_expression:
        return e
    if not model.has_arkit:
        return rng.normal(0, 0.5, model.n_expression).astype(np.float32)
    names = model.exp_names
    n = int(rng.integers(0, min(max_active, len(names)) + 1))
    idx = rng.choice(len(names), size=n, replace=False)
    e[idx] = rng.uniform(0, 1, n) ** 1.5
    if "jawOpen" in names and rng.random() < 0.3:
        e[names.index("jawOpen")] = rng.uniform(0, 1)
    if "mouthClose" in names and "jawOpen" in names:
        e[names.index("mouthClose")] = min(e[names.index("mouthClose")], e[names.index("jawOpen")])
    if "tongueOut" in names:
        e[names.index("tongueOut")] = 0
    return e


def euler_to_rotvec(pitch_deg: float, yaw_deg: float, roll_deg: float) -> np.ndarray:
    """Axis-angle (3,) of R = Rz(roll) · Ry(yaw) · Rx(pitch) (degrees in)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYX", [roll_deg, yaw_deg, pitch_deg], degrees=True).as_rotvec().astype(np.float32)


class FaceSynthesizer:
    """Draws :class:`SynthSample` values from ``model`` (any :class:`MorphableModel` with an
    'ibug68' embedding). ``albedo`` and ``backgrounds`` are pluggable sources (defaults: smooth
    random skin with region colours; procedural backgrounds)."""

    def __init__(self, model: MorphableModel, config: SynthConfig | None = None, albedo: AlbedoSource | None = None,
                 backgrounds: Any | None = None) -> None:
        if "ibug68" not in model.embeddings:
            raise BadInputError(f"model '{model.name}' has no 'ibug68' landmark embedding: the generator labels need it")
        self.model = render_model(model)
        self.config = config or SynthConfig()
        self.albedo = albedo or SmoothAlbedo()
        self.backgrounds = backgrounds or MixedBackgrounds()

    def sample(self, rng: np.random.Generator, **overrides: Any) -> SynthSample:
        """One sample; ``overrides`` replace config fields for this draw (e.g. ``yaw_deg=(60, 90)``)."""
        from face3d import renderers

        cfg = dataclasses.replace(self.config, **overrides) if overrides else self.config
        m, S = self.model, cfg.crop_size
        shape = (rng.normal(0, 1, m.n_shape) * cfg.id_scale * m.id_std.numpy()).astype(np.float32)
        expr = sample_expression(m, rng, cfg.max_expressions)
        euler = np.array([rng.uniform(*cfg.pitch_deg), rng.uniform(*cfg.yaw_deg), rng.uniform(*cfg.roll_deg)], np.float32)
        pose = euler_to_rotvec(*euler)
        # camera: 35 mm-equivalent focal on a frame_px-wide frame; distance from the face's size in the frame
        focal_mm = float(np.exp(rng.uniform(np.log(cfg.focal_mm[0]), np.log(cfg.focal_mm[1]))))
        f_px = cfg.frame_px * focal_mm / 36.0
        dist = max(f_px * FACE_HEIGHT_M / (rng.uniform(*cfg.face_frac) * cfg.frame_px), 0.25)
        half = 0.5 * cfg.frame_px / f_px * dist  # half the frame width at the face's distance, metres
        trans = np.array([rng.uniform(-0.5, 0.5) * half, rng.uniform(-0.5, 0.5) * half, -dist], np.float32)
        with torch.no_grad():
            verts = m(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None],
                      pose=torch.as_tensor(pose)[None]) + torch.as_tensor(trans)
            lm3 = m.landmarks(verts, "ibug68")
            K = intrinsics(torch.tensor([f_px]), float(cfg.frame_px), float(cfg.frame_px))
            full = project(lm3, K)[0].numpy()
            lo, hi = full.min(0), full.max(0)
            side = float((hi - lo).max() * rng.uniform(*cfg.box_scale))
            centre = (lo + hi) / 2 + rng.uniform(-cfg.box_shift, cfg.box_shift, 2) * side
            box = torch.tensor([[centre[0] - side / 2, centre[1] - side / 2, side]], dtype=torch.float32)
            Kc = crop_intrinsics(K, box, S)
            cam = renderers.PerspectiveCamera(K=Kc, width=S, height=S, near=0.05, far=20.0)
            alb = self.albedo.sample(m, rng)
            sh = torch.as_tensor(random_sh(rng))[None]
            out = self._render(verts, cam, sh, alb)
            lm68 = project(lm3, Kc)[0].numpy().astype(np.float32)
            lm478 = project(m.landmarks(verts, "mediapipe478"), Kc)[0].numpy().astype(np.float32) if "mediapipe478" in m.embeddings else None
        image, occ_mask = self._compose(out, rng, cfg)
        visible = self._visibility(lm68, (-lm3[0, :, 2]).numpy(), out.depth[0, ..., 0].numpy(), S)
        xi, yi = np.clip(np.floor(lm68).astype(int), 0, S - 1).T
        inside = np.all((lm68 >= 0) & (lm68 < S), axis=1)
        occluded = occ_mask[yi, xi] & inside
        image = self._degrade(image, rng, cfg)
        return SynthSample(image, lm68, visible, lm478, shape, expr, pose, euler, trans, Kc[0].numpy(), focal_mm,
                           lm3[0].numpy().astype(np.float32), occluded)

    def _render(self, verts: torch.Tensor, cam: Any, sh: torch.Tensor, alb: np.ndarray | UVAlbedo) -> Any:
        """Render ``verts`` (1, V, 3) with per-vertex, UV or two-part (:class:`UVAlbedo`) albedo; a
        two-part albedo is drawn as two renders composited by the texture-owning triangles."""
        from face3d import renderers
        from face3d.fitting.stages import texture_face_mask

        m = self.model
        if isinstance(alb, UVAlbedo):
            out = renderers.render_mesh(renderers.Mesh(verts, m.faces), cam, sh=sh, background=0.0, vertex_colors=torch.as_tensor(alb.vertex)[None])
            tout = renderers.render_mesh(renderers.Mesh(verts, m.faces, uvs=m.uvs, uv_faces=m.uv_faces), cam, sh=sh, background=0.0, texture=torch.as_tensor(alb.texture)[None])
            owns = torch.as_tensor(np.append(texture_face_mask(m), False))[out.tri_id]  # index -1 (background) -> False
            return dataclasses.replace(out, image=torch.where(owns[..., None], tout.image, out.image),
                                       albedo=torch.where(owns[..., None], tout.albedo, out.albedo))
        if alb.shape[0] == m.n_vertices and alb.ndim == 2:
            return renderers.render_mesh(renderers.Mesh(verts, m.faces), cam, sh=sh, background=0.0, vertex_colors=torch.as_tensor(alb)[None])
        return renderers.render_mesh(renderers.Mesh(verts, m.faces, uvs=m.uvs, uv_faces=m.uv_faces), cam, sh=sh, background=0.0, texture=torch.as_tensor(alb)[None])

    def _compose(self, out: Any, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
        """SH-lit render + a coloured directional light, over a background, with occluders;
        returns (image (S, S, 3) float, occluder mask (S, S) bool)."""
        S = cfg.crop_size
        img = out.image[0].numpy()
        alpha = out.alpha[0].numpy()
        if rng.random() < 0.7:
            d = rng.normal(0, 1, 3)
            d[2] = abs(d[2]) * rng.uniform(0.2, 1.5)
            d /= np.linalg.norm(d)
            ndl = np.clip(out.normals[0].numpy() @ d, 0, None)[..., None]
            col = rng.uniform(0.2, 0.9) * (1 + rng.normal(0, 0.08, 3))
            img = img * rng.uniform(0.5, 1.0) + out.albedo[0].numpy() * ndl * col
        bg = self.backgrounds.sample(rng, S)
        img = np.clip(img + bg * (1 - alpha), 0, 1)
        mask = np.zeros((S, S), bool)
        if rng.random() < cfg.occluder_prob:
            img, mask = add_occluders(img, rng)
        return img, mask

    @staticmethod
    def _visibility(lm: np.ndarray, depth_pts: np.ndarray, depth_img: np.ndarray, S: int, tol: float = 0.01) -> np.ndarray:
        """(68,) bool: inside the crop and not behind the rendered surface (``tol`` metres)."""
        xi, yi = np.floor(lm[:, 0]).astype(int), np.floor(lm[:, 1]).astype(int)
        inside = (xi >= 0) & (yi >= 0) & (xi < S) & (yi < S)
        vis = inside.copy()
        for i in np.nonzero(inside)[0]:
            y0, y1, x0, x1 = max(yi[i] - 1, 0), min(yi[i] + 2, S), max(xi[i] - 1, 0), min(xi[i] + 2, S)
            z = depth_img[y0:y1, x0:x1]
            z = z[z > 0]
            vis[i] = z.size == 0 or depth_pts[i] <= z.max() + tol
        return vis

    @staticmethod
    def _degrade(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
        """Colour/gamma jitter, blur, noise, JPEG; float (S, S, 3) -> uint8."""
        from PIL import Image, ImageFilter

        img = np.clip(img * rng.uniform(0.7, 1.3) + rng.uniform(-0.08, 0.08), 0, 1) ** rng.uniform(0.7, 1.4)
        if rng.random() < 0.1:
            img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
        pil = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
        S = img.shape[0]
        if rng.random() < cfg.blur_prob:
            if rng.random() < 0.5:
                pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.8)))
            else:  # low resolution: down- and up-sample
                s = int(S * rng.uniform(0.25, 0.7))
                pil = pil.resize((s, s), Image.BILINEAR).resize((S, S), Image.BILINEAR)
        arr = np.asarray(pil, np.float32)
        sigma = rng.uniform(*cfg.noise_std) * 255
        if sigma > 0:
            arr = arr + rng.normal(0, sigma, arr.shape)
        pil = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
        if rng.random() < cfg.jpeg_prob:
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
            pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        return np.asarray(pil, np.uint8).copy()
