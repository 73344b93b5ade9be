"""Where face3d keeps caches and finds the shared test data."""

from __future__ import annotations

import errno
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


def input_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as an input file, in words ('file not found', 'is a folder, not a
    file', 'is a symbolic link loop or points to a missing file', 'file is empty (0 bytes)',
    'cannot read file (Permission denied)'), or None when it is a readable, non-empty file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return "is a symbolic link to a missing file" if p.is_symlink() else "file not found"
    except OSError as exc:  # ELOOP: a symlink loop; ENAMETOOLONG, EACCES on a parent, ...
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (it points back to itself)"
        return f"cannot read file ({exc.strerror or exc})"
    if p.is_dir():
        return "is a folder, not a file"
    if st.st_size == 0:
        return "file is empty (0 bytes)"
    if not os.access(p, os.R_OK):
        return "cannot read file (Permission denied)"
    return None
