"""FLAME (Li et al. 2017, "Learning a model of facial shape and expression from 4D scans"), 2020/2023.

The ``.pkl`` files hold ``v_template`` (V,3) m, ``f`` (F,3), ``shapedirs`` (V,3,400: 300 shape +
100 expression, each scaled to one standard deviation), ``posedirs`` (V,3,36), ``J_regressor``
(5,V, dense or scipy sparse), ``kintree_table`` (2,5) and ``weights`` (V,5). The official files
are Python 2 pickles holding ``chumpy`` arrays; chumpy does not import on Python 3.11, so
:func:`read_pickle` maps every ``chumpy`` class to a stub that keeps the pickled state and
turns it back into the array it wraps (``x``). Pickles can run code, so the unpickler also
refuses every global outside an allow-list (numpy arrays, scipy.sparse matrices, sets, torch
tensors whose storage is read with ``weights_only=True``); the same holds for DECA-style ``.npy``
embeddings. FLAME is in metres, +Y up, +Z out of the face: no
conversion.

The forward pass follows ``smplx.lbs``: shape/expression blend shapes, joints regressed from
the shaped mesh, pose correctives from the 4 non-root joint rotations (R - I), then linear
blend skinning over the chain root(global) -> neck -> jaw, eyes. ``pose`` (B,3) is the
global rotation, about the root joint (not the origin), as in smplx.

Landmarks: ``flame51`` is the static embedding (iBUG 17-67). ``ibug68`` = 17 contour points +
those 51; the contour comes from the dynamic (yaw-dependent) embedding: ``landmarks(v, 'ibug68')``
uses its frontal row (yaw 0), ``landmarks(v, 'ibug68', pose=..., neck=...)`` picks the row for
the head's yaw as smplx/DECA do. Without a dynamic embedding the 17 contour points are
missing and only ``flame51`` exists.

Regions (optional): ``FLAME_masks.pkl`` (:func:`read_flame_masks`). UVs: from the albedo file's
``vt``/``ft`` or FLAME's ``head_template.obj``.

Albedo (optional): ``FLAME_albedo_from_BFM.npz`` / ``albedoModel2020_FLAME_albedoPart.npz``
(``MU`` mean, ``PC`` basis, in [0,1]; ``specMU``/``specPC`` specular parts are not used) or
``FLAME_texture.npz`` (``mean``, ``tex_dir``, 0-255). Both are square UV images stored BGR
(as DECA reads them); they become RGB (H,W,3) in [0,1] with ``albedo_std`` = 1 per component.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError, ShapeError
from face3d.io.npz import read_npz
from face3d.models.model import ModelArrays, MorphableModel, TensorOrArray, axis_angle_to_matrix

REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
N_SHAPE_MAX = 300


class _ChumpyStub:
    """Stands in for any ``chumpy`` class while unpickling: records the pickled state."""

    _state: dict[str, object]

    def __new__(cls, *args: object, **kwargs: object) -> "_ChumpyStub":
        obj = object.__new__(cls)
        obj.__dict__["_state"] = {}
        return obj

    def __setstate__(self, state: object) -> None:
        self.__dict__["_state"] = state if isinstance(state, dict) else {"x": state}


#: The only globals a FLAME pickle may name (Python 2 and 3 spellings): numpy arrays and scalars,
#: the object reconstructor chumpy's pickles use, bytes decoding, torch tensors; plus chumpy classes
#: (stubbed), scipy.sparse matrix classes and torch storages (read with ``weights_only=True``).
#: Anything else, e.g. ``os.system``, is refused: pickles can run code.
_SAFE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    *((m, n) for m in ("builtins", "__builtin__") for n in ("set", "frozenset")),  # in chumpy's object state
    ("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"),  # DECA stores some arrays as tensors
})


def _torch_storage_from_bytes(data: bytes) -> object:
    """Stands in for ``torch.storage._load_from_bytes`` (which would run ``torch.load(weights_only=False)``)."""
    return torch.load(io.BytesIO(data), weights_only=True)


MAX_SPARSE_DENSE = 50_000_000
"""Most entries a sparse matrix in a FLAME pickle may have once dense (FLAME's largest, the 5023-vertex
J_regressor, has 25,115; 50 M float64 entries are 0.4 GB). Checked before ``toarray`` allocates."""


class _FlameUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")):
            import scipy.sparse

            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _torch_storage_from_bytes
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' (not an array type a FLAME file needs)")


def _unwrap(obj: object, where: str, key: str) -> object:
    if isinstance(obj, _ChumpyStub):
        state = obj._state
        if "x" not in state:
            raise ModelFileError(where, f"key '{key}' is a derived chumpy expression, not a stored array (re-save it with numpy arrays)")
        return np.asarray(_unwrap(state["x"], where, key))
    if hasattr(obj, "toarray") and hasattr(obj, "tocsr"):
        rows, cols = (int(n) for n in getattr(obj, "shape"))
        if rows * cols > MAX_SPARSE_DENSE:
            raise ModelFileError(where, f"key '{key}' declares a {rows}x{cols} sparse matrix ({rows * cols * 8 / 2**30:.1f} GiB "
                                        f"as dense float64); a FLAME file's matrices have at most {MAX_SPARSE_DENSE:,} entries")
        return getattr(obj, "toarray")()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    return obj


def read_pickle(path: str | Path) -> dict[str, object]:
    """A FLAME-style pickle (Python 2 or 3, with or without chumpy arrays) as a dict of numpy arrays."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(path, "file not found") from None
    try:
        data = _FlameUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:
        raise ModelFileError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, f"expected a dict in the pickle, found {type(data).__name__}")
    return {str(k): _unwrap(v, str(path), str(k)) for k, v in data.items()}


