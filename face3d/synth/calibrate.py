"""MediaPipe-478 calibration on many random, photo-textured faces (the default model's embedding).

:mod:`face3d.models.calibrate` asks MediaPipe where its points lie on *one* face, the model's
mean, wearing one albedo. MediaPipe then has only that face to go by, and the answer carries that
face's quirks (a browless, lipless head moves its brow and lip points). Here the question is
asked of ``n`` random faces of the model, as a fit will see them:

1. each face: identity ``N(0, 1)`` per mode, up to four ARKit expressions, yaw ±``yaw_deg``,
   pitch ±``pitch_deg``, roll ±10°, a 35–70 mm lens (:func:`face3d.fitting.synthetic.random_face`),
   dressed in a texture baked from a real photo (the albedo space's *training* photos,
   ``assets/albedo/split.json``: never the benchmark's test photos, never AFLW2000), random SH
   lighting plus a directional light, a flat random background;
2. MediaPipe's 478 points on the render;
3. each point lifted onto the model's *rest-pose template* through the rasterizer's triangle ids
   and barycentrics (:func:`lift_to_template`): a surface point that does not depend on the
   face's identity, expression or pose;
4. per landmark, the median over the faces, snapped to the template surface -> (triangle,
   barycentrics). The spread (median distance of the samples to the result, mm) says how far
   MediaPipe wanders on each point.

``python -m face3d.synth.calibrate`` writes ``assets/default/mediapipe478_embedding.npz`` (the
input of ``python -m face3d.models.default_build``); about 4 minutes for 200 faces on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from face3d.errors import BadInputError, NoFaceError
from face3d.fitting.mediapipe_sets import SPREAD_FILE
from face3d.models.model import MorphableModel

#: Calibration faces, lens and pose ranges (degrees) of the shipped default embedding.
N_FACES = 200
YAW_DEG = 45.0
PITCH_DEG = 15.0
RENDER_SIZE = 512
SEED = 0
#: Texels of a baked photo seen with less weight than this take the bake's median colour.
MIN_TEXEL_WEIGHT = 0.05


@dataclass(frozen=True)
class FaceSetCalibration:
    """Result of :func:`calibrate_on_faces`: ``tri`` (478,) int64 and ``bary`` (478, 3) float32 on
    the model's mesh; ``samples`` (N, 478, 3) rest-pose points, metres (NaN where a point fell
    off the mesh); ``spread_mm`` (478,); ``snap_mm`` (478,) distance moved by the final snap;
    ``n_faces`` rendered, ``n_detected`` found by MediaPipe; ``seconds`` wall time."""

    tri: np.ndarray
    bary: np.ndarray
    samples: np.ndarray
    spread_mm: np.ndarray
    snap_mm: np.ndarray
    n_faces: int
    n_detected: int
    seconds: float


def lift_to_template(model: MorphableModel, posed: torch.Tensor, camera: object, points_px: np.ndarray) -> np.ndarray:
    """Rest-pose template points (L, 3), metres, under pixel positions ``points_px`` (L, 2) of the
    posed mesh ``posed`` (V, 3) seen by ``camera`` (a :class:`face3d.renderers.PerspectiveCamera`, one
    view): rasterize triangle ids and barycentrics, blend the *template* corners instead of the
    posed ones, and lift as :func:`face3d.models.calibrate.lift_points` does."""
    from face3d import renderers
    from face3d.models.calibrate import RenderedView, lift_points, rest_positions

    with torch.no_grad():
        out = renderers.render_mesh(renderers.Mesh(posed[None].float(), model.faces), camera, vertex_colors=torch.ones_like(posed)[None].float(),
                                    background=0.0)
    pos = rest_positions(out, model.template.detach().double().numpy(), model.faces.numpy())
    tri_id = out.tri_id[0].numpy()
    view = RenderedView(0.0, 0.0, np.zeros((*tri_id.shape, 3), np.uint8), pos, tri_id, posed, camera)
    return lift_points(view, np.asarray(points_px, np.float64))


def fill_unseen(albedo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A baked texture (R, R, 3) whose texels seen with weight < :data:`MIN_TEXEL_WEIGHT` take the
    median colour of the others (so an unseen texel is not rendered black)."""
    seen = weight >= MIN_TEXEL_WEIGHT
    if not seen.any():
        raise BadInputError("baked texture: no texel was seen")
    out = np.array(albedo, np.float32, copy=True)
    out[~seen] = np.median(out[seen], 0)
    return out


