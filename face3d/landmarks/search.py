"""A fallback face search for photos in which nothing else finds a face (issue 24).

:func:`face3d.landmarks.detector.detect_landmarks` runs BlazeFace on the whole image (full range,
then short range) and, when that finds nothing, FaceMesh on the whole image. A face that fills a
large part of the photo but is seen in profile can escape all three: on AFLW2000-3D's image02960
(a grey-scale profile under a turban, 450 px) no BlazeFace anchor scores even 0.01 on the whole
image, yet the short-range model scores the face 0.57 in a window where it fills ~60 % of the frame.

**Candidates.** :func:`search_hits` runs the short-range BlazeFace (its 128-px input suits faces
that fill most of the frame) over a small multi-scale grid of square windows (:data:`SEARCH_FRACS`
of the image's short side, stride half a window), each also mirrored left-right, and merges the
hits. Many windows mean many chances for a false hit: on the face-free calibration images more than
half get one (a motorcycle's headlight scores 0.83).

**Faceness.** :func:`consistency_error` asks the learned 68-point regressor
(:mod:`face3d.landmarks.regressor`) whether it agrees with itself on the candidate: the geometric
mean of its median predicted σ, the mean distance between its direct and mirrored readings, and
the mean move of its points when read again from the crop around its first answer, each relative
to the face's size. Faces give small values (median 0.02 on synthetic faces), clutter large ones
(median 0.2). :func:`search_faces` keeps the hits with an error of at most :data:`FACENESS_MAX`.
The threshold was set on data allowed for it, never on AFLW2000 (``benchmarks/face_search.py
--calibrate``): synthetic faces of ``face3d.synth`` as positives; as negatives scikit-image's
sample photos without people, crops of the shared photos clear of their faces, noise and blank
images. It lies below every face-free calibration image's best candidate.

Cost: two BlazeFace runs per window (29 windows on a square photo) plus four regressor forwards
per candidate: 191 ms of one CPU thread per image (median; 0.4 s at most on images up to 512 px,
benchmarks/README.md). It runs only when everything else found no face.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Window sides as fractions of the image's shorter side; the stride is half a window.
SEARCH_FRACS: tuple[float, ...] = (0.8, 0.6, 0.45)
#: Windows are resampled to this many px before the detector (which resizes to 128 itself).
SEARCH_PX = 256
#: Hits overlapping by more than this IoU are one candidate.
MERGE_IOU = 0.3
#: A candidate is a face when its :func:`consistency_error` is at most this (module docstring).
FACENESS_MAX = 0.025


@dataclass(frozen=True)
class SearchHit:
    """One candidate of the window search.

    box: (x0, y0, x1, y1) image px, BlazeFace's box in the best-scoring window (brows to chin);
    score: that window's BlazeFace score in [0, 1]; votes: how many (window, mirrored) runs
    reported a hit merged into this one; window: (x0, y0, side) px of the best window;
    keypoints: (6, 2) image px, BlazeFace's eye, eye, nose tip, mouth centre, ear, ear (the eyes
    in either order); error: :func:`consistency_error` (nan until :func:`search_faces` sets it).
    """

    box: tuple[float, float, float, float]
    score: float
    votes: int
    window: tuple[float, float, float]
    keypoints: np.ndarray
    error: float = float("nan")


def search_windows(height: int, width: int, fracs: tuple[float, ...] = SEARCH_FRACS) -> list[tuple[float, float, float]]:
    """Square windows (x0, y0, side) px covering an image of ``height`` x ``width`` px: per fraction
    f of ``fracs``, side f · min(H, W), a grid at stride side / 2 whose last row and column touch
    the image's far edges."""
    short = min(height, width)
    out = []
    for f in fracs:
        side = f * short
        starts = []
        for n in (width, height):
            s = [float(v) for v in np.arange(0.0, n - side + 1e-6, side / 2)]
            if s[-1] < n - side - 1:
                s.append(n - side)
            starts.append(s)
        out += [(x, y, float(side)) for y in starts[1] for x in starts[0]]
    return out


_Hit = tuple[tuple[float, float, float, float], float, np.ndarray]