def _load_static(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path) if path.suffix == ".pkl" else _npy_dict(path)
    for fk, bk in (("lmk_face_idx", "lmk_b_coords"), ("static_lmk_faces_idx", "static_lmk_bary_coords")):
        if fk in d and bk in d:
            tri = np.asarray(d[fk]).astype(np.int64).ravel()
            bary = np.asarray(d[bk], np.float32)
            if bary.shape != (len(tri), 3):
                raise ModelFileError(path, f"'{bk}' must be ({len(tri)}, 3) to go with '{fk}'; got {bary.shape}")
            return tri, bary
    raise ModelFileError(path, "missing keys 'lmk_face_idx'/'lmk_b_coords' (or 'static_lmk_faces_idx'/'static_lmk_bary_coords')")


def _read_npy(path: Path) -> object:
    """An ``.npy`` array; object arrays (a pickled dict, as DECA stores its landmark embedding) go
    through :class:`_FlameUnpickler`'s allow-list instead of ``np.load(allow_pickle=True)``."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = header(fh)
        if dtype.hasobject:
            return _FlameUnpickler(fh, encoding="latin1").load()
    return np.load(path, allow_pickle=False)


def _npy_dict(path: Path) -> Mapping[str, object]:
    if path.suffix.lower() == ".npz":
        return read_npz(path, "landmark npz")
    try:
        obj = _read_npy(path)
        obj = obj[()] if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    except Exception as exc:
        raise ModelFileError(path, f"not a readable numpy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(path, "expected a pickled dict of landmark arrays")
    return {str(k): _unwrap(v, str(path), str(k)) for k, v in obj.items()}


def _load_dynamic(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _npy_dict(path)
    for fk, bk in (("lmk_face_idx", "lmk_b_coords"), ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")):
        if fk in d and bk in d:
            tri = np.asarray(d[fk]).astype(np.int64)
            bary = np.asarray(d[bk], np.float32)
            if tri.ndim != 2 or bary.shape != (*tri.shape, 3):
                raise ModelFileError(path, f"'{fk}' must be (yaw bins, 17) with '{bk}' (yaw bins, 17, 3); got {tri.shape}, {bary.shape}")
            return tri, bary
    raise ModelFileError(path, "missing key 'lmk_face_idx' (or 'dynamic_lmk_faces_idx')")


def _check_triangles(emb: tuple[np.ndarray, np.ndarray], n_faces: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``emb`` (triangle ids, barycentrics) unchanged, or ModelFileError when an id is outside [0, n_faces)."""
    tri = emb[0]
    if tri.size and (int(tri.min()) < 0 or int(tri.max()) >= n_faces):
        raise ModelFileError(path, f"triangle ids outside [0, {n_faces}): not an embedding for this FLAME mesh")
    return emb