def calibrate_on_faces(model: MorphableModel, textures: Sequence[np.ndarray], n: int = N_FACES, seed: int = SEED,
                       yaw_deg: float = YAW_DEG, pitch_deg: float = PITCH_DEG, size: int = RENDER_SIZE) -> FaceSetCalibration:
    """The MediaPipe-478 embedding of ``model`` from ``n`` random faces (module docstring) wearing
    ``textures`` (each (R, R, 3) in [0, 1], the model's UV layout; face ``i`` draws one at random).

    Raises :class:`BadInputError` without textures or faces, :class:`NoFaceError` when MediaPipe
    found no face at all.
    """
    from face3d import renderers
    from face3d.fitting.camera import intrinsics
    from face3d.fitting.synthetic import random_face, random_sh, render_face, texture_vertex_albedo
    from face3d.landmarks.detector import detect_landmarks
    from face3d.models.calibrate import closest_point_on_mesh

    if not textures:
        raise BadInputError("calibrate_on_faces: no textures given")
    if n < 1:
        raise BadInputError(f"calibrate_on_faces: n must be >= 1, got {n}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        face = random_face(model, rng, size=size, yaw_deg=yaw_deg, pitch_deg=pitch_deg)
        tex = textures[int(rng.integers(len(textures)))]
        face = dataclasses.replace(face, sh=random_sh(rng), albedo=texture_vertex_albedo(model, tex, rng))
        face = render_face(model, face, texture=tex, background=float(rng.uniform(0.2, 0.8)))
        try:
            det = detect_landmarks(face.image, which="largest")[0].points[:, :2]
        except NoFaceError:
            continue
        with torch.no_grad():
            posed = model(shape=torch.as_tensor(face.shape)[None], expression=torch.as_tensor(face.expression)[None],
                          pose=torch.as_tensor(face.pose)[None])[0]
        K = intrinsics(torch.tensor([face.focal]), float(size), float(size))
        cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.as_tensor(face.translation)[None], width=size, height=size)
        samples.append(lift_to_template(model, posed, cam, det))
    if not samples:
        raise NoFaceError(f"model '{model.name}'", f"MediaPipe found no face in any of the {n} calibration renders")
    S = np.stack(samples)
    with np.errstate(invalid="ignore"):
        est = np.nanmedian(S, 0)
    if not np.isfinite(est).all():
        raise NoFaceError(f"model '{model.name}'", "some MediaPipe landmarks fell off the mesh on every calibration face")
    tri, bary, snap = closest_point_on_mesh(model.template.detach().double().numpy(), model.faces.numpy(), est)
    with np.errstate(invalid="ignore"):
        spread = np.nanmedian(np.linalg.norm(S - est, axis=-1), 0) * 1000.0
    return FaceSetCalibration(tri.astype(np.int64), bary.astype(np.float32), S, spread, snap * 1000.0, n, len(samples),
                              time.perf_counter() - t0)


def training_textures(limit: int | None = None) -> list[np.ndarray]:
    """The albedo space's training photos (``assets/albedo/split.json``) baked into ICT's UV layout
    (:func:`face3d.texture.albedo_space.bake_all`, cached in face3d's cache folder), unseen texels
    filled (:func:`fill_unseen`); at most ``limit``."""
    from face3d.paths import cache_dir
    from face3d.testing import shared_data
    from face3d.texture.albedo_space import bake_all, candidate_photos, read_split

    folders = {p.name: p for p in candidate_photos(shared_data())}
    names = [n for n in read_split()["train"] if n in folders][:limit]
    baked, _ = bake_all([folders[n] for n in names], cache_dir() / "albedo_bakes")
    return [fill_unseen(b.albedo, b.weight) for b in baked]


def write_spread(path: Path, cal: FaceSetCalibration, model_name: str, seed: int) -> Path:
    """Atomically write ``cal.spread_mm`` (rounded to 0.01 mm) as the JSON that
    :func:`face3d.fitting.mediapipe_sets.mediapipe_weights` reads."""
    import json

    from face3d.io.atomic import atomic_path

    doc = {"spread_mm": [round(float(x), 2) for x in cal.spread_mm], "model": model_name, "faces": cal.n_faces,
           "detected": cal.n_detected, "seed": seed, "yaw_deg": YAW_DEG, "pitch_deg": PITCH_DEG,
           "made_by": "python -m face3d.synth.calibrate"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m face3d.synth.calibrate [MODEL] [-o OUT.npz] [--faces N] [--seed S]``."""
    from face3d.models.calibrate import CalibrationReport, save_embedding
    from face3d.paths import assets_dir
    from face3d.reconstruction import get_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="default")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output npz (default assets/default/mediapipe478_embedding.npz)")
    ap.add_argument("--faces", type=int, default=N_FACES)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--spread-out", type=Path, default=None,
                    help="per-point spread JSON, the fit's landmark weights (default assets/landmarks/mediapipe478_spread.json)")
    a = ap.parse_args(argv)
    from face3d.testing import use_shared_ict

    use_shared_ict()  # the training photos are baked with ICT-FaceKit (cached after the first build)
    torch.set_num_threads(1)
    model = get_model(a.model)
    out = a.out or assets_dir() / "default" / "mediapipe478_embedding.npz"
    cal = calibrate_on_faces(model, training_textures(), n=a.faces, seed=a.seed)
    report = CalibrationReport(views=[], detected=[True] * cal.n_detected + [False] * (cal.n_faces - cal.n_detected),
                               n_samples=np.isfinite(cal.samples).all(-1).sum(0), spread_mm=cal.spread_mm, snap_mm=cal.snap_mm,
                               seconds=cal.seconds)
    save_embedding(out, cal.tri, cal.bary, report, model)
    write_spread(a.spread_out or assets_dir() / SPREAD_FILE, cal, a.model, a.seed)
    print(f"wrote {out}: {cal.n_detected}/{cal.n_faces} faces detected, spread median {np.median(cal.spread_mm):.2f} mm, "
          f"{cal.seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
