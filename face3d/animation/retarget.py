"""Retargeting: ARKit weights onto models without ARKit shapes, and animations between avatars.

ARKit -> model (FLAME, BFM, any expression basis with other names), computed once per model
and cached in ``face3d.paths.cache_dir()/retarget``:

1. Source shapes: ICT-FaceKit's 52 ARKit blendshapes (its neutral and deltas, metres).
2. Correspondence: ICT's neutral is aligned to the model's mean face by a similarity transform
   (Umeyama 1991) on the shared ibug-68 landmark embeddings; every model vertex then takes the
   deltas of the closest point on ICT's face surface whose normal agrees with the vertex normal
   (dot > ``MIN_NORMAL_DOT``, so upper and lower lips, which touch, are not mixed up;
   barycentric interpolation, deltas scaled by
   the similarity's scale and rotated into the model frame). Vertices farther than
   ``MAX_DISTANCE`` from ICT's face are left out of the fit.
3. Least squares: for each ARKit shape k, ``min_w ||sum_j w_j B_j - D_k||^2 + lam ||w||^2`` over
   the kept vertices (B_j the model's expression deltas), giving the (52, K_exp) matrix M.
   ``residual`` (52,) is ||B^T w_k - D_k|| / ||D_k|| per shape (0 = reproduced exactly, 1 = not at
   all); a model whose expression space lacks a motion (e.g. tongue) shows it there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from face3d.animation.animation import Animation
    from face3d.models.model import MorphableModel

MAX_DISTANCE = 0.01  # metres
MIN_NORMAL_DOT = 0.3
RIDGE = 1e-3
CACHE_VERSION = 1
_memo: dict[str, "Retargeting"] = {}


@dataclass
class Retargeting:
    """matrix (52, K_exp): ARKit weights -> model expression parameters; residual (52,) relative error per shape."""

    model_name: str
    matrix: np.ndarray
    residual: np.ndarray
    method: str

    @property
    def mean_residual(self) -> float:
        """Mean relative residual over the ARKit shapes the source actually moves."""
        ok = np.isfinite(self.residual)
        return float(self.residual[ok].mean()) if ok.any() else float("nan")


def _key(model: MorphableModel) -> str:
    h = hashlib.sha1()
    h.update(f"{CACHE_VERSION}:{model.name}:{model.version}:{model.exp_names}".encode())
    for t in (model.template, model.exp_basis, model.faces):
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:16]


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R (3,3), t (3,)) minimising ||s R src + t - dst||^2 for (N, 3) point sets (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def carry_shapes(src_model: MorphableModel, dst_model: MorphableModel, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expression deltas of ``src_model`` carried onto ``dst_model``'s mean-face vertices.

    Returns deltas (K, V_dst, 3) in the destination frame and a (V_dst,) bool mask of vertices
    within ``MAX_DISTANCE`` of the source face after the landmark similarity alignment.
    """
    from scipy.spatial import cKDTree

    if "ibug68" not in src_model.embeddings or "ibug68" not in dst_model.embeddings:
        raise BadInputError(f"retargeting needs 'ibug68' landmark embeddings on '{src_model.name}' and '{dst_model.name}'")
    with torch.no_grad():
        vs = src_model.template[None]
        vd = dst_model.template[None]
        ls = src_model.landmarks(vs)[0].numpy().astype(np.float64)
        ld = dst_model.landmarks(vd)[0].numpy().astype(np.float64)
    s, R, t = umeyama(ls, ld)
    src_v = src_model.template.numpy().astype(np.float64) @ (s * R).T + t
    faces = src_model.faces.numpy()
    if "face" in src_model.regions:
        keep = src_model.regions["face"].numpy()
        faces = faces[keep[faces].all(1)]
    idx = [src_model.exp_names.index(n) for n in (names or src_model.exp_names)]
    deltas = src_model.exp_basis.numpy()[idx].astype(np.float64) @ (s * R).T  # (K, V_src, 3)
    # closest point on the source surface: nearest triangle centroid candidates, then exact projection
    tri = src_v[faces]
    cent = tri.mean(1)
    dst_v = dst_model.template.numpy().astype(np.float64)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(dst_v)
    dfaces = dst_model.faces.numpy()
    dn = np.cross(dst_v[dfaces[:, 1]] - dst_v[dfaces[:, 0]], dst_v[dfaces[:, 2]] - dst_v[dfaces[:, 0]])
    for k in range(3):
        np.add.at(vn, dfaces[:, k], dn)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    _, cand = cKDTree(cent).query(dst_v, k=16)
    best_d = np.full(len(dst_v), np.inf)
    best_bary = np.zeros((len(dst_v), 3))
    best_tri = np.zeros(len(dst_v), np.int64)
    for c in range(cand.shape[1]):
        f = cand[:, c]
        bary, dist = _closest_on_triangles(dst_v, tri[f])
        dist = np.where((fn[f] * vn).sum(1) > MIN_NORMAL_DOT, dist, np.inf)
        better = dist < best_d
        best_d[better], best_bary[better], best_tri[better] = dist[better], bary[better], f[better]
    corners = faces[best_tri]  # (V_dst, 3)
    carried = (deltas[:, corners] * best_bary[None, :, :, None]).sum(2)
    return carried.astype(np.float32), best_d <= MAX_DISTANCE


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentrics (N, 3) of the closest point on each triangle (N, 3, 3) to p (N, 3), and the distance."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    d20, d21 = (ap * ab).sum(1), (ap * ac).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-20)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1 - v - w, v, w], 1)
    bary = np.clip(bary, 0, None)
    bary /= np.maximum(bary.sum(1, keepdims=True), 1e-12)
    q = (tri * bary[:, :, None]).sum(1)
    return bary, np.linalg.norm(q - p, axis=1)