def read_flame_albedo(path: str | Path, n_albedo: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """UV albedo of a FLAME texture npz: mean (H,W,3) RGB [0,1], basis (K,H,W,3), extras (vt/ft if stored)."""
    path = Path(path)
    d = read_npz(path, "FLAME albedo npz")
    if "MU" in d and "PC" in d:
        mu, pc, scale = d["MU"], d["PC"], 1.0
    elif "mean" in d and "tex_dir" in d:
        mu, pc, scale = d["mean"], d["tex_dir"], 1.0 / 255.0
    else:
        raise ModelFileError(path, f"missing keys 'MU'/'PC' or 'mean'/'tex_dir' (found {sorted(d)})")
    n = mu.size // 3
    side = int(round(np.sqrt(n)))
    if side * side * 3 != mu.size or pc.size % mu.size:
        raise ModelFileError(path, f"albedo mean of {mu.size} values is not a square RGB image, or basis {pc.shape} does not match")
    K = pc.size // mu.size
    mean = mu.reshape(side, side, 3)[..., ::-1].astype(np.float32) * scale
    basis = np.moveaxis(pc.reshape(side, side, 3, K), -1, 0)[..., ::-1].astype(np.float32) * scale
    if n_albedo is not None:
        basis = basis[:n_albedo]
    extras = {k: d[k] for k in ("vt", "ft") if k in d}
    return np.ascontiguousarray(mean), np.ascontiguousarray(basis), extras


@dataclass(frozen=True)
class FlameRig:
    """FLAME's joints and skinning, as in its ``.pkl`` (arrays or tensors): posedirs (V, 3, 36) or
    (36, V*3) pose correctives; J_regressor (5, V); parents (5,) joint tree (the root's entry is
    ignored); lbs_weights (V, 5); contour: the dynamic embedding's (tri (Y, 17), bary (Y, 17, 3))
    per yaw bin, or None."""

    posedirs: TensorOrArray
    J_regressor: TensorOrArray
    parents: TensorOrArray
    lbs_weights: TensorOrArray
    contour: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class FlameFiles:
    """FLAME's optional side files; each None is looked for by its usual names beside the model
    ``.pkl``: static_embedding (``flame_static_embedding.pkl``), dynamic_embedding
    (``flame_dynamic_embedding.npy``), albedo (``FLAME_texture.npz`` / ``FLAME_albedo_from_BFM.npz``),
    masks (``FLAME_masks.pkl``), uv_template (``head_template.obj``)."""

    static_embedding: str | Path | None = None
    dynamic_embedding: str | Path | None = None
    albedo: str | Path | None = None
    masks: str | Path | None = None
    uv_template: str | Path | None = None


class FlameModel(MorphableModel):
    """FLAME as a :class:`MorphableModel` with neck/jaw/eye joints (linear blend skinning + pose correctives).

    Extra buffers: posedirs (36, V*3), J_regressor (5,V), parents (5,) int64 (-1 for the root),
    lbs_weights (V,5); ``contour_tri`` (Y,17) / ``contour_bary`` (Y,17,3) when a dynamic embedding
    was given (Y yaw bins: 0..39 for 0..39 degrees, 40..78 for -1..-39 degrees).
    """

    def __init__(self, arrays: ModelArrays, rig: FlameRig, name: str = "flame", version: str = "1",
                 meta: Mapping[str, object] | None = None) -> None:
        super().__init__(arrays, name=name, version=version, meta=meta)
        V = self.n_vertices
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        posedirs, J_regressor, parents, lbs_weights, contour = rig.posedirs, rig.J_regressor, rig.parents, rig.lbs_weights, rig.contour
        pd = f32(posedirs)
        if pd.ndim == 3:
            pd = pd.reshape(V * 3, -1).T
        if pd.shape != (36, V * 3):
            raise ShapeError("posedirs", f"(V, 3, 36) or (36, {V * 3})", tuple(pd.shape))
        self.register_buffer("posedirs", pd.contiguous())
        jr = f32(J_regressor)
        if jr.shape != (5, V):
            raise ShapeError("J_regressor", f"(5, {V})", tuple(jr.shape))
        self.register_buffer("J_regressor", jr)
        par = torch.as_tensor(np.asarray(parents), dtype=torch.int64).clone()
        par[0] = -1
        self.register_buffer("parents", par)
        w = f32(lbs_weights)
        if w.shape != (V, 5):
            raise ShapeError("weights", f"({V}, 5)", tuple(w.shape))
        self.register_buffer("lbs_weights", w)
        self.register_buffer("contour_tri", torch.as_tensor(contour[0], dtype=torch.int64) if contour else None)
        self.register_buffer("contour_bary", torch.as_tensor(contour[1], dtype=torch.float32) if contour else None)

    def to_npz(self, path: str | Path, compress: bool = True) -> Path:
        """Not supported: FLAME's licence forbids redistributing the model, so face3d never writes
        it to another file; keep and load the original ``.pkl``."""
        raise BadInputError(f"FLAME models are not converted to face3d's native format (licence); keep the original .pkl (not written: {path})")

    def subset(self, vertices: Tensor | np.ndarray, name: str | None = None) -> MorphableModel:
        """Not supported: the joint regressor and skinning weights need every vertex."""
        raise BadInputError("FLAME cannot be cut to a vertex subset (its joints are regressed from all vertices); cut the output vertices instead")

    def joint_rotations(self, B: int, ref: Tensor, pose: Tensor | None, neck: Tensor | None,
                        jaw: Tensor | None, eyes: Tensor | None) -> Tensor:
        """Axis-angle (B,5,3) for [global, neck, jaw, eye 3 ('leye'), eye 4 ('reye')]."""
        parts = []
        for name, x, n in (("pose", pose, 3), ("neck", neck, 3), ("jaw", jaw, 3), ("eyes", eyes, 6)):
            if x is None:
                parts.append(ref.new_zeros(B, n))
                continue
            x = x.reshape(1, -1) if x.ndim == 1 else x
            if x.shape != (B, n):
                raise ShapeError(name, f"({B}, {n})", tuple(x.shape))
            parts.append(x.to(ref.dtype))
        return torch.cat(parts, 1).reshape(B, 5, 3)

    def forward(self, shape: Tensor | None = None, expression: Tensor | None = None, pose: Tensor | None = None,
                jaw: Tensor | None = None, neck: Tensor | None = None, eyes: Tensor | None = None,
                **kwargs: Tensor | None) -> Tensor:
        """Vertices (B,V,3) m. shape (B,<=300), expression (B,<=100), pose/neck/jaw (B,3), eyes (B,6) axis-angle rad."""
        for k, v in kwargs.items():
            if v is not None:
                raise BadInputError(f"FLAME has no argument '{k}'")
        B = self._batch(shape, expression, pose, jaw, neck, eyes)
        ref = self.template
        v = self.blend_shapes(shape, expression, B)
        return lbs(v, self.joint_rotations(B, ref, pose, neck, jaw, eyes), self.J_regressor, self.parents,
                   self.posedirs, self.lbs_weights)

    def contour_rows(self, pose: Tensor | None, neck: Tensor | None = None) -> Tensor:
        """Row of the dynamic contour table (B,) for the head's yaw (global then neck rotation), as smplx."""
        B = self._batch(pose, neck)
        rot = self.joint_rotations(B, self.template, pose, neck, None, None)[:, :2]
        R = axis_angle_to_matrix(rot)
        rel = R[:, 0] @ R[:, 1]
        yaw = torch.atan2(-rel[:, 2, 0], torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2))
        deg = torch.round(torch.clamp(-yaw * 180.0 / np.pi, max=39)).long()
        neg = torch.where(deg < -39, torch.full_like(deg, 78), 39 - deg)
        return torch.where(deg < 0, neg, deg)

    def landmarks(self, vertices: Tensor, set: str = "ibug68", pose: Tensor | None = None, neck: Tensor | None = None) -> Tensor:
        """Landmarks (B,L,3). For 'ibug68' with ``pose``/``neck`` the 17 contour points follow the yaw."""
        if set != "ibug68" or (pose is None and neck is None) or self.contour_tri is None:
            return super().landmarks(vertices, set)
        rows = self.contour_rows(pose, neck)
        tri = torch.cat([self.contour_tri[rows], self.embeddings["flame51"].tri.unsqueeze(0).expand(len(rows), -1)], 1)
        bary = torch.cat([self.contour_bary[rows], self.embeddings["flame51"].bary.unsqueeze(0).expand(len(rows), -1, -1)], 1)
        corners = torch.gather(vertices, 1, self.faces[tri].reshape(len(rows), -1, 1).expand(-1, -1, 3))
        return (corners.reshape(len(rows), -1, 3, 3) * bary.to(vertices).unsqueeze(-1)).sum(2)


