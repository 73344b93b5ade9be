"""Build the embedded ``default`` model from ICT-FaceKit: ``python -m face3d.models.default_build``.

Reads ICT-FaceKit Light (``ict_facekit.npz`` of the shared data, or ``--source`` / env
``FACE3D_ICT``: anything :func:`face3d.models.ict.read_ict_source` reads), keeps the submeshes
listed in :data:`KEPT_PARTS` (ICT vertices 0 .. 24590, see :mod:`face3d.models.default`), the
first :data:`N_IDENTITY` identity modes and the 52 ARKit shapes, quantises the bases
(:data:`ID_STORAGE`, :data:`EXP_STORAGE`: integer codes with one float32 scale per mode; the 10
largest identity modes as int16, the others int8; expressions int16), attaches the
calibrated MediaPipe-478 embedding (``assets/default/mediapipe478_embedding.npz``; make it with
``python -m face3d.synth.calibrate``, 200 random photo-textured faces) and writes ``assets/default/default_model.npz``
with ``np.savez_compressed``. Deterministic; about 5 s here.

``python benchmarks/default_model.py`` measures what the mode count and precision cost
(size and vertex error against the float32 100-mode model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from face3d.errors import BadInputError, ModelNotFoundError
from face3d.models.default import MEDIAPIPE_FILE, MODEL_FILE, N_VERTICES, PACK_FORMAT, asset_dir, unpack
from face3d.models.ict import ICT_SUBMESHES, build_ict_model, read_ict_source
from face3d.models.model import MorphableModel

MODEL_VERSION = "1"
#: ICT submeshes kept (their vertices are exactly ICT's 0 .. N_VERTICES-1).
KEPT_PARTS = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
              "gums_and_tongue", "teeth", "eyeball_left", "eyeball_right")
#: Identity modes kept, and how each basis is stored (see :func:`quantize`); chosen from the table
#: in benchmarks/README.md ("Default model: size against accuracy").
N_IDENTITY = 100
ID_STORAGE = "int16:10+int8"
EXP_STORAGE = "int16"
STORAGES = ("float32", "float16", "int16", "int8")
LICENCE = "MIT, Copyright (c) 2020 USC Institute for Creative Technologies (ICT-FaceKit); text: assets/default/LICENSE-ICT-FaceKit.txt"


def ict_source() -> Path:
    """The ICT-FaceKit source the build reads by default: env ``FACE3D_ICT`` or the shared data's npz."""
    if os.environ.get("FACE3D_ICT"):
        return Path(os.environ["FACE3D_ICT"])
    from face3d.testing import shared_ict

    try:
        return shared_ict()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"ICT-FaceKit source not found ({exc}); pass --source or set FACE3D_ICT") from None


def full_model(source: str | Path | None = None) -> MorphableModel:
    """ICT-FaceKit, all 26,719 vertices and 100 identity modes, float32 metres (the reference)."""
    src = Path(source) if source is not None else ict_source()
    return build_ict_model(read_ict_source(src), "full", source=src.name)


def select_default(full: MorphableModel) -> MorphableModel:
    """The kept submeshes of the full ICT model, named 'default' (regions that became empty dropped)."""
    ranges = {n: vr for n, vr, _ in ICT_SUBMESHES}
    keep = np.zeros(full.n_vertices, bool)
    for p in KEPT_PARTS:
        keep[ranges[p][0]:ranges[p][1]] = True
    if not keep[:N_VERTICES].all() or keep[N_VERTICES:].any():
        raise AssertionError("KEPT_PARTS must be ICT's vertex prefix 0 .. N_VERTICES-1")
    sub = full.subset(keep, name="default")
    sub.regions = {k: m for k, m in sub.regions.items() if bool(m.any())}
    return sub


def storage_groups(storage: str, n_modes: int) -> list[tuple[str, int]]:
    """Parse a storage spec into (dtype, number of modes) groups covering ``n_modes`` modes in order.

    A spec is one of :data:`STORAGES` ('int8': every mode int8) or groups joined by '+', each
    ``dtype:count`` except the last, which takes the remaining modes: 'int16:10+int8' stores the
    first 10 modes as int16 and the others as int8."""
    out: list[tuple[str, int]] = []
    parts = storage.split("+")
    for i, part in enumerate(parts):
        dtype, _, count = part.partition(":")
        last = i == len(parts) - 1
        if dtype not in STORAGES or (bool(count) == last) or (count and not count.isdigit()):
            raise BadInputError(f"storage must be one of {STORAGES} or groups like 'int16:10+int8', got {storage!r}")
        n = n_modes - sum(c for _, c in out) if last else int(count)
        if n < 0 or (n == 0 and not last):
            raise BadInputError(f"storage {storage!r} names more than the {n_modes} modes")
        out.append((dtype, n))
    return out


