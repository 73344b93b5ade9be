"""Benchmark of face3d.reconstruct: synthetic ground truth, real photos, speed.

    python benchmarks/reconstruct.py --section all --n 50        # everything (tens of minutes on 2 cores)
    python benchmarks/reconstruct.py --section synthetic --n 10 --models ict
    python benchmarks/reconstruct.py --section real
    python benchmarks/reconstruct.py --section speed

Synthetic (NoW-style): random ICT faces (identity ~ N(0, 1) per ICT mode, 4 random ARKit
expressions in [0, 0.7], yaw ±45°, pitch ±20°, roll ±10°, random SH lighting, random smooth
albedo, perspective camera 35–70 mm, 512²) are rendered with our renderer; each image goes
through the full public pipeline (MediaPipe landmarks on the rendering, fit). The ground-truth
face region (ICT 'narrow_face_area') is aligned to the prediction by a similarity transform on
the 68 landmarks, refined by ICP (point-to-surface) with scale, as NoW's protocol refines
scale, rotation and translation (the rigid-ICP figure is printed too), and the scan-to-mesh distances
(exact point-to-triangle, in the ground truth's units) are reported in mm. For `basic` (a different topology) the same
distances to its surface are measured, over the basic model's face-region triangles.

Real photos (shared data faces/): landmark error of the fitted model against MediaPipe's
(mapped to iBUG-68), normalised by the outer-eye-corner distance; AFLW2000-3D 2D NME
(bbox-normalised, vs *.lm68.txt); masked PSNR of the untextured model render (model albedo ×
fitted SH) against the photo inside the skin mask.

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

import face3d  # noqa: E402
from face3d.errors import Face3DError  # noqa: E402
from face3d.fitting.init import umeyama  # noqa: E402
from face3d.testing import shared_data  # noqa: E402


# ----------------------------------------------------------------------------- geometry
def point_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (N,) and closest points (N,3) from points to a triangle mesh.

    Candidate triangles: those incident to the ``k`` nearest mesh vertices of each point.
    """
    import trimesh
    from scipy.spatial import cKDTree

    used = np.unique(faces)
    _, nn = cKDTree(vertices[used]).query(points, k=k)
    nn = used[nn]
    vf = [[] for _ in range(len(vertices))]
    for fi, tri in enumerate(faces):
        for v in tri:
            vf[v].append(fi)
    best_d = np.full(len(points), np.inf)
    best_p = np.zeros_like(points)
    cand = [sorted({f for v in row for f in vf[v]}) for row in nn]
    pi = np.concatenate([[i] * len(c) for i, c in enumerate(cand)]).astype(np.int64)
    fi = np.concatenate(cand).astype(np.int64)
    cp = trimesh.triangles.closest_point(vertices[faces[fi]], points[pi])
    d = np.linalg.norm(cp - points[pi], axis=1)
    order = np.lexsort((d, pi))
    first = np.unique(pi[order], return_index=True)[1]
    sel = order[first]
    best_d[pi[sel]] = d[sel]
    best_p[pi[sel]] = cp[sel]
    return best_d, best_p


def scan_to_mesh(gt_points: np.ndarray, gt_lm: np.ndarray, pred_vertices: np.ndarray, pred_faces: np.ndarray, pred_lm: np.ndarray,
                 icp_iters: int = 10, icp_scale: bool = True) -> np.ndarray:
    """NoW-style scan-to-mesh distances (N,) in the ground truth's units (metres): similarity from
    the landmarks, then ICP refinement (point-to-surface; with scale as NoW's protocol has it when
    ``icp_scale``, else rigid; the 5 % farthest points left out of each update)."""
    s, R, t = umeyama(gt_lm, pred_lm, with_scale=True)
    pts = s * gt_points @ R.T + t
    scale = s
    for _ in range(icp_iters):
        d, cp = point_to_surface(pts, pred_vertices, pred_faces)
        keep = d < np.percentile(d, 95)
        s2, R2, t2 = umeyama(pts[keep], cp[keep], with_scale=icp_scale)
        pts = s2 * pts @ R2.T + t2
        scale *= s2
    d, _ = point_to_surface(pts, pred_vertices, pred_faces)
    return d / scale  # the ground truth was scaled by ``scale``: distances back in its units


