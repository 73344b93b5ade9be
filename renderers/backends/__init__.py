"""Backend registry: the built-in ``torch`` backend and lazily imported optional ones.

A backend is a module exposing ``rasterize(pos, tri, resolution)``, ``interpolate(attr, rast, tri)``,
``texture(tex, uv, filter_mode, boundary_mode)`` and ``antialias(color, rast, pos, tri, topology_hash)``
with the semantics of docs/renderer_api.md (inputs already validated).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from face3d.errors import BackendError, MissingDependencyError

#: backend name → (module relative to this package, the optional package it needs)
_MODULES = {
    "torch": (".torch_cpu", None),
    "nvdiffrast": (".nvdiffrast", "nvdiffrast"),
    "pytorch3d": (".pytorch3d", "pytorch3d"),
}
_current = "torch"


def _probe(package: str) -> bool:
    try:
        importlib.import_module(package)
    except Exception:
        return False
    return True


def get_backend(name: str | None = None) -> ModuleType:
    """The backend module for ``name`` (None = the current default set by :func:`set_backend`)."""
    name = _current if name is None else name
    if name not in _MODULES:
        raise BackendError(f"unknown renderer backend {name!r}; choose one of {sorted(_MODULES)}")
    module, package = _MODULES[name]
    if package is not None and not _probe(package):
        raise MissingDependencyError(package, purpose=f"the '{name}' renderer backend")
    return importlib.import_module(module, __name__)


def set_backend(name: str) -> None:
    """Make ``name`` ('torch' | 'nvdiffrast' | 'pytorch3d') the default backend of all primitives."""
    global _current
    get_backend(name)
    _current = name


def current_backend() -> str:
    """Name of the default backend."""
    return _current


def available_backends() -> list[str]:
    """Names of the backends whose dependencies import here ('torch' always first)."""
    return [n for n, (_, pkg) in _MODULES.items() if pkg is None or _probe(pkg)]
