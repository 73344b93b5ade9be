"""Benchmark of face3d.reconstruct: synthetic ground truth, real photos, speed, a gallery.

    OMP_NUM_THREADS=1 python benchmarks/reconstruct.py --section synthetic --n 24          # headline (default,ict,basic × default,shape × real,smooth)
    OMP_NUM_THREADS=1 python benchmarks/reconstruct.py --section synthetic --n 4 --models ict --albedo real   # quick check
    OMP_NUM_THREADS=1 python benchmarks/reconstruct.py --section synthetic --n 24 --albedo real --models default,ict --presets default,default+truth
    python benchmarks/reconstruct.py --section real --models ict
    python benchmarks/reconstruct.py --section aflw --models default               # AFLW2000-3D dev, 300 images
    python benchmarks/reconstruct.py --section speed --models basic
    python benchmarks/reconstruct.py --section gallery            # benchmarks/results/gallery.png

Synthetic (NoW-style): random ICT faces (identity ~ N(0, 1) per ICT mode, 4 random ARKit
expressions in [0, 0.7], yaw ±45°, pitch ±20°, roll ±10°, perspective camera 35–70 mm, 512²)
rendered with our renderer, each face twice (``--albedo both``): with a random smooth skin
albedo, and with a texture baked from a held-out real photo (:func:`test_texture_photos`: real
brows, lips, eyes, stubble, skin marks, whatever hair or clothing the photo put into the UV map).
Both renders of a face share geometry, pose, camera and lighting: SH lighting fitted on a real
photo, rescaled to an ambient level in 0.7–1.1, plus a random directional light. Each image goes
through the full public pipeline (MediaPipe landmarks on the rendering, fit with each preset).
The ground-truth face region (ICT 'narrow_face_area') is aligned to the prediction by a
similarity transform on the 68 landmarks, refined by ICP (point-to-surface) with scale, as NoW's
protocol refines scale, rotation and translation (``--rigid``: the rigid-ICP figure too), and
the scan-to-mesh distances (exact point-to-triangle, in the ground truth's units) are reported in
mm: the headline is the median over faces of each face's median. For `basic` (a different
topology) the same distances to its surface are measured, over its face-region triangles. A
model that does not load (e.g. ``default`` before it exists) is reported as unavailable.

Real photos (shared data faces/): landmark error of the fitted model against MediaPipe's
(mapped to iBUG-68), normalised by the outer-eye-corner distance; AFLW2000-3D 2D NME
(bbox-normalised, vs *.lm68.txt); masked PSNR of the untextured model render (model albedo ×
fitted SH) against the photo inside the skin mask.

AFLW2000-3D (``--section aflw``; ``aflw2000_dev``, 300 images, evaluation only): every image through
``face3d.reconstruct`` with our own detector, 68-point 2D NME of the fitted model's ``ibug68`` and of
raw MediaPipe (478 -> 68) per |yaw| bin and the mean of the bins; images without a face are listed.

Speed: `face3d reconstruct --demo` as a subprocess (512-px photo, default settings, landmarks,
texture 1024², saving), wall time, per-stage times and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import face3d
from face3d.errors import Face3DError
from face3d.fitting.init import umeyama
from face3d.testing import shared_data


# ----------------------------------------------------------------------------- geometry
def _vertex_faces(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the triangles incident to each vertex: (offsets (V+1,), triangle ids)."""
    order = np.argsort(faces.reshape(-1), kind="stable")
    counts = np.bincount(faces.reshape(-1), minlength=n_vertices)
    return np.concatenate([[0], np.cumsum(counts)]), (order // 3).astype(np.int64)


_VF_CACHE: dict[str, tuple] = {}  # the last mesh's (faces, V, offsets, triangle ids)


def point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (N,) and closest points (N,3) from points to a triangle mesh.

    Candidate triangles: those incident to the ``k`` nearest mesh vertices of each point.
    """
    import trimesh
    from scipy.spatial import cKDTree

    used = np.unique(faces)
    _, nn = cKDTree(vertices[used]).query(points, k=k)
    nn = used[nn]
    cached = _VF_CACHE.get("faces")
    if cached is None or cached[0].shape != faces.shape or cached[1] != len(vertices) or not np.array_equal(cached[0], faces):
        _VF_CACHE["faces"] = (faces.copy(), len(vertices), *_vertex_faces(faces, len(vertices)))
    offsets, tri = _VF_CACHE["faces"][2:]
    flat = nn.reshape(-1)
    deg = offsets[flat + 1] - offsets[flat]
    pi = np.repeat(np.repeat(np.arange(len(points)), k), deg)
    starts = np.repeat(offsets[flat], deg)
    within = np.arange(int(deg.sum())) - np.repeat(np.cumsum(deg) - deg, deg)
    fi = tri[starts + within]
    pair = np.unique(pi * len(faces) + fi)  # each (point, triangle) once
    pi, fi = pair // len(faces), pair % len(faces)
    cp = trimesh.triangles.closest_point(vertices[faces[fi]], points[pi])
    d = np.linalg.norm(cp - points[pi], axis=1)
    order = np.lexsort((d, pi))
    first = np.unique(pi[order], return_index=True)[1]
    sel = order[first]
    best_d = np.full(len(points), np.inf)
    best_p = np.zeros_like(points)
    best_d[pi[sel]] = d[sel]
    best_p[pi[sel]] = cp[sel]
    return best_d, best_p


def scan_to_mesh(gt_points: np.ndarray, gt_lm: np.ndarray, pred_vertices: np.ndarray, pred_faces: np.ndarray, pred_lm: np.ndarray,
                 icp_iters: int = 10, icp_scale: bool = True, icp_stride: int = 3) -> np.ndarray:
    """NoW-style scan-to-mesh distances (N,) in the ground truth's units (metres): similarity from
    the landmarks, then ICP refinement (point-to-surface; with scale as NoW's protocol has it when
    ``icp_scale``, else rigid; the 5 % farthest points left out of each update; each update uses
    every ``icp_stride``-th point, the final distances all of them)."""
    s, R, t = umeyama(gt_lm, pred_lm, with_scale=True)
    pts = s * gt_points @ R.T + t
    scale = s
    for _ in range(icp_iters):
        sub = pts[::icp_stride]
        d, cp = point_to_surface(sub, pred_vertices, pred_faces)
        keep = d < np.percentile(d, 95)
        s2, R2, t2 = umeyama(sub[keep], cp[keep], with_scale=icp_scale)
        pts = s2 * pts @ R2.T + t2
        scale *= s2
    d, _ = point_to_surface(pts, pred_vertices, pred_faces)
    return d / scale  # the ground truth was scaled by ``scale``: distances back in its units


def attach_calibrated_embedding(model) -> None:
    """Give ``model`` a MediaPipe-478 embedding calibrated on its mean face
    (:mod:`face3d.models.calibrate`), cached in face3d's cache folder."""
    from face3d.models.calibrate import (
        attach_embedding,
        calibrate_mediapipe_embedding,
        save_embedding,
    )
    from face3d.paths import cache_dir

    path = cache_dir() / f"{model.name}-{model.n_vertices}-mediapipe478.npz"
    if not path.is_file():
        tri, bary, report = calibrate_mediapipe_embedding(model)
        save_embedding(path, tri, bary, report, model)
    attach_embedding(model, path)


def true_landmarks(model, face) -> np.ndarray:
    """The synthetic face's own MediaPipe-478 points (the calibrated embedding on the ground-truth
    mesh) projected with its camera: (478, 2) pixels."""
    import torch
    from scipy.spatial.transform import Rotation

    from face3d.fitting.camera import intrinsics, project

    posed = face.vertices @ Rotation.from_rotvec(face.pose).as_matrix().T
    lm = model.landmarks(torch.as_tensor(posed, dtype=torch.float32)[None], "mediapipe478") + torch.as_tensor(face.translation)
    size = float(face.image.shape[0])
    return project(lm, intrinsics(torch.tensor([face.focal]), size, size))[0].numpy()


# ----------------------------------------------------------------------------- real-photo test textures
BENCH_CACHE = Path(os.environ.get("FACE3D_BENCH_CACHE", Path.home() / ".cache" / "face3d-bench"))
TEXTURE_RESOLUTION = 512


def test_texture_photos() -> list[Path]:
    """The held-out photos whose baked textures dress the synthetic faces: every photo of
    ``faces_more/`` whose index in the sorted file list is ≡ 2 (mod 3), and every ``faces/d3dfr_*``
    photo whose index among those is ≡ 2 (mod 3) (never AFLW2000). The albedo space must not be
    built from these (benchmarks/README.md)."""
    root = shared_data()
    more = sorted((root / "faces_more").glob("*.jpg"), key=lambda p: p.name)
    d3dfr = sorted((root / "faces").glob("d3dfr_*.jpg"), key=lambda p: p.name)
    return [p for i, p in enumerate(more) if i % 3 == 2] + [p for i, p in enumerate(d3dfr) if i % 3 == 2]


def baked_texture(photo: Path, resolution: int = TEXTURE_RESOLUTION) -> dict | None:
    """ICT fitted to ``photo`` by the public pipeline (``face3d.reconstruct(..., model='ict')``,
    default fit, no detail): {'texture': (R, R, 3) float32 de-lit, mirror-completed UV albedo in
    ICT's layout, 'sh': (9, 3) fitted lighting, 'landmark_error'}; None when no face is found.
    Cached (never in the repo) under ``$FACE3D_BENCH_CACHE`` (default ~/.cache/face3d-bench)."""
    import hashlib

    digest = hashlib.sha256(photo.read_bytes()).hexdigest()[:16]
    path = BENCH_CACHE / "textures" / f"{photo.stem}-{digest}-ict-r{resolution}.npz"
    if path.is_file():
        z = np.load(path)
        return None if "failed" in z.files else {"texture": z["texture"].astype(np.float32) / 255, "sh": z["sh"],
                                                  "landmark_error": float(z["landmark_error"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    try:
        rec = face3d.reconstruct(str(photo), model="ict", texture_resolution=resolution, detail=False)
    except Face3DError as e:
        print(f"  {photo.name}: no texture ({type(e).__name__}: {e})", file=sys.stderr)
        np.savez(tmp, failed=np.array(str(e)))
        os.replace(tmp, path)
        return None
    tex = np.round(np.clip(rec.texture, 0, 1) * 255).astype(np.uint8)
    np.savez_compressed(tmp, texture=tex, sh=rec.sh.astype(np.float32), landmark_error=np.float32(rec.landmark_error))
    os.replace(tmp, path)
    return {"texture": tex.astype(np.float32) / 255, "sh": rec.sh.astype(np.float32), "landmark_error": float(rec.landmark_error)}


def test_textures() -> list[tuple[str, dict]]:
    """(photo name, :func:`baked_texture`) for every held-out photo with a face."""
    out = []
    for p in test_texture_photos():
        t0 = time.perf_counter()
        got = baked_texture(p)
        if got is not None:
            out.append((p.name, got))
        if time.perf_counter() - t0 > 1:
            print(f"  baked {p.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return out


def synthetic_faces(n: int, albedos: list[str], seed: int = 0, yaw_deg: float = 45.0):
    """Yield ``n`` random ICT faces (identity, expression, pose, camera as :func:`random_face`) as
    (texture name, {albedo kind: SyntheticFace}), each rendered once per kind: 'smooth' (random
    smooth per-vertex skin tone) and/or 'real' (a held-out real-photo texture, the i-th face
    taking texture i mod #textures). Both kinds of one face share geometry, pose, camera,
    background and lighting: the SH fitted on a randomly drawn held-out photo, rescaled to ambient
    0.7–1.1 plus a directional light (:func:`face3d.fitting.synthetic.scaled_sh`)."""
    import dataclasses

    from face3d.fitting.synthetic import (
        random_face,
        render_face,
        scaled_sh,
        texture_vertex_albedo,
    )
    from face3d.reconstruction import get_model

    gt_model = get_model("ict")
    textures = test_textures()
    if not textures:
        raise RuntimeError("no held-out test texture could be baked")
    rng = np.random.default_rng(seed)
    for i in range(n):
        f = random_face(gt_model, rng, size=512, yaw_deg=yaw_deg, pitch_deg=20)
        r2 = np.random.default_rng([seed, i, 7])
        sh = scaled_sh(textures[r2.integers(len(textures))][1]["sh"], r2)
        bg = float(r2.uniform(0.2, 0.8))
        name, tex = textures[i % len(textures)]
        out = {}
        if "smooth" in albedos:
            out["smooth"] = render_face(gt_model, dataclasses.replace(f, sh=sh), background=bg)
        if "real" in albedos:
            alb = texture_vertex_albedo(gt_model, tex["texture"], r2)
            out["real"] = render_face(gt_model, dataclasses.replace(f, sh=sh, albedo=alb), texture=tex["texture"], background=bg)
        yield name, out


def _load_named_model(name: str):
    """get_model(name) with a calibrated MediaPipe-478 embedding, or the error message."""
    from face3d.reconstruction import get_model

    try:
        model = get_model(name)
    except (Face3DError, OSError, KeyError, ValueError) as e:  # e.g. "default" before the embedded default model lands
        return None, f"{type(e).__name__}: {e}"
    if "mediapipe478" not in model.embeddings:
        attach_calibrated_embedding(model)
    return model, ""


#: Rows that are not presets of the library: 'shading' is the removed 'shape' preset's settings
#: (photometric stage free of the landmarks), kept so the figure that removed it can be re-measured.
VARIANTS: dict[str, dict] = {"shading": {"photometric_landmark_scale": 0.0, "photometric_prior_scale": 0.03, "photometric_steps": 100,
                                         "render_size": 256}}


def _fit_and_measure(face, det, model, preset: str, fit: dict, gt_model, rigid: bool) -> dict:
    """Fit ``model`` to one synthetic face (landmarks ``det``) and measure it against the truth."""
    import torch

    region = gt_model.regions.get("narrow_face_area", gt_model.regions["face"]).numpy()
    face_tris = model.faces.numpy()
    if "face" in model.regions:
        face_tris = face_tris[model.regions["face"].numpy()[face_tris].all(1)]
    base, _, source = preset.partition("+")
    if source == "truth":  # the oracle row: the face's own exact 478 points instead of MediaPipe's
        det = true_landmarks(gt_model, face)
    t1 = time.perf_counter()
    chosen = dict(VARIANTS[base]) if base in VARIANTS else {"preset": base}
    rec = face3d.reconstruct(face.image, model=model, texture=False, landmarks=det, **{**chosen, **fit})
    out = {"seconds": time.perf_counter() - t1, "landmark_error": rec.landmark_error}
    gt_lm = gt_model.landmarks(torch.as_tensor(face.vertices)[None], "ibug68")[0].numpy()
    pv = rec.vertices()
    pred_lm = model.landmarks(torch.as_tensor(pv)[None], "ibug68")[0].numpy()
    inner = slice(17, 68)  # the similarity init uses the inner 51 points: models put the jaw points differently
    out["d"] = scan_to_mesh(face.vertices[region], gt_lm[inner], pv, face_tris, pred_lm[inner])
    if rigid:
        out["d_rigid"] = scan_to_mesh(face.vertices[region], gt_lm[inner], pv, face_tris, pred_lm[inner], icp_scale=False)
    if rec.landmark_set == "mediapipe478":  # against the truth: the GT face's own 478 points, projected
        true478 = true_landmarks(gt_model, face)
        iod = np.linalg.norm(true478[33] - true478[263])
        out["lm_true"] = np.linalg.norm(rec.landmarks2d("mediapipe478") - true478, axis=1).mean() / iod
        out["mp_true"] = np.linalg.norm(rec.landmark_targets - true478, axis=1).mean() / iod
    return out


def _summary(key: tuple[str, str, str], got: list[dict | None]) -> dict:
    """One table row from the per-face measurements of one (model, albedo, preset)."""
    ok = [g for g in got if g is not None]
    per_face = [1000 * float(np.median(g["d"])) if g is not None else float("nan") for g in got]
    allv = np.concatenate([g["d"] for g in ok]) * 1000 if ok else np.full(1, np.nan)
    mean = lambda k: float(np.mean([g[k] for g in ok if k in g])) if any(k in g for g in ok) else float("nan")
    rigid = [g["d_rigid"] for g in ok if "d_rigid" in g]
    return {"model": key[0], "albedo": key[1], "preset": key[2], "faces": len(got), "failed": len(got) - len(ok),
            "per_face_median_mm": per_face,
            "median_of_face_medians_mm": float(np.nanmedian(per_face)) if ok else float("nan"),
            "median_mm": float(np.median(allv)), "mean_mm": float(allv.mean()), "std_mm": float(allv.std()),
            "median_mm_rigid_icp": 1000 * float(np.median(np.concatenate(rigid))) if rigid else float("nan"),
            "landmark_error_pct": 100 * mean("landmark_error"), "landmark_error_vs_truth_pct": 100 * mean("lm_true"),
            "mediapipe_error_vs_truth_pct": 100 * mean("mp_true"), "seconds_per_face": mean("seconds")}


def synthetic(n: int, models: list[str], seed: int = 0, fit: dict | None = None, presets: tuple[str, ...] = ("default",),
              albedos: tuple[str, ...] = ("smooth",), rigid: bool = False, budget_s: float = float("inf"),
              checkpoint: Path | None = None) -> list[dict]:
    """Fit every (model, preset) to every synthetic face of every albedo kind, face after face
    (so a run cut by ``budget_s`` seconds, checked between faces, still compares every setting on
    the same faces); rows per (model, albedo, preset) with the NoW-style errors and per-face
    medians (mm), also written to ``checkpoint`` (JSON) after each face."""
    from face3d.landmarks.detector import detect_landmarks
    from face3d.reconstruction import get_model

    t0 = time.perf_counter()
    gt_model = get_model("ict")
    if "mediapipe478" not in gt_model.embeddings:
        attach_calibrated_embedding(gt_model)
    loaded = {name: _load_named_model(name) for name in models}
    for name, (model, why) in loaded.items():
        if model is None:
            print(f"  {name}: unavailable ({why})", file=sys.stderr)
    got: dict[tuple[str, str, str], list] = {(m, a, p): [] for a in albedos for m in models if loaded[m][0] is not None for p in presets}
    rows: list[dict] = []
    for i, (tex_name, faces) in enumerate(synthetic_faces(n, list(albedos), seed)):
        if time.perf_counter() - t0 > budget_s:
            print(f"  time budget reached after {i} faces", file=sys.stderr)
            break
        for albedo, f in faces.items():
            try:  # MediaPipe once per image, shared by every model and preset
                det = detect_landmarks(f.image, which="largest")[0]
            except Face3DError:
                det = None
            for (name, alb, preset), lst in got.items():
                if alb != albedo:
                    continue
                res = None
                if det is not None:
                    try:
                        res = _fit_and_measure(f, det, loaded[name][0], preset, fit or {}, gt_model, rigid)
                    except Face3DError as e:
                        print(f"  {name} {preset} {albedo} face {i}: failed ({type(e).__name__}: {e})", file=sys.stderr)
                lst.append(res)
                if res is not None:
                    print(f"  face {i} ({albedo}, {tex_name}) {name} {preset}: median {1000 * np.median(res['d']):.2f} mm, "
                          f"{res['seconds']:.1f}s fit", file=sys.stderr)
        rows = [_summary(k, v) for k, v in got.items()]
        rows += [{"model": m, "albedo": a, "preset": p, "faces": len(next(iter(got.values()), [])), "unavailable": loaded[m][1]}
                 for m in models if loaded[m][0] is None for a in albedos for p in presets]
        rows.sort(key=lambda r: (models.index(r["model"]), albedos.index(r["albedo"]), presets.index(r["preset"])))
        if checkpoint is not None:
            checkpoint.write_text(json.dumps({"faces_done": i + 1, "elapsed_s": time.perf_counter() - t0, "rows": rows}))
    return rows


def synthetic_table(rows: list[dict], presets: tuple[str, ...]) -> str:
    """One markdown table: model × albedo rows, the median of per-face medians per preset, and in
    how many faces (fitted by both) each non-default preset beats 'default'."""
    others = [p for p in presets if p != "default"]
    head = ["fitted model", "albedo", "faces (failed)"] + [f"`{p}` median mm" for p in presets]
    head += [f"`{p}` better than `default`" for p in others if "default" in presets] + ["s/face per preset"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    keys = sorted(dict.fromkeys((r["model"], r["albedo"]) for r in rows), key=lambda k: models.index(k[0]))
    for model, albedo in keys:
        mine = [r for r in rows if r["model"] == model and r["albedo"] == albedo]
        by = {r["preset"]: r for r in sorted(mine, key=lambda r: "unavailable" not in r)}  # a measured row wins over 'unavailable'
        first = next(iter(by.values()))
        if "unavailable" in first:
            lines.append(f"| {model} | {albedo} | unavailable: {first['unavailable'][:80]} |" + " |" * (len(head) - 3))
            continue
        cells = [model, albedo, f"{first['faces']} ({max(r['failed'] for r in by.values())})"]
        cells += [f"{by[p]['median_of_face_medians_mm']:.2f}" if p in by else "" for p in presets]
        if "default" in by:
            base = np.array(by["default"]["per_face_median_mm"])
            for p in others:
                if p in by:
                    other = np.array(by[p]["per_face_median_mm"])
                    both = np.isfinite(base) & np.isfinite(other)
                    cells.append(f"{int((other[both] < base[both]).sum())} of {int(both.sum())}")
        cells.append(" / ".join(f"{by[p]['seconds_per_face']:.1f}" for p in presets if p in by))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def real(model: str, fit: dict | None = None) -> dict:
    """Every photo of shared ``faces/`` through ``face3d.reconstruct`` (no texture): the landmark
    error against the targets the fit followed (``Reconstruction.landmark_error``: MediaPipe's 478, or on a
    profile the learned 68) and against MediaPipe's 478 wherever MediaPipe read the face; AFLW2000
    NME against the ground truth; masked PSNR."""
    from face3d.fitting.losses import skin_mask
    from face3d.landmarks.detector import detect_landmarks
    from face3d.landmarks.mapping import nme_bbox
    from face3d.result import interocular_error

    folder = shared_data() / "faces"
    lm_errs, mp_errs, nmes, psnrs, noface, names, followed = [], [], [], [], [], [], []
    for p in sorted(folder.glob("*.jpg")):
        try:
            rec = face3d.reconstruct(str(p), model=model, texture=False, **(fit or {}))
        except Face3DError as e:
            noface.append(f"{p.name}: {type(e).__name__}")
            continue
        names.append(p.name)
        lm_errs.append(rec.landmark_error)
        if rec.landmark_set == "ibug68":
            followed.append(p.name)
        mp = detect_landmarks(rec.image, which="largest")[0]
        if mp.scheme == "mediapipe478":
            mp_errs.append(interocular_error(rec.landmarks2d("mediapipe478"), mp.points[:, :2], "mediapipe478"))
        gt_file = p.with_suffix(".lm68.txt")
        if p.name.startswith("aflw2000") and gt_file.is_file():
            gt = np.loadtxt(gt_file)[:, :2]
            nmes.append(nme_bbox(rec.landmarks2d("ibug68"), gt))
        img = rec.image.astype(np.float32) / 255
        ren = rec.render(textured=False)
        lm68 = rec.landmark_targets if rec.landmark_set == "ibug68" else rec.landmarks2d("ibug68")
        mask = skin_mask(img, lm68) > 0.5
        if mask.sum() > 50:
            mse = float(((ren[mask] - img[mask]) ** 2).mean())
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-10)))
        print(f"  {p.name}: landmark error {100 * rec.landmark_error:.2f} % ({rec.landmark_set})", file=sys.stderr)
    return {"model": model, "photos_fitted": len(names), "skipped": noface,
            "landmark_error_pct_mean": 100 * float(np.mean(lm_errs)), "landmark_error_pct_median": 100 * float(np.median(lm_errs)),
            "landmark_error_pct_max": 100 * float(np.max(lm_errs)), "followed_learned": followed,
            "vs_mediapipe_pct": [100 * float(f(mp_errs)) for f in (np.mean, np.median, np.max)], "vs_mediapipe_n": len(mp_errs),
            "aflw2000_nme_pct": 100 * float(np.mean(nmes)) if nmes else float("nan"), "aflw2000_n": len(nmes),
            "masked_psnr_db": float(np.mean(psnrs)) if psnrs else float("nan")}


def aflw(model: str, every: int = 1, labelled_set: Path | None = None) -> dict:
    """AFLW2000-3D development split (``aflw2000_dev``, evaluation only; its README's protocol):
    each image through ``face3d.reconstruct`` (our own detector's boxes, default fit, no texture),
    the fitted model's ``ibug68`` against the ground truth, and, on the same detections
    (``detect_landmarks`` run once more), raw MediaPipe (478 -> 68 map; faces it read) and the raw
    learned regressor (``FaceLandmarks.learned68``, when its weights are installed); 2D NME per
    |yaw| bin (rows for :func:`regressor.table`) and the images without a face. ``every``: every
    k-th image (1: all 300). ``labelled_set``: also the fitted model's points of that set
    (:mod:`face3d.fitting.labelled_landmarks`, calibrated on photos outside this split), rows
    ``labelled``."""
    import regressor as R

    from face3d.io.images import load_image
    from face3d.landmarks.detector import detect_landmarks
    from face3d.landmarks.mapping import mediapipe_to_ibug68

    folder = shared_data() / "aflw2000_dev"
    fitted, raw, learned, labelled, missed = [], [], [], [], []
    name = None
    if labelled_set is not None:
        from face3d.fitting.labelled_landmarks import load_labelled_set
        from face3d.inputs import get_model

        ls = load_labelled_set(labelled_set)
        if set(ls.photos) & {p.name for p in folder.glob("*.jpg")}:
            raise SystemExit(f"{labelled_set} was calibrated on photos of {folder}: evaluate it on other photos")
        ls.attach(get_model(model))  # the cached instance face3d.reconstruct(model=name) fits
        name = ls.name
    for gt_path in sorted(folder.glob("*.lm68.txt"))[::every]:
        gt, yaw = R.read_gt(gt_path)
        photo = gt_path.with_name(gt_path.name.replace(".lm68.txt", ".jpg"))
        try:
            rec = face3d.reconstruct(str(photo), model=model, texture=False, detail=False)
            det = detect_landmarks(load_image(str(photo)), which="largest")[0]
        except Face3DError as e:
            missed.append(f"{photo.name} ({type(e).__name__})")
            continue
        preds = [(fitted, rec.landmarks2d("ibug68"))] + ([(labelled, rec.landmarks2d(name))] if name else [])
        if det.scheme == "mediapipe478":
            preds.append((raw, mediapipe_to_ibug68(np.asarray(det.points, np.float64))[:, :2]))
        if det.learned68 is not None:
            preds.append((learned, det.learned68[:, :2].astype(np.float64)))
        for rows, pred in preds:
            rows.append(R.nme_row(yaw, pred, gt))
    return {"model": model, "fitted": fitted, "mediapipe": raw, "learned": learned, "labelled": labelled, "missed": missed}


def speed(model: str, repeats: int = 1) -> dict:
    rows = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "face3d.apps.cli", "reconstruct", "--demo", "-o", str(out), "--json", "--model", model],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                                  env={**os.environ, "FACE3D_SERVE": "0"})  # in-process each time: no resident worker
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            summary = json.loads(proc.stdout)
            rows.append({"wall_s": wall, **summary["timings_s"]})
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    best = min(rows, key=lambda r: r["wall_s"])
    return {"model": model, "wall_s_incl_python_start": best["wall_s"], "stages_s": best, "peak_rss_mib": peak,
            "load_average": os.getloadavg()[0]}


# ----------------------------------------------------------------------------- gallery
GALLERY_PHOTOS = ("faces/skimage_astronaut.jpg", "faces_more/mpl_grace_hopper.jpg", "faces_more/facerec_biden_official.jpg",
                  "faces/d3dfr_000002.jpg", "faces_more/hrn_00034.jpg", "faces_more/faceapi_surprised.jpg", "faces/3ddfa_car.jpg",
                  "faces_more/deepface_img16.jpg")
GALLERY_VIEWS = (("front", 0.0), ("three-quarter", 40.0), ("side", 90.0))


def redistributable(photo: Path) -> str | None:
    """The credit line when ``photo``'s SOURCES.tsv entry says the photo itself is public domain,
    CC0 or CC-BY (not merely that the repository it came from is open source); else None."""
    import csv

    with open(photo.parent / "SOURCES.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["filename"] == photo.name:
                text = f"{row['license']} {row['notes']}".lower()
                if any(k in text for k in ("public domain", "cc0", "cc-by")) and "may not cover image rights" not in text:
                    return f"{photo.name}: {row['notes']} (from {row['repo']}, {row['license']})"
    return None


def _grey_sh() -> np.ndarray:
    """Lighting (9, 3) of the grey renders: ambient 0.45 plus a key light from the upper left."""
    from face3d import renderers

    sh = renderers.ambient_sh(0.45)[0].numpy()
    d = np.array([-0.35, 0.45, 0.82])
    d /= np.linalg.norm(d)
    sh[1:4] += (0.55 / renderers.SH_C0) * 0.5 * np.array([d[1], d[2], d[0]])[:, None]
    return sh


def _grey_render(vertices: np.ndarray, faces: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray]:
    """Grey-shaded render (H, W, 3) float in [0, 1] and its coverage (H, W, 1) of world-space vertices (V, 3)."""
    import torch

    from face3d import renderers

    out = renderers.render_mesh(renderers.Mesh(torch.as_tensor(vertices, dtype=torch.float32)[None], torch.as_tensor(faces)), camera,
                                vertex_colors=torch.full((1, len(vertices), 3), 0.8), sh=torch.as_tensor(_grey_sh())[None])
    return out.image[0].clamp(0, 1).numpy(), out.alpha[0].numpy()


def grey_view(vertices: np.ndarray, faces: np.ndarray, yaw_deg: float, size: int, centre: np.ndarray, extent: float) -> np.ndarray:
    """Untextured grey rendering (size, size, 3) uint8 of a model-space mesh (V, 3) metres turned
    by ``yaw_deg`` about +Y (positive: the face turns to the viewer's left), orthographic, the
    point ``centre`` in the middle and ``extent`` metres across, on white."""
    import torch
    from scipy.spatial.transform import Rotation

    from face3d import renderers

    R = Rotation.from_euler("y", -yaw_deg, degrees=True).as_matrix()
    v = (vertices - centre) @ R.T
    v[:, 2] -= 1.0
    cam = renderers.OrthographicCamera(scale=size / extent, center=torch.tensor([size / 2, size / 2]), width=size, height=size)
    img, a = _grey_render(v, faces, cam)
    return np.round((a * img + (1 - a)) * 255).astype(np.uint8)


def _crop(img: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    from PIL import Image

    x0, y0, x1, y1 = box
    pad = int(np.ceil(max(0.0, -x0, -y0, x1 - img.shape[1], y1 - img.shape[0]))) + 1  # the box may leave the photo: black there
    img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    return np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS, box=(x0 + pad, y0 + pad, x1 + pad, y1 + pad)))


def gallery_row(photo: Path, model: str, size: int = 200) -> tuple[np.ndarray, str | None, dict]:
    """One gallery row (size, 5·size, 3) uint8: photo (or, when it may not be redistributed, a
    blank panel) | fitted mesh over the photo (or over black) with the fitted (green) and detected
    (red) landmarks | grey renders front, three-quarter, side. Returns (row, credit, info)."""
    from PIL import Image, ImageDraw

    rec = face3d.reconstruct(str(photo), model=model, texture=False)
    credit = redistributable(photo)
    img = rec.image
    lm = rec.landmark_targets
    cx, cy = lm.mean(0)
    half = 0.8 * max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]))
    box = (cx - half, cy - half, cx + half, cy + half)
    m = rec._model()
    grey, alpha = _grey_render(rec.vertices(posed=True), m.faces.numpy(), rec.camera())  # the camera holds the translation
    back = img.astype(np.float32) / 255 if credit else np.zeros_like(grey)
    over = np.round((back * (1 - 0.6 * alpha) + 0.6 * alpha * grey) * 255).astype(np.uint8)
    first = _crop(img, box, size) if credit else np.full((size, size, 3), 235, np.uint8)
    over = Image.fromarray(_crop(over, box, size))
    draw = ImageDraw.Draw(over)
    scale = size / (2 * half)
    for pts, colour in ((lm, (255, 40, 40)), (rec.landmarks2d(rec.landmark_set), (40, 220, 40))):
        step = 4 if len(pts) > 100 else 1  # every 4th of MediaPipe's 478 points
        for x, y in (pts[::step] - [box[0], box[1]]) * scale:
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=colour)
    if not credit:
        panel = Image.fromarray(first)
        ImageDraw.Draw(panel).text((8, size // 2 - 16), f"{photo.name}\nphoto not shown\n(licence unclear)", fill=(90, 90, 90))
        first = np.asarray(panel)
    v = rec.vertices()
    faces = m.faces.numpy()
    region = m.regions["face"].numpy() if "face" in m.regions else np.ones(len(v), bool)
    lo, hi = v[region].min(0), v[region].max(0)
    centre = (lo + hi) / 2
    extent = 1.15 * float(max(hi[1] - lo[1], hi[2] - lo[2]))
    views = [grey_view(v, faces, yaw, size, centre, extent) for _, yaw in GALLERY_VIEWS]
    row = np.concatenate([first, np.asarray(over)] + views, 1)
    return row, credit, {"photo": photo.name, "landmark_error_pct": 100 * rec.landmark_error, "shown": bool(credit)}


def gallery(model: str, out: Path, photos: tuple[str, ...] = GALLERY_PHOTOS, size: int = 200) -> list[dict]:
    """Write the gallery PNG (palette-quantised to stay small); returns per-photo info with credits."""
    from PIL import Image

    rows, infos = [], []
    for rel in photos:
        t0 = time.perf_counter()
        row, credit, info = gallery_row(shared_data() / rel, model, size)
        rows.append(row)
        infos.append({**info, "credit": credit, "seconds": time.perf_counter() - t0})
        print(f"  gallery {rel}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    sheet = Image.fromarray(np.concatenate(rows, 0)).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, out)
    return infos


def main(argv: list[str] | None = None) -> int:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", default="all", choices=["all", "synthetic", "real", "aflw", "speed", "gallery"])
    ap.add_argument("--every", type=int, default=1, help="aflw: every k-th image of aflw2000_dev (1: all 300)")
    ap.add_argument("--landmark-set", type=Path, default=None,
                    help="aflw: also read the fits with this labelled landmark set (python -m face3d.fitting.labelled_landmarks)")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--models", default=None, help="comma list (default: 'default,ict,basic'; gallery: 'default' if it loads, else ict)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--fit", action="append", default=[], metavar="KEY=VALUE",
                    help="a FitConfig setting for the synthetic and real sections (repeatable), e.g. photometric_landmark_scale=0.03")
    ap.add_argument("--preset", default="default", help="FitConfig preset for the real section: default or fast")
    ap.add_argument("--presets", default="default", help="FitConfig presets compared in the synthetic section (comma-separated; "
                    "'shading' = the removed 'shape' preset's settings; a '+truth' suffix, e.g. 'default+truth', fits from the "
                    "face's own exact 478 points instead of MediaPipe's: the oracle that bounds what better landmarks can give)")
    ap.add_argument("--albedo", default="both", choices=["real", "smooth", "both"],
                    help="synthetic faces' albedo: textures baked from held-out real photos, smooth random skin, or both")
    ap.add_argument("--rigid", action="store_true", help="synthetic: also the error after rigid (scale-free) ICP")
    ap.add_argument("--budget-min", type=float, default=float("inf"), help="synthetic: start no new face after this many minutes")
    ap.add_argument("--checkpoint", type=Path, help="synthetic: rewrite the rows so far as JSON here after each face")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gallery.png", help="gallery PNG")
    ap.add_argument("--table-from", type=Path, nargs="+", metavar="JSON",
                    help="only print the synthetic table of earlier --json/--checkpoint files (e.g. an --albedo real and an --albedo smooth run)")
    a = ap.parse_args(argv)
    if a.table_from:
        rows = []
        for path in a.table_from:
            got = json.loads(path.read_text())
            rows += got["synthetic"] if "synthetic" in got else got["rows"]
        print(synthetic_table(rows, tuple(a.presets.split(","))))
        return 0
    fit = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.fit)}
    models = a.models.split(",") if a.models else ["default", "ict", "basic"]
    out: dict = {}
    if a.section in ("all", "synthetic"):
        presets = tuple(a.presets.split(","))
        albedos = ("real", "smooth") if a.albedo == "both" else (a.albedo,)
        t0 = time.perf_counter()
        rows = synthetic(a.n, models, fit=fit, presets=presets, albedos=albedos, rigid=a.rigid, budget_s=60 * a.budget_min,
                         checkpoint=a.checkpoint)
        out["synthetic"] = rows
        done = max((r["faces"] for r in rows), default=0)
        print(f"\nSynthetic ICT faces (n={done} of {a.n}, presets {', '.join(presets)}, fit settings {fit or 'default'}, yaw ±45°, pitch ±20°, "
              f"512², MediaPipe landmarks on the renders; median of per-face median scan-to-mesh errors, mm; "
              f"{time.perf_counter() - t0:.0f} s, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
        print(synthetic_table(rows, presets))
        print("\n| fitted model | albedo | preset | faces | failed | median mm (all points) | mean mm | landmark err % vs MediaPipe "
              "| landmark err % vs truth | MediaPipe err % vs truth | median mm, rigid ICP | s/face |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "unavailable" in r:
                continue
            print(f"| {r['model']} | {r['albedo']} | {r['preset']} | {r['faces']} | {r['failed']} | {r['median_mm']:.2f} | {r['mean_mm']:.2f} | "
                  f"{r['landmark_error_pct']:.2f} | {r['landmark_error_vs_truth_pct']:.2f} | {r['mediapipe_error_vs_truth_pct']:.2f} | "
                  f"{r['median_mm_rigid_icp']:.2f} | {r['seconds_per_face']:.1f} |")
    real_fit = {**fit, **({"preset": a.preset} if a.preset != "default" else {})}
    if a.section in ("all", "real"):
        rows = [real(m, real_fit) for m in models if _load_named_model(m)[0] is not None]
        out["real"] = rows
        print("\nReal photos (shared data faces/)")
        print("| model | photos | landmark err % of eye dist, vs the followed targets (mean / median / max) | vs MediaPipe (n) | "
              "AFLW2000 NME % (n) | masked PSNR dB |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            vm = " / ".join(f"{v:.2f}" for v in r["vs_mediapipe_pct"])
            print(f"| {r['model']} | {r['photos_fitted']} | {r['landmark_error_pct_mean']:.2f} / {r['landmark_error_pct_median']:.2f} / "
                  f"{r['landmark_error_pct_max']:.2f} | {vm} ({r['vs_mediapipe_n']}) | {r['aflw2000_nme_pct']:.2f} ({r['aflw2000_n']}) | "
                  f"{r['masked_psnr_db']:.2f} |")
        for r in rows:
            if r["skipped"]:
                print(f"  {r['model']} skipped: {', '.join(r['skipped'])}")
            if r["followed_learned"]:
                print(f"  {r['model']} followed the learned 68 points on: {', '.join(r['followed_learned'])}")
    if a.section in ("all", "aflw"):
        import regressor as R

        for m in models:
            if _load_named_model(m)[0] is None:
                continue
            t0 = time.perf_counter()
            r = aflw(m, a.every, a.landmark_set)
            out.setdefault("aflw", []).append(r)
            n = len(r["fitted"]) + len(r["missed"])
            R.table(f"AFLW2000-3D dev, {m} fitted, our detector's boxes ({len(r['missed'])} of {n} without a face, not counted; "
                    f"{time.perf_counter() - t0:.0f} s)", r["fitted"])
            R.table(f"AFLW2000-3D dev, raw MediaPipe 478 -> 68 on the same detections ({len(r['mediapipe'])} read by MediaPipe)", r["mediapipe"])
            if r["labelled"]:
                R.table(f"AFLW2000-3D dev, {m} fitted, read with the labelled set {a.landmark_set.name}", r["labelled"])
            if r["learned"]:
                R.table(f"AFLW2000-3D dev, raw learned regressor on the same detections ({len(r['learned'])})", r["learned"])
            if r["missed"]:
                print(f"  without a face: {', '.join(r['missed'])}")
    if a.section in ("all", "speed"):
        rows = [speed(m) for m in models if _load_named_model(m)[0] is not None]
        out["speed"] = rows
        print("\nSpeed: `face3d reconstruct --demo` (512 px, default settings, texture 1024², saving), seconds")
        for r in rows:
            st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
            print(f"| {r['model']} | wall {r['wall_s_incl_python_start']:.1f} s | peak RSS {r['peak_rss_mib']:.0f} MiB | "
                  f"load avg {r['load_average']:.1f} | {st} |")
    if a.section in ("all", "gallery"):
        model = models[0] if a.models else ("default" if _load_named_model("default")[0] is not None else "ict")
        t0 = time.perf_counter()
        infos = gallery(model, a.out)
        out["gallery"] = infos
        print(f"\nGallery ({model}) written to {a.out} ({a.out.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.0f} s)")
        for i in infos:
            print(f"| {i['photo']} | landmark err {i['landmark_error_pct']:.2f} % | photo {'shown' if i['shown'] else 'not shown'} |")
        for i in infos:
            if i["credit"]:
                print(f"  credit: {i['credit']}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