def quantize(basis: np.ndarray, storage: str) -> dict[str, np.ndarray]:
    """Packed form of a basis (K, V, 3) under the name ``basis`` (see :func:`storage_groups`): per group
    ``basis_q<i>`` codes of its dtype and, for all K modes, ``basis_scale`` (K,) float32. Integer codes
    use one scale per mode, max |delta| / code max (int8: 127, int16: 32767); float groups scale 1."""
    arrays: dict[str, np.ndarray] = {}
    scales: list[np.ndarray] = []
    start = 0
    for i, (dtype, n) in enumerate(storage_groups(storage, len(basis))):
        block = basis[start:start + n]
        start += n
        if dtype.startswith("float"):
            arrays[f"basis_q{i}"] = block.astype(dtype)
            scales.append(np.ones(n, np.float32))
            continue
        top = 127 if dtype == "int8" else 32767
        peak = np.abs(block).reshape(n, -1).max(1).astype(np.float32) if n else np.zeros(0, np.float32)
        scale = np.where(peak > 0, peak / top, 1.0).astype(np.float32)
        arrays[f"basis_q{i}"] = np.rint(block / scale[:, None, None]).clip(-top, top).astype(dtype)
        scales.append(scale)
    arrays["basis_scale"] = np.concatenate(scales).astype(np.float32)
    return arrays


def pack(model: MorphableModel, n_identity: int = N_IDENTITY, id_storage: str = ID_STORAGE,
         exp_storage: str = EXP_STORAGE, mediapipe: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the asset file for ``model`` (the output of :func:`select_default`)."""
    if not 1 <= n_identity <= model.n_shape:
        raise BadInputError(f"n_identity must be in [1, {model.n_shape}], got {n_identity}")
    arrays: dict[str, np.ndarray] = {
        "template": model.template.numpy().astype(np.float32), "faces": model.faces.numpy().astype(np.int32),
        "uvs": model.uvs.numpy().astype(np.float32), "uv_faces": model.uv_faces.numpy().astype(np.int32),
        "id_std": model.id_std.numpy()[:n_identity].astype(np.float32),
    }
    for key, basis, storage in (("id_basis", model.id_basis.numpy()[:n_identity], id_storage),
                                ("exp_basis", model.exp_basis.numpy(), exp_storage)):
        arrays.update({k.replace("basis", key): v for k, v in quantize(basis, storage).items()})
    for k, m in model.regions.items():
        arrays[f"region__{k}"] = m.numpy()
    embeddings = {k: (e.tri.numpy(), e.bary.numpy()) for k, e in model.embeddings.items()}
    if "ibug68_jawline" in embeddings:  # the 3D (300W-LP / AFLW2000-3D) convention: fixed points along the jaw
        embeddings["ibug68_ict"] = embeddings["ibug68"]
        embeddings["ibug68"] = embeddings["ibug68_jawline"]
    if mediapipe is not None:
        embeddings["mediapipe478"] = mediapipe
    for k, (tri, bary) in embeddings.items():
        arrays[f"emb_tri__{k}"] = np.asarray(tri, np.int32)
        arrays[f"emb_bary__{k}"] = np.asarray(bary, np.float32)
    meta = {
        "licence": LICENCE, "source": "ICT-FaceKit Light (ICT-VGL/ICT-FaceKit, FaceXModel), via python -m face3d.models.default_build",
        "units": "metres; +Y up, +Z out of the face, +X subject's left", "parts": list(KEPT_PARTS),
        "n_identity": n_identity, "storage": {"id_basis": id_storage, "exp_basis": exp_storage},
        "identity_prior": "ICT PCA modes at 1 std each: id_std = 1",
        "zero_expressions": model.meta.get("zero_expressions", []),
    }
    header = {"format": PACK_FORMAT, "name": "default", "version": MODEL_VERSION, "exp_names": model.exp_names, "meta": meta}
    arrays["header_json"] = np.array(json.dumps(header))
    return arrays


def mediapipe_embedding(path: Path | None = None, n_faces: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The calibrated MediaPipe-478 embedding file (default ``assets/default/mediapipe478_embedding.npz``), or None."""
    from face3d.models.basic_build import load_mediapipe_embedding

    path = path or asset_dir() / MEDIAPIPE_FILE
    return load_mediapipe_embedding(path, n_faces) if n_faces is not None and path.exists() else None


def build_arrays(source: str | Path | None = None, mediapipe_file: Path | None = None, **storage: object) -> dict[str, np.ndarray]:
    """Everything the asset holds, built from the ICT source (``storage``: :func:`pack`'s options)."""
    model = select_default(full_model(source))
    mp = mediapipe_embedding(mediapipe_file, model.faces.shape[0])
    return pack(model, mediapipe=mp, **storage)  # type: ignore[arg-type]


def write_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write the packed arrays atomically with ``np.savez_compressed``."""
    from face3d.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def build_model(source: str | Path | None = None, mediapipe_file: Path | None = None) -> MorphableModel:
    """The ``default`` model as the asset would load it (packed then unpacked)."""
    return unpack(build_arrays(source, mediapipe_file), "default_build")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m face3d.models.default_build", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=None, help=f"output file (default: assets/default/{MODEL_FILE})")
    ap.add_argument("--source", default=None, help="ICT-FaceKit npz, FaceXModel folder or zip (default: shared data / FACE3D_ICT)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out) if args.out else asset_dir() / MODEL_FILE
    arrays = build_arrays(args.source)
    write_arrays(out, arrays)
    has_mp = "emb_tri__mediapipe478" in arrays
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB; mediapipe478 embedding: {'yes' if has_mp else 'no, run python -m face3d.synth.calibrate'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
