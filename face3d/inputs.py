"""``reconstruct``'s inputs: photos and videos, the model and devices, the landmarks of each face
(detected, or the user's, checked against a detection)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import torch

from face3d.errors import BadInputError

if TYPE_CHECKING:
    from typing import TypeAlias

    import PIL.Image

    from face3d.fitting.stages import FitTarget
    from face3d.io.images import LoadedImage
    from face3d.landmarks.detector import FaceLandmarks
    from face3d.models.model import MorphableModel

    Source: TypeAlias = str | os.PathLike[str] | np.ndarray | PIL.Image.Image | LoadedImage
    """One photo (a path, an (H, W, 3) array, a PIL image, a LoadedImage) or a video path."""
    ModelLike: TypeAlias = MorphableModel | str | os.PathLike[str]
    """A model instance, a model name ('default', 'basic', 'ict', ...) or a model file path."""

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
METHODS = ("3dmm", "sdf")


@lru_cache(maxsize=4)
def _load_model_cached(name: str, device: str) -> MorphableModel:
    from face3d.models import load_model

    opts = {"parts": "face"} if name == "ict" else {}
    return load_model(name, **opts).to(device)


def get_model(model: ModelLike, device: str = "cpu") -> MorphableModel:
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


def check_device(device: object) -> str:
    """``device`` if it is 'auto', 'cpu', 'cuda' or 'cuda:N' usable here; else BadInputError."""
    if device == "auto":
        return "auto"
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
    return str(device)


def is_video(x: object) -> bool:
    """True for a path with a video suffix (:data:`VIDEO_SUFFIXES`)."""
    return isinstance(x, (str, os.PathLike)) and Path(x).suffix.lower() in VIDEO_SUFFIXES


def user_landmarks(landmarks: object, index: int, image_size: tuple[int, int], name: str) -> FaceLandmarks:
    """The user's landmarks for image ``index`` (one for all, or a list per image): a FaceLandmarks,
    a 68/478-point file, or a (68|478, 2|3) array in pixels."""
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


def landmarks_for(image: LoadedImage, name: str, faces: str, landmarks: object, index: int, notes: list[str]) -> list[FaceLandmarks]:
    """The faces of ``image``: the user's landmarks (checked against a detection, a mismatch noted
    in ``notes``) or the detected faces ('largest' or 'all')."""
    from face3d.landmarks.detector import detect_landmarks

    if landmarks is not None:
        given = user_landmarks(landmarks, index, image.size, name)
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


def check_user_landmarks(image: LoadedImage, given: FaceLandmarks, name: str) -> str | None:
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


def check_arguments(inputs: list[Source], method: str, faces: str, fps: float | None) -> None:
    """BadInputError for ``reconstruct`` arguments that cannot work together (before any work)."""
    if method not in METHODS:
        raise BadInputError(f"argument 'method': expected one of {METHODS}, got {method!r}")
    if faces not in ("largest", "all"):
        raise BadInputError(f"argument 'faces': expected 'largest' or 'all', got {faces!r}")
    if fps is not None and not (fps > 0):
        raise BadInputError(f"argument 'fps': must be > 0, got {fps}")
    if not inputs:
        raise BadInputError("reconstruct: no input given")
    if len(inputs) == 1 and is_video(inputs[0]):
        if faces == "all":
            raise BadInputError("reconstruct: faces='all' works on a single photo; a video is fitted to its largest face")
        return
    if any(is_video(x) for x in inputs):
        raise BadInputError("reconstruct: give either one video or a list of photos, not both")
    if len(inputs) > 1 and faces == "all":
        raise BadInputError("reconstruct: faces='all' works on a single photo; several photos are one person")


@dataclass(frozen=True)
class Photos:
    """Decoded photos and the landmarks of their faces: images, faces[i] one FaceLandmarks per face
    of image i, notes about the landmarks, seconds spent decoding (load) and detecting (detect)."""

    images: list[LoadedImage]
    faces: list[list[FaceLandmarks]]
    notes: list[str]
    load: float
    detect: float


def target(landmarks: FaceLandmarks, image: LoadedImage) -> FitTarget:
    """What the fit needs of one face: its landmarks and the photo (H, W, 3) float32 in [0, 1]."""
    from face3d.fitting.stages import FitTarget

    px = image.pixels
    return FitTarget(landmarks.points, landmarks.scheme, px.shape[1], px.shape[0], px.astype(np.float32) / 255, landmarks.learned68)


def read_photos(inputs: list[Source], faces: str, landmarks: object, max_side: int) -> Photos:
    """Decode each photo (downscaled to ``max_side``) and find its faces (or take the user's landmarks)."""
    from face3d.io.images import read_image

    t0 = time.perf_counter()
    loaded = [read_image(x, max_side=max_side) for x in inputs]
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    notes: list[str] = []
    found = [landmarks_for(im, im.name, faces, landmarks, i, notes) for i, im in enumerate(loaded)]
    return Photos(loaded, found, notes, t_load, time.perf_counter() - t0)


@dataclass(frozen=True)
class Frames:
    """A video's sampled frames with a face: images, their frame indices and times (seconds), the
    fit targets, the indices of frames skipped (no face), seconds spent decoding and detecting."""

    images: list[LoadedImage]
    indices: list[int]
    times: list[float]
    targets: list[FitTarget]
    skipped: list[int]
    load: float
    detect: float


def read_frames(path: str | os.PathLike[str], fps: float, landmarks: object, max_side: int,
                progress: Callable[[str, int, int], None] | None = None) -> Frames:
    """Sample a video at ``fps`` and find the largest face in each frame (frames without one are skipped;
    no window search per frame)."""
    from face3d.errors import NoFaceError
    from face3d.io.images import read_image
    from face3d.io.video import read_video_frames
    from face3d.landmarks.detector import detect_landmarks

    t0 = time.perf_counter()
    clip = read_video_frames(path, fps=fps)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    images, indices, times, tgs, skipped = [], [], [], [], []
    for i, frame in enumerate(clip.frames):
        im = read_image(frame, max_side=max_side)
        try:
            lms = [user_landmarks(landmarks, i, im.size, f"{path} frame {i}")] if landmarks is not None else \
                detect_landmarks(im, which="largest", path_for_errors=f"{path} (frame {int(clip.indices[i])})", search=False)
        except NoFaceError:
            skipped.append(int(clip.indices[i]))
            continue
        images.append(im)
        indices.append(int(clip.indices[i]))
        times.append(float(clip.times[i]))
        tgs.append(target(lms[0], im))
        if progress:
            progress("detect", i + 1, len(clip.frames))
    if not tgs:
        raise NoFaceError(path, f"no face in any of the {len(clip.frames)} sampled frames")
    return Frames(images, indices, times, tgs, skipped, t_load, time.perf_counter() - t0)
