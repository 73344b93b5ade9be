"""Vertex normals and second-order spherical-harmonics Lambertian shading.

SH lighting follows Ramamoorthi & Hanrahan, "An Efficient Representation for Irradiance
Environment Maps" (SIGGRAPH 2001): real SH bands 0–2 in the order
1, y, z, x, xy, yz, 3z²−1, xz, x²−y², convolved with the clamped-cosine kernel
(Â0 = π, Â1 = 2π/3, Â2 = π/4) and divided by π. So with SH coefficients L (9, per RGB channel)
of the incident radiance, ``sh_basis(n) @ L`` is the outgoing radiance of a white Lambertian
surface (irradiance / π): an environment of uniform radiance c has L00 = c·√(4π) and shades
every normal to exactly c. ``ambient_sh(c)`` builds those coefficients.
"""

from __future__ import annotations

import math

import torch

from face3d.errors import ShapeError

from . import _checks

_Y00 = 0.5 * math.sqrt(1.0 / math.pi)
_Y1 = math.sqrt(3.0 / (4.0 * math.pi))
_Y2A = 0.5 * math.sqrt(15.0 / math.pi)
_Y20 = 0.25 * math.sqrt(5.0 / math.pi)
_Y22 = 0.25 * math.sqrt(15.0 / math.pi)
_A0, _A1, _A2 = 1.0, 2.0 / 3.0, 1.0 / 4.0

#: Constant of basis function 0: sh_basis(n)[..., 0] for every n.
SH_C0 = _A0 * _Y00


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: vertices (B,V,3), faces (F,3) → (B,V,3).

    Counter-clockwise faces (seen from outside) give outward normals. Vertices used by no
    (non-degenerate) face get a zero normal.
    """
    _checks.float_tensor("vertices", vertices, 3, 3, "float tensor (B,V,3)")
    _checks.index_tensor("faces", faces, vertices.shape[1])
    B, V, _ = vertices.shape
    f = faces.long()
    v0 = vertices.index_select(1, f[:, 0])
    v1 = vertices.index_select(1, f[:, 1])
    v2 = vertices.index_select(1, f[:, 2])
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)
    n = torch.zeros_like(vertices)
    for k in range(3):
        n = n.index_add(1, f[:, k], fn)
    length = n.norm(dim=-1, keepdim=True)
    return n / torch.where(length > 0, length, torch.ones_like(length))


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """(...,3) unit normals → (...,9) Lambertian-convolved SH basis (see module docstring)."""
    if not isinstance(normals, torch.Tensor) or not normals.is_floating_point() or normals.dim() < 1 or normals.shape[-1] != 3:
        raise ShapeError("normals", "float tensor (...,3)", _checks._desc(normals))
    x, y, z = normals.unbind(-1)
    return torch.stack(
        (
            torch.full_like(x, _A0 * _Y00),
            _A1 * _Y1 * y,
            _A1 * _Y1 * z,
            _A1 * _Y1 * x,
            _A2 * _Y2A * x * y,
            _A2 * _Y2A * y * z,
            _A2 * _Y20 * (3.0 * z * z - 1.0),
            _A2 * _Y2A * x * z,
            _A2 * _Y22 * (x * x - y * y),
        ),
        -1,
    )


def sh_shade(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Shading (B,...,3) = sh_basis(normals) @ sh for normals (B,...,3) and coefficients sh (B,9,3).

    sh = 0 except sh[:, 0, :] = c gives uniform shading c·SH_C0 (SH_C0 ≈ 0.2821).
    A coefficient batch of 1 broadcasts.
    """
    _checks.float_tensor("sh", sh, 3, None, "float tensor (B,9,3)")
    if sh.shape[1:] != (9, 3):
        raise ShapeError("sh", "float tensor (B,9,3)", tuple(sh.shape))
    if not isinstance(normals, torch.Tensor) or normals.dim() < 2:
        raise ShapeError("normals", "float tensor (B,...,3)", _checks._desc(normals))
    _checks.batch_match("sh", sh.shape[0], normals.shape[0])
    basis = sh_basis(normals)
    B = max(normals.shape[0], sh.shape[0])
    flat = basis.reshape(normals.shape[0], -1, 9)
    out = torch.matmul(flat, sh.to(basis.dtype))
    return out.reshape((B,) + tuple(normals.shape[1:]))


def ambient_sh(value: float | torch.Tensor, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SH coefficients (batch,9,3) of a uniform environment that shades every normal to ``value``.

    ``value`` is a float or an RGB tensor (3,).
    """
    v = torch.as_tensor(value, dtype=dtype)
    if v.dim() > 1 or (v.dim() == 1 and v.shape[0] != 3):
        raise ShapeError("value", "a float or an RGB tensor (3,)", tuple(v.shape))
    sh = torch.zeros(batch, 9, 3, dtype=dtype, device=v.device)
    sh[:, 0, :] = v / SH_C0
    return sh
