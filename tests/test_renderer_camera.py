"""Cameras and image orientation: row 0 is the top of the picture, OpenCV intrinsics."""

from __future__ import annotations

import math

import pytest
import torch

from face3d import renderers as R
from face3d.errors import ShapeError

D = torch.float64


def _K(W=40, H=30, f=50.0):
    return torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=D)


def _small_tri(center, size=0.05):
    c = torch.tensor(center, dtype=D)
    off = torch.tensor([[-size, -size, 0], [size, -size, 0], [0, size, 0]], dtype=D)
    return (c + off).unsqueeze(0), torch.tensor([[0, 1, 2]])


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_point_above_axis_lands_in_upper_rows_and_right_point_in_right_columns(kind):
    W, H = 40, 30
    if kind == "perspective":
        cam = R.PerspectiveCamera(_K(W, H), width=W, height=H)
    else:
        cam = R.OrthographicCamera(scale=50.0, width=W, height=H)
    up, tri = _small_tri([0.0, 0.15, -2.0])
    mask = R.rasterize(cam.to_clip(up), tri, (H, W))[0, ..., 3] > 0
    rows = mask.nonzero()[:, 0]
    assert rows.numel() > 0 and rows.max() < H / 2
    assert cam.project(up)[0, :, 1].max() < H / 2
    right, tri = _small_tri([0.2, 0.0, -2.0])
    mask = R.rasterize(cam.to_clip(right), tri, (H, W))[0, ..., 3] > 0
    cols = mask.nonzero()[:, 1]
    assert cols.numel() > 0 and cols.min() > W / 2


def test_project_agrees_with_clip_space_and_opencv_formula():
    K = torch.tensor([[60.0, 0.0, 21.0], [0.0, 55.0, 13.0], [0.0, 0.0, 1.0]], dtype=D)
    Rm, t = R.look_at(torch.tensor([0.3, 0.2, 2.0], dtype=D), torch.zeros(3, dtype=D))
    cam = R.PerspectiveCamera(K, Rm, t, width=40, height=30)
    pts = torch.randn(1, 20, 3, dtype=D) * 0.2
    pix = cam.project(pts)
    clip = cam.to_clip(pts)
    ndc = clip[..., :2] / clip[..., 3:]
    from_clip = torch.stack(((ndc[..., 0] + 1) / 2 * 40, (ndc[..., 1] + 1) / 2 * 30), -1)
    assert torch.allclose(pix, from_clip, atol=1e-9)
    pc = cam.world_to_camera(pts)
    assert torch.all(pc[..., 2] < 0)
    assert torch.allclose(pix[..., 0], 60.0 * pc[..., 0] / -pc[..., 2] + 21.0)
    assert torch.allclose(pix[..., 1], 13.0 - 55.0 * pc[..., 1] / -pc[..., 2])
    assert torch.allclose(clip[..., 3], -pc[..., 2])


def test_look_at_and_fov_values():
    Rm, t = R.look_at(torch.tensor([0.0, 0.0, 2.0]), torch.zeros(3))
    assert torch.allclose(Rm[0], torch.eye(3)) and torch.allclose(t[0], torch.tensor([0.0, 0.0, -2.0]))
    Rm, t = R.look_at(torch.tensor([[2.0, 0.0, 0.0]]), torch.zeros(1, 3))
    cam_pt = Rm[0] @ torch.zeros(3) + t[0]
    assert torch.allclose(cam_pt, torch.tensor([0.0, 0.0, -2.0]), atol=1e-6)
    assert torch.allclose(Rm[0] @ Rm[0].T, torch.eye(3), atol=1e-6) and torch.det(Rm[0]) > 0
    K = R.perspective_from_fov(90.0, 64, 48)
    assert torch.allclose(K, torch.tensor([[24.0, 0, 32], [0, 24.0, 24], [0, 0, 1]]))
    with pytest.raises(ShapeError):
        R.look_at(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ShapeError):
        R.perspective_from_fov(0.0, 64, 48)


def test_orthographic_projection_and_depth_range():
    cam = R.OrthographicCamera(scale=torch.tensor([100.0, 50.0], dtype=D), width=64, height=48)
    pts = torch.tensor([[[0.1, 0.2, -1.0]]], dtype=D)
    pix = cam.project(pts)
    assert torch.allclose(pix[0, 0], torch.tensor([32 + 10.0, 24 - 20.0], dtype=D))
    assert torch.allclose(pix[1, 0], torch.tensor([32 + 5.0, 24 - 10.0], dtype=D))
    clip = cam.to_clip(pts)
    assert clip.shape == (2, 1, 4) and torch.all(clip[..., 3] == 1)
    assert torch.allclose(clip[0, 0, 2], torch.tensor(0.1, dtype=D))


def test_rendered_depth_is_distance_along_view_axis():
    W, H = 24, 20
    cam = R.PerspectiveCamera(_K(W, H, 30.0), width=W, height=H)
    verts = torch.tensor([[[-1.0, -1.0, -2.5], [1.0, -1.0, -2.5], [1.0, 1.0, -2.5], [-1.0, 1.0, -2.5]]], dtype=D)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out = R.render_mesh(R.Mesh(verts, faces), cam)
    assert torch.all(out.alpha == 1)
    assert torch.allclose(out.depth, torch.full_like(out.depth, 2.5))
    assert torch.allclose(out.normals, torch.tensor([0.0, 0.0, 1.0], dtype=D).expand_as(out.normals))


def test_camera_rejects_bad_shapes():
    with pytest.raises(ShapeError) as e:
        R.PerspectiveCamera(torch.eye(4), width=4, height=4)
    assert e.value.name == "K"
    with pytest.raises(ShapeError) as e:
        R.PerspectiveCamera(torch.eye(3), R=torch.eye(2), width=4, height=4)
    assert e.value.name == "R"
    cam = R.PerspectiveCamera(torch.eye(3), width=4, height=4)
    with pytest.raises(ShapeError) as e:
        cam.to_clip(torch.zeros(1, 5, 2))
    assert e.value.name == "points"
    assert math.isclose(R.perspective_from_fov(60.0, 10, 10)[1, 1].item(), 5 / math.tan(math.radians(30)), rel_tol=1e-6)
