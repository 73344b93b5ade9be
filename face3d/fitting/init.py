"""Closed-form initialisation of the rigid head pose and focal length from landmarks.

1. Umeyama (1991) similarity alignment between 3D point sets (used for ICP/evaluation too).
2. Scaled-orthographic (weak-perspective) fit: a least-squares affine camera projected onto
   the nearest scaled rotation (SVD), giving rotation, scale and image offset in closed form.
3. Perspective refinement (PnP by Gauss–Newton/LM on the reprojection error) over rotation,
   translation and log focal, tried from several focal lengths; the best is kept. A weak prior
   pulls the focal length towards a 50 mm-equivalent lens because landmarks of a nearly
   planar face constrain it only weakly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from face3d.errors import BadInputError, FittingError


@dataclass
class RigidInit:
    """Rigid pose of the model in the camera (X_cam = R·X + t), metres and pixels.

    rotation: axis-angle (3,) radians; translation (3,) metres (z < 0: in front);
    focal: pixels; error: RMS reprojection error in pixels.
    """

    rotation: np.ndarray
    translation: np.ndarray
    focal: float
    error: float


def default_focal(width: int, height: int) -> float:
    """Focal length (pixels) of a 50 mm-equivalent lens (diagonal field of view ≈ 47°)."""
    return float(math.hypot(width, height) / (2.0 * math.tan(math.radians(46.8) / 2)))


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R (3,3), t (3,)) minimising sum w·|s·R·src + t − dst|², Umeyama 1991.

    src, dst: (N, 3) corresponding points.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 3:
        raise BadInputError(f"umeyama: expected two (N>=3, D) arrays of equal shape, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1, -1] = -1
    R = U @ D @ Vt
    var = (w * (xs**2).sum(1)).sum()
    s = float(np.trace(np.diag(S) @ D) / var) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def weak_perspective(points3d: np.ndarray, points2d: np.ndarray, width: int, height: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Scaled-orthographic camera from correspondences: (scale, R (3,3), offset (2,)).

    ``(x − cx, cy − y) ≈ scale·R[:2]·X + offset`` (y flipped to the camera's +Y up).
    """
    X = np.asarray(points3d, np.float64)
    uv = np.stack([points2d[:, 0] - width / 2, height / 2 - points2d[:, 1]], 1)
    A_ls = np.concatenate([X, np.ones((len(X), 1))], 1)
    sol, *_ = np.linalg.lstsq(A_ls, uv, rcond=None)  # (4, 2)
    A = sol[:3].T  # (2, 3)
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    R2 = U @ Vt
    r3 = np.cross(R2[0], R2[1])
    R = np.stack([R2[0], R2[1], r3])
    U3, _, Vt3 = np.linalg.svd(R)
    R = U3 @ Vt3
    if np.linalg.det(R) < 0:
        R = U3 @ np.diag([1, 1, -1]) @ Vt3
    return float(S.mean()), R, sol[3]


