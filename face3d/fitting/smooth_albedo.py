"""A smooth albedo field for models without an albedo space (ICT-FaceKit, FLAME without its texture).

Skin tone varies slowly over a face (redder cheeks and nose, darker around the eyes and brow).
A model with no albedo space renders one uniform colour, and the photometric stage then explains
those tone changes with shading, i.e. by bending the shape. The fitter therefore gives such
models a relative variation field: albedo(v) = base · gain · (1 + Σ_k φ_k(v) c_k), with φ the
monomials of degree 1..:data:`DEGREE` of the template's standardised coordinates (9 functions for
degree 2, each scaled to unit standard deviation over the vertices) and c (K, 3) per colour
channel, with a Gaussian prior of standard deviation :data:`PRIOR_STD` (±10 % tone per unit).
Measured effect in benchmarks/README.md (reconstruction, synthetic ICT section).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from face3d.models.model import MorphableModel

#: Highest monomial degree of the basis.
DEGREE = 2
#: Prior standard deviation of each coefficient (relative albedo change per unit of a basis function).
PRIOR_STD = 0.1


def smooth_albedo_basis(model: MorphableModel, degree: int = DEGREE) -> Tensor:
    """Basis (V, K) float32: K = C(degree + 3, 3) − 1 monomials (9 for degree 2); (V, 0) when the
    model has its own albedo space or ``degree`` is 0."""
    if degree <= 0 or model.per_vertex_albedo:
        return torch.zeros(model.n_vertices, 0)
    v = model.template.detach().cpu().double()
    x = (v - v.mean(0)) / v.std(0).clamp_min(1e-12)
    cols = [torch.prod(x[:, list(c)], 1) for d in range(1, degree + 1) for c in itertools.combinations_with_replacement(range(3), d)]
    b = torch.stack(cols, 1)
    return (b / b.std(0).clamp_min(1e-12)).float()


def apply_smooth_albedo(albedo: Tensor, basis: Tensor, coeffs: Tensor) -> Tensor:
    """albedo (B, V, 3) · (1 + basis (V, K) @ coeffs (B, K, 3)); unchanged when K = 0."""
    if basis.shape[1] == 0:
        return albedo
    return albedo * (1 + torch.einsum("vk,bkc->bvc", basis.to(albedo), coeffs.to(albedo)))
