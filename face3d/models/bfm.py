"""Basel Face Model loaders: BFM 2009 (``01_MorphableModel.mat``), BFM 2017/2019 (``.h5``) and
Deep3DFaceRecon's cropped ``BFM_model_front.mat``.

Units (converted to metres):
  * BFM 2009 ``.mat``: micrometres (Deep3DFaceRecon divides by 1e5 "to decimetres"), x 1e-6.
  * BFM 2017/2019 ``.h5`` (statismo layout): millimetres, x 1e-3.
  * ``BFM_model_front.mat``: decimetres (BFM 2009 / 1e5), x 0.1.
Axes are already +Y up, +Z out of the face. Triangles are made 0-based (2009 ``tl`` and the
front model's ``tri`` are 1-based) and, if needed, re-wound so normals point outward.

Priors: every basis is stored scaled by its standard deviation and ``id_std`` = 1, so
coefficients are N(0, I): 2009 ``shapePC * shapeEV`` (EV are standard deviations), h5
``pcaBasis * sqrt(pcaVariance)`` (statismo stores orthonormal bases and variances), the front
model's ``idBase``/``exBase``/``texBase`` are already scaled that way. Albedo is per vertex,
RGB in [0,1] (2009 and the front model store 0-255). BFM 2009 has no expression model;
2017/2019 and the front model do (``exp000``...). ``ibug68`` comes from the front model's
``keypoints`` (1-based vertex ids) or from ``landmarks=`` (68 vertex ids) for the others; without
either, calibrate a MediaPipe-478 embedding (:mod:`face3d.models.calibrate`) and attach it, which
derives the 68 as well.
Regions: BFM 2009's ``segbin`` segments (``nose``, ``eye_region``, ``mouth_region``, ``cheeks`` and
their union ``face``) and the front model's ``skinmask`` (``skin``); the ``.h5`` files have none.
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import replace
from typing import TYPE_CHECKING, Union

import numpy as np

from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError, ShapeError
from face3d.models.model import ModelArrays, MorphableModel, vertex_embedding

if TYPE_CHECKING:
    import h5py
    from numpy.typing import ArrayLike

#: 68 landmark vertex ids (0-based): an array, or the path of a text file holding them.
LandmarkIds = Union["ArrayLike", str, Path]

UM_TO_M = 1e-6
MM_TO_M = 1e-3
DM_TO_M = 0.1
FILE_NAMES = ("model2019_fullHead.h5", "model2019_face12.h5", "model2017-1_face12_nomouth.h5", "model2017-1_bfm_nomouth.h5",
              "01_MorphableModel.mat", "BFM_model_front.mat")


def default_sources() -> list[Path]:
    """Where ``load_model('bfm')`` looks: env ``FACE3D_BFM`` (a file), then ``cache_dir()/models/bfm``."""
    from face3d.paths import cache_dir

    out = [Path(os.environ["FACE3D_BFM"])] if os.environ.get("FACE3D_BFM") else []
    return out + [cache_dir() / "models" / "bfm"]


def _loadmat(path: Path) -> dict[str, object]:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise ModelFileError(path, "file not found") from None
    except NotImplementedError:
        raise ModelFileError(path, "MATLAB v7.3 (HDF5) .mat files are not supported; re-save with -v7") from None
    except Exception as exc:
        raise ModelFileError(path, f"not a readable .mat file ({type(exc).__name__}: {exc})") from None


def mat_layout(path: str | Path) -> str:
    """'bfm2009' or 'bfm_front' for a BFM ``.mat`` file; ModelFileError otherwise."""
    keys = {k for k in _loadmat(Path(path)) if not k.startswith("__")}
    if {"shapeMU", "shapePC"} <= keys:
        return "bfm2009"
    if {"meanshape", "idBase"} <= keys:
        return "bfm_front"
    raise ModelFileError(path, f"unknown .mat layout: expected 'shapeMU'/'shapePC' (BFM 2009) or 'meanshape'/'idBase' (BFM_model_front); found {sorted(keys)[:10]}")


def _need(d: dict[str, object], path: Path, *keys: str) -> list[np.ndarray]:
    out = []
    for k in keys:
        if k not in d:
            raise ModelFileError(path, f"missing key '{k}'")
        out.append(np.asarray(d[k]))
    return out


def _basis(pc: np.ndarray, V: int, path: Path, key: str, scale: float, n: int | None) -> np.ndarray:
    """(3V, K) column basis -> (K, V, 3) float32 times ``scale``."""
    if pc.ndim != 2 or pc.shape[0] != 3 * V:
        raise ModelFileError(path, f"key '{key}' has shape {pc.shape}, expected ({3 * V}, K)")
    pc = pc[:, :n] if n is not None else pc
    return np.ascontiguousarray((pc.T.reshape(-1, V, 3) * scale).astype(np.float32))


def orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` re-wound (columns 1<->2 swapped) when their area-weighted normals point inward on average."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    centre = vertices.mean(0)
    if float((n * ((a + b + c) / 3 - centre)).sum()) < 0:
        return faces[:, [0, 2, 1]]
    return faces


def _landmarks(landmarks: LandmarkIds | None, V: int) -> np.ndarray | None:
    if landmarks is None:
        return None
    ids = np.loadtxt(landmarks, dtype=np.int64).ravel() if isinstance(landmarks, (str, Path)) else np.asarray(landmarks, np.int64).ravel()
    if ids.shape != (68,) or ids.min() < 0 or ids.max() >= V:
        raise BadInputError(f"landmarks must be 68 0-based vertex ids in [0, {V}), got shape {ids.shape}")
    return ids


def _build(path: Path, arrays: ModelArrays, version: str, units: str, landmark_ids: np.ndarray | None) -> MorphableModel:
    """The model 'bfm' of ``arrays`` (numpy), its faces wound outward, with an 'ibug68' embedding at ``landmark_ids``."""
    faces = orient_outward(np.asarray(arrays.template), np.asarray(arrays.faces).astype(np.int64))
    emb = {"ibug68": vertex_embedding(faces, landmark_ids)} if landmark_ids is not None else {}
    meta = {"licence": "Basel Face Model licence (non-commercial research)", "source": str(path), "units": f"metres (from {units})"}
    try:
        return MorphableModel(replace(arrays, faces=faces, embeddings=emb), name="bfm", version=version, meta=meta)
    except (ShapeError, BadInputError) as exc:
        raise ModelFileError(path, f"inconsistent arrays: {exc}") from None


#: BFM 2009's four face segments, in the column order of ``segbin`` (the BFM documentation's
#: segment demo generates "the nose, eyes, mouth, and cheek area" in this order).
SEGMENTS_2009 = ("nose", "eye_region", "mouth_region", "cheeks")


def _segments(segbin: np.ndarray, V: int, path: Path) -> dict[str, np.ndarray]:
    """Regions from BFM 2009's ``segbin`` ((V,4) or (4,V) 0/1), named by :data:`SEGMENTS_2009`, plus ``face`` (their union)."""
    seg = np.asarray(segbin)
    seg = seg.T if seg.shape == (4, V) else seg
    if seg.shape != (V, 4):
        raise ModelFileError(path, f"key 'segbin' has shape {np.asarray(segbin).shape}, expected ({V}, 4)")
    out: dict[str, np.ndarray] = {name: seg[:, i] > 0 for i, name in enumerate(SEGMENTS_2009)}
    out["face"] = np.asarray(seg.any(1))
    return out


