"""The implicit surface: a fixed smooth base SDF of the 3DMM fit plus a learned residual.

``f(x) = base(x) + delta(x)``, where ``base`` is :class:`~face3d.detail.sdf.base.MeshDistance`
(the fitted mesh) and ``delta`` is an MLP on Fourier features of the normalised position
(NeRF-style positional encoding, Mildenhall et al. 2020) whose last layer starts at zero, so at
initialisation the zero level set *is* the fitted mesh (the "SDF regression to the mesh" of the
issue has an exact solution here). Units: metres; ``delta`` is scaled so one network output
unit is ``delta_scale`` metres.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from face3d.detail.sdf.base import MeshDistance


class FourierFeatures(nn.Module):
    """Maps (N,3) positions to (N, 3 + 6L) features [x, sin(2^k pi x), cos(2^k pi x)], k < L."""

    def __init__(self, n_freq: int) -> None:
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freq)) * math.pi)

    @property
    def out_dim(self) -> int:
        return 3 + 6 * int(self.freqs.numel())

    def forward(self, x: Tensor) -> Tensor:
        xf = x.unsqueeze(-1) * self.freqs.to(x.dtype)  # (N,3,L)
        return torch.cat([x, torch.sin(xf).flatten(1), torch.cos(xf).flatten(1)], -1)


class ResidualSDF(nn.Module):
    """delta(x): (N,3) world metres -> (N,) metres. Zero everywhere at initialisation; the hidden
    layers are drawn from their own generator seeded by ``seed`` (results do not depend on what
    else used torch's global RNG before)."""

    def __init__(self, center: Tensor, radius: float, n_freq: int = 7, width: int = 64, depth: int = 3,
                 delta_scale: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("center", center.reshape(3).float())
        self.radius = float(radius)
        self.delta_scale = float(delta_scale)
        self.enc = FourierFeatures(n_freq)
        layers: list[nn.Module] = []
        d = self.enc.out_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(depth):
                layers += [nn.Linear(d, width), nn.Softplus(beta=100)]
                d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        u = (x - self.center.to(x.dtype)) / self.radius
        return self.head(self.body(self.enc(u))).squeeze(-1) * self.delta_scale


class ImplicitFace(nn.Module):
    """f(x) = base(x) + delta(x) with a handle on the base mesh; see module docstring."""

    def __init__(self, base: MeshDistance, residual: ResidualSDF) -> None:
        super().__init__()
        self.base = base
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        """Signed distance (N,) at x (N,3), metres, positive outside."""
        return self.base.signed_distance(x) + self.residual(x)
