"""Data terms of the fit: robust landmark loss (with contour handling) and a robust,
occlusion-aware photometric loss inside a skin mask.

Robust penalty: Geman–McClure ``r²/(r²+σ²)`` or a smooth L1 (Charbonnier). The photometric
term follows the occlusion-aware scheme of Egger et al. 2018 / Deep3DFaceRecon: per-pixel
weights combine the rendered face coverage, a skin mask built from the landmarks (eyes and
mouth interior cut out), a skin-colour likelihood (hair, glasses, hands are unlikely skin) and
an outlier weight that drops pixels whose residual is far above the typical residual.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def robust(r2: Tensor, sigma: float, kind: str = "gm") -> Tensor:
    """Robust penalty of squared residuals ``r2``: 'gm' Geman–McClure, 'charbonnier', or 'l2'."""
    s2 = sigma * sigma
    if kind == "gm":
        return r2 / (r2 + s2)
    if kind == "charbonnier":
        return torch.sqrt(r2 + s2) - sigma
    if kind == "l2":
        return r2 / s2
    raise ValueError(f"unknown robust penalty {kind!r}")


def contour_weights(rotation: Tensor, n_landmarks: int, left: list[int], right: list[int], strength: float = 2.0) -> Tensor:
    """Per-landmark weights (B, L) down-weighting the contour on the side turned away.

    rotation: head rotation matrices (B, 3, 3). ``left``/``right`` are the indices of the
    contour landmarks on the image-left/right cheek (subject's right/left). With yaw θ the
    far side's contour points are hidden behind the face, and the detected contour lies on the
    silhouette rather than on the embedded vertices, so their weight falls like
    ``exp(−strength·max(0, ±sin θ)·4)``.
    """
    B = rotation.shape[0]
    w = rotation.new_ones(B, n_landmarks)
    fwd = rotation[:, :, 2]  # the face's +Z axis in the camera
    s = fwd[:, 0]  # > 0: face turned towards image right, its image-left cheek is hidden
    hide_left = torch.exp(-strength * 4 * torch.relu(s))
    hide_right = torch.exp(-strength * 4 * torch.relu(-s))
    if left:
        w[:, left] = hide_left.unsqueeze(1).expand(B, len(left))
    if right:
        w[:, right] = hide_right.unsqueeze(1).expand(B, len(right))
    return w


def landmark_loss(pred: Tensor, target: Tensor, weights: Tensor, scale: Tensor, sigma: float = 0.03, kind: str = "gm") -> Tensor:
    """Weighted robust landmark loss (B,).

    pred, target (B, L, 2) pixels; weights (B, L) or (L,); scale (B,) pixels (face size), the
    residuals are divided by it so σ is a fraction of the face size.
    """
    r2 = ((pred - target) ** 2).sum(-1) / (scale.unsqueeze(1) ** 2)
    w = weights if weights.ndim == 2 else weights.unsqueeze(0).expand_as(r2)
    return (w * robust(r2, sigma, kind)).sum(1) / w.sum(1).clamp_min(1e-6)


def photometric_loss(rendered: Tensor, image: Tensor, weights: Tensor, sigma: float = 0.1) -> Tensor:
    """Robust (Charbonnier) colour loss (B,) over pixels weighted by ``weights`` (B, H, W)."""
    r2 = ((rendered - image) ** 2).sum(-1)
    return (weights * robust(r2, sigma, "charbonnier")).sum((1, 2)) / weights.sum((1, 2)).clamp_min(1.0)


def outlier_weights(rendered: Tensor, image: Tensor, mask: Tensor, k: float = 3.0) -> Tensor:
    """Occlusion weights (B, H, W) in [0, 1]: pixels whose colour residual exceeds ``k`` times
    the median residual inside ``mask`` are treated as occluders (Gaussian fall-off)."""
    with torch.no_grad():
        r = ((rendered - image) ** 2).sum(-1).sqrt()
        out = torch.ones_like(r)
        for b in range(r.shape[0]):
            m = mask[b] > 0.5
            med = r[b][m].median() if bool(m.any()) else r.new_tensor(0.1)
            thr = k * med.clamp_min(0.02)
            out[b] = torch.exp(-torch.relu(r[b] - thr) ** 2 / (2 * thr * thr))
    return out


def polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Filled polygon (N, 2) pixels (x right, y down) -> bool mask (H, W)."""
    from skimage.draw import polygon

    m = np.zeros((height, width), bool)
    rr, cc = polygon(points[:, 1] - 0.5, points[:, 0] - 0.5, (height, width))
    m[rr, cc] = True
    return m


def skin_mask(image: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """Soft skin mask (H, W) float in [0, 1] from an image (H, W, 3) float [0,1] and iBUG-68 landmarks (68, 2).

    Inside the face (jaw line closed over the brows, raised by a third of the brow-to-chin
    distance), outside the eyes and the inner mouth, times a skin-colour likelihood: a Gaussian
    in RGB fitted to the cheek and nose pixels (Mahalanobis distance, soft threshold at 3σ).
    """
    H, W = image.shape[:2]
    jaw = lm68[0:17]
    brows = lm68[17:27]
    up = (lm68[8] - lm68[27:31].mean(0)) * 0.35
    top = (brows - up)[::-1]
    face = polygon_mask(np.concatenate([jaw, top]), H, W)
    eyes = polygon_mask(lm68[36:42], H, W) | polygon_mask(lm68[42:48], H, W)
    mouth = polygon_mask(lm68[60:68], H, W)
    region = face & ~eyes & ~mouth
    cheeks = polygon_mask(np.stack([lm68[1], lm68[31], lm68[35], lm68[15], lm68[28]]), H, W) & ~eyes
    px = image[cheeks] if cheeks.sum() > 20 else image[region] if region.sum() > 20 else image.reshape(-1, 3)
    mu = px.mean(0)
    cov = np.cov(px.T) + np.eye(3) * 2e-3
    d = image.reshape(-1, 3) - mu
    m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d).reshape(H, W)
    colour = np.exp(-np.maximum(m2 - 9.0, 0) / 9.0)
    return (region * colour).astype(np.float32)