def load_bfm2009(path: str | Path, n_shape: int | None = None, n_albedo: int | None = None, landmarks: LandmarkIds | None = None) -> MorphableModel:
    """BFM 2009 ``01_MorphableModel.mat``: shapeMU/PC/EV, texMU/PC/EV, tl (1-based), segbin (regions); micrometres."""
    path = Path(path)
    d = _loadmat(path)
    mu, pc, ev, tl = _need(d, path, "shapeMU", "shapePC", "shapeEV", "tl")
    V = mu.size // 3
    template = (mu.reshape(V, 3) * UM_TO_M).astype(np.float32)
    n_ev = ev.ravel()[: pc.shape[1]]
    id_basis = _basis(pc * n_ev[None], V, path, "shapePC", UM_TO_M, n_shape)
    arrays = ModelArrays(template, tl - 1, id_basis=id_basis)
    if "texMU" in d:
        tmu, tpc, tev = _need(d, path, "texMU", "texPC", "texEV")
        arrays = replace(arrays, albedo_mean=(tmu.reshape(V, 3) / 255.0).astype(np.float32),
                         albedo_basis=_basis(tpc * tev.ravel()[: tpc.shape[1]][None], V, path, "texPC", 1 / 255.0, n_albedo))
    if "segbin" in d:
        arrays = replace(arrays, regions=_segments(_need(d, path, "segbin")[0], V, path))
    return _build(path, arrays, "2009", "micrometres", _landmarks(landmarks, V))


def load_bfm_front(path: str | Path, n_shape: int | None = None, n_expression: int | None = None,
                   n_albedo: int | None = None) -> MorphableModel:
    """Deep3DFaceRecon's ``BFM_model_front.mat`` (35,709 vertices): meanshape, idBase, exBase, meantex,
    texBase, tri (1-based), keypoints (68, 1-based); decimetres."""
    path = Path(path)
    d = _loadmat(path)
    mu, idb, exb, tri = _need(d, path, "meanshape", "idBase", "exBase", "tri")
    V = mu.size // 3
    arrays = ModelArrays((mu.reshape(V, 3) * DM_TO_M).astype(np.float32), tri - 1,
                         id_basis=_basis(idb, V, path, "idBase", DM_TO_M, n_shape),
                         exp_basis=_basis(exb, V, path, "exBase", DM_TO_M, n_expression))
    if "meantex" in d:
        mt, tb = _need(d, path, "meantex", "texBase")
        arrays = replace(arrays, albedo_mean=(mt.reshape(V, 3) / 255.0).astype(np.float32),
                         albedo_basis=_basis(tb, V, path, "texBase", 1 / 255.0, n_albedo))
    lm = None
    if "keypoints" in d:
        lm = _landmarks(_need(d, path, "keypoints")[0].ravel().astype(np.int64) - 1, V)
    regions = {}
    if "skinmask" in d:
        regions["skin"] = _need(d, path, "skinmask")[0].ravel().astype(bool)[:V]
    arrays = replace(arrays, regions={k: v for k, v in regions.items() if v.shape == (V,)})
    return _build(path, arrays, "front", "decimetres", lm)


