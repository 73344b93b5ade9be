"""The stages of :func:`face3d.reconstruct` after detection, each returning a frozen value.

fit (:class:`FitStage`: one face's parameters, photo and model) → texture (:class:`TextureStage`)
→ shape-from-shading detail (:class:`DetailStage`) → implicit SDF (:class:`SdfStage`) →
:meth:`face3d.result.Reconstruction.assemble`. A stage reads only the values it is given (never a
Reconstruction) and builds the mesh and view it works on from the fit
(:class:`~face3d.mesh.FaceMesh`, :class:`~face3d.mesh.View`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from face3d.mesh import FaceMesh, View
from face3d.result import FittedFace, Reconstruction, interocular_error

if TYPE_CHECKING:
    from face3d.detail.sdf import SDFFitOptions, SDFResult
    from face3d.fitting.stages import FitConfig, FitResult
    from face3d.models.model import MorphableModel

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Origin:
    """Where a face was seen: image (H, W, 3) uint8; source (path or None); frame index and time
    (seconds) in a video; face_index in the photo; notes about it (e.g. skipped video frames)."""

    image: np.ndarray
    source: str | None = None
    frame: int | None = None
    time: float | None = None
    face_index: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitStage(FittedFace):
    """One face's 3DMM fit on the CPU: the parameters (shapes and units as on
    :class:`~face3d.result.Reconstruction`), the model (on the CPU), where the face was seen
    (:class:`Origin` fields) and the fit's timings (seconds) and final losses."""

    model: MorphableModel
    model_name: str
    model_version: str
    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    translation: np.ndarray
    focal: float
    image_size: tuple[int, int]
    sh: np.ndarray
    albedo_coeffs: np.ndarray
    albedo_gain: np.ndarray
    albedo_smooth: np.ndarray
    landmark_set: str
    landmark_targets: np.ndarray
    landmark_error: float
    expression_names: tuple[str, ...]
    timings: dict[str, float]
    losses: dict[str, float]
    image: np.ndarray | None
    source: str | None
    frame: int | None
    time: float | None
    face_index: int
    notes: tuple[str, ...]

    @classmethod
    def from_fit(cls, model: MorphableModel, res: FitResult, b: int, origin: Origin, timings: dict[str, float]) -> FitStage:
        """Image ``b`` of a (single-, multi-view or video) fit ``res`` of ``model`` (a CPU model)."""
        prm = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in res.per_image(b).items()}
        H, W = origin.image.shape[:2]
        lm_set, tgt = res.landmark_set, res.landmark_targets[b].cpu().numpy()
        if res.learned_followed is not None and res.learned_targets is not None and bool(res.learned_followed[b]):
            lm_set, tgt = "ibug68", res.learned_targets[b].cpu().numpy()  # a profile: the fit follows the learned points
        fit = cls(model, model.name, str(model.version), prm["shape"], prm["expression"], prm["pose"], prm["translation"],
                  float(prm["focal"]), (H, W), prm["sh"], prm["albedo"], prm["albedo_gain"], prm["albedo_smooth"],
                  lm_set, tgt, float("nan"), tuple(model.exp_names), dict(timings), dict(res.losses),
                  origin.image, origin.source, origin.frame, origin.time, origin.face_index, origin.notes)
        error = interocular_error(fit.landmarks2d(lm_set), tgt, lm_set)
        return dataclasses.replace(fit, landmark_error=error)

    def _model(self) -> MorphableModel:
        return self.model

    def posed_mesh(self) -> FaceMesh:
        """The fitted mesh with the head pose applied (world metres; the camera at the origin)."""
        return FaceMesh.from_model(self.model, torch.as_tensor(self.vertices(posed=True), dtype=torch.float32))

    def view(self) -> View:
        """The photo with the fitted camera and lighting."""
        return View(torch.as_tensor(self.photo()), self.camera(), torch.as_tensor(self.sh, dtype=torch.float32))


@dataclass(frozen=True)
class TextureStage:
    """texture (R, R, 3) de-lit UV albedo in [0, 1]; seconds it took."""

    texture: np.ndarray
    seconds: float


@dataclass(frozen=True)
class DetailStage:
    """Shape-from-shading detail: displacement (R, R) metres along the normal, normal_map (R, R, 3)
    tangent space in [0, 1], vertices_detailed (V, 3) model space; seconds it took."""

    displacement: np.ndarray
    normal_map: np.ndarray
    vertices_detailed: np.ndarray
    seconds: float


@dataclass(frozen=True)
class SdfStage:
    """The implicit-SDF reconstructor's result and, unless it fell back, what replaces the
    shape-from-shading detail: vertices_detailed (V, 3) model space, displacement (R, R) and
    normal_map (R, R, 3) (None: keep the previous); timings in seconds (``sdf``, ``sdf_*``)."""

    result: SDFResult
    vertices_detailed: np.ndarray | None
    displacement: np.ndarray | None
    normal_map: np.ndarray | None
    timings: dict[str, float]


def texture_faces(model: MorphableModel) -> torch.Tensor:
    """(F,) bool triangles that own the face texture (:func:`face3d.fitting.stages.texture_face_mask`)."""
    from face3d.fitting.stages import texture_face_mask

    return torch.as_tensor(texture_face_mask(model))


