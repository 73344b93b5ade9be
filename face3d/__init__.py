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
    # with one busy neighbour ran the renderer 13x slower spinning (benchmarks/README.md, "Start-up,
    # warm runs and threads"). An explicit OMP_WAIT_POLICY from the user is kept.

_LAZY: dict[str, tuple[str, str]] = {
    "load_model": ("face3d.models", "load_model"),
    "MorphableModel": ("face3d.models", "MorphableModel"),
    "reconstruct": ("face3d.reconstruction", "reconstruct"),
    "Reconstruction": ("face3d.result", "Reconstruction"),
    "FaceMesh": ("face3d.mesh", "FaceMesh"),
    "Mesh": ("face3d.mesh", "Mesh"),
    "View": ("face3d.mesh", "View"),
    "Animation": ("face3d.animation.animation", "Animation"),
    "animate_audio": ("face3d.animation.lipsync", "animate_audio"),
    "track": ("face3d.animation.tracking", "track"),
}

__all__ = sorted(_LAZY) + ["__version__", "errors"]


def _version() -> str:
    """face3d's version; ``pyproject.toml`` is its one source.

    A source checkout reads the ``pyproject.toml`` beside the package (so a worktree reports its own
    version even where another checkout is installed); an installed wheel reads its metadata.
    """
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "face3d" and "version" in project:
            return str(project["version"])
    from importlib import metadata

    return metadata.version("face3d")


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
        globals()[name] = value
        return value
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
