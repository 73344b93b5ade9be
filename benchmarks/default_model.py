"""Default model: what the identity-mode count and the storage precision cost (size against accuracy).

Reference: the float32 ICT-FaceKit model restricted to the default model's vertices with all 100
identity modes. For each (identity modes, precision) it packs the identity basis (precisions: see
``face3d.models.default_build.storage_groups``; 'int16:10+int8' = the 10 largest modes int16, the rest int8), compresses it
with ``np.savez_compressed`` (MB as stored) and measures the vertex error of 200 random faces
(identity weights N(0, 1) on all 100 reference modes; the candidate keeps its first K) in mm: RMS
and max over all vertices, and RMS over the face submesh. Since ICT's modes are orthogonal PCA
modes, a least-squares 3D fit with K modes leaves the same residual as the truncation, so the
error column is also the best-fit error. The expression table does the same for the 52 ARKit
shapes (random sparse weights: each shape on with probability 0.25, weight U(0, 1), mouthClose
<= jawOpen) and the last line is the shipped asset's total size.

    python benchmarks/default_model.py [--modes 20,40,60,80,100] [--faces 200]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face3d.arkit import ARKIT_INDEX  # noqa: E402
from face3d.models import default_build as D  # noqa: E402
from face3d.models.default import MODEL_FILE, asset_dir, dequantize  # noqa: E402


def compressed_mb(arrays: dict[str, np.ndarray]) -> float:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.tell() / 1e6


def errors_mm(ref: np.ndarray, cand: np.ndarray, w: np.ndarray, face: np.ndarray) -> tuple[float, float, float]:
    """(RMS, max, face RMS) in mm of w @ ref - w[:, :K] @ cand over vertices; ref (K0,V,3), cand (K,V,3)."""
    K = cand.shape[0]
    d = (w @ ref.reshape(len(ref), -1) - w[:, :K] @ cand.reshape(K, -1)).reshape(len(w), -1, 3)
    n = np.linalg.norm(d, axis=-1) * 1000
    return float(np.sqrt((n ** 2).mean())), float(n.max()), float(np.sqrt((n[:, face] ** 2).mean()))


def expression_weights(n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.uniform(0, 1, (n, 52)) * (rng.uniform(0, 1, (n, 52)) < 0.25)
    jo, mc = ARKIT_INDEX["jawOpen"], ARKIT_INDEX["mouthClose"]
    w[:, mc] = np.minimum(w[:, mc], w[:, jo])
    return w.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="20,40,60,80,100")
    ap.add_argument("--faces", type=int, default=200)
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = D.select_default(D.full_model())
    face = model.regions["face"].numpy()
    rng = np.random.default_rng(0)
    id_ref = model.id_basis.numpy()
    w_id = rng.standard_normal((args.faces, id_ref.shape[0])).astype(np.float32)
    print(f"reference: {model.n_vertices} vertices, {id_ref.shape[0]} identity modes, float32 "
          f"(built in {time.perf_counter() - t0:.1f} s); {args.faces} random faces\n")
    print("| identity modes | precision | MB (compressed) | RMS mm | max mm | face RMS mm |")
    print("|---|---|---|---|---|---|")
    for k in [int(x) for x in args.modes.split(",")]:
        for storage in (*D.STORAGES, "int16:10+int8"):
            packed = D.quantize(id_ref[:k], storage)
            cand = dequantize(packed, "basis")
            rms, mx, frms = errors_mm(id_ref, cand, w_id, face)
            print(f"| {k} | {storage} | {compressed_mb(packed):.2f} | {rms:.3f} | {mx:.3f} | {frms:.3f} |", flush=True)
    exp_ref = model.exp_basis.numpy()
    w_ex = expression_weights(args.faces, rng)
    print("\n| expressions | precision | MB (compressed) | RMS mm | max mm | face RMS mm |")
    print("|---|---|---|---|---|---|")
    for storage in D.STORAGES:
        packed = D.quantize(exp_ref, storage)
        rms, mx, frms = errors_mm(exp_ref, dequantize(packed, "basis"), w_ex, face)
        print(f"| 52 ARKit | {storage} | {compressed_mb(packed):.2f} | {rms:.3f} | {mx:.3f} | {frms:.3f} |", flush=True)
    shipped = asset_dir() / MODEL_FILE
    if shipped.exists():
        print(f"\nshipped {shipped.name}: {shipped.stat().st_size / 1e6:.2f} MB "
              f"({D.N_IDENTITY} identity modes {D.ID_STORAGE}, expressions {D.EXP_STORAGE}); total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
