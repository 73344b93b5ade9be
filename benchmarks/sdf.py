"""Benchmark of the implicit-SDF reconstructor against the 3DMM fitter on planted detail.

    python benchmarks/sdf.py --n 3            # ~3 minutes per face on 2 cores
    python benchmarks/sdf.py --n 2 --views=-25,0,25   # three photos of each face
    python benchmarks/sdf.py --n 4 & python benchmarks/sdf.py --n 8 --skip 4   # faces 0-7 on two processes

Ground truth we make: random ICT faces (identity ~ N(0, 1) per mode, mild expression, yaw
±20°, pitch ±10°), subdivided twice (edges ~0.7 mm) and displaced along their normals by a
known high-frequency field on the 'narrow_face_area' region: forehead and crow's-feet wrinkles
(sinusoids, 7 mm wavelength, 0.5 mm amplitude) plus 60 random Gaussian bumps (sigma 2 mm,
±0.5 mm). Rendered at 512² with our renderer under a known SH light (ambient + a strong
directional term) and a smooth UV albedo. Each image goes through the public pipeline
(MediaPipe landmarks on the rendering, fit) three ways:

- ``3dmm``: the 3DMM fit alone (no detail),
- ``3dmm+sfs``: the fitter with its shape-from-shading displacement map (the default CLI),
- ``sdf``: ``method="sdf"`` (the implicit-SDF displacement map).

For each, the prediction is the fitted ICT mesh (model space) subdivided twice and displaced
by the method's UV displacement map. The ground-truth face region is aligned to it (similarity on the 68
landmarks, then ICP refining scale, rotation and translation as NoW's protocol does; the
rigid-ICP figures are printed too), and we report the scan-to-mesh distance (exact point-to-triangle, mm) and the mean angle (degrees) between ground-truth normals and the predicted surface's
normals at the closest vertex, both over the face region. Because a few tenths of a millimetre
of registration error shift millimetre-scale wrinkles out of phase in 3D, we also report the
normal error in the image: the ground-truth normal map of the photo against the prediction's
rendered with the fitted camera, over the face-region pixels (the registration a single photo
actually gives).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruct import attach_calibrated_embedding, point_to_surface

import face3d
from face3d.detail.sfs import subdivide
from face3d.fitting.init import umeyama
from face3d.io.mesh import vertex_normals_np


def subdivide_twice(v: torch.Tensor, f: torch.Tensor, t: torch.Tensor, tf: torch.Tensor):
    for _ in range(2):
        v, f, t, tf = subdivide(v, f, t, tf)
    return v, f, t, tf


def planted_field(p: np.ndarray, ref: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Displacement (N,) metres at model-space points p (N,3); ``ref`` are the same points on
    the mean face (so the field is attached to the face, not to space)."""
    h = np.zeros(len(p))
    y, x = ref[:, 1], ref[:, 0]
    lo, hi = ref[region].min(0), ref[region].max(0)
    height = (y - lo[1]) / (hi[1] - lo[1])
    forehead = np.clip((height - 0.72) / 0.08, 0, 1) * np.clip((0.97 - height) / 0.05, 0, 1)
    h += 5e-4 * forehead * np.sin(2 * np.pi * y / 7e-3)
    for side in (-1, 1):  # crow's feet: radial ripples at the outer eye corners
        c = np.array([side * 0.75 * (hi[0] - lo[0]) / 2 + (hi[0] + lo[0]) / 2, lo[1] + 0.62 * (hi[1] - lo[1])])
        r = np.hypot(x - c[0], y - c[1])
        ang = np.arctan2(y - c[1], x - c[0])
        h += 3e-4 * np.exp(-((r - 0.012) ** 2) / (2 * 0.006**2)) * np.sin(9 * ang)
    idx = rng.choice(np.nonzero(region)[0], 60, replace=False)
    for i in idx:
        d2 = ((ref - ref[i]) ** 2).sum(1)
        h += rng.choice([-1, 1]) * 5e-4 * np.exp(-d2 / (2 * 2e-3**2))
    return h * region


