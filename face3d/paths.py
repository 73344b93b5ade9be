"""Where face3d keeps caches and finds the shared test data."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder (env ``FACE3D_CACHE``, default ``~/.cache/face3d``); created."""
    root = os.environ.get("FACE3D_CACHE")
    p = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "face3d"
    p.mkdir(parents=True, exist_ok=True)
    return p


def assets_dir() -> Path:
    """The ``assets/`` folder: the source checkout's (editable installs, the README's way), else
    the copy a wheel installs under ``<data prefix>/share/face3d/assets`` (environment or user
    scheme). If none exists, the checkout path (so errors name where it was expected)."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "assets"
    candidates = [checkout] if (here.parent / "pyproject.toml").exists() else []
    for scheme in (None, f"{os.name}_user"):
        try:
            data = sysconfig.get_path("data", scheme) if scheme else sysconfig.get_path("data")
        except KeyError:
            continue
        candidates.append(Path(data) / "share" / "face3d" / "assets")
    for c in candidates:
        if (c / "basic").is_dir():
            return c
    return checkout