def _h5_group(f: h5py.File, path: Path, group: str, scale: float, n: int | None, V: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mean (V,3) and std-scaled basis (K,V,3) of a statismo group (``shape``, ``expression``, ``color``)."""
    try:
        mean = np.asarray(f[f"{group}/model/mean"], np.float64)
        basis = np.asarray(f[f"{group}/model/pcaBasis"], np.float64)
        var = np.asarray(f[f"{group}/model/pcaVariance"], np.float64).ravel()
    except KeyError as exc:
        raise ModelFileError(path, f"missing key '{group}/model/...' ({exc})") from None
    Vg = mean.size // 3
    if V is not None and Vg != V:
        raise ModelFileError(path, f"'{group}/model/mean' has {Vg} points, the shape model {V}")
    if basis.shape[0] != 3 * Vg and basis.shape[1] == 3 * Vg:
        basis = basis.T
    basis = basis * np.sqrt(np.maximum(var[: basis.shape[1]], 0))[None]
    return (mean.reshape(Vg, 3) * scale).astype(np.float32), _basis(basis, Vg, path, f"{group}/model/pcaBasis", scale, n)


def load_bfm_h5(path: str | Path, n_shape: int | None = None, n_expression: int | None = None, n_albedo: int | None = None,
                landmarks: LandmarkIds | None = None) -> MorphableModel:
    """BFM 2017/2019 ``.h5`` (statismo): shape/, expression/, color/ ``model/{mean,pcaBasis,pcaVariance}``,
    ``shape/representer/cells`` (3,F) 0-based; millimetres."""
    try:
        import h5py
    except ImportError:
        from face3d.errors import MissingDependencyError

        raise MissingDependencyError("h5py", purpose="reading BFM 2017/2019 .h5 files") from None
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise ModelFileError(path, "file not found") from None
    except OSError as exc:
        raise ModelFileError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        template, id_basis = _h5_group(f, path, "shape", MM_TO_M, n_shape)
        V = template.shape[0]
        try:
            cells = np.asarray(f["shape/representer/cells"])
        except KeyError:
            raise ModelFileError(path, "missing key 'shape/representer/cells'") from None
        faces = cells.T if cells.shape[0] == 3 and cells.shape[1] != 3 else cells
        exp_basis = albedo_mean = albedo_basis = None
        if "expression" in f:
            emean, exp_basis = _h5_group(f, path, "expression", MM_TO_M, n_expression, V)
            template = template + emean  # statismo stores the expression mean as an offset from the shape mean
        if "color" in f:
            albedo_mean, albedo_basis = _h5_group(f, path, "color", 1.0, n_albedo, V)
        version = "2019" if "2019" in path.name else "2017"
    arrays = ModelArrays(template, faces, id_basis=id_basis, exp_basis=exp_basis, albedo_mean=albedo_mean, albedo_basis=albedo_basis)
    return _build(path, arrays, version, "millimetres", _landmarks(landmarks, V))


def load_bfm(path: str | Path | None = None, n_shape: int | None = None, n_expression: int | None = None,
             n_albedo: int | None = None, landmarks: LandmarkIds | None = None) -> MorphableModel:
    """Any BFM file by its layout (``.mat`` 2009 or front, ``.h5`` 2017/2019); see the module docstring.
    ``n_*`` keep the leading components; ``landmarks``: 68 vertex ids (or a text file of them) for
    the 'ibug68' embedding (2009 and .h5; the front model carries its own)."""
    if path is None:
        hits = [p for p in default_sources() if p.is_file()] + [
            p / n for p in default_sources() if p.is_dir() for n in FILE_NAMES if (p / n).is_file()]
        if not hits:
            raise ModelNotFoundError(
                "the Basel Face Model is not installed (its licence forbids redistribution): request it from "
                f"https://faces.dmi.unibas.ch, then put the file in {default_sources()[-1]} or set FACE3D_BFM, or pass path=...")
        path = hits[0]
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return load_bfm_h5(path, n_shape, n_expression, n_albedo, landmarks)
    if path.suffix.lower() != ".mat":
        raise ModelFileError(path, "not a BFM file (expected .mat or .h5)")
    if mat_layout(path) == "bfm2009":
        if n_expression is not None:
            raise BadInputError(f"{path}: BFM 2009 has no expression model (n_expression={n_expression})")
        return load_bfm2009(path, n_shape, n_albedo, landmarks)
    if landmarks is not None:
        raise BadInputError(f"{path}: BFM_model_front carries its own landmarks ('keypoints'); 'landmarks' is not used")
    return load_bfm_front(path, n_shape, n_expression, n_albedo)
