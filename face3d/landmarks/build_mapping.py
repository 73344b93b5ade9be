"""Fit the MediaPipe-478 -> iBUG-68 table from photos with ground-truth 68 landmarks.

For every iBUG landmark j: take the ``n_candidates`` MediaPipe points closest to it on average
over the training photos (coordinates normalised per photo by the ground truth's box size), and
solve ``min_w sum_photos |sum_k w_k mp_k - gt_j|^2`` with ``w >= 0`` and ``sum w = 1`` (NNLS with
a heavily weighted sum-to-one row). Weights below 1e-3 are dropped and the rest renormalised.

Honest evaluation: :func:`leave_one_out_nme` refits the table without each photo in turn and
measures the 3DDFA-style NME (mean error / sqrt(w*h) of the GT box) on the photo left out.

Run ``python -m face3d.landmarks.build_mapping`` to rebuild ``assets/landmarks/mediapipe_to_ibug68.json``
from the AFLW2000-3D samples in the shared data (``aflw2000_*.jpg`` + ``*.lm68.txt``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from face3d.landmarks.mapping import ASSET, nme_bbox

N_CANDIDATES = 2
MIN_WEIGHT = 1e-3


def _normalise(mp: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = gt[:, :2].astype(np.float64)
    c = g.mean(0)
    s = float(np.sqrt(np.prod(g.max(0) - g.min(0))))
    return (mp[:, :2] - c) / s, (g - c) / s


def fit_mapping(mps: list[np.ndarray], gts: list[np.ndarray], n_candidates: int = N_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Fit the table from paired MediaPipe (478, 2+) and GT (68, 2+) landmarks -> (idx (68, K), w (68, K))."""
    pairs = [_normalise(m, g) for m, g in zip(mps, gts)]
    M = np.stack([p[0] for p in pairs])  # (N, 478, 2)
    G = np.stack([p[1] for p in pairs])  # (N, 68, 2)
    dist = np.linalg.norm(M[:, None, :, :] - G[:, :, None, :], axis=-1).mean(0)  # (68, 478)
    idx = np.argsort(dist, axis=1)[:, :n_candidates]
    w = np.zeros(idx.shape)
    for j in range(68):
        A = M[:, idx[j], :].transpose(0, 2, 1).reshape(-1, n_candidates)  # (N*2, K)
        b = G[:, j, :].reshape(-1)
        A = np.vstack([A, 100.0 * np.ones((1, n_candidates))])
        b = np.concatenate([b, [100.0]])
        wj, _ = nnls(A, b)
        wj[wj < MIN_WEIGHT] = 0.0
        w[j] = wj / wj.sum()
    order = np.argsort(-w, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(w, order, 1)


def apply(idx: np.ndarray, w: np.ndarray, mp: np.ndarray) -> np.ndarray:
    return (mp[idx][..., :2] * w[..., None]).sum(1)


def leave_one_out_nme(mps: list[np.ndarray], gts: list[np.ndarray], n_candidates: int = N_CANDIDATES) -> np.ndarray:
    """Per-photo NME of a table fitted on all the other photos, (N,)."""
    out = []
    for i in range(len(mps)):
        tr = [k for k in range(len(mps)) if k != i]
        idx, w = fit_mapping([mps[k] for k in tr], [gts[k] for k in tr], n_candidates)
        out.append(nme_bbox(apply(idx, w, mps[i]), gts[i]))
    return np.asarray(out)


def aflw2000_samples(folder: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Detect MediaPipe landmarks on ``folder/aflw2000_*.jpg`` -> (names, mediapipe (478,3) list, gt (68,3) list)."""
    from face3d.landmarks.detector import detect_landmarks

    names, mps, gts = [], [], []
    for img in sorted(folder.glob("aflw2000_*.jpg")):
        gt = np.loadtxt(img.with_suffix(".lm68.txt"))
        face = detect_landmarks(str(img), which="largest")[0]
        names.append(img.name)
        mps.append(face.points.astype(np.float64))
        gts.append(gt)
    return names, mps, gts


def table_json(idx: np.ndarray, w: np.ndarray, names: list[str], loo: np.ndarray) -> str:
    rows: list[dict[str, Any]] = [
        {"ibug": j, "indices": [int(i) for i, x in zip(idx[j], w[j]) if x > 0], "weights": [round(float(x), 6) for x in w[j] if x > 0]}
        for j in range(68)
    ]
    for r in rows:  # rounding: make the weights sum to exactly 1 again
        r["weights"][0] = round(1.0 - sum(r["weights"][1:]), 6)
    obj = {
        "description": "iBUG-68 landmark j = sum(weights * mediapipe478[indices]); fitted by face3d.landmarks.build_mapping",
        "fitted_on": names,
        "n_candidates": int(idx.shape[1]),
        "leave_one_out_nme_bbox": {"mean": round(float(loo.mean()), 5), "median": round(float(np.median(loo)), 5),
                                   "per_image": [round(float(x), 5) for x in loo]},
        "landmarks": rows,
    }
    return json.dumps(obj, indent=1)


def main(argv: list[str] | None = None) -> int:
    from face3d.io.atomic import write_text
    from face3d.testing import shared_data

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ASSET
    names, mps, gts = aflw2000_samples(shared_data() / "faces")
    loo = leave_one_out_nme(mps, gts)
    idx, w = fit_mapping(mps, gts)
    write_text(out, table_json(idx, w, names, loo))
    print(f"wrote {out}: leave-one-out NME mean {loo.mean():.4f} median {np.median(loo):.4f} over {len(names)} photos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