def _project(params: np.ndarray, X: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Pixels (N, 2) of points X (N, 3) seen with ``params`` (7,): axis-angle, translation, log focal;
    params (M, 7) gives (M, N, 2) (each row the values of its own call)."""
    P = np.asarray(params, np.float64)
    one = P.ndim == 1
    P = P[None] if one else P
    R = Rotation.from_rotvec(P[:, :3]).as_matrix()
    Xc = np.matmul(X, R.transpose(0, 2, 1)) + P[:, None, 3:6]
    f = np.array([math.exp(v) for v in P[:, 6]])[:, None]
    z = np.maximum(-Xc[..., 2], 1e-6)
    out = np.stack([f * Xc[..., 0] / z + cx, cy - f * Xc[..., 1] / z], -1)
    return out[0] if one else out


#: scipy's relative step of '2-point' finite differences (float64: sqrt of the machine epsilon).
_FD_STEP = float(np.finfo(np.float64).eps) ** 0.5


def _forward_difference(resid: Callable[[np.ndarray], np.ndarray], p: np.ndarray) -> np.ndarray:
    """Jacobian (M, n) of ``resid`` (rows of parameters (k, n) -> residuals (k, M)) at ``p`` (n,) by
    forward differences, all n + 1 evaluations in one call: the steps and arithmetic of
    ``scipy.optimize.least_squares``' default '2-point' Jacobian, so the fit takes the same steps."""
    h = _FD_STEP * ((p >= 0).astype(float) * 2 - 1) * np.maximum(1.0, np.abs(p))
    P = np.repeat(p[None], len(p) + 1, 0)
    idx = np.arange(len(p))
    P[idx + 1, idx] = p + h
    F = resid(P)
    dx = (p + h) - p
    return ((F[1:] - F[0]) / dx[:, None]).T


def solve_pnp(
    points3d: np.ndarray,
    points2d: np.ndarray,
    width: int,
    height: int,
    weights: np.ndarray | None = None,
    focal: float | None = None,
    focal_prior: float = 0.05,
) -> RigidInit:
    """Rigid pose and focal length of a camera seeing model points (N,3) metres at pixels (N,2).

    ``focal`` fixes the focal length; otherwise it is estimated (log-focal with a weak prior of
    strength ``focal_prior`` towards :func:`default_focal`). Raises FittingError if the points
    are degenerate.
    """
    X = np.asarray(points3d, np.float64)
    x = np.asarray(points2d, np.float64)
    if X.ndim != 2 or X.shape[1] != 3 or x.shape != (len(X), 2) or len(X) < 4:
        raise BadInputError(f"solve_pnp: expected points3d (N>=4, 3) and points2d (N, 2), got {X.shape} and {x.shape}")
    if not (np.isfinite(X).all() and np.isfinite(x).all()):
        raise BadInputError("solve_pnp: non-finite landmark coordinates")
    w = np.ones(len(X)) if weights is None else np.asarray(weights, np.float64)
    sw = np.sqrt(np.repeat(w, 2))
    cx, cy = width / 2, height / 2
    scale, R, off = weak_perspective(X, x, width, height)
    if not np.isfinite(scale) or scale <= 0:
        raise FittingError("solve_pnp: degenerate landmark configuration (zero scale)")
    f0 = default_focal(width, height)
    centre = X.mean(0)
    diag = float(math.hypot(width, height))

    def run(f_init: float, free_focal: bool) -> tuple[np.ndarray, float]:
        d = f_init / scale
        rc = R @ centre
        t = np.array([off[0] / scale - rc[0], off[1] / scale - rc[1], -d - rc[2]])
        p0 = np.concatenate([Rotation.from_matrix(R).as_rotvec(), t, [math.log(f_init)]])

        def resid(p: np.ndarray) -> np.ndarray:  # parameters (n,) or rows of them (k, n)
            P = np.atleast_2d(p)
            full = P if free_focal else np.concatenate([P, np.full((len(P), 1), math.log(f_init))], 1)
            r = ((_project(full, X, cx, cy) - x).reshape(len(P), -1) / diag) * sw
            if free_focal:
                r = np.concatenate([r, focal_prior * (P[:, 6:7] - math.log(f0))], 1)
            return r[0] if p.ndim == 1 else r

        res = least_squares(resid, p0 if free_focal else p0[:6], jac=lambda p: _forward_difference(resid, p), method="lm", max_nfev=200)
        p = res.x if free_focal else np.concatenate([res.x, [math.log(f_init)]])
        return p, float(np.sqrt(np.mean(((_project(p, X, cx, cy) - x) ** 2).sum(1))))

    if focal is not None:
        p, err = run(float(focal), False)
    else:
        best = None
        for k in (0.6, 1.0, 1.6, 2.5):
            p, err = run(f0 * k, False)
            if best is None or err < best[1]:
                best = (p, err)
        p, err = run(math.exp(best[0][6]), True)
        if err > best[1] * 1.5:
            p, err = best
    if not np.isfinite(p).all() or p[5] >= 0:
        raise FittingError("solve_pnp: pose estimation failed (face behind the camera)")
    return RigidInit(rotation=p[:3].copy(), translation=p[3:6].copy(), focal=float(math.exp(p[6])), error=err)
