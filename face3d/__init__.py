"""face3d: 3D face reconstruction and avatars, offline and CPU-first.

The public API is small and imported lazily (importing ``face3d`` does not import torch
models, mediapipe or audio stacks until they are used)::

    import face3d
    rec = face3d.reconstruct("photo.jpg")          # -> face3d.Reconstruction
    model = face3d.load_model("default")           # -> face3d.MorphableModel
    anim = face3d.animate_audio("speech.wav")      # -> face3d.Animation
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if "torch" not in sys.modules:  # read once, when torch loads its OpenMP runtime
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Idle OpenMP threads sleep instead of spinning: torch's default 2 threads on a 2-core machine
    # with one busy neighbour ran the renderer 16x slower spinning (benchmarks/README.md, "Start-up,
    # warm runs and threads"). An explicit OMP_WAIT_POLICY from the user is kept.

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str]] = {
    "load_model": ("face3d.models", "load_model"),
    "MorphableModel": ("face3d.models", "MorphableModel"),
    "reconstruct": ("face3d.reconstruction", "reconstruct"),
    "Reconstruction": ("face3d.result", "Reconstruction"),
    "Animation": ("face3d.animation.animation", "Animation"),
    "animate_audio": ("face3d.animation.lipsync", "animate_audio"),
    "track": ("face3d.animation.tracking", "track"),
    "render": ("face3d.render", "render"),
}

__all__ = sorted(_LAZY) + ["__version__", "errors"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if name == "errors":
        return importlib.import_module("face3d.errors")
    raise AttributeError(f"module 'face3d' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
