"""Helpers for tests and benchmarks: locating ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    """The shared data folder: env ``FACE3D_SHARED_DATA`` or ``<repo>/../shared/data``.

    Raises FileNotFoundError when absent (tests turn that into a failure, not a skip).
    """
    env = os.environ.get("FACE3D_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not p.is_dir():
        raise FileNotFoundError(f"shared data folder not found at {p} (set FACE3D_SHARED_DATA)")
    return p
