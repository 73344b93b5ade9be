"""Morphable-model benchmark: load time, buffer memory and forward time (batch 1 and 64) per model.

Models: ICT-FaceKit from the shared data (``parts='full'`` and ``'face'``; first load converts,
second reads the cache), ``basic`` when its asset is present, and a synthetic FLAME with the real
array shapes (V=5023, 300+100 blend shapes, 36 pose correctives, 5 joints) driven with random
shape/expression/pose/jaw/neck/eyes. Forward = ``model(shape, expression, pose[, jaw, neck, eyes])``
under ``torch.no_grad()``, median of ``--repeats`` runs after one warm-up.

    python benchmarks/models.py [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from face3d.errors import Face3DError  # noqa: E402
from face3d.models.flame import FlameModel, FlameRig  # noqa: E402
from face3d.models.ict import load_ict  # noqa: E402
from face3d.models.model import ModelArrays, MorphableModel  # noqa: E402


def buffer_mib(model: torch.nn.Module) -> float:
    return sum(b.numel() * b.element_size() for b in model.buffers()) / 2**20


def synthetic_flame(seed: int = 0) -> FlameModel:
    rng = np.random.default_rng(seed)
    V, F = 5023, 9976
    J = rng.random((5, V)) ** 8
    sd = rng.normal(size=(V, 3, 400)).astype(np.float32) * 1e-3
    arrays = ModelArrays(rng.normal(size=(V, 3)) * 0.05, rng.integers(0, V, (F, 3)), id_basis=np.moveaxis(sd[..., :300], -1, 0),
                         exp_basis=np.moveaxis(sd[..., 300:], -1, 0))
    rig = FlameRig(posedirs=rng.normal(size=(V, 3, 36)) * 1e-3, J_regressor=J / J.sum(1, keepdims=True),
                   parents=np.array([-1, 0, 1, 1, 1]), lbs_weights=rng.dirichlet(np.full(5, 0.3), size=V))
    return FlameModel(arrays, rig, name="flame-synthetic")


def time_forward(model: MorphableModel, B: int, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    kw = {"shape": torch.randn(B, model.n_shape, generator=g), "pose": torch.randn(B, 3, generator=g) * 0.2}
    if model.n_expression:
        kw["expression"] = torch.rand(B, model.n_expression, generator=g)
    if isinstance(model, FlameModel):
        kw.update(jaw=torch.rand(B, 3, generator=g) * 0.2, neck=torch.randn(B, 3, generator=g) * 0.1,
                  eyes=torch.randn(B, 6, generator=g) * 0.1)
    times = []
    with torch.no_grad():
        model(**kw)
        for _ in range(repeats):
            t = time.perf_counter()
            model(**kw)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def timed(fn: Callable[[], MorphableModel]) -> tuple[MorphableModel, float]:
    t = time.perf_counter()
    m = fn()
    return m, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["FACE3D_CACHE"] = tempfile.mkdtemp(prefix="face3d-bench-")
    rows: list[tuple[str, MorphableModel, str]] = []
    try:
        from face3d.testing import shared_data

        npz = shared_data() / "ict_facekit" / "ict_facekit.npz"
        for parts in ("full", "face"):
            m, cold = timed(lambda: load_ict(npz, parts=parts))
            m, warm = timed(lambda: load_ict(npz, parts=parts))
            rows.append((f"ict ({parts})", m, f"{cold:.2f} s convert, {warm:.2f} s cached"))
    except FileNotFoundError as exc:
        print(f"skipping ICT: {exc}")
    try:
        from face3d.models.basic import load_basic

        m, t = timed(load_basic)
        rows.append(("basic", m, f"{t:.2f} s"))
    except (ImportError, Face3DError) as exc:
        print(f"skipping basic: {exc}")
    m, t = timed(synthetic_flame)
    rows.append(("flame (synthetic)", m, f"{t:.2f} s build"))

    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} runs, no_grad\n")
    print("| model | V | F | id | exp | buffers MiB | load | forward B=1 ms | forward B=64 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m, load in rows:
        t1, t64 = time_forward(m, 1, args.repeats), time_forward(m, 64, max(2, args.repeats // 2))
        print(f"| {name} | {m.n_vertices} | {m.faces.shape[0]} | {m.n_shape} | {m.n_expression} | {buffer_mib(m):.1f} | "
              f"{load} | {t1:.2f} | {t64:.1f} |")


if __name__ == "__main__":
    main()
