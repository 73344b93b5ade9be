"""Landmark-embedding calibration: where does MediaPipe put its 478 points on *our* mesh?

Method (the model's mean face, analysis by the landmarker itself):

1. render the mean face with :func:`face3d.renderers.render_mesh` from several (yaw, pitch) views —
   perspective camera, neutral skin albedo (the model's own albedo mean when it is per vertex),
   painted irises/pupils when the model has eyeball regions, fixed front-top SH lighting;
2. run MediaPipe's 478-point landmarker on each render;
3. lift each landmark onto the mesh: every covered pixel holds the rasterizer's triangle id and
   perspective-correct barycentrics (rast u, v), hence a point on the *rest-pose* mesh; the
   landmark's point is the bilinear blend of the 4 pixels around it (nearest pixel at depth
   discontinuities; back-facing pixels, e.g. the inside of the head seen through parted lips,
   are skipped for the nearest front-facing one);
4. robust average over views: the median of the samples from the views in which the current
   estimate is visible (re-rendered position at its projection agrees within ``VISIBLE_TOL``),
   iterated; finally snapped to the closest point of the mesh surface -> (triangle, barycentrics).

Checks: :func:`check_embedding` renders unseen yaws and measures, per view, the median distance
between MediaPipe's landmarks and the model's projected embedding, normalised by the projected
outer-eye-corner distance (target <= 3 %); :func:`compare_ibug68` compares a model's own iBUG-68
embedding with the 68 points derived from the calibrated 478 (target <= 3 mm median).

``python -m face3d.models.calibrate basic`` writes ``assets/basic/mediapipe478_embedding.npz``
(the shipped default model's embedding is made by :mod:`face3d.synth.calibrate` on many random faces instead;
``python -m face3d.models.calibrate default`` writes a mean-face one to ``assets/default/...``, the input of
``python -m face3d.models.default_build``; ``... calibrate ict --parts face -o ict.npz`` for ICT).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from face3d.errors import BadInputError, NoFaceError
from face3d.models.model import MorphableModel
from face3d.paths import assets_dir

if TYPE_CHECKING:
    from face3d.renderers import PerspectiveCamera, RenderOutput

DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-25.0, 0.0), (25.0, 0.0), (0.0, -10.0), (0.0, 10.0))
CHECK_YAWS: tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)
FOV_Y_DEG = 20.0
FACE_FRACTION = 0.45  # landmark-box height / image height
VISIBLE_TOL = 0.004  # metres
BACKFACE_NZ = -0.2  # pixels whose normal points this much away from the camera are not lifted onto
SKIN = (0.78, 0.60, 0.50)
SCLERA = (0.90, 0.90, 0.88)
IRIS = (0.35, 0.22, 0.12)
PUPIL = (0.03, 0.03, 0.03)
IRIS_ANGLE, PUPIL_ANGLE = 0.50, 0.22  # radians from the eyeball's forward axis
MP_EYE_OUTER = (33, 263)
ASSET_BASIC = assets_dir() / "basic" / "mediapipe478_embedding.npz"


@dataclass
class CalibrationReport:
    """What :func:`calibrate_mediapipe_embedding` saw.

    views: the (yaw, pitch) degrees rendered; detected: per view, did MediaPipe find the face;
    n_samples (478,): views that contributed to each landmark; spread_mm (478,): median
    distance of those samples to the final point, mm; snap_mm (478,): distance moved by the
    final snap onto the surface, mm; seconds: wall time.
    """

    views: list[tuple[float, float]]
    detected: list[bool]
    n_samples: np.ndarray
    spread_mm: np.ndarray
    snap_mm: np.ndarray
    seconds: float


@dataclass
class EmbeddingCheck:
    """Per-view result of :func:`check_embedding`: views (yaw, pitch) deg, detected flags,
    nme (median landmark distance / inter-ocular distance; NaN where undetected), interocular_px."""

    views: list[tuple[float, float]]
    detected: list[bool]
    nme: list[float]
    interocular_px: list[float] = field(default_factory=list)

    @property
    def all_detected(self) -> bool:
        return all(self.detected)

    @property
    def worst(self) -> float:
        return float(np.nanmax(self.nme)) if self.nme else float("nan")


def view_rotation(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """Rotation (3,3): pitch about X, then yaw about Y (positive yaw turns the face to its left)."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = torch.tensor([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    return ry @ rx


