"""``face3d.reconstruct``: photos or a video in, :class:`~face3d.result.Reconstruction` out.

Read top to bottom, the data flows one way (docs/architecture.md): decode and find the faces
(:mod:`face3d.inputs`) → 3DMM fit (:mod:`face3d.fitting`) → per face a :class:`FitStage` →
texture → shape-from-shading detail → implicit SDF (:mod:`face3d.pipeline`, each a frozen value)
→ :meth:`Reconstruction.assemble`, once, at the end. Several photos share one identity; a video
is sampled at ``fps`` and fitted with a shared identity and temporally smooth motion.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from face3d import inputs
from face3d import pipeline as stages
from face3d.fitting.stages import single_thread
from face3d.inputs import check_device, get_model, stage_devices
from face3d.pipeline import FitStage, Origin
from face3d.result import Reconstruction
from face3d.settings import Job, check_texture_memory, fit_options, resolved_settings

if TYPE_CHECKING:
    from face3d.inputs import ModelLike, Source

__all__ = ["check_device", "fit_options", "get_model", "reconstruct", "stage_devices"]


def reconstruct(image_or_paths: Source | Sequence[Source], model: ModelLike = "default", device: str = "auto", method: str = "3dmm",
                faces: str = "largest", landmarks: object = None, fps: float | None = None, progress: stages.Progress | None = None,
                **options: Any) -> Reconstruction | list[Reconstruction]:
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
    sources = cast("list[Source]", list(image_or_paths) if isinstance(image_or_paths, (list, tuple)) else [image_or_paths])
    inputs.check_arguments(sources, method, faces, fps)
    sdf_device = stage_devices(device)[1]  # also rejects 'cuda' without CUDA before any work
    video = len(sources) == 1 and inputs.is_video(sources[0])
    cfg, rest = fit_options(options, video=video)
    check_texture_memory(rest)
    from face3d.models.registry import check_model

    check_model(model)  # an unknown or missing model fails before decoding and detection
    job = Job(cfg, rest, method, sdf_device, progress)
    if video:
        fits, notes = _fit_video(cast("str | os.PathLike[str]", sources[0]), model, device, job, fps or 10.0, landmarks), []
        products = [_products(job, fits, video=True)]
    else:
        photos = inputs.read_photos(sources, faces, landmarks, int(rest.get("max_side", 1024)))
        fits, products, notes = [], [], photos.notes
        for group in _fit_photos(photos, model, device, job):  # per face (faces='all') or all photos together
            fits += group
            products.append(_products(job, group))
    total = time.perf_counter() - t_start
    settings = resolved_settings(options, cfg, rest, method)
    made = [s for group in products for s in group]
    out = [Reconstruction.assemble(fit, tex, det, sdf, settings=settings, notes=notes + stages.poor_fit_notes(fit, cfg), total=total)
           for fit, (tex, det, sdf) in zip(fits, made)]
    return out[0] if (len(out) == 1 and len(sources) == 1 and faces == "largest" and not video) else out


def _fit_photos(photos: inputs.Photos, model: ModelLike, device: str, job: Job) -> Iterator[list[FitStage]]:
    """One fit per face of a single photo, or one joint fit (shared identity) of several photos."""
    from face3d.fitting.multiview import fit_multiview
    from face3d.fitting.stages import fit

    device = stage_devices(device, len(photos.images))[0]
    m, mc = get_model(model, device), get_model(model, "cpu")  # the stages work on CPU tensors
    seen = {"load": photos.load, "detect": photos.detect}
    if len(photos.images) == 1:
        im = photos.images[0]
        for k, lm in enumerate(photos.faces[0]):
            res = fit(m, [inputs.target(lm, im)], job.cfg, device=device, progress=job.progress)
            yield [FitStage.from_fit(mc, res, 0, Origin(im.pixels, im.path, face_index=k), {**seen, **res.timings})]
        return
    res = fit_multiview(m, [inputs.target(lms[0], im) for im, lms in zip(photos.images, photos.faces)], job.cfg, device=device,
                        progress=job.progress)
    yield [FitStage.from_fit(mc, res, b, Origin(im.pixels, im.path), {**seen, **res.timings}) for b, im in enumerate(photos.images)]


def _fit_video(path: str | os.PathLike[str], model: ModelLike, device: str, job: Job, fps: float, landmarks: object) -> list[FitStage]:
    """The sampled frames with a face, fitted together (:func:`face3d.fitting.video.fit_video`)."""
    from face3d.fitting.video import fit_video

    frames = inputs.read_frames(path, fps, landmarks, int(job.rest.get("max_side", 1024)), job.progress)
    device = stage_devices(device, len(frames.targets))[0]
    res = fit_video(get_model(model, device), frames.targets, job.cfg, device=device, progress=job.progress)
    mc = get_model(model, "cpu")
    seen = {"load": frames.load, "detect": frames.detect, **res.timings}
    notes = (f"frames without a face were skipped: {frames.skipped}",) if frames.skipped else ()
    return [FitStage.from_fit(mc, res, b, Origin(im.pixels, str(path), i, t, notes=notes), seen)
            for b, (im, i, t) in enumerate(zip(frames.images, frames.indices, frames.times))]


Products = tuple[stages.TextureStage | None, stages.DetailStage | None, stages.SdfStage | None]


def _products(job: Job, fits: list[FitStage], video: bool = False) -> list[Products]:
    """Texture and detail of each fit (a video's first frame only), then the SDF of each textured
    one (method 'sdf'), the group's other photos or frames serving as its real views."""
    out: list[Products] = []
    with single_thread(1):
        for b, fit in enumerate(fits):
            tex = det = None
            if job.rest.get("texture", True) and fit.model.uvs is not None and (b == 0 or not video):
                tex = stages.texture_stage(fit, job.texture_resolution)
                job.report("texture")
                if job.rest.get("detail", True):
                    det = stages.detail_stage(fit, tex, job.detail_resolution)
                    job.report("detail")
            out.append((tex, det, None))
        for b, (fit, (tex, det, _)) in enumerate(zip(fits, list(out))):
            if job.method == "sdf" and tex is not None and (b == 0 or not video):
                others = [o for c, o in enumerate(fits) if c != b and o.image is not None]
                out[b] = (tex, det, stages.sdf_stage(fit, tex, others, job.sdf, job.sdf_device, job.progress))
    return out