def make_case(model, rng: np.random.Generator, size: int = 512, yaws: list[float] | None = None, head_fraction: float = 0.5):
    """One ground-truth face rendered once at a random pose, or, with ``yaws`` (degrees), at
    each of those yaws (same face, pitch and roll): then image and normal maps are lists.
    ``head_fraction``: the share of the image height a 0.25 m head spans (0.5: the face is
    ~130 px wide at 512², ~1 px per mm, so the planted 7 mm wrinkles are 7 px apart)."""
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    from face3d import renderers
    from face3d.fitting.camera import intrinsics
    from face3d.fitting.synthetic import random_sh

    shape = (rng.normal(0, 1, model.n_shape) * model.id_std.numpy()).astype(np.float32)
    expr = np.zeros(model.n_expression, np.float32)
    expr[rng.choice(model.n_expression, 2, replace=False)] = rng.uniform(0, 0.3, 2)
    ang = np.radians([rng.uniform(-10, 10), rng.uniform(-20, 20), rng.uniform(-5, 5)])
    with torch.no_grad():
        v = model(shape=torch.as_tensor(shape)[None], expression=torch.as_tensor(expr)[None])[0]
    vs, fs, ts, tfs = subdivide_twice(v, model.faces, model.uvs, model.uv_faces)
    ref, _, _, _ = subdivide_twice(model.template, model.faces, model.uvs, model.uv_faces)
    region0 = model.regions["narrow_face_area"].numpy()
    _, nn = cKDTree(model.template.numpy()).query(ref.numpy())
    region = region0[nn]
    h = planted_field(vs.numpy(), ref.numpy(), region, rng)
    n = vertex_normals_np(vs.numpy().astype(np.float64), fs.numpy())
    gt = (vs.numpy() + h[:, None] * n).astype(np.float32)
    focal = float(size * 50 / 36.0)
    dist = focal * 0.25 / (head_fraction * size)
    trans = np.array([0.0, 0.0, -dist], np.float32)
    sh = random_sh(rng)
    K = intrinsics(torch.tensor([focal]), float(size), float(size))
    cam = renderers.PerspectiveCamera(K=K, R=torch.eye(3)[None], t=torch.as_tensor(trans)[None], width=size, height=size)
    uu, vv = np.meshgrid(np.linspace(0, 1, 256), np.linspace(0, 1, 256))
    tex = np.stack([0.70 + 0.04 * np.sin(6 * uu), 0.52 + 0.03 * np.cos(5 * vv), 0.42 + 0.02 * np.sin(4 * uu + 3 * vv)], -1)
    gt_lm = model.landmarks(v[None], "ibug68")[0].numpy()
    imgs, normal_maps = [], []
    for yaw in ([None] if yaws is None else yaws):
        a = ang if yaw is None else np.array([ang[0], np.radians(yaw), ang[2]])
        R = Rotation.from_euler("ZYX", a[::-1]).as_matrix().astype(np.float32)
        posed = torch.as_tensor(gt) @ torch.as_tensor(R).T
        with torch.no_grad():
            out = renderers.render_mesh(renderers.Mesh(posed[None], fs, uvs=ts, uv_faces=tfs), cam, texture=torch.as_tensor(tex, dtype=torch.float32)[None],
                                        sh=torch.as_tensor(sh)[None], background=0.5)
            ref = renderers.render_mesh(renderers.Mesh(posed[None], fs), cam, vertex_colors=torch.as_tensor(region, dtype=torch.float32)[:, None].expand(-1, 3)[None])
        imgs.append(np.round(out.image[0].clamp(0, 1).numpy() * 255).astype(np.uint8))
        mask = (ref.alpha[0, ..., 0] > 0.99) & (ref.albedo[0, ..., 0] > 0.99)
        normal_maps.append((ref.normals[0], mask))
    if yaws is None:
        return imgs[0], gt, fs.numpy(), region, gt_lm, normal_maps[0]
    return imgs, gt, fs.numpy(), region, gt_lm, normal_maps


def predicted_mesh(rec, model, use_detail: bool, posed: bool = False):
    """The fitted mesh (model space, or with the fitted head pose) subdivided twice and displaced
    by the UV displacement map."""
    v = torch.as_tensor(rec.vertices(posed=posed), dtype=torch.float32)
    vs, fs, ts, tfs = subdivide_twice(v, model.faces, model.uvs, model.uv_faces)
    vs_np = vs.numpy().astype(np.float64)
    if use_detail and rec.displacement is not None:
        from face3d import renderers

        # per-vertex UV of the subdivided mesh (first UV seen for each vertex)
        vt = np.zeros((len(vs_np), 2), np.float32)
        vt[fs.numpy().reshape(-1)] = ts.numpy()[tfs.numpy().reshape(-1)]
        D = torch.as_tensor(np.asarray(rec.displacement, np.float32))[None, ..., None]
        tc = torch.stack([torch.as_tensor(vt[:, 0]), 1 - torch.as_tensor(vt[:, 1])], -1).reshape(1, 1, -1, 2)
        d = renderers.texture(D, tc, filter_mode="linear", boundary_mode="clamp").reshape(-1).numpy()
        vs_np = vs_np + d[:, None] * vertex_normals_np(vs_np, fs.numpy())
    return vs_np, fs.numpy()


