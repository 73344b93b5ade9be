"""Cameras: OpenCV-intrinsics perspective and weak-perspective/orthographic, to clip space.

Camera space is OpenGL-style (looks down −Z, +Y up, +X right); world→camera is x_cam = R x + t.
Image space is OpenCV's: x right, y down, origin at the top-left corner of the top-left pixel.
``to_clip`` produces clip coordinates for :func:`face3d.renderers.rasterize` such that row 0 of the
rendered image is the top of the picture (py = 0) and column 0 its left edge (px = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch

from face3d.errors import ShapeError

from . import _checks
from .fused import affine_cpu, use_fused


def _batched(name: str, t: torch.Tensor, tail: tuple[int, ...], expected: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float32)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if tuple(t.shape) == tail:
        t = t.unsqueeze(0)
    if t.dim() != len(tail) + 1 or tuple(t.shape[1:]) != tail:
        raise ShapeError(name, expected, tuple(t.shape))
    return t


def _points(points: torch.Tensor, batch: int) -> torch.Tensor:
    _checks.float_tensor("points", points, 3, 3, "float tensor (B,V,3) world coordinates")
    if batch != 1:
        _checks.batch_match("points", points.shape[0], batch)
    return points


def _rigid(R: torch.Tensor | None, t: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B = like.shape[0]
    if R is None:
        R = torch.eye(3, dtype=like.dtype, device=like.device).expand(B, 3, 3)
    else:
        R = _batched("R", R, (3, 3), "rotation (B,3,3) or (3,3)")
    if t is None:
        t = torch.zeros(B, 3, dtype=like.dtype, device=like.device)
    else:
        t = _batched("t", t, (3,), "translation (B,3) or (3,)")
    return R, t


def _transform(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if use_fused(points):
        return affine_cpu(points, R.to(points.dtype), t.to(points.dtype))
    return torch.matmul(points, R.transpose(-1, -2).to(points.dtype)) + t.to(points.dtype).unsqueeze(-2)


def _depth(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """−Z_cam (B,V) of world points (B,V,3): only the third row of the world→camera transform."""
    return -_transform(points, R[..., 2:3, :], t[..., 2:3])[..., 0]


_K_ROWS, _K_COLS = (0, 0, 0, 1, 1), (0, 1, 2, 1, 2)  # fx, s, cx, fy, cy in K
_P_SLOTS = torch.tensor([0, 1, 2, 5, 6])  # where their terms go in the row-major (4,4) projection


@dataclass
class PerspectiveCamera:
    """Pinhole camera from OpenCV intrinsics.

    K (B,3,3)|(3,3) pixels; R (B,3,3), t (B,3) world→camera (None = identity / zero);
    width, height in pixels; near/far clip distances in metres (depth outside is clipped).
    Projection: px = fx·X/(−Z) + cx, py = cy − fy·Y/(−Z) with (X, Y, Z) camera coordinates.
    """

    K: torch.Tensor
    R: torch.Tensor | None = None
    t: torch.Tensor | None = None
    width: int = 256
    height: int = 256
    near: float = 0.01
    far: float = 10.0

    def __post_init__(self) -> None:
        self.K = _batched("K", self.K, (3, 3), "intrinsics (B,3,3) or (3,3)")
        self.R, self.t = _rigid(self.R, self.t, self.K)
        if not (0 < self.near < self.far):
            raise ShapeError("near/far", "0 < near < far", (self.near, self.far))
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ShapeError("width/height", "positive ints", (self.width, self.height))

    @property
    def batch_size(self) -> int:
        """Number of cameras B (the largest of K, R, t batches)."""
        return max(self.K.shape[0], cast(torch.Tensor, self.R).shape[0], cast(torch.Tensor, self.t).shape[0])

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,3) camera coordinates (in front of the camera: Z < 0)."""
        points = _points(points, self.batch_size)
        return _transform(points, cast(torch.Tensor, self.R), cast(torch.Tensor, self.t))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,2) pixel coordinates (x right, y down)."""
        p = self.world_to_camera(points)
        K = self.K.to(p.dtype)
        d = -p[..., 2]
        px = K[:, 0, 0, None] * p[..., 0] / d + K[:, 0, 1, None] * (-p[..., 1]) / d + K[:, 0, 2, None]
        py = K[:, 1, 2, None] - K[:, 1, 1, None] * p[..., 1] / d
        return torch.stack((px, py), -1)

    def projection_matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B,4,4) camera → clip matrix (OpenGL-style, w = −Z; see :meth:`to_clip`)."""
        K = self.K.to(dtype)
        W, H = float(self.width), float(self.height)
        n, f = float(self.near), float(self.far)
        k = K[:, _K_ROWS, _K_COLS]  # (B,5) fx, s, cx, fy, cy
        # rows (2fx/W, −2s/W, 1 − 2cx/W, 0), (0, −2fy/H, 1 − 2cy/H, 0), (0, 0, −(f+n)/(f−n), −2fn/(f−n)),
        # (0, 0, −1, 0): the five K terms as 2·k/size, signed and offset, in a handful of ops
        v = 2.0 * k / k.new_tensor((W, W, W, H, H))
        terms = k.new_tensor((0.0, 0.0, 1.0, 0.0, 1.0)) + k.new_tensor((1.0, -1.0, -1.0, -1.0, -1.0)) * v
        rest = k.new_tensor((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -(f + n) / (f - n), -2.0 * f * n / (f - n),
                             0.0, 0.0, -1.0, 0.0))
        return torch.index_copy(rest.expand(k.shape[0], 16), 1, _P_SLOTS.to(k.device), terms).view(-1, 4, 4)

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,4) clip coordinates for :func:`face3d.renderers.rasterize` (w = −Z).

        Clip x = px·2/W − 1 and y = py·2/H − 1 after the divide by w, with (px, py) from
        :meth:`project`; one (B,4,4) world → clip matrix applied to the points."""
        points = _points(points, self.batch_size)
        P = self.projection_matrix(points.dtype)
        R, t = cast(torch.Tensor, self.R).to(points.dtype), cast(torch.Tensor, self.t).to(points.dtype)
        lin = torch.matmul(P[:, :, :3], R)
        off = torch.matmul(P[:, :, :3], t.unsqueeze(-1)).squeeze(-1) + P[:, :, 3]
        if use_fused(points):
            return affine_cpu(points, lin, off)
        return torch.matmul(points, lin.transpose(-1, -2)) + off.unsqueeze(-2)

    def depth(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V) metres along the viewing axis (−Z_cam, positive in front)."""
        return _depth(points, cast(torch.Tensor, self.R), cast(torch.Tensor, self.t))