def lbs(v_shaped: Tensor, rot_aa: Tensor, J_regressor: Tensor, parents: Tensor, posedirs: Tensor, weights: Tensor) -> Tensor:
    """Linear blend skinning with pose correctives (SMPL/FLAME), as in ``smplx.lbs.lbs``.

    v_shaped (B,V,3); rot_aa (B,J,3) axis-angle; J_regressor (J,V); parents (J,) with -1 at the
    root; posedirs ((J-1)*9, V*3); weights (V,J). Returns posed vertices (B,V,3).
    """
    B, V, _ = v_shaped.shape
    J = rot_aa.shape[1]
    joints = torch.einsum("jv,bvc->bjc", J_regressor.to(v_shaped), v_shaped)
    R = axis_angle_to_matrix(rot_aa)
    eye = torch.eye(3, dtype=v_shaped.dtype, device=v_shaped.device)
    pose_feature = (R[:, 1:] - eye).reshape(B, -1)
    v_posed = v_shaped + (pose_feature @ posedirs.to(v_shaped)).reshape(B, V, 3)
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    chain_R = [R[:, 0]]
    chain_t = [rel[:, 0]]
    for i in range(1, J):
        p = int(parents[i])
        chain_R.append(chain_R[p] @ R[:, i])
        chain_t.append((chain_R[p] @ rel[:, i].unsqueeze(-1)).squeeze(-1) + chain_t[p])
    Rg = torch.stack(chain_R, 1)  # (B,J,3,3)
    tg = torch.stack(chain_t, 1) - (Rg @ joints.unsqueeze(-1)).squeeze(-1)  # rest-pose joints removed
    w = weights.to(v_shaped)
    Rv = torch.einsum("vj,bjmn->bvmn", w, Rg)
    tv = torch.einsum("vj,bjm->bvm", w, tg)
    return (Rv @ v_posed.unsqueeze(-1)).squeeze(-1) + tv


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def default_sources() -> list[Path]:
    """Where ``load_model('flame')`` looks: env ``FACE3D_FLAME`` (a .pkl or folder), then ``cache_dir()/models/flame``."""
    from face3d.paths import cache_dir

    out = [Path(os.environ["FACE3D_FLAME"])] if os.environ.get("FACE3D_FLAME") else []
    return out + [cache_dir() / "models" / "flame"]