def _window_hits(rgb: np.ndarray, window: tuple[float, float, float]) -> list[_Hit]:
    """BlazeFace short-range hits (box image px, score, keypoints (6, 2) image px) in one window,
    read as is and mirrored."""
    from PIL import Image

    from face3d.landmarks.detector import _face_detector, _process

    x, y, side = window
    crop = np.asarray(Image.fromarray(rgb).transform((SEARCH_PX, SEARCH_PX), Image.Transform.EXTENT, (x, y, x + side, y + side),
                                                      Image.Resampling.BILINEAR))
    out = []
    for mirrored in (False, True):
        img = np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop
        for d in _process(_face_detector(0), img).detections or []:
            rb = d.location_data.relative_bounding_box
            u0, u1 = (1 - rb.xmin - rb.width, 1 - rb.xmin) if mirrored else (rb.xmin, rb.xmin + rb.width)
            kp = np.array([(k.x, k.y) for k in d.location_data.relative_keypoints], np.float64).reshape(-1, 2)
            if mirrored:
                kp[:, 0] = 1 - kp[:, 0]
            out.append(((x + u0 * side, y + rb.ymin * side, x + u1 * side, y + (rb.ymin + rb.height) * side), float(d.score[0]),
                        np.array([x, y]) + kp * side))
    return out


def search_hits(rgb: np.ndarray, fracs: tuple[float, ...] = SEARCH_FRACS) -> list[SearchHit]:
    """Every merged BlazeFace hit of the window search on ``rgb`` (H, W, 3) uint8, best score
    first, before the faceness test. Call it holding ``face3d.landmarks.detector._LOCK``."""
    from face3d.landmarks.detector import box_iou

    raw: list[tuple[_Hit, tuple[float, float, float]]] = []
    for window in search_windows(rgb.shape[0], rgb.shape[1], fracs):
        raw += [(hit, window) for hit in _window_hits(rgb, window)]
    raw.sort(key=lambda r: -r[0][1])
    merged: list[list[tuple[_Hit, tuple[float, float, float]]]] = []
    for hit in raw:
        for group in merged:
            if box_iou(hit[0][0], group[0][0][0]) > MERGE_IOU:
                group.append(hit)
                break
        else:
            merged.append([hit])
    return [SearchHit(g[0][0][0], g[0][0][1], len(g), g[0][1], g[0][0][2]) for g in merged]


def _face_size(points: np.ndarray) -> float:
    """sqrt(w · h) px of the box of ``points`` (N, 2), at least 1e-6."""
    w, h = np.ptp(points, axis=0)
    return float(np.sqrt(max(w * h, 1e-12)))


def consistency_error(reg: Any, rgb: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """How far the regressor ``reg`` (a :class:`~face3d.landmarks.regressor.LandmarkRegressor`) is
    from agreeing with itself on the face in a BlazeFace ``box`` (x0, y0, x1, y1) px of ``rgb``:
    the geometric mean of (a) the median predicted σ of its 68 points, (b) the mean distance
    between its direct and mirrored readings and (c) the mean move of its points when read again
    from the crop around its first answer, each divided by the face's size (sqrt of the area of
    the points' box). Dimensionless, > 0; small for faces."""
    from face3d.landmarks.detector import _learned_crop
    from face3d.landmarks.regressor import crop_image, mirror_average, square_box

    S = reg.input_size
    x0, y0, side = square_box(_learned_crop(box), reg.box_scale)
    both, sig = reg.predict_both(crop_image(rgb, (x0, y0, side), S)[None])
    both = both[:, 0] * (side / S) + np.array([x0, y0])
    first, sigma = mirror_average(both[:, None], (sig * (side / S)) ** 2)
    first, sigma = first[0], sigma[0]
    size = _face_size(first)
    again = reg.predict(rgb, first, refine=0).landmarks
    errors = (float(np.median(sigma)) / size, float(np.linalg.norm(both[0] - both[1], axis=1).mean()) / size,
              float(np.linalg.norm(again - first, axis=1).mean()) / _face_size(again))
    return float(np.exp(np.mean(np.log(np.maximum(errors, 1e-6)))))


def search_faces(rgb: np.ndarray, reg: Any, max_error: float = FACENESS_MAX) -> list[SearchHit]:
    """The faces the window search accepts in ``rgb`` (H, W, 3) uint8: hits of :func:`search_hits`
    whose :func:`consistency_error` under the regressor ``reg`` is at most ``max_error``, most
    consistent first (``SearchHit.error`` set). Call it holding ``face3d.landmarks.detector._LOCK``."""
    scored = [dataclasses.replace(h, error=consistency_error(reg, rgb, h.box)) for h in search_hits(rgb)]
    return sorted((h for h in scored if h.error <= max_error), key=lambda h: h.error)
