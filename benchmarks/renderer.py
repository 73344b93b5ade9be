"""Renderer benchmark: one command, prints a markdown table.

    python benchmarks/renderer.py [--quick] [--out benchmarks/results/renderer.md]

Times `renderers.render_mesh` (rasterize, interpolate normals + UVs + depth, bilinear texture,
SH shading, antialias) forward, and forward + L1 loss + backward (gradients w.r.t. vertices,
texture and SH), for a 10k-triangle bumpy ellipsoid and the 52k-triangle ICT-FaceKit mesh at
256² and 512², batch 1 and 8, on CPU (and CUDA when present). Also times the naive dense
pure-torch reference rasterizer on the small case and the peak memory of batch 8 at 512².
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

from face3d import renderers as R
from face3d.renderers.reference import rasterize_reference


def ellipsoid(n_tri: int = 10_000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bumpy ellipsoid (lat-long grid) with ~n_tri triangles, metres, with UVs."""
    rows = int(math.sqrt(n_tri / 4))
    cols = n_tri // (2 * rows)
    th = torch.linspace(0.02, math.pi - 0.02, rows + 1)
    ph = torch.linspace(0, 2 * math.pi, cols + 1)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    d = torch.stack((torch.sin(T) * torch.cos(P), torch.cos(T), torch.sin(T) * torch.sin(P)), -1)
    r = 1 + 0.05 * torch.sin(6 * T) * torch.cos(5 * P)
    v = (d * r[..., None] * torch.tensor([0.08, 0.11, 0.09])).reshape(-1, 3)
    idx = torch.arange((rows + 1) * cols).reshape(rows + 1, cols)
    a, b = idx[:-1], idx[1:]
    a1, b1 = a.roll(-1, 1), b.roll(-1, 1)
    faces = torch.cat((torch.stack((a, b, a1), -1), torch.stack((a1, b, b1), -1)), 0).reshape(-1, 3)
    uv = torch.stack((P / (2 * math.pi), 1 - T / math.pi), -1).reshape(-1, 2)
    return v, faces, uv


def ict_face() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ICT-FaceKit neutral mesh (cm → m) with its UVs."""
    from face3d.testing import shared_data

    d = np.load(shared_data() / "ict_facekit" / "ict_facekit.npz")
    v = torch.from_numpy(d["neutral_vertices"].astype(np.float32)) / 100.0
    return v, torch.from_numpy(d["faces"].astype(np.int64)), torch.from_numpy(d["uvs"].astype(np.float32)), torch.from_numpy(d["uv_faces"].astype(np.int64))


def scene(mesh: str, res: int, B: int, device: str):
    if mesh == "ict52k":
        v, f, uv, uvf = ict_face()
        v = v - v.mean(0)
        dist = 0.75
    else:
        v, f, uv = ellipsoid()
        uvf = f
        dist = 0.5
    cam = R.PerspectiveCamera(R.perspective_from_fov(30.0, res, res).to(device), t=torch.tensor([0.0, 0.0, -dist], device=device), width=res, height=res)
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(B, 256, 256, 3, generator=g).to(device)
    sh = R.ambient_sh(0.7, batch=B).to(device)
    sh[:, 1:4] = 0.2
    target = torch.rand(B, res, res, 3, generator=g).to(device)
    verts = v.to(device)[None].expand(B, -1, -1).contiguous()
    return verts, f.to(device), uv.to(device), uvf.to(device), cam, tex, sh, target


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(mesh: str, res: int, B: int, device: str, reps: int) -> tuple[float, float, float, int]:
    verts, f, uv, uvf, cam, tex, sh, target = scene(mesh, res, B, device)

    def fwd():
        with torch.no_grad():
            return R.render_mesh(R.Mesh(verts, f, uvs=uv, uv_faces=uvf), cam, texture=tex, sh=sh)

    def fwd_bwd():
        vv = verts.clone().requires_grad_(True)
        tt = tex.clone().requires_grad_(True)
        ss = sh.clone().requires_grad_(True)
        out = R.render_mesh(R.Mesh(vv, f, uvs=uv, uv_faces=uvf), cam, texture=tt, sh=ss)
        (out.image - target).abs().mean().backward()
        return out

    def bench(fn) -> tuple[float, float]:
        fn()
        ts, cs = [], []
        for _ in range(reps):
            _sync(device)
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        return statistics.median(ts) * 1000.0, statistics.median(cs) * 1000.0

    covered = int((fwd().tri_id >= 0).sum()) // B
    fw, _ = bench(fwd)
    fb, fb_cpu = bench(fwd_bwd)
    return fw, fb, fb_cpu, covered


def _vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def peak_memory_child() -> None:
    """Run in a subprocess: forward + backward of ict52k, 512², B=8; print the peak RSS (MiB)
    reached while rendering and its increase over the RSS just before (the high-water mark is
    reset through /proc/self/clear_refs)."""
    verts, f, uv, uvf, cam, tex, sh, target = scene("ict52k", 512, 8, "cpu")
    R.render_mesh(R.Mesh(verts[:1], f, uvs=uv, uv_faces=uvf), cam, texture=tex[:1], sh=sh[:1])
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = _vm("VmRSS")
    vv = verts.clone().requires_grad_(True)
    out = R.render_mesh(R.Mesh(vv, f, uvs=uv, uv_faces=uvf), cam, texture=tex.requires_grad_(True), sh=sh.requires_grad_(True))
    (out.image - target).abs().mean().backward()
    peak = _vm("VmHWM")
    print(f"{peak - base:.0f} {peak:.0f}")


def calibration() -> str:
    """How fast this machine is right now: one float32 add of 196,608 elements, 1 thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.rand(196_608), torch.rand(196_608)
    for _ in range(20):
        a + b
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(500):
        a + b
    wall, cpu = (time.perf_counter() - t0) / 500 * 1e6, (time.process_time() - c0) / 500 * 1e6
    torch.set_num_threads(n)
    return f"calibration: a 196,608-element float32 add takes {wall:.0f} µs wall / {cpu:.0f} µs CPU (≈ 20–30 µs on an idle core)"


