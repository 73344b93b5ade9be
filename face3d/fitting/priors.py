"""Statistical priors of the fit (negative log-likelihoods up to constants), per batch item.

Identity/albedo: Gaussian priors of the PCA coefficients, ``sum((c/std)^2)`` (Blanz & Vetter
1999). Expression: L2, plus a barrier keeping ARKit weights in [0, 1]. Albedo symmetry: the
albedo at a vertex equals the albedo at its mirror image across x = 0 (the symmetric-albedo
prior of e.g. Tewari et al. 2017 / "unsup3d", Wu et al. 2020). Lighting: non-DC SH bands small
relative to the DC band, and near-white light (colour lives in the albedo).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


def gaussian_prior(coeffs: Tensor, std: Tensor | None = None) -> Tensor:
    """sum((c/std)^2) over the last dim: (B, K) -> (B,)."""
    if coeffs.shape[-1] == 0:
        return coeffs.new_zeros(coeffs.shape[:-1])
    c = coeffs if std is None else coeffs / std[: coeffs.shape[-1]].to(coeffs)
    return (c * c).sum(-1)


#: Weight of :func:`expression_prior`'s quadratic barrier outside [0, 1] (bounded ARKit weights).
EXPRESSION_BARRIER = 100.0


def expression_prior(expression: Tensor, bounded: bool) -> Tensor:
    """L2 of expression weights (B, K) -> (B,); with ``bounded`` a quadratic barrier outside [0, 1]."""
    e = (expression * expression).sum(-1)
    if bounded:
        out = torch.relu(-expression) + torch.relu(expression - 1)
        e = e + EXPRESSION_BARRIER * (out * out).sum(-1)
    return e


def mirror_indices(vertices: np.ndarray | Tensor, tol: float = 2e-3) -> np.ndarray:
    """For each vertex (V,3) of a mesh symmetric about x = 0, the index of its mirror image (V,).

    Vertices whose mirror is farther than ``tol`` metres map to themselves. Memoised per vertex
    array (the fit asks for its model template's on every photo; a k-d tree costs ~15 ms).
    """
    from face3d.io.array_cache import digest

    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, Tensor) else vertices, np.float64)
    key = digest(v, float(tol))
    hit = _MIRROR_MEMO.get(key)
    if hit is None:
        m = v * np.array([-1.0, 1.0, 1.0])
        d, idx = cKDTree(v).query(m)
        hit = np.where(d < tol, idx, np.arange(len(v))).astype(np.int64)
        if len(_MIRROR_MEMO) >= 8:
            _MIRROR_MEMO.clear()
        _MIRROR_MEMO[key] = hit
    return hit.copy()


_MIRROR_MEMO: dict[str, np.ndarray] = {}


def albedo_symmetry(albedo: Tensor, mirror: Tensor) -> Tensor:
    """Mean squared difference between per-vertex albedo (B, V, 3) and its mirror: (B,)."""
    return ((albedo - albedo[:, mirror]) ** 2).sum(-1).mean(-1)


def sh_prior(sh: Tensor) -> Tensor:
    """Lighting prior for SH coefficients (B, 9, 3): (B,).

    Penalises higher bands relative to the DC term and colour differences between channels.
    """
    dc = sh[:, :1].mean(-1, keepdim=True).abs().clamp_min(1e-3)
    rel = sh[:, 1:] / dc.unsqueeze(-1).squeeze(-1)
    colour = sh - sh.mean(-1, keepdim=True)
    return 0.1 * (rel * rel).sum((1, 2)) + (colour * colour).sum((1, 2)) / (dc.squeeze(-1).squeeze(-1) ** 2)