@dataclass
class OrthographicCamera:
    """Weak-perspective / orthographic camera.

    scale (B,)|float pixels per metre, center (B,2)|(2,) pixel position (cx, cy) of the camera
    axis; R, t world→camera; px = scale·X + cx, py = cy − scale·Y; depth −Z in [near, far] metres.
    """

    scale: torch.Tensor | float
    center: torch.Tensor | None = None
    R: torch.Tensor | None = None
    t: torch.Tensor | None = None
    width: int = 256
    height: int = 256
    near: float = -10.0
    far: float = 10.0

    def __post_init__(self) -> None:
        s = self.scale if isinstance(self.scale, torch.Tensor) else torch.tensor([float(self.scale)])
        if not s.is_floating_point():
            s = s.to(torch.float32)
        if s.dim() == 0:
            s = s.reshape(1)
        if s.dim() != 1:
            raise ShapeError("scale", "float or (B,) tensor", tuple(s.shape))
        self.scale = s
        if self.center is None:
            self.center = torch.tensor([[self.width / 2.0, self.height / 2.0]], dtype=s.dtype, device=s.device)
        self.center = _batched("center", self.center, (2,), "pixel centre (B,2) or (2,)")
        self.R, self.t = _rigid(self.R, self.t, s.view(-1, 1))
        if not (self.near < self.far):
            raise ShapeError("near/far", "near < far", (self.near, self.far))

    @property
    def batch_size(self) -> int:
        """Number of cameras B."""
        tensors = (self.scale, self.center, self.R, self.t)
        return max(cast(torch.Tensor, x).shape[0] for x in tensors)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,3) camera coordinates."""
        points = _points(points, self.batch_size)
        return _transform(points, cast(torch.Tensor, self.R), cast(torch.Tensor, self.t))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,2) pixel coordinates."""
        p = self.world_to_camera(points)
        s = cast(torch.Tensor, self.scale).to(p.dtype)[:, None]
        c = cast(torch.Tensor, self.center).to(p.dtype)
        return torch.stack((s * p[..., 0] + c[:, None, 0], c[:, None, 1] - s * p[..., 1]), -1)

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V,4) clip coordinates (w = 1)."""
        p = self.world_to_camera(points)
        pix = self.project(points)
        d = -p[..., 2]
        n, f = float(self.near), float(self.far)
        cz = (2.0 * d - (f + n)) / (f - n)
        return torch.stack((pix[..., 0] * (2.0 / self.width) - 1.0, pix[..., 1] * (2.0 / self.height) - 1.0, cz, torch.ones_like(d)), -1)

    def depth(self, points: torch.Tensor) -> torch.Tensor:
        """(B,V,3) world → (B,V) −Z_cam in metres."""
        return _depth(points, cast(torch.Tensor, self.R), cast(torch.Tensor, self.t))


def perspective_from_fov(fov_y_deg: float, width: int, height: int) -> torch.Tensor:
    """OpenCV K (3,3) float32 with the given vertical field of view, square pixels, centred axis."""
    if not (0.0 < float(fov_y_deg) < 180.0):
        raise ShapeError("fov_y_deg", "a float in (0, 180)", fov_y_deg)
    f = (height / 2.0) / math.tan(math.radians(fov_y_deg) / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World→camera (R (B,3,3), t (B,3)) for a camera at ``eye`` looking at ``target`` (−Z toward it).

    eye, target, up: (B,3) or (3,); up defaults to +Y. Camera +Y is the component of ``up``
    orthogonal to the viewing direction.
    """
    eye = _batched("eye", eye, (3,), "point (B,3) or (3,)")
    target = _batched("target", target, (3,), "point (B,3) or (3,)").to(eye)
    up = torch.tensor([0.0, 1.0, 0.0]) if up is None else up
    up = _batched("up", up, (3,), "vector (B,3) or (3,)").to(eye)
    z = eye - target
    zn = z.norm(dim=-1, keepdim=True)
    if bool((zn == 0).any()):
        raise ShapeError("target", "a point different from eye", "target == eye")
    z = z / zn
    x = torch.cross(up.expand_as(z), z, dim=-1)
    xn = x.norm(dim=-1, keepdim=True)
    if bool((xn < 1e-12).any()):
        raise ShapeError("up", "a vector not parallel to the viewing direction", "parallel")
    x = x / xn
    y = torch.cross(z, x, dim=-1)
    R = torch.stack((x, y, z), dim=-2)
    t = -torch.matmul(R, eye.unsqueeze(-1)).squeeze(-1)
    return R, t
