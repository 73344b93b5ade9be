"""CUDA against CPU in one run: renderer agreement, and face3d.reconstruct end to end.

    python benchmarks/cuda.py                      # needs a CUDA device; prints two tables
    python benchmarks/cuda.py --landmarks lm.npy   # use these astronaut landmarks (no MediaPipe)

1. Renderer agreement: ``render_mesh`` forward + backward of the ellipsoid scene of
   ``benchmarks/renderer.py`` (10k triangles, 256², textured, SH-shaded, antialiased) on both
   devices; largest absolute difference of the image and of each gradient, relative to its
   largest magnitude.
2. The 3DMM fit alone (``fit_video``: shared identity, per-frame expression and pose) on 1, 8
   and 32 synthetic ``basic`` frames with exact landmarks, at the default settings, on each device.
3. ``face3d.reconstruct`` on the bundled astronaut photo with the ``basic`` model, method
   ``3dmm`` and ``sdf``, on each device: wall time per stage, and how far the CUDA result lies
   from the CPU one (mean vertex distance of the fitted mesh, p99 of the SDF displacement
   difference, millimetres).

The CPU rows use torch's default thread count on the machine the script runs on (printed).
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
from renderer import scene

import face3d
from face3d import renderers as R
from face3d.io.images import demo_image


def render_agreement() -> list[str]:
    """Rows: quantity, max |cpu - cuda|, that relative to max |cpu|."""
    out = {}
    for dev in ("cpu", "cuda"):
        verts, f, uv, uvf, cam, tex, sh, target = scene("ell10k", 256, 1, dev)
        vv, tt, ss = (x.clone().requires_grad_(True) for x in (verts, tex, sh))
        img = R.render_mesh(R.Mesh(vv, f, uvs=uv, uv_faces=uvf), cam, texture=tt, sh=ss).image
        (img - target).abs().mean().backward()
        out[dev] = {"image": img.detach(), "d vertices": vv.grad, "d texture": tt.grad, "d sh": ss.grad}
    rows = []
    for k, a in out["cpu"].items():
        b = out["cuda"][k].cpu()
        diff = float((a - b).abs().max())
        rows.append(f"| {k} | {diff:.3g} | {diff / max(float(a.abs().max()), 1e-30):.3g} |")
    return rows


def fit_timings(sizes: tuple[int, ...] = (1, 8, 32)) -> list[str]:
    """Rows: frames, CPU s, CUDA s, ratio, for ``fit_video`` at the default FitConfig."""
    from face3d.fitting.stages import FitTarget
    from face3d.fitting.synthetic import random_face
    from face3d.fitting.video import fit_video
    from face3d.models import load_model

    model = load_model("basic")
    rng = np.random.default_rng(0)
    faces = [random_face(model, rng, size=512, yaw_deg=20, pitch_deg=10) for _ in range(max(sizes))]
    targets = [FitTarget(f.landmarks68, "ibug68", 512, 512, f.image.astype(np.float32) / 255) for f in faces]
    models = {dev: load_model("basic").to(dev) for dev in ("cpu", "cuda")}
    fit_video(models["cuda"], targets[:1], device="cuda")  # warm-up
    rows = []
    for n in sizes:
        t = {}
        for dev in ("cpu", "cuda"):
            t0 = time.perf_counter()
            fit_video(models[dev], targets[:n], device=dev)
            t[dev] = time.perf_counter() - t0
        rows.append(f"| {n} | {t['cpu']:.2f} | {t['cuda']:.2f} | {t['cpu'] / t['cuda']:.2f} |")
    return rows


def run_reconstruct(device: str, method: str, landmarks: np.ndarray | None) -> tuple[face3d.Reconstruction, float]:
    t0 = time.perf_counter()
    rec = face3d.reconstruct(demo_image(), model="basic", device=device, method=method, landmarks=landmarks)
    return rec, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--landmarks", type=Path, default=None, help="(68|478, 2|3) astronaut landmarks (.npy, pixels), skipping detection")
    ap.add_argument("--frames", default="1,8,32", help="frame counts for the fit timing")
    ap.add_argument("--fit-only", action="store_true", help="stop after the renderer and fit tables")
    ap.add_argument("--sdf-devices", default="cpu,cuda", help="devices for the method='sdf' rows (the CPU row takes minutes)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare", file=sys.stderr)
        return 2
    lm = np.load(args.landmarks) if args.landmarks else None
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU threads {torch.get_num_threads()}\n")
    print("| renderer (ell10k, 256², fwd+bwd) | max abs diff cpu vs cuda | relative |\n|---|---|---|")
    print("\n".join(render_agreement()), flush=True)
    print("\n| frames (fit_video, basic, 512 px) | CPU s | CUDA s | CPU / CUDA |\n|---|---|---|---|")
    print("\n".join(fit_timings(tuple(int(x) for x in args.frames.split(",")))), flush=True)
    if args.fit_only:
        return 0

    print("\n| method | device | total s | fit s | texture+detail s | sdf optimise s | sdf total s | mean vertex diff mm | sdf disp p99 diff mm |")
    print("|---|---|---|---|---|---|---|---|---|")
    run_reconstruct("cuda", "3dmm", lm)  # warm-up: CUDA context, numba kernels, model cache
    for method in ("3dmm", "sdf"):
        recs = {}
        for dev in (args.sdf_devices.split(",") if method == "sdf" else ("cpu", "cuda")):
            rec, wall = run_reconstruct(dev, method, lm)
            recs[dev] = rec
            t = rec.timings
            fit = sum(t.get(k, 0.0) for k in ("init", "landmarks", "lighting", "photometric"))
            vd, dd = "", ""
            if dev == "cuda" and "cpu" in recs:
                vd = f"{np.linalg.norm(rec.vertices() - recs['cpu'].vertices(), axis=1).mean() * 1e3:.3f}"
                if method == "sdf" and rec.displacement is not None and recs["cpu"].displacement is not None:
                    dd = f"{np.percentile(np.abs(rec.displacement - recs['cpu'].displacement), 99) * 1e3:.3f}"
            print(f"| {method} | {dev} | {wall:.1f} | {fit:.1f} | {t.get('texture', 0) + t.get('detail', 0):.1f} | "
                  f"{t.get('sdf_optimise', 0):.1f} | {t.get('sdf', 0):.1f} | {vd} | {dd} |", flush=True)
            print(f"  timings {dev}: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
