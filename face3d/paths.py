"""Where face3d keeps caches and finds the shared test data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder (env ``FACE3D_CACHE``, default ``~/.cache/face3d``); created."""
    root = os.environ.get("FACE3D_CACHE")
    p = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "face3d"
    p.mkdir(parents=True, exist_ok=True)
    return p


def assets_dir() -> Path:
    """The repository's ``assets/`` folder (shipped inside the package as ``face3d/assets``)."""
    here = Path(__file__).resolve().parent
    packaged = here / "assets"
    return packaged if packaged.exists() else here.parent / "assets"
