"""The CUDA path gives the CPU path's results: renderer, 3DMM fit, implicit-SDF optimisation.

Runs only where torch sees a CUDA device (CI has none; ``benchmarks/cuda.py`` and these tests
were run on a lent H200, see benchmarks/README.md). The device-independent part (a model
instance is never moved by ``get_model``) is in tests/test_reconstruct.py.
"""

import numpy as np
import pytest
import torch

import face3d
import renderers as R
from face3d.detail.sdf import SDFFitOptions, reconstruct_sdf
from face3d.io.images import demo_image

import os

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
        img = R.render_mesh(v, f, cam, uvs=uv, uv_faces=f, texture=tex, sh=sh).image
        (img - target).abs().mean().backward()
        assert img.device.type == dev and v.grad.device.type == dev
        out[dev] = [img.detach().cpu(), v.grad.cpu(), tex.grad.cpu(), sh.grad.cpu()]
    for a, b in zip(out["cpu"], out[GPU]):
        assert float(a.abs().max()) > 0
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max())), float((a - b).abs().max())


@pytest.mark.slow
def test_reconstruct_on_cuda_agrees_with_cpu_and_returns_cpu_arrays():
    pytest.importorskip("mediapipe")
    from face3d.io.images import read_image
    from face3d.landmarks.detector import detect_landmarks

    img = demo_image()
    lm = detect_landmarks(read_image(img), which="largest")[0].points
    cpu = face3d.reconstruct(img, model="basic", landmarks=lm, detail=False)
    gpu = face3d.reconstruct(img, model="basic", device=GPU, landmarks=lm, detail=False)
    assert isinstance(gpu.shape, np.ndarray) and gpu.texture is not None
    dist_mm = np.linalg.norm(gpu.vertices() - cpu.vertices(), axis=1).mean() * 1e3
    assert dist_mm < 0.5, dist_mm
    assert abs(gpu.landmark_error - cpu.landmark_error) < 0.01
    assert gpu.mesh().vertices.shape == cpu.mesh().vertices.shape


def test_sdf_optimisation_runs_on_cuda_and_matches_cpu():
    from test_sdf import planted_case

    v, f, uv, alb, cam, sh, img, _h, _n = planted_case(64)
    opts = SDFFitOptions(iterations=40, rays=512, lr=5e-3)
    res = {dev: reconstruct_sdf(img, cam, sh, v, f, uv, f, alb, synth_yaws=(), albedo_blur=0.0, options=opts,
                                uv_resolution=32, voxel=4e-3, device=dev) for dev in DEVICES}
    assert not res[GPU].fell_back, res[GPU].warning
    assert res[GPU].vertex_offsets.device.type == "cpu" and res[GPU].gain.device.type == "cpu"
    assert next(res[GPU].network.parameters()).device.type == "cpu"
    a = [d["photo"] for d in res["cpu"].log.losses]
    b = [d["photo"] for d in res[GPU].log.losses]
    assert np.allclose(a[:5], b[:5], rtol=1e-3), (a[:5], b[:5])
    assert np.mean(b[-5:]) < np.mean(b[:5])
    assert float((res[GPU].vertex_offsets - res["cpu"].vertex_offsets).abs().max()) < 2e-4
