"""The values the texture, detail and SDF stages take: a :class:`FaceMesh` (a ``face3d.renderers.Mesh``
with the model's vertex regions) and a :class:`View` (one photo, its camera and lighting).

Units and frames (docs/conventions.md): metres, +Y up, +Z toward the viewer; images row 0 at
the top; tensors batch-first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from face3d.errors import ShapeError
from face3d.renderers import Mesh, OrthographicCamera, PerspectiveCamera

if TYPE_CHECKING:
    from face3d.models.model import MorphableModel

Camera = PerspectiveCamera | OrthographicCamera
ImageLike = torch.Tensor | np.ndarray

__all__ = ["Camera", "FaceMesh", "Mesh", "View"]


@dataclass(frozen=True)
class FaceMesh(Mesh):
    """A fitted face mesh: ``face3d.renderers.Mesh`` (vertices (B,V,3) metres, faces (F,3), uvs (T,2),
    uv_faces (F,3), normals (B,V,3) or None) plus ``regions``: name -> (V,) bool vertex masks of
    the model (e.g. 'face')."""

    regions: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_model(cls, model: MorphableModel, vertices: torch.Tensor) -> FaceMesh:
        """``model``'s topology, UVs and regions with ``vertices`` (B,V,3) or (V,3)."""
        return cls(vertices, model.faces, model.uvs, model.uv_faces, regions=dict(model.regions))


def _tensor(x: ImageLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


@dataclass(frozen=True)
class View:
    """One image of the face and how it was seen.

    image (B,H,W,3) float32 in [0, 1] ((H,W,3), uint8 and numpy arrays are converted); camera: a
    batch-B ``face3d.renderers`` camera of the image's size; sh (B,9,3) SH irradiance fitted for the image,
    or None (no de-lighting); mask (B,H,W) per-pixel trust in [0, 1] (e.g. a skin mask) or None;
    weight: weight of its photometric term (SDF); synthetic: a render of the fit, not a photo.
    The stages take views of one image (B = 1).
    """

    image: torch.Tensor
    camera: Camera
    sh: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    weight: float = 1.0
    synthetic: bool = False

    def __post_init__(self) -> None:
        t = _tensor(self.image)
        t = t.unsqueeze(0) if t.ndim == 3 else t
        if t.ndim != 4 or t.shape[-1] != 3 or min(t.shape[1:3]) < 1:
            raise ShapeError("image", "(H, W, 3) or (B, H, W, 3) image in [0, 1]", tuple(t.shape))
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif not t.is_floating_point():
            raise ShapeError("image", "float image in [0, 1] or uint8", str(t.dtype))
        object.__setattr__(self, "image", t.float())
        if self.sh is not None:
            sh = _tensor(self.sh)
            sh = sh.unsqueeze(0) if sh.ndim == 2 else sh
            if sh.ndim != 3 or tuple(sh.shape[1:]) != (9, 3):
                raise ShapeError("sh", "SH coefficients (9, 3) or (B, 9, 3)", tuple(sh.shape))
            object.__setattr__(self, "sh", sh.float())
        if self.mask is not None:
            m = _tensor(self.mask)
            if m.ndim > 2 and m.shape[-1] == 1:
                m = m[..., 0]
            m = m.unsqueeze(0) if m.ndim == 2 else m
            if tuple(m.shape[-2:]) != tuple(t.shape[1:3]) or m.ndim != 3:
                raise ShapeError("mask", f"{tuple(t.shape[1:3])} like its image", tuple(m.shape))
            object.__setattr__(self, "mask", m.float())

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[2])
