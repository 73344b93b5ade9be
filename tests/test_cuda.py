"""The CUDA path gives the CPU path's results: renderer, 3DMM fits (one photo, several photos,
video), implicit-SDF optimisation.

Runs only where torch sees a CUDA device (CI has none; ``benchmarks/cuda.py`` and these tests
were run on a lent H200, see benchmarks/README.md). The device-independent part (a model
instance is never moved by ``get_model``) is in tests/test_reconstruct.py.
"""

import os

import numpy as np
import pytest
import torch

import face3d
from face3d import renderers as R
from face3d.detail.sdf import SDFFitOptions, reconstruct_sdf
from face3d.mesh import Mesh, View

GPU = os.environ.get("FACE3D_TEST_DEVICE", "cuda")  # "cpu" runs the comparisons CPU against CPU
DEVICES = ("cpu", GPU)
pytestmark = pytest.mark.skipif(GPU == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")


def ellipsoid_scene(device: str):
    v = torch.randn(642, 3, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=1, keepdim=True) * torch.tensor([0.08, 0.11, 0.09])
    import trimesh

    hull = trimesh.convex.convex_hull(v.numpy())
    v = torch.tensor(hull.vertices, dtype=torch.float32)
    f = torch.tensor(hull.faces, dtype=torch.long)
    uv = (v[:, :2] / 0.25 + 0.5).clamp(0, 1)
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(1, 64, 64, 3, generator=g)
    sh = R.ambient_sh(0.7)
    sh[:, 1:4] = 0.2
    cam = R.PerspectiveCamera(R.perspective_from_fov(30.0, 96, 96).to(device), t=torch.tensor([0.0, 0.0, -0.5], device=device),
                              width=96, height=96)
    target = torch.rand(1, 96, 96, 3, generator=g)
    return [x.to(device) for x in (v[None], f, uv, tex, sh, target)], cam


def test_render_mesh_forward_and_gradients_match_cpu():
    out = {}
    for dev in DEVICES:
        (v, f, uv, tex, sh, target), cam = ellipsoid_scene(dev)
        v, tex, sh = (x.clone().requires_grad_(True) for x in (v, tex, sh))
        img = R.render_mesh(R.Mesh(v, f, uvs=uv, uv_faces=f), cam, texture=tex, sh=sh).image
        (img - target).abs().mean().backward()
        assert img.device.type == dev and v.grad.device.type == dev
        out[dev] = [img.detach().cpu(), v.grad.cpu(), tex.grad.cpu(), sh.grad.cpu()]
    for a, b in zip(out["cpu"], out[GPU]):
        assert float(a.abs().max()) > 0
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max())), float((a - b).abs().max())


def synthetic_photos(n: int):
    """n renders of random ``basic`` faces with their exact 68 landmarks (no MediaPipe needed)."""
    from face3d.fitting.synthetic import random_face
    from face3d.models import load_model

    rng = np.random.default_rng(5)
    return [random_face(load_model("basic"), rng, size=256, yaw_deg=20, pitch_deg=10, roll_deg=5) for _ in range(n)]


def mean_distance_mm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1e3)


@pytest.mark.slow
def test_reconstruct_on_cuda_agrees_with_cpu_and_returns_cpu_arrays():
    (f,) = synthetic_photos(1)
    rec = {dev: face3d.reconstruct(f.image, model="basic", device=dev, landmarks=f.landmarks68, texture_resolution=256)
           for dev in DEVICES}
    gpu, cpu = rec[GPU], rec["cpu"]
    assert isinstance(gpu.shape, np.ndarray) and gpu.texture is not None and gpu.displacement is not None
    assert mean_distance_mm(gpu.vertices(), cpu.vertices()) < 0.5
    assert abs(gpu.landmark_error - cpu.landmark_error) < 0.01
    assert np.abs(gpu.texture.astype(np.float32) - cpu.texture.astype(np.float32)).mean() < 0.02 * max(1.0, float(cpu.texture.max()))
    assert gpu.mesh().vertices.shape == cpu.mesh().vertices.shape


@pytest.mark.slow
def test_multiview_and_video_fits_on_cuda_agree_with_cpu():
    from face3d.fitting.multiview import fit_multiview
    from face3d.fitting.stages import FitConfig, FitTarget
    from face3d.fitting.video import fit_video
    from face3d.models import load_model

    photos = synthetic_photos(3)
    targets = [FitTarget(f.landmarks68, "ibug68", 256, 256, f.image.astype(np.float32) / 255) for f in photos]
    cfg = FitConfig(landmark_steps=30, photometric_steps=10, render_size=96)
    for fitter in (fit_multiview, fit_video):
        res = {dev: fitter(load_model("basic").to(dev), targets, cfg, device=dev) for dev in DEVICES}
        assert res[GPU].shape.device.type == torch.device(GPU).type
        assert res[GPU].shape.shape == res["cpu"].shape.shape
        model = load_model("basic")
        verts = {dev: model(shape=r.shape.cpu().expand(len(targets), -1), expression=r.expression.cpu()).detach().numpy()
                 for dev, r in res.items()}
        assert mean_distance_mm(verts[GPU], verts["cpu"]) < 0.5, fitter.__name__


def test_sdf_optimisation_runs_on_cuda_and_matches_cpu():
    from test_sdf import planted_case

    v, f, uv, alb, cam, sh, img, _h, _n = planted_case(64)
    opts = SDFFitOptions(iterations=40, rays=512, lr=5e-3, synth_yaws=(), albedo_blur=0.0, uv_resolution=32, voxel=4e-3)
    res = {dev: reconstruct_sdf(Mesh(v, f, uv, f), View(img, cam, sh), alb, options=opts, device=dev) for dev in DEVICES}
    assert not res[GPU].fell_back, res[GPU].warning
    assert res[GPU].vertex_offsets.device.type == "cpu" and res[GPU].gain.device.type == "cpu"
    assert next(res[GPU].network.parameters()).device.type == "cpu"
    a = [d["photo"] for d in res["cpu"].log.losses]
    b = [d["photo"] for d in res[GPU].log.losses]
    assert np.allclose(a[:5], b[:5], rtol=1e-3), (a[:5], b[:5])
    assert np.mean(b[-5:]) < np.mean(b[:5])
    assert float((res[GPU].vertex_offsets - res["cpu"].vertex_offsets).abs().max()) < 2e-4


@pytest.mark.skipif(GPU != "cuda", reason="checks where device='auto' runs each stage")
def test_auto_fits_on_the_cpu_and_optimises_the_sdf_on_cuda():
    (f,) = synthetic_photos(1)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.max_memory_allocated()
    rec = face3d.reconstruct(f.image, model="basic", method="sdf", landmarks=f.landmarks68, sdf_iterations=10,
                             texture_resolution=256, detail_resolution=64, sdf_voxel=3e-3)
    assert not rec.sdf.fell_back, rec.sdf.warning
    assert torch.cuda.max_memory_allocated() > before  # the SDF optimisation ran on the GPU
    assert rec.sdf.timings["optimise"] > 0 and rec.displacement.shape == (64, 64)