def evaluate(gt: np.ndarray, gt_faces: np.ndarray, region: np.ndarray, gt_lm: np.ndarray, pv: np.ndarray, pf: np.ndarray,
             pred_lm: np.ndarray, n_points: int = 20000, seed: int = 0, icp_scale: bool = True) -> tuple[float, float]:
    """(mean scan-to-mesh distance mm, mean normal angle deg) over the face region.

    Both meshes in model space; NoW-style alignment: similarity on the 68 landmarks, then ICP
    (point-to-surface) refining scale, rotation and translation as NoW's protocol does (rigid
    only when ``icp_scale`` is False); distances in the ground truth's units."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    idx = rng.choice(np.nonzero(region)[0], min(n_points, int(region.sum())), replace=False)
    gn = vertex_normals_np(gt.astype(np.float64), gt_faces)[idx]
    s, R, t = umeyama(gt_lm, pred_lm, with_scale=True)
    pts = s * gt[idx].astype(np.float64) @ R.T + t
    Rt = R.copy()
    scale = s
    for _ in range(8):
        d, cp = point_to_surface(pts, pv, pf)
        keep = d < np.percentile(d, 95)
        s2, R2, t2 = umeyama(pts[keep], cp[keep], with_scale=icp_scale)
        pts = s2 * pts @ R2.T + t2
        Rt = R2 @ Rt
        scale *= s2
    d, _ = point_to_surface(pts, pv, pf)
    d = d / scale
    used = np.unique(pf)
    pn = vertex_normals_np(pv, pf)
    _, nn = cKDTree(pv[used]).query(pts)
    cos = np.clip((gn @ Rt.T * pn[used[nn]]).sum(1), -1, 1)
    return 1000 * float(d.mean()), float(np.degrees(np.arccos(cos)).mean())


def image_normal_error(rec, model, use_detail: bool, gt_normals: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean angle (deg) between the ground-truth normal map of the photo and the prediction's,
    rendered with the fitted camera, over face-region pixels both cover (camera frame)."""
    from face3d import renderers

    pv, pf = predicted_mesh(rec, model, use_detail, posed=True)
    with torch.no_grad():
        out = renderers.render_mesh(renderers.Mesh(torch.as_tensor(pv, dtype=torch.float32)[None], torch.as_tensor(pf)), rec.camera(),
                                    vertex_colors=torch.ones(1, len(pv), 3))
    m = mask & (out.alpha[0, ..., 0] > 0.99)
    cos = (out.normals[0][m] * gt_normals[m]).sum(-1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def shaded(rec, model, use_detail: bool) -> np.ndarray:
    """Grey render (H, W, 3) uint8 of the (detailed) fit under the fitted light, over the photo."""
    from face3d import renderers

    pv, pf = predicted_mesh(rec, model, use_detail, posed=True)
    with torch.no_grad():
        out = renderers.render_mesh(renderers.Mesh(torch.as_tensor(pv, dtype=torch.float32)[None], torch.as_tensor(pf)), rec.camera(),
                                    vertex_colors=torch.full((1, len(pv), 3), 0.7), sh=torch.as_tensor(rec.sh, dtype=torch.float32)[None])
    a = out.alpha[0].numpy()
    img = out.image[0].clamp(0, 1).numpy() * a + rec.image.astype(np.float32) / 255 * (1 - a)
    return np.round(img * 255).astype(np.uint8)


def real_photos(k: int, out: Path, iterations: int | None, skip: int = 0) -> None:
    """method='sdf' on k photos of the shared faces/ folder (sorted, after the first ``skip``);
    writes overlays (photo | 3DMM+SfS | SDF) to ``out`` (outside the repository: the photos are not ours)."""
    from face3d.errors import Face3DError
    from face3d.io.images import write_image
    from face3d.testing import shared_data

    photos = sorted((shared_data() / "faces").glob("*.jpg"))[skip : skip + k]
    out.mkdir(parents=True, exist_ok=True)
    print("\n| photo | seconds | fell back | displacement p99 (mm) | overlay |")
    print("|---|---|---|---|---|")
    for p in photos:
        t0 = time.perf_counter()
        try:
            rec = face3d.reconstruct(str(p), method="sdf", **({} if iterations is None else {"sdf_iterations": iterations}))
        except Face3DError as e:
            print(f"| {p.name} | - | {type(e).__name__} | - | - |")
            continue
        dt = time.perf_counter() - t0
        model = rec._model()
        base = face3d.reconstruct(str(p), method="3dmm")
        panel = np.concatenate([rec.image, shaded(base, model, True), shaded(rec, model, True)], 1)
        write_image(out / f"{p.stem}_sdf.png", panel)
        d = np.abs(np.asarray(rec.displacement)) if rec.displacement is not None else np.zeros(1)
        print(f"| {p.name} | {dt:.0f} | {rec.sdf.fell_back} | {1000 * np.percentile(d[d > 0], 99) if (d > 0).any() else 0:.2f} | "
              f"{out / (p.stem + '_sdf.png')} |")


def main() -> None:
    from face3d.testing import use_shared_ict

    use_shared_ict()  # a development checkout: load_model('ict') reads the shared data's ICT-FaceKit
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3, help="number of synthetic faces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=None, help="SDF iterations (default: the library default)")
    ap.add_argument("--head-fraction", type=float, default=0.5, help="share of the image height the head spans (0.9: a close portrait)")
    ap.add_argument("--views", default=None, help="several photos per face at these yaws, e.g. -25,0,25 (default: one photo at a random yaw)")
    ap.add_argument("--real", type=int, default=0, help="also run on the first K shared photos and write overlays")
    ap.add_argument("--real-skip", type=int, default=0, help="skip the first photos of the folder (to split a run)")
    ap.add_argument("--skip", type=int, default=0, help="generate but do not score the first synthetic faces (to split a run)")
    ap.add_argument("--preset", default="default", help="FitConfig preset of the fit under both methods: default or fast")
    ap.add_argument("--out", type=Path, default=Path("out/benchmark_sdf"), help="folder for the real-photo overlays")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.real:
        real_photos(args.real, args.out, args.iterations, args.real_skip)
        if args.n == 0:
            return
    from face3d.reconstruction import get_model

    model = get_model("ict")
    if "mediapipe478" not in model.embeddings:
        attach_calibrated_embedding(model)
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[tuple[float, float, float]]] = {"3dmm": [], "3dmm+sfs": [], "sdf": []}
    times: dict[str, list[float]] = {"3dmm+sfs": [], "sdf": []}
    opts: dict = {} if args.iterations is None else {"sdf_iterations": args.iterations}
    if args.preset != "default":
        opts["preset"] = args.preset
    yaws = [float(y) for y in args.views.split(",")] if args.views else None
    for i in range(args.n):
        if yaws is None:
            img, gt, gf, region, gt_lm, (gt_normals, mask) = make_case(model, rng, head_fraction=args.head_fraction)
        else:  # several photos of one face; the reconstruction of the most frontal one is scored
            imgs, gt, gf, region, gt_lm, maps = make_case(model, rng, yaws=yaws, head_fraction=args.head_fraction)
            k = int(np.argmin(np.abs(yaws)))
            img, (gt_normals, mask) = imgs, maps[k]
        if i < args.skip:
            continue
        for method in ("3dmm", "sdf"):
            t0 = time.perf_counter()
            rec = face3d.reconstruct(img, model=model, method=method, texture_resolution=512, detail_resolution=512, **opts)
            elapsed = time.perf_counter() - t0
            if yaws is not None:
                rec = rec[k]
            pred_lm = model.landmarks(torch.as_tensor(rec.vertices())[None], "ibug68")[0].numpy()
            names = ["3dmm", "3dmm+sfs"] if method == "3dmm" else ["sdf"]
            for name in names:
                pv, pf = predicted_mesh(rec, model, use_detail=(name != "3dmm"))
                err = evaluate(gt, gf, region, gt_lm, pv, pf, pred_lm)
                rigid = evaluate(gt, gf, region, gt_lm, pv, pf, pred_lm, icp_scale=False)
                img_err = image_normal_error(rec, model, name != "3dmm", gt_normals, mask)
                rows[name].append((*err, img_err, *rigid))
                print(f"face {i} {name}: scan-to-mesh {err[0]:.3f} mm, normals {err[1]:.2f} deg (3D), {img_err:.2f} deg (image); "
                      f"rigid ICP {rigid[0]:.3f} mm, {rigid[1]:.2f} deg", file=sys.stderr)
            times["3dmm+sfs" if method == "3dmm" else "sdf"].append(elapsed)
            if method == "sdf":
                print(f"face {i} sdf stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in rec.timings.items()), file=sys.stderr)
    views = f"photos at yaw {args.views} deg (the most frontal one scored)" if args.views else "one photo each"
    print(f"\n{args.n - args.skip} synthetic ICT faces with planted detail, {views}, 512², head spans {args.head_fraction:.0%} of the image, "
          f"{args.threads} torch thread(s), fit preset {args.preset}\n")
    print("| method | scan-to-mesh mean (mm) | normal error, 3D closest point (deg) | normal error, image (deg) | seconds per photo "
          "| rigid ICP: scan-to-mesh (mm) | rigid ICP: 3D normals (deg) |")
    print("|---|---|---|---|---|---|---|")
    for name, vals in rows.items():
        a = np.array(vals)
        t = times.get(name, times["3dmm+sfs"])
        print(f"| {name} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.2f} | {a[:, 2].mean():.2f} | {np.mean(t):.1f} "
              f"| {a[:, 3].mean():.3f} | {a[:, 4].mean():.2f} |")


if __name__ == "__main__":
    main()
