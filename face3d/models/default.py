"""The embedded default model ``default``: a head derived from ICT-FaceKit, shipped in ``assets/default``.

Built by :mod:`face3d.models.default_build` (``python -m face3d.models.default_build``) from
ICT-FaceKit Light (USC ICT, MIT licence; the licence text ships beside the asset as
``assets/default/LICENSE-ICT-FaceKit.txt``). Metres, +Y up, +Z out of the face, +X toward the
subject's left; the origin is ICT's (inside the head, nose tip at z ~ 0.13 m).

Geometry: ICT's submeshes face, head_and_neck, mouth_socket, eye_socket_left/right,
gums_and_tongue, teeth and eyeball_left/right, which are exactly the ICT vertices
``0 .. 24590`` in ICT's order (:data:`N_VERTICES` = 24,591; ICT vertex id ``i < 24591`` is
default vertex id ``i``, see :func:`ict_to_default_ids`). Dropped: lacrimal fluid, eye blend and
eye occlusion shells (ICT renders them alpha-blended over the eyes; opaque they hide the
irises) and the eyelash cards. Triangles and UVs are ICT's (UV coordinates unchanged, only the
UV index list compacted to the UVs still used), so a texture in ICT's UDIM-like layout fits.

Bases: the first ``meta['n_identity']`` of ICT's 100 identity PCA modes (each one standard
deviation: ``id_std == 1``) and the 52 ARKit expressions (``face3d.arkit.ARKIT_NAMES`` order;
``tongueOut`` is zero, ``browInnerUp``/``cheekPuff`` are ICT's L+R sums), stored quantised
(``meta['storage']``; error table in benchmarks/README.md) and expanded to float32 on load.
Regions: ICT's submeshes and detail regions, the groups skin, neck_scalp, eyes, eye_sockets,
mouth_interior, and fitting / rigid (ICT's vertex lists). Landmarks: ``ibug68`` in the 3D
convention of 300W-LP / AFLW2000-3D (fixed points along the jaw line, not the silhouette): ICT's
68 landmark vertices with the contour points 0–7 and 9–16 replaced by ICT's ``jawline``
substitutes (ICT's own set stays as ``ibug68_ict``), ``ibug68_jawline`` and the two extended
jawline sets, and ``mediapipe478`` (calibrated by :mod:`face3d.synth.calibrate` on 200 random
photo-textured faces; input file ``assets/default/mediapipe478_embedding.npz``).

Albedo space: ``assets/default/albedo_space.npz``, the photo-built space of
:mod:`face3d.texture.albedo_space` in this model's vertex order (``write_default_albedo``), ships
and :func:`load_default` attaches it when present. Keys (no pickles):

* ``albedo_mean``  float (V, 3), per-vertex RGB in [0, 1], V = :data:`N_VERTICES` in this
  model's vertex order (use :func:`ict_to_default_ids` to subsample per-ICT-vertex data);
* ``albedo_basis`` float (K, V, 3), RGB change per unit coefficient;
* ``albedo_std``   float (K,), prior standard deviation of each coefficient.

Any other key is ignored. A file of the wrong shapes raises :class:`ModelFileError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from face3d.errors import BadInputError, ModelFileError, ModelNotFoundError
from face3d.io.npz import read_npz
from face3d.models.model import ModelArrays, MorphableModel
from face3d.paths import assets_dir

#: Vertices of the default model: ICT's first 24,591 (face ... eyeball_right).
N_VERTICES = 24591
#: The ICT-FaceKit vertex count the ids of :func:`ict_to_default_ids` refer to.
N_ICT_VERTICES = 26719
ASSET_FOLDER = "default"
MODEL_FILE = "default_model.npz"
ALBEDO_FILE = "albedo_space.npz"
MEDIAPIPE_FILE = "mediapipe478_embedding.npz"
LICENSE_FILE = "LICENSE-ICT-FaceKit.txt"
PACK_FORMAT = "face3d-default-packed"
BASES = ("id_basis", "exp_basis")


def asset_dir() -> Path:
    """``assets/default`` (see :func:`face3d.paths.assets_dir`)."""
    return assets_dir() / ASSET_FOLDER


def ict_to_default_ids(ict_ids: ArrayLike) -> np.ndarray:
    """Default-model vertex id of each ICT-FaceKit full-mesh vertex id (same shape), -1 where the
    vertex was dropped (eye shells, eyelashes). Ids outside [0, 26719) raise BadInputError."""
    ids = np.asarray(ict_ids)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= N_ICT_VERTICES):
        raise BadInputError(f"ICT vertex ids must be integers in [0, {N_ICT_VERTICES}), got {ids.dtype} "
                            f"in [{ids.min() if ids.size else '-'}, {ids.max() if ids.size else '-'}]")
    return np.where(ids < N_VERTICES, ids, -1).astype(np.int64)


def dequantize(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """The float32 basis ``key`` (K, V, 3) from its packed form: the code blocks ``key + '_q0'``,
    ``key + '_q1'``, ... (consecutive modes, any int/float dtype) concatenated, times the per-mode
    scale ``key + '_scale'`` (K,)."""
    blocks, i = [], 0
    while f"{key}_q{i}" in arrays:
        blocks.append(np.asarray(arrays[f"{key}_q{i}"]))
        i += 1
    if not blocks:
        raise KeyError(f"{key}_q0")
    s = np.asarray(arrays[key + "_scale"], dtype=np.float32)
    n = sum(len(b) for b in blocks)
    if s.shape != (n,):
        raise ValueError(f"{key}_scale has shape {s.shape}, expected ({n},)")
    out = np.empty((n, *blocks[0].shape[1:]), np.float32)
    k = 0
    for b in blocks:  # one pass per block: code (exact in float32) times its mode's scale, rounded once
        np.multiply(b.astype(np.float32, copy=False), s[k : k + len(b)].reshape(-1, *([1] * (b.ndim - 1))), out=out[k : k + len(b)])
        k += len(b)
    return out


def unpack(arrays: Mapping[str, np.ndarray], source: str | Path = "") -> MorphableModel:
    """A float32 :class:`MorphableModel` from the packed arrays :func:`default_build.pack` writes."""
    if "header_json" not in arrays:
        raise ModelFileError(source, "not a packed default model (no header_json)")
    header = json.loads(str(arrays["header_json"]))
    if header.get("format") != PACK_FORMAT:
        raise ModelFileError(source, f"not a packed default model (format {header.get('format')!r})")
    try:
        bases = {k: dequantize(arrays, k) for k in BASES}
        regions = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("region__")}
        emb = {k.split("__", 1)[1]: (v, arrays["emb_bary__" + k.split("__", 1)[1]]) for k, v in arrays.items() if k.startswith("emb_tri__")}
        return MorphableModel(ModelArrays(arrays["template"], arrays["faces"], id_basis=bases["id_basis"], id_std=arrays["id_std"],
                                          exp_basis=bases["exp_basis"], exp_names=header["exp_names"], uvs=arrays["uvs"],
                                          uv_faces=arrays["uv_faces"], regions=regions, embeddings=emb),
                              name=header["name"], version=header["version"], meta=header["meta"])
    except (KeyError, ValueError) as exc:
        raise ModelFileError(source, f"packed default model is incomplete or inconsistent ({type(exc).__name__}: {exc})") from None
    except BadInputError as exc:  # ShapeError is a BadInputError
        raise ModelFileError(source, f"packed default model is inconsistent ({exc})") from None


def attach_albedo_space(model: MorphableModel, path: str | Path) -> MorphableModel:
    """Set ``model``'s per-vertex albedo from an ``albedo_space.npz`` (keys in the module docstring)."""
    z = read_npz(path, "albedo space npz")
    missing = [k for k in ("albedo_mean", "albedo_basis", "albedo_std") if k not in z]
    if missing:
        raise ModelFileError(path, f"missing key(s) {missing}")
    V = model.n_vertices
    mean, basis, std = (np.asarray(z[k], dtype=np.float32) for k in ("albedo_mean", "albedo_basis", "albedo_std"))
    if mean.shape != (V, 3) or basis.ndim != 3 or basis.shape[1:] != (V, 3) or std.shape != (basis.shape[0],):
        raise ModelFileError(path, f"expected albedo_mean ({V}, 3), albedo_basis (K, {V}, 3), albedo_std (K,); "
                                   f"got {mean.shape}, {basis.shape}, {std.shape}")
    import torch

    dev = model.template.device
    model.albedo_mean = torch.as_tensor(mean, device=dev)
    model.albedo_basis = torch.as_tensor(basis, device=dev)
    model.albedo_std = torch.as_tensor(std, device=dev)
    model.meta["albedo"] = str(Path(path).name)
    return model


def load_default(**options: object) -> MorphableModel:
    """Load the shipped ``default`` model (``assets/default/default_model.npz``, plus
    ``albedo_space.npz`` when present); it takes no options.

    Raises ModelNotFoundError when the asset is missing, ModelFileError when it is corrupt,
    BadInputError for any option.
    """
    if options:
        raise BadInputError(f"model 'default' takes no options, got {sorted(options)}")
    folder = asset_dir()
    path = folder / MODEL_FILE
    if not path.exists():
        raise ModelNotFoundError(f"default model asset missing at {path}; regenerate it with: python -m face3d.models.default_build")
    model = unpack(read_npz(path, "default model npz"), path)
    if (folder / ALBEDO_FILE).exists():
        attach_albedo_space(model, folder / ALBEDO_FILE)
    return model