def fit_matrix(targets: np.ndarray, basis: np.ndarray, mask: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``targets`` (N, V, 3) in the span of ``basis`` (K, V, 3) over ``mask`` (V,).

    Returns W (N, K) and the relative residual (N,) (NaN where a target does not move)."""
    B = basis[:, mask].reshape(basis.shape[0], -1).astype(np.float64)  # (K, 3V)
    D = targets[:, mask].reshape(targets.shape[0], -1).astype(np.float64)
    G = B @ B.T
    lam = ridge * np.trace(G) / max(G.shape[0], 1)
    W = np.linalg.solve(G + lam * np.eye(G.shape[0]), B @ D.T).T
    norm = np.linalg.norm(D, axis=1)
    res = np.linalg.norm(W @ B - D, axis=1) / np.where(norm > 1e-9, norm, np.nan)
    return W.astype(np.float32), res.astype(np.float32)


def arkit_retargeting(model: MorphableModel, source: MorphableModel | None = None, use_cache: bool = True) -> Retargeting:
    """The (52, K_exp) ARKit -> ``model`` expression matrix (cached per model; see module docstring).

    ARKit-named models get the exact selection matrix. ``source`` (default: ICT-FaceKit) supplies
    the ARKit shapes for the others."""
    if model.n_expression == 0:
        raise BadInputError(f"model '{model.name}' has no expression basis to retarget onto")
    if model.has_arkit:
        M = np.zeros((52, model.n_expression), np.float32)
        for j, n in enumerate(model.exp_names):
            M[ARKIT_INDEX[n], j] = 1.0
        res = np.where(M.sum(1) > 0, 0.0, 1.0).astype(np.float32)
        return Retargeting(model.name, M, res, "names")
    key = _key(model)
    if key in _memo and use_cache:
        return _memo[key]
    from face3d.paths import cache_dir

    path = cache_dir() / "retarget" / f"{model.name}-{key}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                rt = Retargeting(model.name, z["matrix"], z["residual"], str(z["method"]))
            _memo[key] = rt
            return rt
        except Exception:
            pass
    if source is None:
        from face3d.models import load_model

        source = load_model("ict")
    if not source.has_arkit:
        raise BadInputError(f"retargeting source '{source.name}' has no ARKit shapes")
    carried, mask = carry_shapes(source, model, list(ARKIT_NAMES))
    if mask.sum() < 10:
        raise BadInputError(f"model '{model.name}': fewer than 10 vertices correspond to the ARKit source face")
    M, res = fit_matrix(carried, model.exp_basis.numpy(), mask)
    rt = Retargeting(model.name, M, res, f"least squares on {int(mask.sum())} vertices carried from '{source.name}'")
    if use_cache:
        from face3d.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, matrix=rt.matrix, residual=rt.residual, method=np.array(rt.method))
    _memo[key] = rt
    return rt


def arkit_deltas(model: MorphableModel, shape: ArrayLike | None = None, expression: ArrayLike | None = None) -> np.ndarray:
    """(52, V, 3) float32 metres: the face with ARKit shape k at weight 1 minus the face without it.

    ``shape`` (K_id,) the identity (None: the mean face); ``expression`` (K_exp,) the expression
    the shapes are added to (None: neutral). A linear model's deltas depend on neither (a copy of
    :func:`linear_arkit_deltas`); other models are run (identity-dependent models are handled).
    In ``ARKIT_NAMES`` order.
    """
    linear = linear_arkit_deltas(model)
    if linear is not None:
        return linear.copy()
    M = torch.as_tensor(arkit_retargeting(model).matrix, dtype=torch.float32)
    e0 = torch.zeros(model.n_expression) if expression is None else torch.as_tensor(np.asarray(expression, np.float32))
    s = None if shape is None else torch.as_tensor(np.asarray(shape, np.float32))[None]
    with torch.no_grad():
        base = model(shape=s, expression=e0[None])
        moved = model(shape=None if s is None else s.expand(len(M), -1), expression=e0[None] + M)
    return (moved - base).numpy().astype(np.float32)


def linear_arkit_deltas(model: MorphableModel) -> np.ndarray | None:
    """(52, V, 3) float32 metres, read-only: the ARKit deltas of a linear model (``forward`` and
    ``blend_shapes`` of :class:`~face3d.models.model.MorphableModel`), the same for every identity and
    expression: ``matrix @ exp_basis`` (:func:`arkit_retargeting`), as a float64 product rounded
    once to float32. Computed once per model (kept while its template, faces and expression basis
    are the same tensors, unchanged in place); None for other models (articulated, identity-dependent)."""
    from face3d.models.model import MorphableModel, model_memo

    cls = type(model)
    if cls.forward is not MorphableModel.forward or cls.blend_shapes is not MorphableModel.blend_shapes:
        return None

    def compute() -> np.ndarray:
        M = arkit_retargeting(model).matrix.astype(np.float64)
        B = model.exp_basis.detach().cpu().numpy().reshape(model.n_expression, -1).astype(np.float64)
        out = (M @ B).astype(np.float32).reshape(len(M), model.n_vertices, 3)
        out.flags.writeable = False
        return out

    return model_memo(model, "linear_arkit_deltas", (model.template, model.faces, model.exp_basis), compute)


def expression_to_arkit(expression: np.ndarray, model: MorphableModel) -> np.ndarray:
    """(T, K_exp) expression parameters of ``model`` -> (T, 52) ARKit weights in [0, 1].

    ARKit models: by name. Others: bounded least squares in vertex space against the model's
    retargeted ARKit shapes (``M @ exp_basis``), so a retarget/inverse round trip is consistent."""
    from scipy.optimize import lsq_linear

    e = np.asarray(expression, np.float64)
    if e.ndim != 2 or e.shape[1] > model.n_expression:
        raise BadInputError(f"expression_to_arkit: expected (T, <= {model.n_expression}), got {e.shape}")
    if e.shape[1] < model.n_expression:
        e = np.pad(e, ((0, 0), (0, model.n_expression - e.shape[1])))
    out = np.zeros((e.shape[0], 52), np.float32)
    if model.has_arkit:
        for j, n in enumerate(model.exp_names):
            out[:, ARKIT_INDEX[n]] = e[:, j]
        return np.clip(out, 0, 1)
    M = arkit_retargeting(model).matrix.astype(np.float64)  # (52, K)
    B = model.exp_basis.numpy().reshape(model.n_expression, -1).astype(np.float64)  # (K, 3V)
    A = (M @ B).T  # (3V, 52)
    sub = np.linspace(0, A.shape[0] - 1, min(A.shape[0], 6000)).astype(np.int64)
    A = A[sub]
    for i in range(e.shape[0]):
        out[i] = lsq_linear(A, (e[i] @ B)[sub], bounds=(0.0, 1.0)).x
    return out


def retarget_animation(anim: Animation, source_model: MorphableModel, target_model: MorphableModel | None = None) -> Animation:
    """Animation fitted on ``source_model`` re-expressed for ``target_model``.

    Expression parameters of the source become ARKit weights (:func:`expression_to_arkit`);
    when ``target_model`` is given, its expression parameters are added too (ARKit -> target via
    :func:`arkit_retargeting`). Head pose, eyes, visemes and audio carry over unchanged."""
    from face3d.animation.animation import Animation

    arkit = anim.arkit
    if arkit is None:
        if anim.expression is None:
            raise BadInputError("retarget_animation: the animation has neither ARKit weights nor expression parameters")
        if anim.expression_model != source_model.name:
            raise BadInputError(f"retarget_animation: expression belongs to '{anim.expression_model}', not '{source_model.name}'")
        arkit = expression_to_arkit(anim.expression, source_model)
    expression, exp_model = None, None
    if target_model is not None:
        expression = Animation(fps=anim.fps, arkit=arkit).expression_for(target_model)
        exp_model = target_model.name
    return Animation(fps=anim.fps, arkit=arkit, expression=expression, expression_model=exp_model, head_pose=anim.head_pose,
                     eyes=anim.eyes, visemes=anim.visemes, audio=anim.audio, meta=dict(anim.meta))
