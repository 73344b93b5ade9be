"""Face detection + MediaPipe's 478-point face landmarks (offline: the models ship in the wheel).

Pipeline per image (mediapipe 0.10.14 legacy "solutions" API):

1. BlazeFace full-range detector (``face_detection``, model_selection=1) finds face boxes in
   the whole image and, for large images, in overlapping tiles (small faces); the short-range
   model is tried when it finds none;
2. around each box a square crop (``CROP_FACTOR`` x the box side) is resampled to
   ``CROP_SIZE`` px, so that small faces in large photos are seen at the landmarker's scale;
3. FaceMesh (static image mode, ``refine_landmarks=True``: 468 mesh points + 10 iris points,
   Kartynnik et al. 2019, Grishchenko et al. 2020) runs on the crop with its own short-range
   detector — a second, independent confirmation that the box holds a face — and the mesh
   nearest the crop centre is mapped back to image pixels; when it finds none (mostly profiles,
   whose box sits off the head), larger, smaller, shifted and mirrored crops are tried in turn
   (``RETRY_CROPS``; a mirrored crop's points are renumbered by :mod:`face3d.landmarks.mirror`);
4. duplicates (landmark boxes overlapping with IoU > 0.5) are merged; faces are sorted largest
   first. If the detector finds nothing, FaceMesh is run on the whole image as a fallback.

Coordinates (docs/conventions.md): pixels of the given image, x right, y down, origin at the
top-left corner. ``z`` is MediaPipe's relative depth scaled like x (pixels; smaller = nearer
the camera), with an arbitrary origin near the face centre.

One FaceMesh/FaceDetection instance per configuration is cached per process (they hold the
TFLite interpreters); calls are serialised with a lock since the graphs are not re-entrant.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import numpy as np

from face3d.errors import BadInputError, ImageError, MissingDependencyError, NoFaceError

N_MEDIAPIPE = 478
CROP_FACTOR = 2.0
CROP_SIZE = 384
#: Crops tried when FaceMesh finds no face in the first: (scale of CROP_FACTOR, shift along x in
#: box widths, mirrored left-right), a fixed grid in order of how far it strays from the first crop.
#: Each try costs one FaceMesh run (~15 ms) and only happens after a miss.
RETRY_CROPS: tuple[tuple[float, float, bool], ...] = tuple(
    (scale, shift, mirrored) for scale in (1.0, 1.3, 0.8, 1.7) for shift in (0.0, -0.2, 0.2) for mirrored in (True, False)
    if (scale, shift, mirrored) != (1.0, 0.0, False))
MIN_FACE_PX = 64
DETECTION_THRESHOLD = 0.5
TILE = 512
TILE_STRIDE = 384
TILE_TRIGGER = 640

# Indices into MediaPipe's 478 landmarks used for summary measures (image-left/right as seen).
MP_EYE_OUTER = (33, 263)  # outer eye corners: subject's right, subject's left
MP_EYE_INNER = (133, 362)
MP_IRIS_CENTRES = (468, 473)  # subject's right, subject's left (refined landmarks)
MP_NOSE_TIP = 1


@dataclass
class FaceLandmarks:
    """Landmarks of one face in an image.

    points: (N, 3) float32 pixels (x right, y down; z MediaPipe's relative depth in pixel units,
    or 0 for user landmarks without depth). scheme: 'mediapipe478' or 'ibug68'.
    bbox: (x0, y0, x1, y1) float pixels, the box of the points. score: detector confidence in
    [0, 1] (0.0 when the face was found only by the landmarker fallback; 1.0 for user input).
    image_size: (H, W) of the image the points refer to. learned68: (68, 3) or None, the learned
    regressor's 68 points (x, y px; 3D convention: fixed jaw points) and each one's predicted
    standard deviation (px) — :mod:`face3d.landmarks.regressor`, when its weights are installed.
    source: 'mediapipe', 'regressor' (MediaPipe found no landmarks in the detector's box; the
    points are the regressor's, scheme 'ibug68') or 'user'.
    """

    points: np.ndarray
    scheme: str = "mediapipe478"
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    score: float = 1.0
    image_size: tuple[int, int] = (0, 0)
    source: str = "mediapipe"
    extra: dict[str, Any] = field(default_factory=dict)
    learned68: np.ndarray | None = None

    @property
    def size(self) -> float:
        """sqrt(w * h) of ``bbox`` in pixels (the 3DDFA NME normaliser)."""
        x0, y0, x1, y1 = self.bbox
        return float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))

    @property
    def interocular(self) -> float:
        """Distance between the outer eye corners in pixels (2D)."""
        if self.scheme == "mediapipe478":
            a, b = MP_EYE_OUTER
        else:
            a, b = 36, 45
        return float(np.linalg.norm(self.points[a, :2] - self.points[b, :2]))

    def ibug68(self) -> np.ndarray:
        """The iBUG-68 landmarks (68, 3) (mapped from MediaPipe's 478 through the shipped table)."""
        if self.scheme == "ibug68":
            return self.points.copy()
        from face3d.landmarks.mapping import mediapipe_to_ibug68

        return mediapipe_to_ibug68(self.points)


def points_bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of points (N, 2+)."""
    p = np.asarray(points, dtype=np.float64)
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


_LOCK = threading.Lock()
_CACHE: dict[tuple[str, int], Any] = {}
_WARMED: set[int] = set()


@contextlib.contextmanager
def _quiet_native_logs() -> Iterator[None]:
    """Silence TFLite/absl start-up chatter written by C++ straight to fd 2 (graph creation and
    first inference only) and protobuf's deprecation warning; Python exceptions still propagate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _process(graph: Any, rgb: np.ndarray) -> Any:
    """``graph.process(rgb)``, quiet on the graph's first call."""
    if id(graph) in _WARMED:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
            return graph.process(rgb)
    with _quiet_native_logs():
        out = graph.process(rgb)
    _WARMED.add(id(graph))
    return out


class _Deferred(types.ModuleType):
    """A MediaPipe module imported but not run until one of its names is used (then it runs in place)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self.__class__ = types.ModuleType
        self.__spec__.loader.exec_module(self)  # type: ignore[union-attr]
        return getattr(self, name)


#: MediaPipe's drawing helpers: ``import mediapipe`` runs them, and they import matplotlib.pyplot and
#: OpenCV (~0.5 s of the CLI's start-up), which face3d never uses. They stay importable and work on first use.
DEFERRED_MEDIAPIPE = ("drawing_utils", "drawing_styles")


def _defer_drawing_modules() -> list[tuple[str, types.ModuleType]]:
    """Put :class:`_Deferred` stand-ins for :data:`DEFERRED_MEDIAPIPE` in ``sys.modules`` before
    mediapipe is first imported (nothing when it was imported already or its layout differs)."""
    import importlib.util

    if "mediapipe" in sys.modules:
        return []
    top = importlib.util.find_spec("mediapipe")
    if top is None or not top.submodule_search_locations:
        return []
    out = []
    for short in DEFERRED_MEDIAPIPE:
        name = f"mediapipe.python.solutions.{short}"
        path = os.path.join(list(top.submodule_search_locations)[0], "python", "solutions", f"{short}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        if name in sys.modules or spec is None or not os.path.isfile(path):
            continue
        module = importlib.util.module_from_spec(spec)
        module.__class__ = _Deferred
        sys.modules[name] = module
        out.append((short, module))
    return out


def _solutions() -> Any:
    deferred = _defer_drawing_modules()
    try:
        from mediapipe.python import solutions
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
        raise MissingDependencyError("mediapipe", "landmarks", "face landmark detection") from exc
    for short, module in deferred:
        setattr(solutions, short, module)  # ``mp.solutions.drawing_utils`` as after a plain import
    return face_detection, face_mesh


def _face_mesh(max_faces: int) -> Any:
    key = ("mesh", max_faces)
    if key not in _CACHE:
        _, face_mesh = _solutions()
        with _quiet_native_logs():
            _CACHE[key] = _settled(face_mesh.FaceMesh(
                static_image_mode=True, refine_landmarks=True, max_num_faces=max_faces, min_detection_confidence=0.5
            ))
    return _CACHE[key]


def _face_detector(model_selection: int) -> Any:
    """BlazeFace: model_selection 1 = full range (small faces), 0 = short range (faces filling the frame)."""
    key = ("detect", model_selection)
    if key not in _CACHE:
        face_detection, _ = _solutions()
        with _quiet_native_logs():
            _CACHE[key] = _settled(face_detection.FaceDetection(
                model_selection=model_selection, min_detection_confidence=DETECTION_THRESHOLD
            ))
    return _CACHE[key]


def _settled(solution: Any) -> Any:
    """``solution`` once its graph is idle: MediaPipe opens the calculators (TFLite interpreters, the
    XNNPACK delegate and their log lines) in its own threads after the constructor returns, so
    without the wait those lines could reach fd 2 after :func:`_quiet_native_logs` restored it."""
    graph = getattr(solution, "_graph", None)
    if graph is not None and hasattr(graph, "wait_until_idle"):
        graph.wait_until_idle()
    return solution


def _mesh_points(result: Any, w: int, h: int) -> list[np.ndarray]:
    out = []
    for lms in result.multi_face_landmarks or []:
        a = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float64)
        a[:, 0] *= w
        a[:, 1] *= h
        a[:, 2] *= w
        out.append(a)
    return out


def _detect_in(rgb: np.ndarray, model_selection: int, x0: int = 0, y0: int = 0) -> list[tuple[tuple[float, float, float, float], float]]:
    h, w = rgb.shape[:2]
    res = _process(_face_detector(model_selection), np.ascontiguousarray(rgb))
    boxes = []
    for d in res.detections or []:
        rb = d.location_data.relative_bounding_box
        box = (x0 + rb.xmin * w, y0 + rb.ymin * h, x0 + (rb.xmin + rb.width) * w, y0 + (rb.ymin + rb.height) * h)
        boxes.append((box, float(d.score[0])))
    return boxes


def _tiles(n: int) -> list[int]:
    if n <= TILE:
        return [0]
    starts = list(range(0, n - TILE, TILE_STRIDE))
    return starts + [n - TILE]


def _detect_boxes(rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
    """Face boxes (x0, y0, x1, y1) px with scores, best first, overlapping boxes suppressed.

    The detector sees its input at 192 px, so images larger than ``TILE_TRIGGER`` are also
    scanned in overlapping ``TILE``-px tiles to find faces down to ~``MIN_FACE_PX``.
    """
    h, w = rgb.shape[:2]
    boxes = _detect_in(rgb, 1)
    if max(h, w) > TILE_TRIGGER:
        for ty in _tiles(h):
            for tx in _tiles(w):
                boxes += _detect_in(rgb[ty : ty + TILE, tx : tx + TILE], 1, tx, ty)
    if not boxes:
        boxes = _detect_in(rgb, 0)
    kept: list[tuple[tuple[float, float, float, float], float]] = []
    for box, score in sorted(boxes, key=lambda bs: -bs[1]):
        if all(box_iou(box, k[0]) < 0.3 for k in kept):
            kept.append((box, score))
    return kept


def _crop(rgb: np.ndarray, box: tuple[float, float, float, float], factor: float = CROP_FACTOR) -> tuple[np.ndarray, float, float, float]:
    """Square crop (``factor`` x the box side) around box, resampled to CROP_SIZE: (crop, x0, y0, s)
    with image = x0 + crop / s."""
    from PIL import Image

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = factor * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = cx - side / 2, cy - side / 2
    s = CROP_SIZE / side
    img = Image.fromarray(rgb)
    # affine map output pixel (u, v) -> input (x0 + u / s, y0 + v / s); outside is black.
    crop = img.transform(
        (CROP_SIZE, CROP_SIZE), Image.Transform.AFFINE, (1 / s, 0, x0, 0, 1 / s, y0), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(crop), x0, y0, s


def _landmarks_in_box(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """FaceMesh's 478 points (image px) in the crop around ``box``; when it finds no face there
    (mostly profiles: the detector's box sits off the head), the crops of :data:`RETRY_CROPS` in turn."""
    for scale, shift, mirrored in ((1.0, 0.0, False),) + RETRY_CROPS:
        dx = shift * (box[2] - box[0])
        pts = _mesh_in_crop(rgb, (box[0] + dx, box[1], box[2] + dx, box[3]), CROP_FACTOR * scale, mirrored)
        if pts is not None:
            return pts
    return None


def _mesh_in_crop(rgb: np.ndarray, box: tuple[float, float, float, float], factor: float, mirrored: bool) -> np.ndarray | None:
    crop, x0, y0, s = _crop(rgb, box, factor)
    if mirrored:
        crop = np.ascontiguousarray(crop[:, ::-1])
    meshes = _mesh_points(_process(_face_mesh(2), crop), CROP_SIZE, CROP_SIZE)
    if not meshes:
        return None
    if mirrored:
        from face3d.landmarks.mirror import unmirror

        meshes = [unmirror(m, CROP_SIZE).astype(m.dtype) for m in meshes]
    centre = CROP_SIZE / 2
    best = min(meshes, key=lambda m: float(np.hypot(*(m[:, :2].mean(0) - centre))))
    pts = best.copy()
    pts[:, 0] = x0 + pts[:, 0] / s
    pts[:, 1] = y0 + pts[:, 1] / s
    pts[:, 2] = pts[:, 2] / s
    return pts


#: Re-crops of the learned regressor around its own previous answer (face3d.landmarks.regressor).
LEARNED_REFINE = 1
#: A detector box (BlazeFace: brows to chin, ear to ear) → the regressor's first crop: the box's
#: centre moved down by this fraction of its side, side × LEARNED_BOX_SCALE.
LEARNED_BOX_SHIFT, LEARNED_BOX_SCALE = 0.05, 1.0


def _face_px(face: FaceLandmarks) -> float:
    """A face's size for the minimum-size test: sqrt(w·h) of its landmark box, or of the learned
    68 points' box when larger (a profile's MediaPipe points cover only the near half)."""
    if face.learned68 is None:
        return face.size
    x0, y0, x1, y1 = points_bbox(face.learned68)
    return max(face.size, float(np.sqrt((x1 - x0) * (y1 - y0))))


def _warm_regressor() -> Any:
    """A future of :func:`face3d.landmarks.regressor.shipped_regressor`. Its first load also runs the network once on a blank
    crop (oneDNN's set-up, ~0.1 s) in a worker thread, so that both overlap MediaPipe's detection;
    once loaded, a finished future."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from face3d.landmarks import regressor as R

    if R._SHIPPED:
        done: Future[Any] = Future()
        done.set_result(R._SHIPPED[0])
        return done

    def load() -> Any:
        reg = R.shipped_regressor()
        if reg is not None:
            reg.predict_crops(np.zeros((1, reg.input_size, reg.input_size, 3), np.uint8), mirror=True)
        return reg

    pool = ThreadPoolExecutor(1, thread_name_prefix="face3d-regressor")
    try:
        return pool.submit(load)
    finally:
        pool.shutdown(wait=False)


def _learned_crop(box: tuple[float, float, float, float]) -> np.ndarray:
    """The regressor's first face box (x0, y0, x1, y1) from a BlazeFace ``box``. Also where
    MediaPipe read the face: on development profiles (yaw 60–90°) the regressor read from this box
    gives 5.8 % NME against 9.7 % from MediaPipe's points, which cover half a profile; 5.2 against
    5.3 % below 45° (benchmarks/README.md)."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * LEARNED_BOX_SCALE
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + LEARNED_BOX_SHIFT * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _regressor_face(reg: Any, rgb: np.ndarray, box: tuple[float, float, float, float], score: float) -> FaceLandmarks | None:
    """The regressor's 68 points in a detector ``box`` MediaPipe's landmarker could not read."""
    r = reg.predict(rgb, _learned_crop(box), refine=2)
    pts = np.concatenate([r.landmarks, np.zeros((68, 1))], 1).astype(np.float32)
    h, w = rgb.shape[:2]
    return FaceLandmarks(pts, "ibug68", points_bbox(pts), score, (h, w), source="regressor",
                         learned68=np.concatenate([r.landmarks, r.sigma[:, None]], 1).astype(np.float32))


def _read_box(rgb: np.ndarray, box: tuple[float, float, float, float], score: float, warm: Any) -> FaceLandmarks | None:
    """The face in a detector ``box``: FaceMesh's 478 points (with the retry crops), else the learned
    regressor's 68 points (``warm``: a future of the regressor, or None); None when neither reads it."""
    pts = _landmarks_in_box(rgb, box)
    if pts is not None:
        h, w = rgb.shape[:2]
        return FaceLandmarks(pts.astype(np.float32), "mediapipe478", points_bbox(pts), score, (h, w))
    reg = warm.result() if warm is not None else None
    return _regressor_face(reg, rgb, box, score) if reg is not None else None


def _add_face(faces: list[FaceLandmarks], boxes: list[Any], face: FaceLandmarks | None, box: tuple[float, float, float, float]) -> bool:
    """Append ``face`` and its detector ``box`` unless it overlaps a face already found (IoU > 0.5);
    False when ``face`` is None (no landmarks in the box)."""
    if face is None:
        return False
    if not any(box_iou(face.bbox, f.bbox) > 0.5 for f in faces):
        faces.append(face)
        boxes.append(box)
    return True


def _as_rgb(image: Any, path_for_errors: str | None) -> tuple[np.ndarray, str, str]:
    """(pixels, name for errors, size for errors: the file's own 'W x H px', plus the decoded size when smaller)."""
    from face3d.io.images import LoadedImage, read_image

    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        return np.ascontiguousarray(image), path_for_errors or "<array>", f"image {image.shape[1]}x{image.shape[0]} px"
    loaded = image if isinstance(image, LoadedImage) else read_image(image)
    (h, w), (oh, ow) = loaded.size, loaded.original_size
    size = f"image {ow}x{oh} px" + (f", searched at {w}x{h}" if (h, w) != (oh, ow) else "")
    return loaded.pixels, path_for_errors or loaded.name, size


def detect_landmarks(
    image: Any,
    max_faces: int = 8,
    which: Literal["largest", "all"] = "largest",
    path_for_errors: str | None = None,
    min_face_px: float = MIN_FACE_PX,
    notes: list[str] | None = None,
    learned: bool = True,
    search: bool = True,
) -> list[FaceLandmarks]:
    """Detect faces and their 478 MediaPipe landmarks.

    image: (H, W, 3) uint8 RGB array, a :class:`~face3d.io.images.LoadedImage`, or anything
    :func:`~face3d.io.images.read_image` accepts (a path is read with its defaults, i.e. downscaled
    to a 2048-px long side: points then refer to the loaded pixels; use ``LoadedImage.to_original``).
    which='largest' returns one face, 'all' up to ``max_faces``, largest first (by sqrt(w*h)
    of the landmark box). Faces smaller than ``min_face_px`` (landmark box, sqrt(w*h)) are
    dropped; if faces were found but all are too small, :class:`ImageError` says so. No face:
    :class:`NoFaceError`. Error messages name ``path_for_errors`` (or the image's path). With
    which='all', ``notes`` (when given) receives a line saying how many detected faces were left out, and why.
    ``learned`` (default): also read each face with the learned 68-point regressor
    (:attr:`FaceLandmarks.learned68`) when its weights are installed, and keep a detected face
    whose box MediaPipe's landmarker cannot read (profiles) as the regressor's 68 points.
    ``search`` (default): when neither detector nor FaceMesh on the whole image finds a face, run
    the window search of :mod:`face3d.landmarks.search` (it needs the regressor: only with
    ``learned``) and read its faces the same way (``extra['search']``: the hit's BlazeFace score,
    votes and consistency error).
    """
    if which not in ("largest", "all"):
        raise BadInputError(f"argument 'which': expected 'largest' or 'all', got {which!r}")
    if max_faces < 1:
        raise BadInputError(f"argument 'max_faces': must be >= 1, got {max_faces}")
    rgb, name, size_text = _as_rgb(image, path_for_errors)
    h, w = rgb.shape[:2]
    faces: list[FaceLandmarks] = []
    no_mesh = 0
    warm = _warm_regressor() if learned else None  # loads and warms on another core while MediaPipe runs
    boxes: list[tuple[float, float, float, float] | None] = []  # the detector box of faces[i] (None: none)
    with _LOCK:
        for box, score in _detect_boxes(rgb):
            no_mesh += not _add_face(faces, boxes, _read_box(rgb, box, score, warm), box)
        if not faces:
            for pts in _mesh_points(_process(_face_mesh(max_faces), rgb), w, h):
                faces.append(FaceLandmarks(pts.astype(np.float32), "mediapipe478", points_bbox(pts), 0.0, (h, w)))
                boxes.append(None)
        reg = warm.result() if warm is not None and not faces and search else None
        if reg is not None:  # the search needs the regressor's faceness test
            from face3d.landmarks.search import search_faces

            for hit in search_faces(rgb, reg):
                face = _read_box(rgb, hit.box, hit.score, warm)
                if face is not None:
                    face.extra["search"] = {"score": hit.score, "votes": hit.votes, "error": hit.error}
                no_mesh += not _add_face(faces, boxes, face, hit.box)
    reg = warm.result() if warm is not None else None
    if reg is not None:
        for f, box in zip(faces, boxes):
            if f.learned68 is None:
                r = reg.predict(rgb, _learned_crop(box) if box is not None else f.ibug68()[:, :2], refine=LEARNED_REFINE)
                f.learned68 = np.concatenate([r.landmarks, r.sigma[:, None]], 1).astype(np.float32)
    if not faces:
        raise NoFaceError(name, size_text)
    faces.sort(key=lambda f: -_face_px(f))
    big = [f for f in faces if _face_px(f) >= min_face_px]
    if not big:
        raise ImageError(
            name, f"face too small: the largest face found is {_face_px(faces[0]):.0f} px (sqrt of its box area); "
            f"at least {min_face_px:.0f} px is needed"
        )
    if which == "largest":
        return big[:1]
    why = [f"{n} {text}" for n, text in ((no_mesh, "without landmarks (turned away, occluded or blurred)"),
                                         (len(faces) - len(big), f"smaller than {min_face_px:.0f} px"),
                                         (len(big) - max_faces, f"beyond the first {max_faces} (max_faces)")) if n > 0]
    if why and notes is not None:
        notes.append(f"{name}: {len(big[:max_faces])} face(s) reconstructed; detected faces left out: {', '.join(why)}")
    return big[:max_faces]

