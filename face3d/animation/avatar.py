"""``Avatar``: a morphable model with its identity fixed (a reconstruction, or a model's mean face).

``load_avatar(spec)`` accepts a ``face3d reconstruct`` output folder (its ``params.json`` names
the model and the options that load the same variant, e.g. ICT's ``parts="face"``, holds the
identity and the settings the fit ran with; ``albedo.png`` is the UV texture when present, otherwise the
per-vertex albedo of the fitted coefficients; ``normal.png`` its tangent-space normal map when
present), a model name (``default``, ``basic``, ``ict``, ...), a model
file (``.npz``) or an already built ``MorphableModel`` / ``Avatar``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from face3d.errors import BadInputError, FileFormatError
from face3d.models.model import MorphableModel

if TYPE_CHECKING:
    from face3d.fitting.stages import FitConfig


@dataclass
class Avatar:
    """model (MorphableModel); shape (K_id,) raw identity coefficients or None (mean face);
    texture (H, W, 3) float in [0, 1] for the model's UVs, or None; vertex_colors (V, 3) in [0, 1] or None;
    normal_map (H, W, 3) tangent-space normal map in [0, 1] for the model's UVs (used with ``texture``), or None;
    settings: what the reconstruction ran with (params.json's ``settings``: preset, ``fit``, options, method), or {}."""

    model: MorphableModel
    shape: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    name: str = "avatar"
    normal_map: np.ndarray | None = None
    settings: dict[str, object] = field(default_factory=dict)

    def fit_config(self) -> FitConfig | None:
        """The :class:`~face3d.fitting.FitConfig` the reconstruction was fitted with, or None (not from a reconstruction)."""
        from face3d.fitting.stages import FitConfig

        fit = self.settings.get("fit")
        return FitConfig.from_dict(fit) if isinstance(fit, dict) else None

    def neutral(self) -> np.ndarray:
        """(V, 3) float32 neutral-expression vertices in metres."""
        with torch.no_grad():
            s = torch.as_tensor(self.shape, dtype=torch.float32)[None] if self.shape is not None else None
            return self.model(shape=s)[0].numpy()


#: What :func:`load_avatar` accepts: an Avatar, a MorphableModel, a reconstruct output folder, a
#: model name or a model ``.npz``.
AvatarSpec = Union[Avatar, MorphableModel, str, Path]


def _read_texture(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.float32) / 255.0
    except Exception as exc:
        raise FileFormatError(path, f"cannot read texture ({exc})") from None


def _from_folder(folder: Path) -> Avatar:
    params = folder / "params.json"
    if not params.is_file():
        subs = sorted(folder.glob("*/params.json"))
        if not subs:
            raise FileFormatError(folder, "not a face3d reconstruct output folder (no params.json)")
        params = subs[0]
    try:
        info = json.loads(params.read_text(encoding="utf-8"))
        name = info["model"]["name"]
        options = dict(info["model"].get("options") or {})
        settings = dict(info.get("settings") or {})
        shape = np.asarray(info["shape"], np.float32)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(params, f"not a reconstruction params.json ({exc})") from None
    from face3d.models import load_model

    model = load_model(name, **options)
    if shape.shape != (model.n_shape,):
        raise FileFormatError(params, f"{shape.size} identity coefficients, but model '{name}' has {model.n_shape}")
    tex_path = params.parent / "albedo.png"
    texture = _read_texture(tex_path) if tex_path.is_file() and model.uvs is not None else None
    nrm_path = params.parent / "normal.png"
    normal_map = _read_texture(nrm_path) if texture is not None and nrm_path.is_file() else None
    colors = None
    if texture is None and model.albedo_mean is not None and model.albedo_mean.ndim == 2:
        alb = info.get("albedo", {})
        c = np.asarray(alb.get("coeffs", []), np.float32)
        with torch.no_grad():
            a = model.albedo(torch.as_tensor(c)[None] if c.size and model.n_albedo else None)[0].numpy()
        colors = np.clip(a * np.asarray(alb.get("gain", [1, 1, 1]), np.float32), 0, 1)
    return Avatar(model, shape, texture, colors, name=params.parent.name, normal_map=normal_map, settings=settings)


def load_avatar(spec: AvatarSpec) -> Avatar:
    """An :class:`Avatar` from a reconstruct folder, a model name, a model ``.npz`` or a MorphableModel."""
    if isinstance(spec, Avatar):
        return spec
    if isinstance(spec, MorphableModel):
        return _mean_avatar(spec)
    if not isinstance(spec, (str, Path)):
        raise BadInputError(f"avatar: expected a folder, model name, model file or MorphableModel, got {type(spec).__name__}")
    p = Path(spec)
    if p.is_dir():
        return _from_folder(p)
    if p.is_file():
        return _mean_avatar(MorphableModel.from_npz(p))
    from face3d.models import load_model

    return _mean_avatar(load_model(str(spec)))


def _mean_avatar(model: MorphableModel) -> Avatar:
    colors = None
    if model.albedo_mean is not None and model.albedo_mean.ndim == 2:
        colors = np.clip(model.albedo_mean.numpy(), 0, 1)
    texture = None
    if model.albedo_mean is not None and model.albedo_mean.ndim == 3 and model.uvs is not None:
        texture = np.clip(model.albedo_mean.numpy(), 0, 1)
    return Avatar(model, None, texture, colors, name=model.name)
