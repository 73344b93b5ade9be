"""MediaPipe-478 -> iBUG-68 landmarks through a fixed table of convex combinations.

Each iBUG/Multi-PIE landmark j is ``sum_k w_jk * mp[idx_jk]`` with ``w >= 0``, ``sum w = 1``
(so the map commutes with translation, rotation and scale, in 2D and 3D). The table
(``assets/landmarks/mediapipe_to_ibug68.json``) is derived by code, not by hand:
:mod:`face3d.landmarks.build_mapping` fits it by constrained least squares on photos with
ground-truth 68 landmarks (AFLW2000-3D samples) and records its leave-one-image-out error.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from face3d.errors import BadInputError, ModelFileError
from face3d.paths import assets_dir

ASSET = assets_dir() / "landmarks" / "mediapipe_to_ibug68.json"


@lru_cache(maxsize=4)
def load_mapping(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The table as (indices (68, K) int64, weights (68, K) float64); unused slots have weight 0."""
    p = Path(path) if path else ASSET
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
        rows = obj["landmarks"]
        k = max(len(r["indices"]) for r in rows)
        idx = np.zeros((len(rows), k), dtype=np.int64)
        w = np.zeros((len(rows), k), dtype=np.float64)
        for j, r in enumerate(rows):
            idx[j, : len(r["indices"])] = r["indices"]
            w[j, : len(r["weights"])] = r["weights"]
    except FileNotFoundError:
        raise ModelFileError(p, "landmark mapping table not found") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(p, f"invalid landmark mapping table ({exc})") from None
    if idx.shape[0] != 68 or idx.min() < 0 or idx.max() >= 478 or not np.allclose(w.sum(1), 1.0, atol=1e-6):
        raise ModelFileError(p, "mapping must give 68 rows of MediaPipe indices in [0, 478) with weights summing to 1")
    return idx, w


def mediapipe_to_ibug68(points: np.ndarray, path: str | None = None) -> np.ndarray:
    """Map MediaPipe landmarks (..., 478, D) to iBUG-68 (..., 68, D), same dtype (D = 2 or 3)."""
    pts = np.asarray(points)
    if pts.ndim < 2 or pts.shape[-2] != 478:
        raise BadInputError(f"argument 'points': expected (..., 478, D) MediaPipe landmarks, got shape {pts.shape}")
    idx, w = load_mapping(path)
    out = (pts[..., idx, :].astype(np.float64) * w[..., None]).sum(-2)
    return out.astype(pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64)


def nme_bbox(pred: np.ndarray, gt: np.ndarray) -> float:
    """2D NME as 3DDFA reports it: mean point error / sqrt(w * h) of the ground truth's 2D box."""
    p, g = np.asarray(pred, np.float64)[:, :2], np.asarray(gt, np.float64)[:, :2]
    w, h = g.max(0) - g.min(0)
    return float(np.linalg.norm(p - g, axis=1).mean() / np.sqrt(w * h))