def attach_calibrated_embedding(model) -> None:
    """Give ``model`` a MediaPipe-478 embedding calibrated on its mean face
    (:mod:`face3d.models.calibrate`), cached in face3d's cache folder."""
    from face3d.models.calibrate import attach_embedding, calibrate_mediapipe_embedding, save_embedding
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


def synthetic(n: int, models: list[str], seed: int = 0, fit: dict | None = None) -> list[dict]:
    from face3d.fitting.synthetic import random_face
    from face3d.reconstruction import get_model

    gt_model = get_model("ict")
    region = gt_model.regions.get("narrow_face_area", gt_model.regions["face"]).numpy()
    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(n):
        faces.append(random_face(gt_model, rng, size=512, yaw_deg=45, pitch_deg=20))
    rows = []
    for name in models:
        model = get_model(name)
        if "mediapipe478" not in model.embeddings:
            attach_calibrated_embedding(model)
        face_tris = model.faces.numpy()
        if "face" in model.regions:
            face_tris = face_tris[model.regions["face"].numpy()[face_tris].all(1)]
        if "mediapipe478" not in gt_model.embeddings:
            attach_calibrated_embedding(gt_model)
        dists, dists_rigid, fails, times, lm_errs, lm_true, mp_true = [], [], 0, [], [], [], []
        for i, f in enumerate(faces):
            t0 = time.perf_counter()
            try:
                rec = face3d.reconstruct(f.image, model=model, texture=False, **(fit or {}))
            except Face3DError as e:
                fails += 1
                print(f"  {name} face {i}: failed ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            times.append(time.perf_counter() - t0)
            import torch

            gt_lm = gt_model.landmarks(torch.as_tensor(f.vertices)[None], "ibug68")[0].numpy()
            pv = rec.vertices()
            pred_lm = model.landmarks(torch.as_tensor(pv)[None], "ibug68")[0].numpy()
            d = scan_to_mesh(f.vertices[region], gt_lm, pv, face_tris, pred_lm)
            dists.append(d)
            dists_rigid.append(scan_to_mesh(f.vertices[region], gt_lm, pv, face_tris, pred_lm, icp_scale=False))
            lm_errs.append(rec.landmark_error)
            if rec.landmark_set == "mediapipe478":  # against the truth: the GT face's own 478 points, projected
                true478 = true_landmarks(gt_model, f)
                iod = np.linalg.norm(true478[33] - true478[263])
                lm_true.append(np.linalg.norm(rec.landmarks2d("mediapipe478") - true478, axis=1).mean() / iod)
                mp_true.append(np.linalg.norm(rec.landmark_targets - true478, axis=1).mean() / iod)
            print(f"  {name} face {i}: median {1000 * np.median(d):.2f} mm, mean {1000 * d.mean():.2f} mm, {times[-1]:.1f}s", file=sys.stderr)
        per_face = np.array([np.median(d) for d in dists]) * 1000
        allv = np.concatenate(dists) * 1000 if dists else np.zeros(1)
        rows.append({"model": name, "faces": len(faces), "failed": fails,
                     "median_mm": float(np.median(allv)), "mean_mm": float(allv.mean()), "std_mm": float(allv.std()),
                     "median_mm_rigid_icp": float(np.median(np.concatenate(dists_rigid))) * 1000 if dists_rigid else float("nan"),
                     "per_face_median_mm_median": float(np.median(per_face)) if len(per_face) else float("nan"),
                     "landmark_error_pct": 100 * float(np.mean(lm_errs)) if lm_errs else float("nan"),
                     "landmark_error_vs_truth_pct": 100 * float(np.mean(lm_true)) if lm_true else float("nan"),
                     "mediapipe_error_vs_truth_pct": 100 * float(np.mean(mp_true)) if mp_true else float("nan"),
                     "seconds_per_face": float(np.mean(times)) if times else float("nan")})
    return rows


def real(model: str, fit: dict | None = None) -> dict:
    from face3d.fitting.losses import skin_mask
    from face3d.landmarks.mapping import nme_bbox

    folder = shared_data() / "faces"
    lm_errs, nmes, psnrs, noface, names = [], [], [], [], []
    for p in sorted(folder.glob("*.jpg")):
        try:
            rec = face3d.reconstruct(str(p), model=model, texture=False, **(fit or {}))
        except Face3DError as e:
            noface.append(f"{p.name}: {type(e).__name__}")
            continue
        names.append(p.name)
        lm_errs.append(rec.landmark_error)
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
        print(f"  {p.name}: landmark error {100 * rec.landmark_error:.2f} %", file=sys.stderr)
    return {"model": model, "photos_fitted": len(names), "skipped": noface,
            "landmark_error_pct_mean": 100 * float(np.mean(lm_errs)), "landmark_error_pct_median": 100 * float(np.median(lm_errs)),
            "landmark_error_pct_max": 100 * float(np.max(lm_errs)),
            "aflw2000_nme_pct": 100 * float(np.mean(nmes)) if nmes else float("nan"), "aflw2000_n": len(nmes),
            "masked_psnr_db": float(np.mean(psnrs)) if psnrs else float("nan")}


def speed(model: str, repeats: int = 1) -> dict:
    rows = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "apps.cli", "reconstruct", "--demo", "-o", str(out), "--json", "--model", model],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            summary = json.loads(proc.stdout)
            rows.append({"wall_s": wall, **summary["timings_s"]})
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    best = min(rows, key=lambda r: r["wall_s"])
    return {"model": model, "wall_s_incl_python_start": best["wall_s"], "stages_s": best, "peak_rss_mib": peak,
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", default="all", choices=["all", "synthetic", "real", "speed"])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--models", default="ict,basic")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--fit", action="append", default=[], metavar="KEY=VALUE",
                    help="a FitConfig setting for the synthetic and real sections (repeatable), e.g. photometric_landmark_scale=0.03")
    ap.add_argument("--preset", default="default", help="FitConfig preset for the synthetic and real sections: default or shape")
    a = ap.parse_args(argv)
    fit = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.fit)}
    if a.preset != "default":
        fit["preset"] = a.preset
    out: dict = {}
    if a.section in ("all", "synthetic"):
        rows = synthetic(a.n, a.models.split(","), fit=fit)
        out["synthetic"] = rows
        print(f"\nSynthetic ICT faces (n={a.n}, fit settings {fit or 'default'}, yaw ±45°, pitch ±20°, 512², MediaPipe landmarks on the renders)")
        print("| fitted model | faces | failed | median mm | mean mm | std mm | median mm, rigid ICP | landmark err % vs MediaPipe "
              "| landmark err % vs truth | MediaPipe err % vs truth | s/face |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['faces']} | {r['failed']} | {r['median_mm']:.2f} | {r['mean_mm']:.2f} | {r['std_mm']:.2f} | "
                  f"{r['median_mm_rigid_icp']:.2f} | {r['landmark_error_pct']:.2f} | {r['landmark_error_vs_truth_pct']:.2f} | "
                  f"{r['mediapipe_error_vs_truth_pct']:.2f} | {r['seconds_per_face']:.1f} |")
    if a.section in ("all", "real"):
        rows = [real(m, fit) for m in a.models.split(",")]
        out["real"] = rows
        print("\nReal photos (shared data faces/)")
        print("| model | photos | landmark err % of eye dist (mean / median / max) | AFLW2000 NME % (n) | masked PSNR dB |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['photos_fitted']} | {r['landmark_error_pct_mean']:.2f} / {r['landmark_error_pct_median']:.2f} / "
                  f"{r['landmark_error_pct_max']:.2f} | {r['aflw2000_nme_pct']:.2f} ({r['aflw2000_n']}) | {r['masked_psnr_db']:.2f} |")
        for r in rows:
            if r["skipped"]:
                print(f"  {r['model']} skipped: {', '.join(r['skipped'])}")
    if a.section in ("all", "speed"):
        rows = [speed(m) for m in a.models.split(",")]
        out["speed"] = rows
        print("\nSpeed: `face3d reconstruct --demo` (512 px, default settings, texture 1024², saving), seconds")
        for r in rows:
            st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
            print(f"| {r['model']} | wall {r['wall_s_incl_python_start']:.1f} s | peak RSS {r['peak_rss_mib']:.0f} MiB | "
                  f"load avg {r['load_average']:.1f} | {st} |")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