def neutral_colors(model: MorphableModel, vertices: torch.Tensor) -> torch.Tensor:
    """Per-vertex albedo (V,3): the model's per-vertex albedo mean, else uniform skin; eyeballs painted
    sclera/iris/pupil by angle from their forward (+Z) axis when regions 'eyeball_*' exist."""
    V = vertices.shape[0]
    if model.albedo_mean is not None and tuple(model.albedo_mean.shape) == (V, 3):
        cols = model.albedo_mean.detach().clone().float()
    else:
        cols = torch.tensor(SKIN).repeat(V, 1)
    for side in ("left", "right"):
        eb = model.regions.get(f"eyeball_{side}")
        if eb is None or not bool(eb.any()):
            continue
        sc = model.regions.get(f"sclera_{side}", eb)
        centre = vertices[sc].mean(0)
        d = vertices - centre
        ang = torch.acos((d[:, 2] / d.norm(dim=1).clamp_min(1e-12)).clamp(-1, 1))
        cols[eb] = torch.tensor(SCLERA)
        cols[eb & (ang < IRIS_ANGLE)] = torch.tensor(IRIS)
        cols[eb & (ang < PUPIL_ANGLE)] = torch.tensor(PUPIL)
    return cols


def _frame(model: MorphableModel, vertices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Face centre (3,) and height (m): from the iBUG-68 embedding, else the skin/face region, else all."""
    if "ibug68" in model.embeddings:
        pts = model.landmarks(vertices[None], "ibug68")[0]
    else:
        mask = model.regions.get("face", model.regions.get("skin"))
        pts = vertices[mask] if mask is not None and bool(mask.any()) else vertices
    lo, hi = pts.min(0).values, pts.max(0).values
    return (lo + hi) / 2, float(hi[1] - lo[1])


@dataclass
class RenderedView:
    """One calibration render: yaw/pitch degrees, image (H,W,3) uint8, position (H,W,3) rest-pose
    surface point per pixel (NaN on background / back faces), tri_id (H,W) (-1 background),
    posed vertices (V,3) and the camera (face3d.renderers.PerspectiveCamera)."""

    yaw: float
    pitch: float
    image: np.ndarray  # (H, W, 3) uint8
    position: np.ndarray  # (H, W, 3) rest-pose surface point per pixel (NaN on background / back faces)
    tri_id: np.ndarray  # (H, W)
    posed: torch.Tensor  # (V, 3) posed vertices
    camera: PerspectiveCamera


def render_view(model: MorphableModel, yaw: float, pitch: float, resolution: int = 512) -> RenderedView:
    """Render the mean face of ``model`` at (yaw, pitch) degrees, ``resolution``² px (see module docstring)."""
    from face3d import renderers as R

    rest = model.template.detach().float()
    faces = model.faces
    centre, height = _frame(model, rest)
    K = R.perspective_from_fov(FOV_Y_DEG, resolution, resolution)
    dist = float(K[0, 0]) * height / (FACE_FRACTION * resolution)
    rot = view_rotation(yaw, pitch)
    posed = (rest - centre) @ rot.T + centre
    t = torch.stack([-centre[0], -centre[1], -centre[2] - dist])[None]
    cam = R.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=t, width=resolution, height=resolution)
    sh = R.ambient_sh(0.55)
    sh[0, 2, :] = 0.5  # light from the camera side (+Z)
    sh[0, 1, :] = 0.15  # and a little from above
    out = R.render_mesh(R.Mesh(posed[None], faces), cam, vertex_colors=neutral_colors(model, rest), sh=sh, background=0.3)
    image = (out.image[0].detach().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    tri_id = out.tri_id[0].numpy()
    pos = rest_positions(out, rest.numpy(), faces.numpy())
    nz = out.normals[0, ..., 2].detach().numpy()
    covered = tri_id >= 0
    if covered.any() and np.median(nz[covered]) < 0:  # inward-wound mesh: flip the facing test
        nz = -nz
    pos[~covered | (nz < BACKFACE_NZ)] = np.nan  # e.g. the inside of the head seen through the lips
    return RenderedView(yaw, pitch, image, pos.astype(np.float64), tri_id, posed, cam)


def rest_positions(out: RenderOutput, rest: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per pixel of render ``out`` (a :func:`face3d.renderers.render_mesh` output, first image), the surface
    point on the mesh with vertices ``rest`` (V, 3) and triangles ``faces`` (F, 3) that the pixel
    sees: its triangle's corners blended by the rasterizer's barycentrics -> (H, W, 3), NaN on the
    background. With ``rest`` the rest-pose template, a posed render maps back to the template."""
    tri_id = out.tri_id[0].numpy()
    u, v = out.rast[0, ..., 0].detach().numpy(), out.rast[0, ..., 1].detach().numpy()
    c = np.asarray(rest)[faces[np.clip(tri_id, 0, None)]]  # (H, W, 3, 3)
    pos = u[..., None] * c[..., 0, :] + v[..., None] * c[..., 1, :] + (1 - u - v)[..., None] * c[..., 2, :]
    pos[tri_id < 0] = np.nan
    return pos


def lift_points(view: RenderedView, points_px: np.ndarray, max_jump: float = 0.005, search: int = 4) -> np.ndarray:
    """Rest-pose mesh points (L,3) under pixel positions (L,2) of ``view``.

    Bilinear blend of the 4 surrounding pixel centres' surface points; the nearest pixel where
    they straddle a depth discontinuity (spread > ``max_jump`` m) or leave the mesh; the nearest
    covered, front-facing pixel within ``search`` px just off the silhouette or a gap (e.g. the
    lips); NaN farther off.
    """
    H, W = view.tri_id.shape
    x = np.asarray(points_px[:, 0], np.float64) - 0.5
    y = np.asarray(points_px[:, 1], np.float64) - 0.5
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, H - 2)
    fx, fy = np.clip(x - x0, 0, 1)[:, None], np.clip(y - y0, 0, 1)[:, None]
    P = view.position
    p00, p01, p10, p11 = P[y0, x0], P[y0, x0 + 1], P[y0 + 1, x0], P[y0 + 1, x0 + 1]
    bil = (1 - fy) * ((1 - fx) * p00 + fx * p01) + fy * ((1 - fx) * p10 + fx * p11)
    stack = np.stack([p00, p01, p10, p11], 1)
    with np.errstate(invalid="ignore"):
        spread = np.linalg.norm(stack - stack.mean(1, keepdims=True), axis=-1).max(1)
    xi = np.clip(np.floor(x + 0.5).astype(int), 0, W - 1)
    yi = np.clip(np.floor(y + 0.5).astype(int), 0, H - 1)
    nearest = P[yi, xi]
    for i in np.nonzero(~np.isfinite(nearest).all(1))[0]:  # just off the silhouette: nearest covered pixel
        ya, yb, xa, xb = max(yi[i] - search, 0), min(yi[i] + search + 1, H), max(xi[i] - search, 0), min(xi[i] + search + 1, W)
        cov = np.argwhere(np.isfinite(P[ya:yb, xa:xb, 0]))
        if len(cov):
            r, c = cov[np.argmin(((cov + [ya, xa] - [yi[i], xi[i]]) ** 2).sum(1))] + [ya, xa]
            nearest[i] = P[r, c]
    bad = ~np.isfinite(bil).all(1) | ~(spread <= max_jump)
    return np.where(bad[:, None], nearest, bil)


