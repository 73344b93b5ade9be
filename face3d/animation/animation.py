"""``Animation``: a face performance as per-frame expression codes, independent of any mesh.

Channels (T frames at ``fps``; every present array has T rows):
  arkit (T, 52) ARKit blendshape weights in ``face3d.arkit.ARKIT_NAMES`` order, in [0, 1];
  expression (T, K) raw expression parameters of the model named ``expression_model``;
  head_pose (T, 3) global head rotation, axis-angle radians (docs/conventions.md);
  jaw (T, 3) and eyes (T, 6) (left then right eye) axis-angle rotations for articulated models;
  visemes (T, 15) viseme activations in ``lipsync.visemes.VISEMES`` order (lip-sync output).
``audio`` is a path (str) to the sound this animation goes with, relative paths as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from face3d.arkit import ARKIT_INDEX, ARKIT_NAMES
from face3d.errors import BadInputError, FileFormatError, ShapeError
from face3d.io.npz import read_npz

if TYPE_CHECKING:
    from face3d.animation.avatar import AvatarSpec
    from face3d.models.model import MorphableModel

FORMAT = "face3d-animation"
FORMAT_VERSION = 1
_ARRAYS = ("arkit", "expression", "head_pose", "jaw", "eyes", "visemes")
_WIDTH = {"arkit": 52, "head_pose": 3, "jaw": 3, "eyes": 6, "visemes": 15}


@dataclass
class Animation:
    """Per-frame face animation; see the module docstring for the channels and units."""

    fps: float
    arkit: np.ndarray | None = None
    expression: np.ndarray | None = None
    expression_model: str | None = None
    head_pose: np.ndarray | None = None
    jaw: np.ndarray | None = None
    eyes: np.ndarray | None = None
    visemes: np.ndarray | None = None
    audio: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.fps = float(self.fps)
        except (TypeError, ValueError):
            raise BadInputError(f"Animation: fps must be a number, got {self.fps!r}") from None
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise BadInputError(f"Animation: fps must be > 0, got {self.fps}")
        n = None
        for name in _ARRAYS:
            a = getattr(self, name)
            if a is None:
                continue
            if isinstance(a, Tensor):
                a = a.detach().cpu().numpy()
            a = np.asarray(a, dtype=np.float32)
            w = _WIDTH.get(name)
            if a.ndim != 2 or (w is not None and a.shape[1] != w):
                raise ShapeError(f"Animation.{name}", f"(T, {w if w else 'K'})", tuple(a.shape))
            if not np.all(np.isfinite(a)):
                raise BadInputError(f"Animation.{name} has non-finite values")
            if n is not None and a.shape[0] != n:
                raise ShapeError(f"Animation.{name}", f"({n}, ...) frames like the other channels", tuple(a.shape))
            n = a.shape[0]
            setattr(self, name, a)
        if n is None:
            raise BadInputError("Animation: give at least one channel (arkit, expression, head_pose, jaw, eyes, visemes)")
        if self.expression is not None and not self.expression_model:
            raise BadInputError("Animation: 'expression' needs 'expression_model' (the model the parameters belong to)")
        if self.audio is not None:
            self.audio = str(self.audio)

    # ------------------------------------------------------------------ basics
    @property
    def n_frames(self) -> int:
        return next(getattr(self, n).shape[0] for n in _ARRAYS if getattr(self, n) is not None)

    @property
    def duration(self) -> float:
        """Seconds: n_frames / fps."""
        return self.n_frames / self.fps

    @property
    def times(self) -> np.ndarray:
        """(T,) frame times in seconds (frame i at i / fps)."""
        return np.arange(self.n_frames, dtype=np.float64) / self.fps

    def weight(self, name: str) -> np.ndarray:
        """(T,) the ARKit weight called ``name``."""
        if self.arkit is None:
            raise BadInputError("Animation has no ARKit weights")
        if name not in ARKIT_INDEX:
            raise BadInputError(f"'{name}' is not an ARKit blendshape name")
        return self.arkit[:, ARKIT_INDEX[name]]

    def resample(self, fps: float) -> "Animation":
        """Linearly interpolated copy at another frame rate (same duration)."""
        if fps <= 0:
            raise BadInputError(f"Animation.resample: fps must be > 0, got {fps}")
        n_new = max(int(round(self.duration * fps)), 1)
        t_new = np.arange(n_new) / fps
        t_old = self.times
        kw = {}
        for name in _ARRAYS:
            a = getattr(self, name)
            if a is not None:
                kw[name] = np.stack([np.interp(t_new, t_old, a[:, j]) for j in range(a.shape[1])], 1).astype(np.float32)
        return Animation(fps=fps, expression_model=self.expression_model, audio=self.audio, meta=dict(self.meta), **kw)

    # ------------------------------------------------------------------ apply to a model
    def apply(self, model: MorphableModel, identity: Tensor | np.ndarray | None = None, batch: int = 256) -> Tensor:
        """Vertices (T, V, 3) in metres of ``model`` (a MorphableModel) playing this animation.

        ``identity``: None (the mean face), raw shape coefficients (K_id,), or a neutral mesh
        (V, 3) that replaces the template (e.g. a reconstruction with detail). Expression comes
        from ``expression`` when it belongs to this model, else from the ARKit weights: matched by
        name on ARKit models, through the cached retargeting matrix (``retarget``) otherwise.
        Head pose rotates about the model origin; jaw/eyes are passed to articulated models only.
        """
        exp = self.expression_for(model)
        V = model.n_vertices
        shape = None
        template = None
        if identity is not None:
            ident = torch.as_tensor(np.asarray(identity) if not isinstance(identity, Tensor) else identity, dtype=torch.float32)
            if ident.ndim == 1:
                shape = ident
            elif ident.shape == (V, 3):
                template = ident
            else:
                raise ShapeError("identity", f"(K_id,) shape coefficients or ({V}, 3) neutral vertices", tuple(ident.shape))
        articulated = model.is_articulated
        out = []
        T = self.n_frames
        with torch.no_grad():
            for s in range(0, T, batch):
                e = torch.as_tensor(exp[s : s + batch]) if exp is not None else None
                B = (e.shape[0] if e is not None else min(batch, T - s))
                kw: dict[str, Tensor] = {}
                if articulated:
                    if self.jaw is not None:
                        kw["jaw"] = torch.as_tensor(self.jaw[s : s + B])
                    if self.eyes is not None:
                        kw["eyes"] = torch.as_tensor(self.eyes[s : s + B])
                sh = shape.unsqueeze(0).expand(B, -1) if shape is not None else None
                v = model(shape=sh, expression=e if e is not None else torch.zeros(B, model.n_expression), **kw)
                if template is not None:
                    v = v - model.template.unsqueeze(0) + template.unsqueeze(0)
                if self.head_pose is not None:
                    from face3d.models.model import axis_angle_to_matrix

                    R = axis_angle_to_matrix(torch.as_tensor(self.head_pose[s : s + B]))
                    v = v @ R.transpose(1, 2)
                out.append(v)
        return torch.cat(out, 0)

    def expression_for(self, model: MorphableModel) -> np.ndarray | None:
        """(T, K_exp) expression parameters of ``model`` for this animation (None if no expression channel)."""
        if self.expression is not None and self.expression_model == getattr(model, "name", None):
            if self.expression.shape[1] > model.n_expression:
                raise ShapeError("Animation.expression", f"(T, <= {model.n_expression}) for model '{model.name}'", self.expression.shape)
            return self.expression
        if self.arkit is None:
            if self.expression is not None:
                raise BadInputError(
                    f"Animation has expression parameters of model '{self.expression_model}' and no ARKit weights: "
                    f"retarget it first (face3d.animation.retarget.retarget_animation) to play it on '{model.name}'")
            return None
        if getattr(model, "has_arkit", False):
            cols = [ARKIT_INDEX[n] for n in model.exp_names]
            return np.ascontiguousarray(self.arkit[:, cols])
        from face3d.animation.retarget import arkit_retargeting

        M = arkit_retargeting(model).matrix  # (52, K)
        return (self.arkit @ M).astype(np.float32)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "fps": self.fps,
                             "n_frames": self.n_frames, "arkit_names": list(ARKIT_NAMES),
                             "expression_model": self.expression_model, "audio": self.audio, "meta": self.meta}
        for name in _ARRAYS:
            a = getattr(self, name)
            d[name] = None if a is None else np.round(a.astype(np.float64), 6).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "Animation":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise FileFormatError(source, f"not a {FORMAT} document")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise FileFormatError(source, f"format_version {d.get('format_version')} is newer than this face3d ({FORMAT_VERSION})")
        names = d.get("arkit_names")
        kw = {}
        for name in _ARRAYS:
            v = d.get(name)
            if v is not None:
                try:
                    kw[name] = np.asarray(v, dtype=np.float32)
                except (TypeError, ValueError):
                    raise FileFormatError(source, f"'{name}' is not a numeric table") from None
        if kw.get("arkit") is not None and names is not None and list(names) != list(ARKIT_NAMES):
            if sorted(names) != sorted(ARKIT_NAMES):
                raise FileFormatError(source, "arkit_names is not a permutation of the 52 ARKit names")
            kw["arkit"] = kw["arkit"][:, [list(names).index(n) for n in ARKIT_NAMES]]
        if d.get("fps") is None:
            raise FileFormatError(source, "missing 'fps'")
        try:
            return cls(fps=float(d["fps"]), expression_model=d.get("expression_model"), audio=d.get("audio"),
                       meta=dict(d.get("meta") or {}), **kw)
        except BadInputError as exc:
            raise FileFormatError(source, str(exc)) from None

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` or ``.npz`` (by suffix), atomically."""
        from face3d.io.atomic import atomic_path, write_text

        p = Path(path)
        if p.suffix.lower() == ".json":
            return write_text(p, json.dumps(self.to_dict()))
        if p.suffix.lower() == ".npz":
            arrays = {n: getattr(self, n) for n in _ARRAYS if getattr(self, n) is not None}
            header = {k: v for k, v in self.to_dict().items() if k not in _ARRAYS}
            with atomic_path(p) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, header_json=np.array(json.dumps(header)), **arrays)
            return p
        raise BadInputError(f"Animation.save: unknown extension '{p.suffix}' for {p} (use .json or .npz)")

    @classmethod
    def load(cls, path: str | Path) -> "Animation":
        """Read a ``.json``/``.npz`` written by :meth:`save`, or a Live Link Face / ARKit ``.csv``."""
        p = Path(path)
        if not p.is_file():
            raise FileFormatError(p, "file not found")
        suffix = p.suffix.lower()
        if suffix == ".json":
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FileFormatError(p, f"invalid JSON ({exc})") from None
            return cls.from_dict(d, str(p))
        if suffix == ".npz":
            data = read_npz(p, "animation npz", FileFormatError)
            try:
                header = json.loads(str(data.pop("header_json")))
            except (KeyError, json.JSONDecodeError) as exc:
                raise FileFormatError(p, f"not a face3d animation npz ({type(exc).__name__}: {exc})") from None
            header.update({k: v for k, v in data.items() if k in _ARRAYS})
            return cls.from_dict(header, str(p))
        if suffix == ".csv":
            from face3d.animation.livelink import read_csv

            return read_csv(p)
        raise BadInputError(f"Animation.load: unknown extension '{p.suffix}' for {p} (use .json, .npz or .csv)")

    def to_gltf(self, avatar: AvatarSpec, path: str | Path, targets: str = "all") -> Path:
        """Export ``avatar`` animated by this animation as one GLB (``targets``: 'all' or 'used'; see
        :func:`face3d.animation.gltf.write_animated_glb`)."""
        from face3d.animation.gltf import write_animated_glb

        return write_animated_glb(self, avatar, path, targets)