MODEL_NAMES = ("flame2023.pkl", "flame2020_generic.pkl", "generic_model.pkl", "FLAME_NEUTRAL.pkl", "flame2023_no_jaw.pkl",
               "FLAME_GENERIC.pkl", "female_model.pkl", "male_model.pkl")
STATIC_NAMES = ("flame_static_embedding.pkl", "landmark_embedding.npy")
DYNAMIC_NAMES = ("flame_dynamic_embedding.npy", "landmark_embedding.npy")
ALBEDO_NAMES = ("FLAME_albedo_from_BFM.npz", "albedoModel2020_FLAME_albedoPart.npz", "FLAME_texture.npz")
MASK_NAMES = ("FLAME_masks.pkl",)
UV_TEMPLATE_NAMES = ("head_template.obj", "head_template_mesh.obj")


def read_flame_masks(path: str | Path, n_vertices: int) -> dict[str, np.ndarray]:
    """Vertex regions (name -> bool (V,)) from ``FLAME_masks.pkl`` (a pickled dict of vertex-index arrays).

    FLAME's names are kept, with side prefixes moved to the end as elsewhere in face3d
    (``left_eyeball`` -> ``eyeball_left``, ``right_ear`` -> ``ear_right``); unions ``eyes`` (both
    eyeballs), ``ears`` and ``skin`` (everything but the eyeballs) are added.
    """
    d = read_pickle(path)
    out: dict[str, np.ndarray] = {}
    for name, idx in d.items():
        idx = np.asarray(idx).ravel()
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_vertices):
            raise ModelFileError(path, f"mask '{name}' must hold vertex indices in [0, {n_vertices})")
        side, _, rest = name.partition("_")
        key = f"{rest}_{side}" if side in ("left", "right") and rest else name
        out[key] = np.zeros(n_vertices, bool)
        out[key][idx.astype(np.int64)] = True
    for union, parts in (("eyes", ("eyeball_left", "eyeball_right")), ("ears", ("ear_left", "ear_right"))):
        if all(p in out for p in parts):
            out[union] = out[parts[0]] | out[parts[1]]
    if "eyes" in out:
        out["skin"] = ~out["eyes"]
    return out