def naive_ratio(reps: int) -> tuple[float, float]:
    verts, f, uv, uvf, cam, tex, sh, target = scene("ell10k", 256, 1, "cpu")
    clip = cam.to_clip(verts)
    R.rasterize(clip, f, (256, 256))
    t0 = time.perf_counter()
    for _ in range(reps):
        ours = R.rasterize(clip, f, (256, 256))
    fast = (time.perf_counter() - t0) / reps * 1000.0
    t0 = time.perf_counter()
    ref = rasterize_reference(clip, f, (256, 256), chunk=256)
    slow = (time.perf_counter() - t0) * 1000.0
    agree = float((ours[..., 3] == ref[..., 3]).float().mean())
    if agree < 0.999:
        raise RuntimeError(f"reference and kernel disagree on {100 * (1 - agree):.2f}% of pixels")
    return fast, slow


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), "
        f"numba {numba.__version__} (serial kernels), Python {platform.python_version()}; "
        f"load average at start {load[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, skip batch 8 at 512²")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-naive", action="store_true", help="skip the (slow) naive reference timing")
    ap.add_argument("--peak-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peak_child:
        peak_memory_child()
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps or (3 if args.quick else 7)
    desc = machine()
    lines = [
        f"Machine: {desc}",
        "",
        calibration(),
        "",
        "| device | mesh | triangles | resolution | batch | covered px/img | forward ms | fwd+bwd ms | fwd+bwd it/s | fwd+bwd CPU ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines[:3]), flush=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for mesh, ntri in (("ell10k", 10_000), ("ict52k", 52_220)):
            for res in (256, 512):
                for B in (1, 8):
                    if args.quick and res == 512 and B == 8:
                        continue
                    fw, fb, fb_cpu, cov = time_case(mesh, res, B, device, reps if B == 1 else max(2, reps // 2))
                    row = f"| {device} | {mesh} | {ntri} | {res}² | {B} | {cov} | {fw:.1f} | {fb:.1f} | {1000.0 / fb:.1f} | {fb_cpu:.1f} |"
                    lines.append(row)
                    print(row, flush=True)
    if not args.no_naive:
        fast, slow = naive_ratio(reps)
        lines += ["", f"Rasterize only, ell10k 256² B=1: compiled kernel {fast:.1f} ms, naive dense pure-torch reference {slow:.0f} ms → {slow / fast:.0f}× faster."]
        print(lines[-1], flush=True)
    child = subprocess.run([sys.executable, __file__, "--peak-child"], capture_output=True, text=True, check=True)
    inc, total = child.stdout.split()
    lines.append(f"Peak memory, ict52k 512² B=8 forward+backward: {total} MiB peak RSS of the process, +{inc} MiB over its RSS before rendering.")
    print(lines[-1])
    lines.append(f"Load average at end: {os.getloadavg()[0]:.1f}")
    print(lines[-1])
    if args.out is not None:
        from face3d.io.atomic import write_text

        write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
