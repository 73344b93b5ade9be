"""nvdiffrast backend (CUDA): the four primitives map one-to-one onto ``nvdiffrast.torch``.

nvdiffrast already uses this package's conventions (clip y = −1 is row 0, rast = (u, v, z/w,
id + 1)); the adapter only fixes dtypes/contiguity it requires and drops its derivative outputs.
Imported lazily through :func:`face3d.renderers.backends.get_backend`, never by the built-in backend.
"""

from __future__ import annotations

import torch
import nvdiffrast.torch as dr

from face3d.errors import BackendError

NAME = "nvdiffrast"
_contexts: dict[torch.device, object] = {}


def _context(device: torch.device) -> object:
    if device.type != "cuda":
        raise BackendError(f"the nvdiffrast backend needs CUDA tensors, got a tensor on {device}")
    ctx = _contexts.get(device)
    if ctx is None:
        ctx = dr.RasterizeCudaContext(device=device)
        _contexts[device] = ctx
    return ctx


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """nvdiffrast.torch.rasterize with our validated inputs → rast (B,H,W,4)."""
    rast, _ = dr.rasterize(_context(pos.device), pos.float().contiguous(), tri.int().contiguous(), resolution=list(resolution))
    return rast.to(pos.dtype)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """nvdiffrast.torch.interpolate (attribute batch 1 or B, or (V,C))."""
    out, _ = dr.interpolate(attr.float().contiguous(), rast.float().contiguous(), tri.int().contiguous())
    return out.to(torch.promote_types(attr.dtype, rast.dtype))


def texture(tex: torch.Tensor, uv: torch.Tensor, filter_mode: str, boundary_mode: str) -> torch.Tensor:
    """nvdiffrast.torch.texture (no mipmaps)."""
    out = dr.texture(tex.float().contiguous(), uv.float().contiguous(), filter_mode=filter_mode, boundary_mode=boundary_mode)
    return out.to(torch.promote_types(tex.dtype, uv.dtype))


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, topology_hash: object = None) -> torch.Tensor:
    """nvdiffrast.torch.antialias; ``topology_hash`` is passed through when it is nvdiffrast's own."""
    kwargs = {}
    if topology_hash is not None and not isinstance(topology_hash, (str, int, bytes, tuple)):
        kwargs["topology_hash"] = topology_hash
    out = dr.antialias(color.float().contiguous(), rast.float().contiguous(), pos.float().contiguous(), tri.int().contiguous(), **kwargs)
    return out.to(color.dtype)