def project_rest_points(view: RenderedView, model: MorphableModel, points: np.ndarray) -> np.ndarray:
    """Pixel positions (L,2) of rest-pose points (L,3) in ``view``."""
    rest = model.template.detach().float()
    centre, _ = _frame(model, rest)
    rot = view_rotation(view.yaw, view.pitch)
    posed = (torch.as_tensor(points, dtype=torch.float32) - centre) @ rot.T + centre
    return view.camera.project(posed[None])[0].numpy().astype(np.float64)


def closest_point_on_mesh(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, k: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface points: (triangle ids (L,), barycentrics (L,3), distances (L,)).

    Candidates are the ``k`` triangles with the nearest centroids (scipy cKDTree), then the exact
    point-triangle distance (plane projection inside the triangle, else the nearest edge point).
    """
    from scipy.spatial import cKDTree

    tri = vertices[faces]  # (F,3,3)
    _, cand = cKDTree(tri.mean(1)).query(points, k=min(k, len(faces)))
    cand = np.atleast_2d(cand)
    a, b, c = (tri[cand][..., i, :] for i in range(3))  # (L,K,3)
    p = points[:, None, :]
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = (ab * ab).sum(-1), (ab * ac).sum(-1), (ac * ac).sum(-1)
    d20, d21 = (ap * ab).sum(-1), (ap * ac).sum(-1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-30, d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1 - v - w, v, w], -1)
    inside = (bary >= 0).all(-1)
    q = a + v[..., None] * ab + w[..., None] * ac
    best_q, best_b = q.copy(), bary.copy()
    best_d = np.where(inside, np.linalg.norm(p - q, axis=-1), np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        e0, e1 = (a, b, c)[i], (a, b, c)[j]
        e = e1 - e0
        s = np.clip(((p - e0) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-30), 0, 1)
        qe = e0 + s[..., None] * e
        de = np.linalg.norm(p - qe, axis=-1)
        be = np.zeros_like(bary)
        be[..., i] = 1 - s
        be[..., j] = s
        better = de < best_d
        best_d = np.where(better, de, best_d)
        best_q = np.where(better[..., None], qe, best_q)
        best_b = np.where(better[..., None], be, best_b)
    sel = best_d.argmin(1)
    rows = np.arange(len(points))
    return cand[rows, sel].astype(np.int64), best_b[rows, sel], best_d[rows, sel]


def _detect(image: np.ndarray, what: str) -> np.ndarray | None:
    from face3d.landmarks import detect_landmarks

    try:
        return detect_landmarks(image, which="largest", path_for_errors=what)[0].points[:, :2].astype(np.float64)
    except NoFaceError:
        return None


def calibrate_mediapipe_embedding(
    model: MorphableModel, views: Sequence[tuple[float, float]] = DEFAULT_VIEWS, resolution: int = 512, iterations: int = 3
) -> tuple[np.ndarray, np.ndarray, CalibrationReport]:
    """MediaPipe-478 embedding of ``model``'s mean face: (tri (478,) int64, bary (478,3) float32, report).

    ``views``: (yaw, pitch) degrees. Raises :class:`NoFaceError` when MediaPipe finds the face in
    none of the renders (the model does not look like a face to it).
    """
    if not views:
        raise BadInputError("argument 'views': at least one (yaw, pitch) view is needed")
    t0 = time.perf_counter()
    rendered = [render_view(model, float(y), float(p), resolution) for y, p in views]
    detections = [_detect(v.image, f"render of '{model.name}' at yaw {v.yaw:g}, pitch {v.pitch:g}") for v in rendered]
    used = [(v, d) for v, d in zip(rendered, detections) if d is not None]
    if not used:
        raise NoFaceError(f"model '{model.name}'", f"MediaPipe found no face in any of the {len(views)} renders")
    samples = np.stack([lift_points(v, d) for v, d in used])  # (K, 478, 3)
    if not np.isfinite(samples).all(-1).any(0).all():
        raise NoFaceError(f"model '{model.name}'", "some MediaPipe landmarks fall off the rendered mesh in every view")
    front = int(np.argmin([abs(v.yaw) + abs(v.pitch) for v, _ in used]))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = np.where(np.isfinite(samples[front]), samples[front], np.nanmedian(samples, 0))
    keep: np.ndarray = np.isfinite(samples).all(-1)
    for _ in range(iterations):
        keep = np.zeros(samples.shape[:2], dtype=bool)
        for k, (v, _) in enumerate(used):
            px = project_rest_points(v, model, est)
            back = lift_points(v, px)
            keep[k] = np.isfinite(samples[k]).all(-1) & (np.linalg.norm(back - est, axis=-1) < VISIBLE_TOL)
        masked = np.where(keep[..., None], samples, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(masked, 0)
        est = np.where(keep.any(0)[:, None], med, est)
    rest = model.template.detach().double().numpy()
    tri, bary, snap = closest_point_on_mesh(rest, model.faces.numpy(), est)
    spread = np.array([
        np.median(np.linalg.norm(samples[keep[:, i], i] - est[i], axis=-1)) if keep[:, i].any() else np.nan for i in range(samples.shape[1])
    ])
    report = CalibrationReport(
        views=[(float(y), float(p)) for y, p in views], detected=[d is not None for d in detections],
        n_samples=keep.sum(0), spread_mm=spread * 1000.0, snap_mm=snap * 1000.0, seconds=time.perf_counter() - t0,
    )
    return tri, bary.astype(np.float32), report


def check_embedding(
    model: MorphableModel, yaws: Sequence[float] = CHECK_YAWS, pitch: float = 0.0, resolution: int = 512,
    landmark_set: str = "mediapipe478",
) -> EmbeddingCheck:
    """Render the mean face at each yaw, run MediaPipe, and compare with the projected embedding.

    Per view: detected?, and the median 2D distance over the 478 landmarks divided by the
    projected distance between the outer eye corners (landmarks 33 and 263).
    """
    rest = model.template.detach().float()
    views, detected, nme, iod = [], [], [], []
    for yaw in yaws:
        v = render_view(model, float(yaw), float(pitch), resolution)
        det = _detect(v.image, f"render of '{model.name}' at yaw {yaw:g}")
        views.append((float(yaw), float(pitch)))
        detected.append(det is not None)
        emb3d = model.landmarks(rest[None], landmark_set)[0].numpy()
        proj = project_rest_points(v, model, emb3d)
        d_eye = float(np.linalg.norm(proj[MP_EYE_OUTER[0]] - proj[MP_EYE_OUTER[1]]))
        iod.append(d_eye)
        nme.append(float(np.median(np.linalg.norm(det - proj, axis=1)) / d_eye) if det is not None else float("nan"))
    return EmbeddingCheck(views, detected, nme, iod)


def compare_ibug68(model: MorphableModel, set_478: str = "mediapipe478", set_68: str = "ibug68") -> np.ndarray:
    """Per-landmark 3D distance (68,) in metres between the model's own iBUG-68 points and the
    68 derived from its 478 embedding through :func:`face3d.landmarks.mediapipe_to_ibug68`."""
    from face3d.landmarks.mapping import mediapipe_to_ibug68

    rest = model.template.detach().double()[None]
    own = model.landmarks(rest, set_68)[0].numpy()
    derived = mediapipe_to_ibug68(model.landmarks(rest, set_478)[0].numpy())
    return np.linalg.norm(own - derived, axis=1)


def derived_ibug68_embedding(model: MorphableModel, set_478: str = "mediapipe478") -> tuple[np.ndarray, np.ndarray]:
    """An iBUG-68 embedding (tri (68,) int64, bary (68,3) float32) for a model that has none (e.g. BFM
    2009 without ``landmarks=``): the 68 points derived from its 478 embedding on the mean face
    (:func:`face3d.landmarks.mediapipe_to_ibug68`, in 3D), snapped to the closest surface point."""
    from face3d.landmarks.mapping import mediapipe_to_ibug68

    rest = model.template.detach().double()
    pts = mediapipe_to_ibug68(model.landmarks(rest[None], set_478)[0].numpy())
    tri, bary, _ = closest_point_on_mesh(rest.numpy(), model.faces.numpy(), pts)
    return tri, bary.astype(np.float32)


def topology_fingerprint(model: MorphableModel) -> str:
    """sha256 (16 hex) of the vertex count and triangle list: an embedding is valid for this topology only."""
    import hashlib

    h = hashlib.sha256(str(model.n_vertices).encode())
    h.update(np.ascontiguousarray(model.faces.numpy().astype(np.int64)).tobytes())
    return h.hexdigest()[:16]


def save_embedding(path: str | Path, tri: np.ndarray, bary: np.ndarray, report: CalibrationReport, model: MorphableModel) -> Path:
    """Atomically write an embedding npz: tri (478,) int32, bary (478,3) float32, views, spread_mm,
    the model name and its :func:`topology_fingerprint`."""
    from face3d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, tri=np.asarray(tri, np.int32), bary=np.asarray(bary, np.float32), views=np.asarray(report.views, np.float32),
                spread_mm=np.asarray(report.spread_mm, np.float32), model=np.array(model.name),
                topology=np.array(topology_fingerprint(model)),
            )
    return Path(path)


def load_embedding(path: str | Path, model: MorphableModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tri (478,) int64, bary (478,3) float32) from :func:`save_embedding`'s npz.

    With ``model``, the file's topology fingerprint must match it (else :class:`ModelFileError`
    saying how to regenerate the file).
    """
    from face3d.errors import ModelFileError
    from face3d.io.npz import read_npz

    z = read_npz(path, "embedding npz")
    if "tri" not in z or "bary" not in z:
        raise ModelFileError(path, f"not an embedding npz (needs keys 'tri' and 'bary', found {sorted(z)})")
    tri, bary = z["tri"].astype(np.int64), z["bary"].astype(np.float32)
    topo = str(z["topology"]) if "topology" in z else ""
    if tri.shape != (478,) or bary.shape != (478, 3):
        raise ModelFileError(path, f"expected tri (478,) and bary (478, 3), got {tri.shape}, {bary.shape}")
    if model is not None and topo != topology_fingerprint(model):
        raise ModelFileError(
            path, f"embedding was calibrated for another mesh topology than model '{model.name}'s; "
            f"regenerate it with: python -m face3d.models.calibrate {model.name} -o {path}"
        )
    return tri, bary


def attach_embedding(model: MorphableModel, path: str | Path) -> MorphableModel:
    """Load a calibrated embedding file into ``model`` as its 'mediapipe478' set (checked); a model
    without an 'ibug68' set also gets :func:`derived_ibug68_embedding`. Returns the model."""
    tri, bary = load_embedding(path, model)
    model.set_embedding("mediapipe478", tri, bary)
    if "ibug68" not in model.embeddings:
        model.set_embedding("ibug68", *derived_ibug68_embedding(model))
    return model


def _pairs(text: str) -> list[tuple[float, float]]:
    try:
        return [(float(a), float(b)) for a, b in (item.split(",") for item in text.split(";") if item.strip())]
    except ValueError:
        raise BadInputError(f"views must look like '0,0;-25,0;25,0' (yaw,pitch degrees), got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m face3d.models.calibrate [MODEL] [-o OUT.npz] [--views ...] [--check-yaws ...]``.

    Calibrates the model's MediaPipe-478 embedding, prints the checks and writes the npz
    (default for ``basic`` and ``default``: ``assets/<model>/mediapipe478_embedding.npz``).
    """
    import argparse

    import face3d
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit

    ap = argparse.ArgumentParser(prog="python -m face3d.models.calibrate", description=main.__doc__)
    ap.add_argument("model", nargs="?", default="basic")
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--parts", default=None, help="model option 'parts' (ICT: full|face)")
    ap.add_argument("--views", default=";".join(f"{y:g},{p:g}" for y, p in DEFAULT_VIEWS))
    ap.add_argument("--check-yaws", default=",".join(f"{y:g}" for y in CHECK_YAWS))
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    shipped = {"basic": ASSET_BASIC, "default": assets_dir() / "default" / "mediapipe478_embedding.npz"}
    out = Path(args.out) if args.out else shipped.get(args.model, Path(f"{args.model}_mediapipe478_embedding.npz"))
    model = face3d.load_model(args.model, **({"parts": args.parts} if args.parts else {}))
    tri, bary, rep = calibrate_mediapipe_embedding(model, _pairs(args.views), args.resolution)
    model.set_embedding("mediapipe478", tri, bary)
    try:
        yaws = [float(y) for y in args.check_yaws.split(",") if y.strip()]
    except ValueError:
        raise BadInputError(f"--check-yaws must be comma-separated degrees, got {args.check_yaws!r}") from None
    chk = check_embedding(model, yaws, resolution=args.resolution)
    print(f"calibrated '{args.model}' from views {rep.views}: detected {rep.detected}, "
          f"median sample spread {np.nanmedian(rep.spread_mm):.2f} mm, {rep.seconds:.1f} s")
    for (yaw, _), ok, e in zip(chk.views, chk.detected, chk.nme):
        print(f"  check yaw {yaw:+5.0f}: detected {ok}, median error {100 * e:.2f} % of inter-ocular distance")
    if "ibug68" in model.embeddings:
        d = compare_ibug68(model)
        print(f"  ibug68 vs derived from 478: median {1000 * np.median(d):.2f} mm (inner 51: {1000 * np.median(d[17:]):.2f} mm, "
              f"eyes: {1000 * np.median(d[36:48]):.2f} mm)")
    save_embedding(out, tri, bary, rep, model)
    print(f"wrote {out}")
    return 0 if rep.detected[0] and chk.all_detected else 1


if __name__ == "__main__":
    raise SystemExit(main())
