"""A fallback face search for photos in which nothing else finds a face (issue 24).

:func:`face3d.landmarks.detector.detect_landmarks` runs BlazeFace on the whole image (full range,
then short range) and, when that finds nothing, FaceMesh on the whole image. A face that fills a
large part of the photo but is seen in profile can escape all three: on AFLW2000-3D's image02960
(a grey-scale profile under a turban, 450 px) every BlazeFace anchor scores below 0.01 on the whole
image, yet the short-range model scores it 0.57 in a crop where the face fills ~60 % of the frame.

:func:`search_faces` therefore runs the short-range BlazeFace (its input is 128 px: faces that fill
most of the frame) over a small multi-scale grid of square windows (:data:`SEARCH_FRACS` of the
image's short side, stride half a window), each also mirrored left-right, and merges the hits.
A hit is kept when its best score reaches :data:`SEARCH_THRESHOLD`. The threshold was calibrated
on data allowed for it, never on AFLW2000 (``benchmarks/face_search.py``): synthetic faces of
``face3d.synth`` as positives, and as negatives scikit-image's sample photos without people, crops
of the shared photos with their faces cut out, noise and blank images.

Cost: ``len(search_windows(...)) * 2`` BlazeFace runs, about 0.17 s of one CPU thread on a 450-px
photo (29 windows); it runs only when everything else found no face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Window sides as fractions of the image's shorter side; the stride is half a window.
SEARCH_FRACS: tuple[float, ...] = (0.8, 0.6, 0.45)
#: Windows are resampled to this many px before the detector (which resizes to 128 itself).
SEARCH_PX = 256
#: The search's own BlazeFace instance reports hits from this score up.
SEARCH_FLOOR = 0.3
#: A merged hit is a face from this best score up (calibrated, module docstring).
SEARCH_THRESHOLD = 0.5
#: Hits overlapping by more than this IoU are one face.
MERGE_IOU = 0.3


@dataclass(frozen=True)
class SearchHit:
    """One face the window search found.

    box: (x0, y0, x1, y1) image px, BlazeFace's box of the best-scoring window (brows to chin);
    score: that window's BlazeFace score in [0, 1]; votes: how many (window, mirrored) runs
    reported a hit merged into this one; window: (x0, y0, side) px of the best window.
    """

    box: tuple[float, float, float, float]
    score: float
    votes: int
    window: tuple[float, float, float]


def search_windows(height: int, width: int, fracs: tuple[float, ...] = SEARCH_FRACS) -> list[tuple[float, float, float]]:
    """Square windows (x0, y0, side) px covering an image of ``height`` x ``width`` px: per fraction
    f of ``fracs``, side f · min(H, W), a grid at stride side / 2 whose last row and column touch
    the image's far edges."""
    short = min(height, width)
    out = []
    for f in fracs:
        side = f * short
        step = side / 2
        starts = []
        for n in (width, height):
            s = list(np.arange(0.0, n - side + 1e-6, step))
            if s[-1] < n - side - 1:
                s.append(n - side)
            starts.append(s)
        out += [(float(x), float(y), float(side)) for y in starts[1] for x in starts[0]]
    return out


def _window_hits(rgb: np.ndarray, window: tuple[float, float, float]) -> list[tuple[tuple[float, float, float, float], float]]:
    """BlazeFace short-range hits (box image px, score) in one window, read as is and mirrored."""
    from PIL import Image

    from face3d.landmarks.detector import _process, _search_detector

    x, y, side = window
    crop = np.asarray(Image.fromarray(rgb).transform((SEARCH_PX, SEARCH_PX), Image.Transform.EXTENT, (x, y, x + side, y + side),
                                                      Image.Resampling.BILINEAR))
    out = []
    for mirrored in (False, True):
        img = np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop
        res = _process(_search_detector(), img)
        for d in res.detections or []:
            rb = d.location_data.relative_bounding_box
            u0, u1 = (1 - rb.xmin - rb.width, 1 - rb.xmin) if mirrored else (rb.xmin, rb.xmin + rb.width)
            out.append(((x + u0 * side, y + rb.ymin * side, x + u1 * side, y + (rb.ymin + rb.height) * side), float(d.score[0])))
    return out


def search_hits(rgb: np.ndarray, fracs: tuple[float, ...] = SEARCH_FRACS) -> list[SearchHit]:
    """Every merged hit of the window search on ``rgb`` (H, W, 3) uint8, from :data:`SEARCH_FLOOR`
    up, best score first (:func:`search_faces` keeps those above the threshold). Call it holding
    the detector lock (``face3d.landmarks.detector._LOCK``)."""
    from face3d.landmarks.detector import box_iou

    raw: list[tuple[tuple[float, float, float, float], float, tuple[float, float, float]]] = []
    for window in search_windows(rgb.shape[0], rgb.shape[1], fracs):
        raw += [(box, score, window) for box, score in _window_hits(rgb, window)]
    raw.sort(key=lambda r: -r[1])
    merged: list[list[tuple[tuple[float, float, float, float], float, tuple[float, float, float]]]] = []
    for hit in raw:
        for group in merged:
            if box_iou(hit[0], group[0][0]) > MERGE_IOU:
                group.append(hit)
                break
        else:
            merged.append([hit])
    return [SearchHit(g[0][0], g[0][1], len(g), g[0][2]) for g in merged]


def search_faces(rgb: np.ndarray, threshold: float = SEARCH_THRESHOLD) -> list[SearchHit]:
    """The faces the window search accepts in ``rgb`` (H, W, 3) uint8: merged hits whose best
    score reaches ``threshold``, best first."""
    return [h for h in search_hits(rgb) if h.score >= threshold]