def read_uv_template(path: str | Path, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """UVs (T,2) and UV faces (F,3) of FLAME's ``head_template.obj`` (the topology with texture coordinates)."""
    from face3d.io.mesh import load_mesh

    mesh = load_mesh(path)
    if mesh.uvs is None or mesh.uv_faces is None or len(mesh.faces) != n_faces:
        raise ModelFileError(path, f"expected a FLAME template with texture coordinates and {n_faces} triangles")
    return mesh.uvs.astype(np.float32), mesh.uv_faces.astype(np.int64)


def load_flame(path: str | Path | None = None, files: FlameFiles | None = None, n_shape: int = N_SHAPE_MAX,
               n_expression: int = 100, n_albedo: int | None = None) -> FlameModel:
    """Load FLAME from a ``.pkl`` (or a folder holding one plus its embeddings, albedo, ``FLAME_masks.pkl``
    and ``head_template.obj`` by their usual names; ``files`` names others, :class:`FlameFiles`).

    ``n_shape``/``n_expression`` keep the leading components (smplx: first 300 = shape, rest =
    expression). A UV-space albedo takes its texture coordinates from the albedo file (``vt``/``ft``)
    or else from ``uv_template``; with neither it is left out, with a warning.
    """
    fl = files or FlameFiles()
    if path is None:
        hit = next((p for p in default_sources() if p.exists() and (p.is_file() or _find(p, MODEL_NAMES))), None)
        if hit is None:
            raise ModelNotFoundError(
                "FLAME is not installed (its licence forbids redistribution): register at https://flame.is.tue.mpg.de, "
                f"then put the .pkl and embeddings in {default_sources()[-1]} or set FACE3D_FLAME, or pass path=...")
        path = hit
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        found = _find(path, MODEL_NAMES) or next(iter(sorted(path.glob("*.pkl"))), None)
        if found is None:
            raise ModelFileError(path, "folder holds no FLAME .pkl")
        path = found
    d = read_pickle(path)
    for k in REQUIRED_KEYS:
        if k not in d:
            raise ModelFileError(path, f"missing key '{k}' (not a FLAME model file)")
    template = np.asarray(d["v_template"], np.float32)
    V = template.shape[0]
    sd = np.asarray(d["shapedirs"], np.float32)
    if sd.ndim != 3 or sd.shape[:2] != (V, 3):
        raise ModelFileError(path, f"key 'shapedirs' has shape {sd.shape}, expected ({V}, 3, K)")
    n_id_total = N_SHAPE_MAX if sd.shape[2] >= N_SHAPE_MAX + 1 else min(10, sd.shape[2])
    shape_dirs = np.moveaxis(sd[:, :, :min(n_shape, n_id_total)], -1, 0)
    exp_dirs = np.moveaxis(sd[:, :, n_id_total:n_id_total + n_expression], -1, 0)
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    contour = None
    faces = np.asarray(d["f"], np.int64)
    st = Path(fl.static_embedding) if fl.static_embedding else _find(folder, STATIC_NAMES)
    if st is not None:
        embeddings["flame51"] = _check_triangles(_load_static(st), len(faces), st)
    dy = Path(fl.dynamic_embedding) if fl.dynamic_embedding else _find(folder, DYNAMIC_NAMES)
    if dy is not None:
        contour = _check_triangles(_load_dynamic(dy), len(faces), dy)
        if "flame51" in embeddings:
            embeddings["ibug68"] = (np.concatenate([contour[0][0], embeddings["flame51"][0]]),
                                    np.concatenate([contour[1][0], embeddings["flame51"][1]]))
    alb_path = Path(fl.albedo) if fl.albedo else _find(folder, ALBEDO_NAMES)
    uv_path = Path(fl.uv_template) if fl.uv_template else _find(folder, UV_TEMPLATE_NAMES)
    albedo_mean = albedo_basis = uvs = uv_faces = None
    if alb_path is not None:
        albedo_mean, albedo_basis, extras = read_flame_albedo(alb_path, n_albedo)
        if "vt" in extras and "ft" in extras:
            uvs, uv_faces = extras["vt"], extras["ft"]
        elif uv_path is not None:
            uvs, uv_faces = read_uv_template(uv_path, len(faces))
        else:
            warnings.warn(f"{alb_path}: a UV-space albedo without texture coordinates; left out (put FLAME's "
                          f"head_template.obj in {folder} or pass FlameFiles(uv_template=...))", stacklevel=2)
            albedo_mean = albedo_basis = alb_path = None
    mask_path = Path(fl.masks) if fl.masks else _find(folder, MASK_NAMES)
    regions = read_flame_masks(mask_path, V) if mask_path is not None else {}
    meta = {"licence": "FLAME licence (non-commercial scientific research)", "source": str(path), "units": "metres",
            "albedo_source": str(alb_path) if alb_path else None, "landmark_note": "ibug68 contour = frontal row of the dynamic embedding"}
    try:
        arrays = ModelArrays(template, faces, id_basis=shape_dirs, id_std=np.ones(len(shape_dirs), np.float32), exp_basis=exp_dirs,
                             uvs=uvs, uv_faces=uv_faces, albedo_mean=albedo_mean, albedo_basis=albedo_basis,
                             embeddings=embeddings, regions=regions)
        rig = FlameRig(np.asarray(d["posedirs"]), np.asarray(d["J_regressor"]), np.asarray(d["kintree_table"])[0],
                       np.asarray(d["weights"]), contour)
        return FlameModel(arrays, rig, name="flame", version=path.stem, meta=meta)
    except (ShapeError, BadInputError) as exc:
        raise ModelFileError(path, f"inconsistent FLAME arrays: {exc}") from None
