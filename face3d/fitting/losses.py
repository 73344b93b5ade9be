"""Data terms of the fit: robust landmark loss (with contour handling) and a robust,
occlusion-aware photometric loss inside a skin mask.

Robust penalty: Geman–McClure ``r²/(r²+σ²)`` or a smooth L1 (Charbonnier). The photometric
term follows the occlusion-aware scheme of Egger et al. 2018 / Deep3DFaceRecon: per-pixel
weights combine the rendered face coverage, the landmark face region (eyes and mouth interior
cut out), a skin-colour likelihood fitted to each image from landmark-placed skin samples (hair,
beards, brows, glasses, hands of another tone are unlikely skin: :func:`skin_mask`) and an
outlier weight that drops pixels whose residual is far above the typical residual.
"""

from __future__ import annotations

import functools

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
    s = rotation[:, 0, 2]  # the face's +Z axis in the camera, x: > 0 turned towards image right (image-left cheek hidden)
    side = contour_sides(n_landmarks, (left, right)).to(rotation)
    # exp(-strength·4·relu(±s)) on the left / right contour, exp(-strength·4·relu(0)) = 1 elsewhere
    return torch.exp(-strength * 4 * torch.relu(side * s.unsqueeze(1)))


def contour_sides(n_landmarks: int, contour: tuple[list[int], list[int]]) -> Tensor:
    """(L,) float32: +1 on the image-left contour ``contour[0]``, -1 on the image-right one
    ``contour[1]`` (it wins where both list a point), 0 elsewhere (cached: do not modify)."""
    return _contour_sides(n_landmarks, tuple(contour[0]), tuple(contour[1]))


@functools.lru_cache(maxsize=16)
def _contour_sides(n_landmarks: int, left: tuple[int, ...], right: tuple[int, ...]) -> Tensor:
    side = torch.zeros(n_landmarks)
    side[list(left)] = 1.0
    side[list(right)] = -1.0
    return side


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


def face_region(lm68: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool (H, W): inside the face (jaw line closed over the brows, raised by 0.35 of the
    nose-top-to-chin distance), outside the eyes and the inner mouth; iBUG-68 landmarks (68, 2) px."""
    jaw = lm68[0:17]
    up = (lm68[8] - lm68[27:31].mean(0)) * 0.35
    top = (lm68[17:27] - up)[::-1]
    face = polygon_mask(np.concatenate([jaw, top]), height, width)
    eyes = polygon_mask(lm68[36:42], height, width) | polygon_mask(lm68[42:48], height, width)
    return face & ~eyes & ~polygon_mask(lm68[60:68], height, width)


def skin_sample_points(lm68: np.ndarray) -> np.ndarray:
    """Points (9, 2) px where skin is expected: below both eyes, both mid cheeks, nose bridge
    (two), low forehead, between the brows, chin. Five of the nine lie in the upper face, so a
    lower-face occluder (mask, hand, beard) cannot take the median."""
    up = lm68[27] - lm68[30]  # nose length, pointing up the face
    return np.stack([
        0.5 * lm68[2] + 0.5 * lm68[31], 0.5 * lm68[14] + 0.5 * lm68[35],
        0.6 * lm68[40] + 0.4 * lm68[2], 0.6 * lm68[47] + 0.4 * lm68[14],
        lm68[28], lm68[29],
        0.5 * (lm68[21] + lm68[22]) + 0.45 * up, 0.5 * lm68[8] + 0.5 * lm68[57], 0.5 * (lm68[21] + lm68[22]) + 0.15 * up,
    ])


def _log_colour(px: np.ndarray) -> np.ndarray:
    """(N, 3) RGB -> (N, 3) [log R/G, log B/G, log luminance] (chroma independent of brightness)."""
    p = np.maximum(px.astype(np.float64), 1.0 / 255)
    y = p @ np.array([0.299, 0.587, 0.114])
    return np.stack([np.log(p[:, 0] / p[:, 1]), np.log(p[:, 2] / p[:, 1]), np.log(y)], 1)


def skin_mask(image: np.ndarray, lm68: np.ndarray, colour: bool = True) -> np.ndarray:
    """Soft skin mask (H, W) float in [0, 1] from an image (H, W, 3) float [0,1] and iBUG-68 landmarks (68, 2).

    :func:`face_region` times, with ``colour``, a skin-colour likelihood fitted to this image
    (as Deep3DFaceRecon does): pixels in small discs at :func:`skin_sample_points` give a robust
    (median, then 2.5σ-trimmed) Gaussian over log-chroma (log R/G, log B/G: shading does not move
    it) and a robust band on log luminance (σ ≥ 0.25, shadows down to ~0.4× stay in). Hair,
    beards, brows, glasses frames, hands of another tone and background fall outside (weight →
    0 past 3σ in chroma / luminance).
    """
    H, W = image.shape[:2]
    region = face_region(lm68, H, W)
    if not colour:
        return region.astype(np.float32)
    size = float(np.linalg.norm(lm68[0] - lm68[16]))
    r = max(1.5, 0.06 * size)
    yy, xx = np.mgrid[0:H, 0:W]
    near = np.zeros((H, W), bool)
    for x, y in skin_sample_points(lm68):
        near |= (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r
    near &= region
    px = image[near] if near.sum() > 20 else image[region] if region.sum() > 20 else image.reshape(-1, 3)
    f = _log_colour(px)
    mu = np.median(f, 0)
    s = np.maximum(1.4826 * np.median(np.abs(f - mu), 0), [0.03, 0.03, 0.25])
    keep = (np.abs(f - mu) < 2.5 * s).all(1)  # start from median / MAD: outlying samples (beard, hair) never enter
    if keep.sum() < 10:
        keep = np.ones(len(f), bool)
    for _ in range(3):  # then a trimmed Gaussian
        mu = f[keep].mean(0)
        cov = np.cov(f[keep, :2].T) + np.eye(2) * 0.03 ** 2
        d = f[:, :2] - mu[:2]
        m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        s_l = max(float(f[keep, 2].std()), 0.25)
        new = (m2 < 2.5 ** 2) & (np.abs(f[:, 2] - mu[2]) < 2.5 * s_l)
        if new.sum() < 10 or np.array_equal(new, keep):
            break
        keep = new
    g = _log_colour(image.reshape(-1, 3))
    d = g[:, :2] - mu[:2]
    m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    zl = np.abs(g[:, 2] - mu[2]) / s_l
    w = np.exp(-np.maximum(m2 - 9.0, 0) / 2.0) * np.exp(-np.maximum(zl - 3.0, 0) ** 2 / 0.5)
    return (region * w.reshape(H, W)).astype(np.float32)
