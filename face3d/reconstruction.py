"""``face3d.reconstruct``: photos or a video in, :class:`~face3d.result.Reconstruction` out.

Pipeline per face: decode (EXIF, downscale huge images) → MediaPipe 478 landmarks (or the
user's 68/478) → 3DMM fit (:mod:`face3d.fitting`) → UV texture baked from the photo and
de-lit by the fitted lighting (:mod:`face3d.texture`) → shape-from-shading detail
(:mod:`face3d.detail`, when installed). Several photos share one identity; a video is sampled
at ``fps`` and fitted with a shared identity and temporally smooth motion.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal, cast

import numpy as np
import torch

from face3d.errors import BadInputError, NoFaceError
from face3d.fitting.stages import FitConfig, FitResult, FitTarget, texture_face_mask
from face3d.result import Reconstruction, interocular_error

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
METHODS = ("3dmm", "sdf")
Progress = Callable[[str, int, int], None]


@lru_cache(maxsize=4)
def _load_model_cached(name: str, device: str) -> Any:
    from face3d.models import load_model

    opts = {"parts": "face"} if name == "ict" else {}
    return load_model(name, **opts).to(device)


def get_model(model: Any, device: str = "cpu") -> Any:
    """A MorphableModel on ``device`` from a name ('basic', 'ict', ...), a path, or a model
    instance (returned as is when already there, else a copy: the caller's model never moves)."""
    from face3d.models.model import MorphableModel

    if isinstance(model, MorphableModel):
        on, want = model.template.device, torch.device(device)
        here = on.type == want.type and want.index in (None, on.index)
        return model if here else copy.deepcopy(model).to(want)
    if not isinstance(model, (str, os.PathLike)):
        raise BadInputError(f"argument 'model': expected a model name, a path or a MorphableModel, got {type(model).__name__}")
    return _load_model_cached(str(model), device)


AUTO_GPU_MIN_IMAGES = 8  # device='auto' fits this many photos/frames or more on CUDA


def stage_devices(device: str, n_images: int = 1) -> tuple[str, str]:
    """(3DMM fit device, SDF optimisation device) for ``reconstruct``'s ``device`` argument and
    the number of photos or frames fitted together.

    'auto' with CUDA present: the fit on CUDA from ``AUTO_GPU_MIN_IMAGES`` images on, else on the
    CPU, and the SDF optimisation on CUDA. Measured on an H200 machine (benchmarks/README.md):
    fitting 1 / 8 / 32 frames took 0.53 / 1.08 / 3.25 s on its CPU and 0.63 / 0.91 / 1.68 s on
    the GPU; the SDF optimisation 131.5 s against 33.8 s. Without CUDA, 'auto' is the CPU. Any
    other name is used for both, checked: BadInputError for 'cuda…' on a machine without CUDA."""
    check_device(device)
    if device == "auto":
        gpu = torch.cuda.is_available()
        return ("cuda" if gpu and n_images >= AUTO_GPU_MIN_IMAGES else "cpu"), ("cuda" if gpu else "cpu")
    return device, device


def check_device(device: Any) -> str:
    """``device`` if it is 'auto', 'cpu', 'cuda' or 'cuda:N' usable here; else BadInputError."""
    if device == "auto":
        return device
    try:
        dev = torch.device(device) if isinstance(device, str) else None
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise BadInputError(f"argument 'device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"argument 'device': {device!r} requested but CUDA is not available")
        if dev.index is not None and 0 < torch.cuda.device_count() <= dev.index:
            raise BadInputError(f"argument 'device': {device!r} requested but there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def _is_video(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike)) and Path(x).suffix.lower() in VIDEO_SUFFIXES


#: The options of ``reconstruct`` besides the FitConfig fields: (kind, low, high) as in
#: :data:`face3d.fitting.stages.SETTING_RANGES`. The texture and detail maps are capped at 4096²
#: (4096 peaks near 5 GB; 8192 went past 12 GB); max_side caps the decoded photo.
OPTION_RANGES: dict[str, tuple[str, float, float]] = {
    "texture": ("bool", 0, 1),
    "texture_resolution": ("int", 16, 4096),
    "detail": ("bool", 0, 1),
    "detail_resolution": ("int", 16, 4096),
    "max_side": ("int", 64, 8192),
    "sdf_iterations": ("int", 1, 100_000),
    "sdf_voxel": ("positive", 0.0, 0.05),
}


BYTES_PER_TEXEL = 255
"""Peak memory per texel of the texture and detail maps: measured with ``/usr/bin/time`` on
``face3d reconstruct`` of the demo photo (photometric off, detail on): 627 MB at 256², 874 MB at
1024², 1671 MB at 2048² (both steps ~250-255 bytes per added texel; the issue's 4096² run peaked at 4.9 GB)."""
BASE_BYTES = 650_000_000  # the rest of the pipeline (torch, MediaPipe, the model)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_texture_memory(rest: dict[str, Any], available: int | None = None) -> None:
    """BadInputError before any work when the texture/detail maps would not fit in this machine's memory."""
    if not rest.get("texture", True):
        return
    res = int(rest.get("texture_resolution", 1024))
    side = max(res, int(rest.get("detail_resolution", res))) if rest.get("detail", True) else res
    need = BASE_BYTES + BYTES_PER_TEXEL * side * side
    free = available_memory() if available is None else available
    if free is not None and need > free:
        fits = int(((free - BASE_BYTES) / BYTES_PER_TEXEL) ** 0.5) if free > BASE_BYTES else 0
        raise BadInputError(f"texture_resolution {res}: the texture and detail maps need about {need / 1e9:.1f} GB, and this "
                            f"machine has {free / 1e9:.1f} GB available; use {max(16, 1 << max(fits, 1).bit_length() - 1)} or less")


def fit_options(options: dict[str, Any], video: bool = False) -> tuple[FitConfig, dict[str, Any]]:
    """``reconstruct``'s keyword options split into the FitConfig (``preset`` + its fields) and the
    rest, every value checked (BadInputError naming the option, the value and the allowed range).
    ``video``: settings the options do not name take the video defaults (:func:`video_config`)."""
    from face3d.fitting.stages import check_setting

    names = {f.name for f in dataclasses.fields(FitConfig)}
    rest = {k: v for k, v in options.items() if k not in names and k != "preset"}
    unknown = sorted(set(rest) - set(OPTION_RANGES))
    if unknown:
        raise BadInputError(f"reconstruct: unknown option(s) {unknown}; fitting options are {sorted(names)}, "
                            f"others {sorted(OPTION_RANGES)}")
    for k, v in rest.items():
        check_setting(k, v, OPTION_RANGES[k])
    named = {k: v for k, v in options.items() if k in names}
    if video:
        from face3d.fitting.video import video_config

        return video_config(options.get("preset", "default"), **named), rest
    return FitConfig.preset(options.get("preset", "default"), **named), rest


def _user_landmarks(landmarks: Any, index: int, image_size: tuple[int, int], name: str) -> Any:
    from face3d.landmarks.detector import FaceLandmarks, points_bbox
    from face3d.landmarks.files import load_landmarks_file

    item = landmarks[index] if isinstance(landmarks, (list, tuple)) else landmarks
    if isinstance(item, FaceLandmarks):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_landmarks_file(item, image_size=image_size)
    pts = np.asarray(item, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[0] not in (68, 478) or pts.shape[1] not in (2, 3) or not np.isfinite(pts).all():
        raise BadInputError(f"landmarks for {name}: expected a (68|478, 2|3) finite array, got shape {pts.shape}")
    scheme = "ibug68" if pts.shape[0] == 68 else "mediapipe478"
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.zeros((len(pts), 1), np.float32)], 1)
    return FaceLandmarks(pts, scheme, points_bbox(pts), 1.0, image_size, source="user")


def _landmarks_for(image: Any, name: str, faces: str, landmarks: Any, index: int, notes: list[str]) -> list[Any]:
    from face3d.landmarks.detector import detect_landmarks

    if landmarks is not None:
        given = _user_landmarks(landmarks, index, image.size, name)
        note = check_user_landmarks(image, given, name)
        if note:
            notes.append(note)
        return [given]
    return detect_landmarks(image, which=cast(Literal["largest", "all"], faces), path_for_errors=name, notes=notes)


MIN_LANDMARK_OVERLAP = 0.3  # IoU of the given landmarks' box with a detected face's box
MAX_LANDMARK_OFFSET = 0.13  # median distance to the detected landmarks / the face's box diagonal
# On the 10 AFLW2000 dev photos (450 px crops, the face centred) with their own 68 landmarks: IoU
# 0.62-0.86, offset 0.013-0.110; with another photo's landmarks 28 of the 90 pairs exceed 0.13 (such
# crops put every face in the same place; a file from a differently framed photo fails the IoU test).


def check_user_landmarks(image: Any, given: Any, name: str) -> str | None:
    """A warning when user landmarks ``given`` do not match any face detected in ``image`` (a
    landmarks file from another photo): their box overlaps none (IoU < MIN_LANDMARK_OVERLAP) or
    the points lie more than MAX_LANDMARK_OFFSET of the face size from the detected ones. None
    when they match, or when no face is detected (then there is nothing to compare with)."""
    from face3d.errors import Face3DError
    from face3d.landmarks.detector import box_iou, detect_landmarks

    try:
        found = detect_landmarks(image, which="all", path_for_errors=name, learned=False)
    except Face3DError:
        return None
    mine = np.asarray(given.points, np.float64)[:, :2]
    best_iou, best_off = 0.0, float("inf")
    for f in found:
        ref = (f.ibug68() if given.scheme == "ibug68" else f.points)[:, :2].astype(np.float64)
        diag = max(float(np.linalg.norm(ref.max(0) - ref.min(0))), 1.0)
        best_iou = max(best_iou, box_iou(given.bbox, f.bbox))
        best_off = min(best_off, float(np.median(np.linalg.norm(mine - ref, axis=1))) / diag)
    if best_iou >= MIN_LANDMARK_OVERLAP and best_off <= MAX_LANDMARK_OFFSET:
        return None
    return (f"{name}: the given landmarks do not match the face detected in the photo (box overlap {best_iou:.2f}, "
            f"median offset {100 * best_off:.0f}% of the face size); are they from another photo or another image size?")


def _finish(model: Any, fit_res: FitResult, b: int, image: np.ndarray, source: str | None, timings: dict[str, float],
            rest: dict[str, Any], progress: Progress | None, frame: int | None = None, time_s: float | None = None,
            face_index: int = 0, texture: bool = True) -> Reconstruction:
    prm = fit_res.per_image(b)
    H, W = image.shape[:2]
    tgt = fit_res.landmark_targets[b].cpu().numpy()
    rec = Reconstruction(
        model_name=model.name, model_version=str(model.version), shape=prm["shape"].cpu().numpy(),
        expression=prm["expression"].cpu().numpy(), pose=prm["pose"].cpu().numpy(), translation=prm["translation"].cpu().numpy(),
        focal=float(prm["focal"]), image_size=(H, W), sh=prm["sh"].cpu().numpy(), albedo_coeffs=prm["albedo"].cpu().numpy(),
        albedo_gain=prm["albedo_gain"].cpu().numpy(), albedo_smooth=prm["albedo_smooth"].cpu().numpy(), landmark_set=fit_res.landmark_set, landmark_targets=tgt,
        landmark_error=float("nan"), expression_names=list(model.exp_names), timings=dict(timings), losses=dict(fit_res.losses),
        source=source, frame=frame, time=time_s, face_index=face_index, image=image, model=model,
    )
    rec.landmark_error = interocular_error(rec.landmarks2d(fit_res.landmark_set), tgt, fit_res.landmark_set)
    if texture and rest.get("texture", True) and model.uvs is not None:
        from face3d.fitting.stages import single_thread

        with single_thread(1):
            _texture_and_detail(rec, model, rest, progress)
    return rec


POOR_FIT_ERROR = 0.25
"""Landmark error / eye distance above which a fit that follows the landmarks is reported as poor
(default settings on 37 real photos: 2.2 % median, 9.1 % max with basic, 17.6 % max with ICT)."""


def _note_poor_fits(recs: list[Reconstruction], cfg: FitConfig) -> None:
    """Add a note to each reconstruction whose landmark error says the fit failed (lr=1e9 gave 226 %).
    Skipped when the photometric stage is told to leave the landmarks (photometric_landmark_scale < 1)."""
    if cfg.photometric and cfg.photometric_landmark_scale < 1:
        return
    for r in recs:
        if not r.landmark_error <= POOR_FIT_ERROR:
            where = f"{r.source or 'image'}" + ("" if r.frame is None else f" frame {r.frame}")
            r.notes.append(f"{where}: poor fit, landmark error {100 * r.landmark_error:.0f}% of the eye distance (the default "
                           f"settings give 2-18% on real photos); check the settings and the landmarks")

MAX_REAL_VIEWS = 4  # other photos / frames used as real views of one SDF reconstruction


def _real_views(rec: Reconstruction, others: list[Reconstruction]) -> list[Any]:
    """Other photos (or frames) of the same person as views of ``rec``'s posed head.

    The SDF lives in ``rec``'s world (model space rotated by its head pose R_b); a point x there
    is R_b v in model space v, which photo c's camera sees at R_c v + t_c, so photo c is a view
    with camera rotation R_c R_bᵀ, its own intrinsics, translation and SH lighting. Per-photo
    expression differences are not modelled (the shared identity is)."""
    import renderers

    from face3d.detail.sdf.views import View

    Rb = torch.as_tensor(rec.rotation, dtype=torch.float32)
    views = []
    for o in others:
        H, W = o.image_size
        cam = renderers.PerspectiveCamera(K=torch.as_tensor(o.K, dtype=torch.float32)[None],
                                          R=(torch.as_tensor(o.rotation, dtype=torch.float32) @ Rb.T)[None],
                                          t=torch.as_tensor(o.translation, dtype=torch.float32)[None], width=W, height=H)
        views.append(View(torch.as_tensor(_photo(o)), cam, torch.as_tensor(o.sh, dtype=torch.float32), weight=1.0))
    return views


def _sdf_all(recs: list[Reconstruction], model: Any, rest: dict[str, Any], progress: Progress | None, first_only: bool = False,
             device: str = "cpu") -> None:
    """method='sdf' on several photos of one person (or a video's first frame): each textured
    reconstruction's SDF is supervised by its own photo plus the others as real views (at most
    ``MAX_REAL_VIEWS``, evenly spaced)."""
    from face3d.fitting.stages import single_thread

    with single_thread(1):
        for b, rec in enumerate(recs[:1] if first_only else recs):
            if rec.texture is None:
                continue
            others = [o for c, o in enumerate(recs) if c != b and o.image is not None]
            if len(others) > MAX_REAL_VIEWS:
                others = [others[i] for i in np.linspace(0, len(others) - 1, MAX_REAL_VIEWS).round().astype(int)]
            _sdf_detail(rec, model, rest, progress, others, device)


def _sdf_detail(rec: Reconstruction, model: Any, rest: dict[str, Any], progress: Progress | None,
                others: list[Reconstruction] | None = None, device: str = "cpu") -> None:
    """The implicit-SDF reconstructor (:mod:`face3d.detail.sdf`) on top of the textured fit; its
    displaced mesh, displacement and normal maps replace the shape-from-shading ones. ``others``:
    more photos of the same person, used as real views (:func:`_real_views`)."""
    from face3d.detail.sdf import SDFFitOptions, reconstruct_sdf
    from face3d.fitting.stages import texture_face_mask

    t0 = time.perf_counter()
    posed = torch.as_tensor(rec.vertices(posed=True), dtype=torch.float32)
    region = model.regions.get("face")
    fmask = texture_face_mask(model)
    used = np.zeros(model.n_vertices, bool)
    used[model.faces.numpy()[fmask].reshape(-1)] = True
    region_t = torch.as_tensor(used if region is None else (region.numpy() & used))
    opts = SDFFitOptions(iterations=int(rest.get("sdf_iterations", SDFFitOptions.iterations)))

    def report(i: int, n: int) -> None:
        if progress:
            progress("sdf", i, n)

    res = reconstruct_sdf(torch.as_tensor(_photo(rec)), rec.camera(), torch.as_tensor(rec.sh, dtype=torch.float32),
                          posed, model.faces, model.uvs, model.uv_faces, torch.as_tensor(rec.texture, dtype=torch.float32), region=region_t,
                          extra_views=_real_views(rec, others or []), options=opts, uv_resolution=int(rest.get("detail_resolution", 256)),
                          voxel=float(rest.get("sdf_voxel", 1e-3)), device=device, progress=report)
    rec.sdf = res
    if res.fell_back:
        rec.notes.append(res.warning)
    else:
        rec.vertices_detailed = res.vertices_detailed.numpy() @ rec.rotation
        if res.displacement_uv is not None and res.normal_uv is not None:
            rec.displacement = res.displacement_uv.numpy()
            rec.normal_map = res.normal_uv.numpy()
    rec.timings.update({f"sdf_{k}": v for k, v in res.timings.items()})
    rec.timings["sdf"] = time.perf_counter() - t0


def _photo(rec: Reconstruction) -> np.ndarray:
    """The reconstruction's photo (H, W, 3) float32 in [0, 1]."""
    if rec.image is None:
        raise BadInputError("texture/detail stages need the photo; this Reconstruction has none (loaded from disk?)")
    return rec.image.astype(np.float32) / 255


def _texture_and_detail(rec: Reconstruction, model: Any, rest: dict[str, Any], progress: Progress | None) -> None:
    from face3d.texture.bake import bake_texture

    t0 = time.perf_counter()
    img = _photo(rec)
    posed = torch.as_tensor(rec.vertices(posed=True), dtype=torch.float32)
    cam = rec.camera()
    sh = torch.as_tensor(rec.sh, dtype=torch.float32)
    res = int(rest.get("texture_resolution", 1024))
    tex = bake_texture(img, posed, model.faces, model.uvs, model.uv_faces, cam, sh=sh,
                       albedo_fallback=torch.as_tensor(rec.vertex_albedo()), resolution=res,
                       template=model.template, face_mask=torch.as_tensor(texture_face_mask(model)))
    rec.texture = tex.albedo.numpy()
    rec.timings["texture"] = time.perf_counter() - t0
    if progress:
        progress("texture", 1, 1)
    if not rest.get("detail", True):
        return
    from face3d.detail import recover_detail

    t0 = time.perf_counter()
    det = recover_detail(img, posed, model.faces, model.uvs, model.uv_faces, cam, tex.albedo, sh,
                         resolution=int(rest.get("detail_resolution", res)), face_mask=torch.as_tensor(texture_face_mask(model)))
    d = lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # noqa: E731
    rec.displacement = d(det.displacement)
    rec.normal_map = d(det.normal_map)
    rec.vertices_detailed = d(det.vertices_detailed) @ rec.rotation  # back to model space
    rec.timings["detail"] = time.perf_counter() - t0
    if progress:
        progress("detail", 1, 1)


def _read(source: Any, max_side: int) -> Any:
    from face3d.io.images import read_image

    return read_image(source, max_side=max_side)


def reconstruct(
    image_or_paths: Any,
    model: Any = "default",
    device: str = "auto",
    method: str = "3dmm",
    faces: str = "largest",
    landmarks: Any = None,
    fps: float | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Reconstruction | list[Reconstruction]:
    """Reconstruct 3D faces from one photo, several photos of one person, or a video.

    image_or_paths: a path, an (H, W, 3) array, a PIL image, a LoadedImage, or a list of them
    (several photos of one person), or one video path (.mp4, .mov, ...; sampled at ``fps``,
    default 10). model: 'default' (the embedded ICT-FaceKit-derived head), 'basic', 'ict', a model
    file path, or a MorphableModel. faces:
    'largest' (one face) or 'all' (one reconstruction per face, single photo only).
    landmarks: user landmarks (path to a 68/478-point file, an array, or a list per photo)
    instead of detection. device: 'cpu', 'cuda' (the fit and the SDF optimisation run there), or
    'auto' (with CUDA present: the SDF optimisation, and fits of 8 or more photos/frames, on
    CUDA; one photo fits faster on the CPU: :func:`stage_devices`); texture and detail run on
    the CPU, and the result holds CPU arrays either way. options: preset ('default' or 'fast':
    :meth:`FitConfig.preset`), FitConfig fields overriding it (landmark_steps, photometric_steps,
    render_size, ...), texture (bool), texture_resolution (default 1024), detail (bool),
    detail_resolution, max_side (downscale larger images, default 1024), sdf_iterations,
    sdf_voxel (marching-cubes voxel, metres, default 1e-3).
    method: '3dmm' (fit + shape-from-shading detail) or 'sdf' (then the implicit-SDF
    reconstructor of :mod:`face3d.detail.sdf` refines the detail; on a video, the first frame).

    Returns one :class:`Reconstruction` for a single photo with faces='largest', otherwise a
    list (per face, per photo, or per sampled frame). Raises NoFaceError (naming the file)
    when a photo has no face, ImageError/VideoError for unreadable inputs.
    """
    t_start = time.perf_counter()
    if method not in METHODS:
        raise BadInputError(f"argument 'method': expected one of {METHODS}, got {method!r}")
    if faces not in ("largest", "all"):
        raise BadInputError(f"argument 'faces': expected 'largest' or 'all', got {faces!r}")
    if fps is not None and not (fps > 0):
        raise BadInputError(f"argument 'fps': must be > 0, got {fps}")
    sdf_device = stage_devices(device)[1]  # also rejects 'cuda' without CUDA before any work
    cfg, rest = fit_options(options)
    check_texture_memory(rest)
    from face3d.models.registry import check_model

    check_model(model)  # an unknown or missing model fails before decoding and detection
    max_side = int(rest.get("max_side", 1024))
    inputs = list(image_or_paths) if isinstance(image_or_paths, (list, tuple)) else [image_or_paths]
    if not inputs:
        raise BadInputError("reconstruct: no input given")
    if len(inputs) == 1 and _is_video(inputs[0]):
        if faces == "all":
            raise BadInputError("reconstruct: faces='all' works on a single photo; a video is fitted to its largest face")
        cfg = fit_options(options, video=True)[0]
        recs = _reconstruct_video(inputs[0], model, device, cfg, rest, fps or 10.0, landmarks, progress, t_start, method,
                                  sdf_device)
        for r in recs:
            r.settings = resolved_settings(options, cfg, rest, method)
        return recs
    if any(_is_video(x) for x in inputs):
        raise BadInputError("reconstruct: give either one video or a list of photos, not both")
    if len(inputs) > 1 and faces == "all":
        raise BadInputError("reconstruct: faces='all' works on a single photo; several photos are one person")

    t0 = time.perf_counter()
    loaded = [_read(x, max_side) for x in inputs]
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    notes: list[str] = []
    found = [_landmarks_for(im, im.name, faces, landmarks, i, notes) for i, im in enumerate(loaded)]
    t_detect = time.perf_counter() - t0
    device = stage_devices(device, len(loaded))[0]
    m = get_model(model, device)
    mc = get_model(model, "cpu")  # texture, detail and the Reconstruction work on CPU tensors

    from face3d.fitting.multiview import fit_multiview
    from face3d.fitting.stages import fit

    out: list[Reconstruction] = []
    if len(loaded) == 1:
        im = loaded[0]
        pix = im.pixels.astype(np.float32) / 255
        for k, lm in enumerate(found[0]):
            tg = FitTarget(lm.points, lm.scheme, im.pixels.shape[1], im.pixels.shape[0], pix, lm.learned68)
            res = fit(m, [tg], cfg, device=device, progress=progress)
            timings = {"load": t_load, "detect": t_detect, **res.timings}
            out.append(_finish(mc, res, 0, im.pixels, im.path, timings, rest, progress, face_index=k))
            if method == "sdf":
                _sdf_all(out[-1:], mc, rest, progress, device=sdf_device)
    else:
        tgs = [FitTarget(lms[0].points, lms[0].scheme, im.pixels.shape[1], im.pixels.shape[0], im.pixels.astype(np.float32) / 255,
                         lms[0].learned68) for im, lms in zip(loaded, found)]
        res = fit_multiview(m, tgs, cfg, device=device, progress=progress)
        timings = {"load": t_load, "detect": t_detect, **res.timings}
        out = [_finish(mc, res, b, im.pixels, im.path, timings, rest, progress) for b, im in enumerate(loaded)]
        if method == "sdf":
            _sdf_all(out, mc, rest, progress, device=sdf_device)
    total = time.perf_counter() - t_start
    for r in out:
        r.timings["total"] = total
        r.notes.extend(notes)
    _note_poor_fits(out, cfg)
    for r in out:
        r.settings = resolved_settings(options, cfg, rest, method)
    return out[0] if (len(out) == 1 and len(inputs) == 1 and faces == "largest") else out


def resolved_settings(options: dict[str, Any], cfg: FitConfig, rest: dict[str, Any], method: str) -> dict[str, Any]:
    """What a reconstruction ran with, for params.json: the preset, every FitConfig field as
    resolved (preset, video defaults and the caller's settings applied), the other options as
    given (JSON-representable ones; others by their repr) and the method."""
    import json

    def plain(v: Any) -> Any:
        try:
            json.dumps(v)
            return v
        except (TypeError, ValueError):
            return repr(v)

    return {"preset": options.get("preset", "default"), "fit": dataclasses.asdict(cfg),
            "options": {k: plain(v) for k, v in sorted(rest.items())}, "method": method}


def _reconstruct_video(path: Any, model: Any, device: str, cfg: FitConfig, rest: dict[str, Any], fps: float, landmarks: Any,
                       progress: Progress | None, t_start: float, method: str = "3dmm", sdf_device: str = "cpu") -> list[Reconstruction]:
    from face3d.fitting.video import fit_video
    from face3d.io.images import read_image
    from face3d.io.video import read_video_frames
    from face3d.landmarks.detector import detect_landmarks

    t0 = time.perf_counter()
    clip = read_video_frames(path, fps=fps)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept, tgs, skipped = [], [], []
    for i, frame in enumerate(clip.frames):
        im = read_image(frame, max_side=int(rest.get("max_side", 1024)))
        try:
            lms = [_user_landmarks(landmarks, i, im.size, f"{path} frame {i}")] if landmarks is not None else \
                detect_landmarks(im, which="largest", path_for_errors=f"{path} (frame {int(clip.indices[i])})")
        except NoFaceError:
            skipped.append(int(clip.indices[i]))
            continue
        kept.append((i, im))
        tgs.append(FitTarget(lms[0].points, lms[0].scheme, im.pixels.shape[1], im.pixels.shape[0], im.pixels.astype(np.float32) / 255,
                             lms[0].learned68))
        if progress:
            progress("detect", i + 1, len(clip.frames))
    if not tgs:
        raise NoFaceError(path, f"no face in any of the {len(clip.frames)} sampled frames")
    t_detect = time.perf_counter() - t0
    device = stage_devices(device, len(tgs))[0]
    m = get_model(model, device)
    mc = get_model(model, "cpu")
    res = fit_video(m, tgs, cfg, device=device, progress=progress)
    timings = {"load": t_load, "detect": t_detect, **res.timings}
    out = []
    for b, (i, im) in enumerate(kept):
        r = _finish(mc, res, b, im.pixels, str(path), timings, rest, progress, frame=int(clip.indices[i]),
                    time_s=float(clip.times[i]), texture=(b == 0))
        if skipped:
            r.notes.append(f"frames without a face were skipped: {skipped}")
        out.append(r)
    if method == "sdf":
        _sdf_all(out, mc, rest, progress, first_only=True, device=sdf_device)
    _note_poor_fits(out, cfg)
    total = time.perf_counter() - t_start
    for r in out:
        r.timings["total"] = total
    return out
