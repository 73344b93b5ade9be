"""Video -> expression tracking: per-frame ARKit weights and head pose of a fixed-identity avatar.

Per frame: MediaPipe's 478 landmarks (``face3d.landmarks.detect_landmarks``) mapped to iBUG-68,
then a fit of head rotation (axis-angle), translation and expression weights to those 68 points
under a pinhole camera (focal ``focal_factor * max(H, W)`` px, principal point at the centre;
conventions of docs/conventions.md: the camera looks down -Z, x_px = f X/(-Z) + cx,
y_px = cy - f Y/(-Z)). The model's landmarks are linear in the expression (barycentric points of
a linear model), so each frame alternates (3 times) an L-BFGS solve of the rigid pose with a
bounded linearised least-squares (Gauss-Newton) step for the weights, on (68, 3) points.
Identity is fixed from the avatar. Temporal smoothing: each frame starts from the previous
solution and pays ``smooth * ||w_t - w_{t-1}||^2`` (and the same on pose), and the tracks are
finally filtered with a Gaussian of ``sigma`` frames. Expression weights are kept in [0, 1]
(ARKit range) by the bounded solve and pulled toward 0 by a small L2 prior. Contour
(jaw-line) points weigh less (0.3): MediaPipe and the model disagree most there.
Frames without a face take the previous frame's values (noted in ``meta['missing_frames']``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from face3d.animation.animation import Animation
from face3d.errors import BadInputError, NoFaceError

if TYPE_CHECKING:
    from face3d.animation.avatar import AvatarSpec
    from face3d.models.model import MorphableModel

FOCAL_FACTOR = 1.2
_CONTOUR = 0.3


@dataclass(frozen=True)
class LandmarkBasis:
    """The avatar's 68 landmarks as a linear function of the ARKit weights w (52,), in model space
    (metres): ``neutral + einsum('k,kld->ld', w, deltas)``; neutral (68, 3), deltas (52, 68, 3)."""

    neutral: torch.Tensor
    deltas: torch.Tensor


def _landmark_basis(model: MorphableModel, shape: np.ndarray | None) -> LandmarkBasis:
    """Neutral landmarks (68, 3) and per-ARKit-shape landmark deltas (52, 68, 3) of ``model``."""
    from face3d.animation.retarget import arkit_retargeting

    with torch.no_grad():
        s = torch.as_tensor(shape, dtype=torch.float32)[None] if shape is not None else None
        v0 = model(shape=s)
        l0 = model.landmarks(v0, "ibug68")[0]
        M = torch.as_tensor(arkit_retargeting(model).matrix)  # (52, K)
        K = model.n_expression
        basis = (M @ model.exp_basis.reshape(K, -1)).reshape(52, -1, 3)
        dl = model.landmarks(basis, "ibug68")  # landmarks are barycentric, so linear in the vertices
    return LandmarkBasis(l0, dl)


def _project(points: torch.Tensor, f: float, cx: float, cy: float) -> torch.Tensor:
    z = (-points[..., 2]).clamp_min(1e-4)
    return torch.stack([f * points[..., 0] / z + cx, cy - f * points[..., 1] / z], -1)


def _jacobian(l0: torch.Tensor, dl: torch.Tensor, w: torch.Tensor, pose: torch.Tensor, trans: torch.Tensor, f: float) -> torch.Tensor:
    """d(projected landmarks, flattened (x0, y0, x1, ...)) / d(weights): (2L, 52), in closed form."""
    from face3d.models.model import axis_angle_to_matrix

    R = axis_angle_to_matrix(pose[None])[0]
    cam = (l0 + torch.einsum("k,kld->ld", w, dl)) @ R.T + trans  # (L, 3)
    d = dl @ R.T  # (52, L, 3)
    zz = (-cam[:, 2]).clamp_min(1e-4)
    jx = f / zz * d[..., 0] + f * cam[:, 0] / zz**2 * d[..., 2]
    jy = -f / zz * d[..., 1] - f * cam[:, 1] / zz**2 * d[..., 2]
    return torch.stack([jx, jy], -1).reshape(d.shape[0], -1).T


def fit_frames(targets: np.ndarray, basis: LandmarkBasis, image_size: tuple[int, int], focal: float | None = None,
               smooth: float = 0.05, prior: float = 0.01, steps: int = 20, outer_iters: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit (T, 68, 2) pixel landmarks (NaN rows = missing frame) with the avatar's landmark ``basis``
    in an image of ``image_size`` (H, W). Returns ARKit weights (T, 52),
    axis-angle pose (T, 3) and translation (T, 3) metres. Runs torch single-threaded (the problems
    are tiny; thread hand-offs cost more than the maths) and restores the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_frames(targets, basis, image_size, focal, smooth, prior, steps, outer_iters)
    finally:
        torch.set_num_threads(threads)


def _fit_frames(targets: np.ndarray, basis: LandmarkBasis, image_size: tuple[int, int], focal: float | None,
                smooth: float, prior: float, steps: int, outer_iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.optimize import lsq_linear

    from face3d.models.model import axis_angle_to_matrix

    l0, dl = basis.neutral, basis.deltas

    H, W = image_size
    f = float(focal) if focal else FOCAL_FACTOR * max(H, W)
    cx, cy = W / 2.0, H / 2.0
    T = targets.shape[0]
    wts = torch.ones(68)
    wts[:17] = _CONTOUR
    out_w = np.zeros((T, 52), np.float32)
    out_p = np.zeros((T, 3), np.float32)
    out_t = np.zeros((T, 3), np.float32)
    w_cur = torch.zeros(52)
    pose = torch.zeros(3)
    trans = None
    prev = None
    for i in range(T):
        tgt = targets[i]
        if not np.all(np.isfinite(tgt)):
            if prev is not None:
                out_w[i], out_p[i], out_t[i] = prev
            continue
        tg = torch.as_tensor(tgt, dtype=torch.float32)
        scale = float(np.linalg.norm(tgt[36] - tgt[45]))
        if trans is None:  # depth from the outer-eye-corner distance, x/y from the landmark centroid
            d_model = float((l0[36] - l0[45]).norm())
            z = f * d_model / max(scale, 1e-6)
            c = tgt.mean(0)
            trans = torch.tensor([(c[0] - cx) * z / f, (cy - c[1]) * z / f, -z]) - l0.mean(0)
        w_prev = w_cur.clone()
        p_prev = pose.detach().clone()
        sw = torch.sqrt(wts / wts.sum() * 100).repeat_interleave(2)  # per-coordinate residual weights

        def project(w: torch.Tensor, pz: torch.Tensor, tz: torch.Tensor) -> torch.Tensor:
            lm = l0 + torch.einsum("k,kld->ld", w, dl)
            return _project(lm @ axis_angle_to_matrix(pz[None])[0].T + tz, f, cx, cy)

        for outer in range(outer_iters if prev is not None else outer_iters + 2):
            # (1) rigid: L-BFGS on rotation + translation with the expression fixed
            pose.requires_grad_(True)
            trans.requires_grad_(True)
            opt = torch.optim.LBFGS([pose, trans], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                opt.zero_grad()
                err = (((project(w_cur, pose, trans) - tg) / scale) ** 2).sum(-1)
                loss = (wts * err).sum() / wts.sum() * 100
                if prev is not None:
                    loss = loss + smooth * ((pose - p_prev) ** 2).sum()
                loss.backward()
                return loss

            opt.step(closure)
            pose.requires_grad_(False)
            trans.requires_grad_(False)
            # (2) expression: bounded linearised least squares (Gauss-Newton step with 0 <= w <= 1)
            J = _jacobian(l0, dl, w_cur, pose, trans, f)  # (136, 52)
            r = (tg - project(w_cur, pose, trans)).reshape(-1)
            A = [(J / scale * sw[:, None]).numpy(), np.sqrt(prior) * np.eye(52, dtype=np.float32)]
            b = [((r + J @ w_cur) / scale * sw).numpy(), np.zeros(52, np.float32)]
            if prev is not None and smooth > 0:
                A.append(np.sqrt(smooth) * np.eye(52, dtype=np.float32))
                b.append(np.sqrt(smooth) * w_prev.numpy())
            sol = lsq_linear(np.concatenate(A).astype(np.float64), np.concatenate(b).astype(np.float64), bounds=(0.0, 1.0))
            w_cur = torch.as_tensor(sol.x, dtype=torch.float32)
        prev = (w_cur.numpy().copy(), pose.numpy().copy(), trans.numpy().copy())
        out_w[i], out_p[i], out_t[i] = prev
    return out_w, out_p, out_t


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or x.shape[0] < 3:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma, axis=0, mode="nearest").astype(np.float32)


def check_track_args(fps: float | None, focal: float | None, smooth: float = 0.05, sigma: float = 1.0,
                     max_frames: int | None = None) -> None:
    """BadInputError (naming the argument, the value and the allowed range) for a bad tracking setting."""
    from face3d.fitting.stages import check_setting

    checks = {"fps": (fps, ("positive", 0.0, 1000.0)), "focal": (focal, ("positive", 0.0, 1e6)),
              "smooth": (smooth, ("float", 0.0, 1e3)), "sigma": (sigma, ("float", 0.0, 100.0)),
              "max_frames": (max_frames, ("int", 1, 10_000_000))}
    for name, (value, spec) in checks.items():
        if value is not None:
            check_setting(f"argument '{name}'", value, spec)


def track_frames(frames: list[np.ndarray] | np.ndarray, avatar: AvatarSpec, fps: float, focal: float | None = None, smooth: float = 0.05,
                 sigma: float = 1.0, progress: Callable[[int, int], None] | None = None, source: str = "frames") -> Animation:
    """Track RGB uint8 frames (T, H, W, 3) of one face; returns an Animation in ARKit weights + head pose.

    ``source`` names the frames in error messages (the video's path when called by :func:`track`)."""
    from face3d.animation.avatar import load_avatar
    from face3d.landmarks import detect_landmarks

    check_track_args(fps, focal, smooth, sigma)
    if len(frames) == 0:
        raise BadInputError(f"{source}: no frames to track")
    av = load_avatar(avatar)
    basis = _landmark_basis(av.model, av.shape)
    T = len(frames)
    targets = np.full((T, 68, 2), np.nan, np.float32)
    missing = []
    t0 = time.perf_counter()
    for i, fr in enumerate(frames):
        try:
            # no window search per frame (~0.2 s each): a frame without a face is filled from its neighbours
            lms = detect_landmarks(np.asarray(fr), which="largest", path_for_errors=f"{source} (frame {i})", search=False)
            targets[i] = lms[0].ibug68()[:, :2]
        except NoFaceError:
            missing.append(i)
        if progress:
            progress(i + 1, T)
    if len(missing) == T:
        raise NoFaceError(source, f"no face in any of the {T} frames")
    t_det = time.perf_counter() - t0
    H, W = np.asarray(frames[0]).shape[:2]
    w, p, t = fit_frames(targets, basis, (H, W), focal, smooth)
    w, p, t = _gaussian(w, sigma), _gaussian(p, sigma), _gaussian(t, sigma)
    meta = {"tracker": "face3d landmarks-68 fit", "translation": t.round(5).tolist(), "missing_frames": missing,
            "avatar": av.name, "model": av.model.name, "seconds_detect": round(t_det, 3),
            "seconds_total": round(time.perf_counter() - t0, 3)}
    return Animation(fps=fps, arkit=np.clip(w, 0, 1), head_pose=p, meta=meta)


def track(video: str | Path, avatar: AvatarSpec = "default", fps: float | None = None, max_frames: int | None = None,
          focal: float | None = None, smooth: float = 0.05, sigma: float = 1.0,
          progress: Callable[[int, int], None] | None = None) -> Animation:
    """Track the face in ``video`` (any ffmpeg-readable file) on ``avatar``; ``focal``, ``smooth``,
    ``sigma`` and ``progress`` as in :func:`track_frames`; see the module docstring."""
    from face3d.io.video import read_video_frames

    check_track_args(fps, focal, smooth, sigma, max_frames)  # before decoding the video
    clip = read_video_frames(video, fps=fps, max_frames=max_frames)
    rate = fps or clip.source_fps or 30.0
    anim = track_frames(clip.frames, avatar, rate, focal, smooth, sigma, progress, source=str(video))
    anim.meta["source"] = str(video)
    return anim
