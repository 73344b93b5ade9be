"""Per-fragment (covered pixel) evaluation used by `render_mesh` on the built-in backend.

Instead of shading every pixel of (B,H,W), attributes, texture and lighting are evaluated only
for the N covered pixels and scattered into images once. Values and gradients equal those of
the dense primitives (`interpolate`, `texture`, `sh_shade`) at covered pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .backends.torch_cpu import covered
from .fused import interp_cpu, sample_cpu, scatter_cpu, sh_shade_cpu, use_fused
from .rows import take_rows
from .shading import _monomial_matrix, sh_basis


@dataclass
class Fragments:
    """Covered pixels of a rast: flat pixel index, batch index, triangle index, (u, v) (N,2)."""

    sel: torch.Tensor
    b: torch.Tensor
    f: torch.Tensor
    bary: torch.Tensor
    shape: tuple[int, int, int]

    @property
    def count(self) -> int:
        """Number of covered pixels N."""
        return int(self.sel.shape[0])


def fragments(rast: torch.Tensor) -> Fragments:
    """Collect the covered pixels of rast (B,H,W,4); bary keeps the autograd link to pos."""
    B, H, W, _ = rast.shape
    sel, b, f = covered(rast)
    bary = rast.reshape(B * H * W, 4).index_select(0, sel)[:, :2]
    return Fragments(sel=sel, b=b, f=f, bary=bary, shape=(B, H, W))


def interp(frag: Fragments, attr: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """attr (B,V,C)|(1,V,C)|(V,C) → (N,C) at the fragments (nvdiffrast barycentric convention)."""
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    if use_fused(attr):
        return interp_cpu(attr, tri, frag.f, frag.b, frag.bary)
    return interp_torch(frag, attr, tri)


def interp_torch(frag: Fragments, attr: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """:func:`interp` of attr (Ba,V,C) as torch ops (any device; reference for the fused kernel)."""
    Ba, V, C = attr.shape
    vi = tri.long().index_select(0, frag.f)
    if Ba > 1:
        vi = vi + (frag.b * V).unsqueeze(1)
    a = take_rows(attr.reshape(Ba * V, C), vi.reshape(-1)).view(-1, 3, C)
    u = frag.bary[:, 0:1].to(a.dtype)
    v = frag.bary[:, 1:2].to(a.dtype)
    return a[:, 2] + u * (a[:, 0] - a[:, 2]) + v * (a[:, 1] - a[:, 2])


def sample(frag: Fragments, tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear, wrapping lookup of tex (B|1,Ht,Wt,C) at uv (N,2) (nvdiffrast uv orientation)."""
    if use_fused(tex):
        return sample_cpu(tex, uv, frag.b)
    return sample_torch(frag, tex, uv)


def sample_torch(frag: Fragments, tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """:func:`sample` as torch ops (any device; reference for the fused kernel)."""
    Bt, Ht, Wt, C = tex.shape
    texf = tex.reshape(Bt * Ht * Wt, C)
    x = uv[:, 0] * Wt - 0.5
    y = uv[:, 1] * Ht - 0.5
    x0f = torch.floor(x.detach())
    y0f = torch.floor(y.detach())
    fx = (x - x0f).unsqueeze(1)
    fy = (y - y0f).unsqueeze(1)
    x0 = x0f.long()
    y0 = y0f.long()
    xa = torch.remainder(x0, Wt)
    xb = torch.remainder(x0 + 1, Wt)
    ya = torch.remainder(y0, Ht) * Wt
    yb = torch.remainder(y0 + 1, Ht) * Wt
    if Bt > 1:
        base = frag.b * (Ht * Wt)
        ya = ya + base
        yb = yb + base
    idx = torch.stack((ya + xa, ya + xb, yb + xa, yb + xb), 1).reshape(-1)
    t = take_rows(texf, idx).view(-1, 4, C)
    top = t[:, 0] + fx * (t[:, 1] - t[:, 0])
    bot = t[:, 2] + fx * (t[:, 3] - t[:, 2])
    return top + fy * (bot - top)


def shade(frag: Fragments, normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Lambertian SH shading (N,3) of unit normals (N,3) with coefficients sh (B|1,9,3)."""
    if use_fused(normals):
        return sh_shade_cpu(normals, sh, frag.b, _monomial_matrix(normals.dtype, normals.device))
    basis = sh_basis(normals)
    if sh.shape[0] == 1:
        return basis @ sh[0]
    return torch.bmm(basis.unsqueeze(1), sh.index_select(0, frag.b)).squeeze(1)


def scatter(frag: Fragments, values: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """(N,C) fragment values → (B,H,W,C) image; ``fill`` is a scalar or a (B,H,W,C) image."""
    B, H, W = frag.shape
    C = values.shape[1]
    if use_fused(values) and not isinstance(fill, torch.Tensor):
        return scatter_cpu(values, frag.sel, B * H * W, fill).view(B, H, W, C)
    if isinstance(fill, torch.Tensor) and fill.dim() > 0:
        base = fill.reshape(B * H * W, C).to(values.dtype)
    else:
        base = torch.full((B * H * W, C), float(fill), dtype=values.dtype, device=values.device)
    return base.index_copy(0, frag.sel, values).view(B, H, W, C)
