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
from .fused import sh_basis_cpu, use_fused, vertex_normals_cpu
from .rows import add_rows, take_rows

_Y00 = 0.5 * math.sqrt(1.0 / math.pi)
_Y1 = math.sqrt(3.0 / (4.0 * math.pi))
_Y2A = 0.5 * math.sqrt(15.0 / math.pi)
_Y20 = 0.25 * math.sqrt(5.0 / math.pi)
_Y22 = 0.25 * math.sqrt(15.0 / math.pi)
_A0, _A1, _A2 = 1.0, 2.0 / 3.0, 1.0 / 4.0

SH_C0 = _A0 * _Y00
"""Constant of basis function 0: ``sh_basis(n)[..., 0]`` for every n (≈ 0.2821)."""


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: vertices (B,V,3), faces (F,3) → (B,V,3).

    Counter-clockwise faces (seen from outside) give outward normals. Vertices used by no
    (non-degenerate) face get a zero normal.
    """
    _checks.float_tensor("vertices", vertices, 3, 3, "float tensor (B,V,3)")
    _checks.index_tensor("faces", faces, vertices.shape[1])
    if use_fused(vertices):
        return vertex_normals_cpu(vertices, faces)
    return vertex_normals_torch(vertices, faces)


def vertex_normals_torch(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """:func:`vertex_normals` as torch ops (any device; the reference for the fused CPU kernel)."""
    B, V, _ = vertices.shape
    f = faces.long().reshape(-1)
    F = f.shape[0] // 3
    flat = vertices.reshape(B * V, 3)
    idx = (f.unsqueeze(0) + (torch.arange(B, device=f.device) * V).unsqueeze(1)).reshape(-1)
    tv = take_rows(flat, idx).view(B * F, 3, 3)
    a = tv[:, 1] - tv[:, 0]
    b = tv[:, 2] - tv[:, 0]
    ax, ay, az = a.unbind(1)
    bx, by, bz = b.unbind(1)
    fn = torch.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), 1)
    contrib = fn.unsqueeze(1).expand(B * F, 3, 3).reshape(-1, 3)
    n = add_rows(contrib, idx, B * V)
    length = n.norm(dim=-1, keepdim=True)
    return (n / torch.where(length > 0, length, torch.ones_like(length))).view(B, V, 3)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """(...,3) unit normals → (...,9) Lambertian-convolved SH basis (see module docstring)."""
    if not isinstance(normals, torch.Tensor) or not normals.is_floating_point() or normals.dim() < 1 or normals.shape[-1] != 3:
        raise ShapeError("normals", "float tensor (...,3)", _checks._desc(normals))
    n = normals.reshape(-1, 3)
    if use_fused(n):
        out = sh_basis_cpu(n, _monomial_matrix(normals.dtype, normals.device))
    else:
        out = sh_basis_torch(n)
    return out.reshape(tuple(normals.shape[:-1]) + (9,))


def sh_basis_torch(n: torch.Tensor) -> torch.Tensor:
    """:func:`sh_basis` of (N,3) normals as torch ops (any device; reference for the fused kernel)."""
    first = torch.cat((torch.ones_like(n[:, :1]), n), 1)
    second = n[:, _PAIR_A] * n[:, _PAIR_B]
    monomials = torch.cat((first, second), 1)
    return monomials @ _monomial_matrix(n.dtype, n.device)


# monomials (1, x, y, z, xy, yz, xz, xx, yy, zz) → the 9 basis functions
_PAIR_A = [0, 1, 0, 0, 1, 2]
_PAIR_B = [1, 2, 2, 0, 1, 2]
_M = torch.zeros(10, 9, dtype=torch.float64)
_M[0, 0] = _A0 * _Y00
_M[2, 1] = _M[3, 2] = _M[1, 3] = _A1 * _Y1
_M[4, 4] = _M[5, 5] = _M[6, 7] = _A2 * _Y2A
_M[9, 6] = 3.0 * _A2 * _Y20
_M[0, 6] = -_A2 * _Y20
_M[7, 8] = _A2 * _Y22
_M[8, 8] = -_A2 * _Y22
_M_CACHE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _monomial_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (dtype, device)
    m = _M_CACHE.get(key)
    if m is None:
        m = _M.to(dtype=dtype, device=device)
        _M_CACHE[key] = m
    return m


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
