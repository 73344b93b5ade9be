"""face3d.renderers: a differentiable mesh renderer with nvdiffrast's four primitives.

``rasterize``, ``interpolate``, ``texture`` and ``antialias`` have nvdiffrast's semantics; the
built-in backend runs a compiled (numba) visibility pass and recomputes everything differentiable
under torch autograd, on CPU or CUDA tensors: on CPU through fused numba kernels with hand-written
backward passes (``set_fused(False)`` for plain torch ops), on CUDA as torch ops. Cameras, SH shading and ``render_mesh`` are built on top.
The contract is docs/renderer_api.md; image orientation follows docs/conventions.md.
"""

from __future__ import annotations

import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # idle OpenMP threads sleep instead of spinning (docs/renderer_api.md, Threading)
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .backends import available_backends, current_backend, set_backend
from .camera import OrthographicCamera, PerspectiveCamera, look_at, perspective_from_fov
from .fused import set_fused
from .mesh import Mesh
from .primitives import antialias, interpolate, rasterize, texture
from .render import RenderOutput, render_mesh
from .shading import SH_C0, ambient_sh, sh_basis, sh_shade, vertex_normals

__all__ = [
    "SH_C0",
    "Mesh",
    "OrthographicCamera",
    "PerspectiveCamera",
    "RenderOutput",
    "ambient_sh",
    "antialias",
    "available_backends",
    "current_backend",
    "interpolate",
    "look_at",
    "perspective_from_fov",
    "rasterize",
    "render_mesh",
    "set_backend",
    "set_fused",
    "sh_basis",
    "sh_shade",
    "texture",
    "vertex_normals",
]