def texture_stage(fit: FitStage, resolution: int) -> TextureStage:
    """Bake the photo into a de-lit ``resolution``² UV albedo (:func:`face3d.texture.bake_texture`)."""
    from face3d.texture.bake import BakeOptions, bake_texture

    t0 = time.perf_counter()
    tex = bake_texture(fit.posed_mesh(), fit.view(), resolution=resolution, albedo_fallback=torch.as_tensor(fit.vertex_albedo()),
                       template=fit.model.template, face_mask=texture_faces(fit.model), options=BakeOptions(shading_maps=False))
    return TextureStage(tex.albedo.numpy(), time.perf_counter() - t0)


def detail_stage(fit: FitStage, texture: TextureStage, resolution: int) -> DetailStage:
    """Shape-from-shading displacement and normal maps at ``resolution``² (:func:`face3d.detail.recover_detail`)."""
    from face3d.detail import recover_detail

    t0 = time.perf_counter()
    det = recover_detail(fit.posed_mesh(), fit.view(), torch.as_tensor(texture.texture), resolution=resolution,
                         face_mask=texture_faces(fit.model))
    return DetailStage(det.displacement.detach().cpu().numpy(), det.normal_map.detach().cpu().numpy(),
                       det.vertices_detailed.detach().cpu().numpy() @ fit.rotation, time.perf_counter() - t0)


MAX_REAL_VIEWS = 4  # other photos / frames used as real views of one SDF reconstruction


def real_views(fit: FittedFace, others: Sequence[FittedFace]) -> list[View]:
    """Other photos (or frames) of the same person as views of ``fit``'s posed head.

    The SDF lives in ``fit``'s world (model space rotated by its head pose R_b); a point x there
    is R_b v in model space v, which photo c's camera sees at R_c v + t_c, so photo c is a view
    with camera rotation R_c R_bᵀ, its own intrinsics, translation and SH lighting. Per-photo
    expression differences are not modelled (the shared identity is)."""
    from face3d import renderers

    Rb = torch.as_tensor(fit.rotation, dtype=torch.float32)
    views = []
    for o in others:
        H, W = o.image_size
        cam = renderers.PerspectiveCamera(K=torch.as_tensor(o.K, dtype=torch.float32)[None],
                                          R=(torch.as_tensor(o.rotation, dtype=torch.float32) @ Rb.T)[None],
                                          t=torch.as_tensor(o.translation, dtype=torch.float32)[None], width=W, height=H)
        views.append(View(torch.as_tensor(o.photo()), cam, torch.as_tensor(o.sh, dtype=torch.float32), weight=1.0))
    return views


def sdf_stage(fit: FitStage, texture: TextureStage, others: list[FitStage], options: SDFFitOptions, device: str = "cpu",
              progress: Progress | None = None) -> SdfStage:
    """The implicit-SDF reconstructor (:mod:`face3d.detail.sdf`) on top of the textured fit, its
    own photo supervised by ``others`` (more photos of the same person, at most
    ``MAX_REAL_VIEWS``, evenly spaced) as real views (:func:`real_views`)."""
    from face3d.detail.sdf import reconstruct_sdf

    t0 = time.perf_counter()
    model = fit.model
    used = np.zeros(model.n_vertices, bool)
    used[model.faces.numpy()[texture_faces(model).numpy()].reshape(-1)] = True
    region = model.regions.get("face")
    region_t = torch.as_tensor(used if region is None else (region.numpy() & used))
    if len(others) > MAX_REAL_VIEWS:
        others = [others[i] for i in np.linspace(0, len(others) - 1, MAX_REAL_VIEWS).round().astype(int)]

    def report(i: int, n: int) -> None:
        if progress:
            progress("sdf", i, n)

    res = reconstruct_sdf(fit.posed_mesh(), fit.view(), torch.as_tensor(texture.texture, dtype=torch.float32), region=region_t,
                          extra_views=real_views(fit, others), options=options, device=device, progress=report)
    timings = {f"sdf_{k}": v for k, v in res.timings.items()}
    timings["sdf"] = time.perf_counter() - t0
    if res.fell_back:
        return SdfStage(res, None, None, None, timings)
    maps = res.displacement_uv is not None and res.normal_uv is not None
    return SdfStage(res, res.vertices_detailed.numpy() @ fit.rotation, res.displacement_uv.numpy() if maps else None,  # type: ignore[union-attr]
                    res.normal_uv.numpy() if maps else None, timings)  # type: ignore[union-attr]


POOR_FIT_ERROR = 0.25
"""Landmark error / eye distance above which a fit that follows the landmarks is reported as poor
(default settings on 37 real photos: 2.2 % median, 9.1 % max with basic, 17.6 % max with ICT)."""


def poor_fit_notes(fit: FitStage | Reconstruction, cfg: FitConfig) -> list[str]:
    """A note when ``fit``'s landmark error says the fit failed (lr=1e9 gave 226 %); none when
    the photometric stage is told to leave the landmarks (photometric_landmark_scale < 1)."""
    if (cfg.photometric and cfg.photometric_landmark_scale < 1) or fit.landmark_error <= POOR_FIT_ERROR:
        return []
    where = f"{fit.source or 'image'}" + ("" if fit.frame is None else f" frame {fit.frame}")
    return [(f"{where}: poor fit, landmark error {100 * fit.landmark_error:.0f}% of the eye distance (the default "
             f"settings give 2-18% on real photos); check the settings and the landmarks")]
