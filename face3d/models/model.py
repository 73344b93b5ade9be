"""``MorphableModel``: the one API every face model (basic, ICT, FLAME, BFM) exposes.

Convention (docs/conventions.md): metres, right-handed, +Y up, +Z out of the face, float32.

A linear model computes, for a batch of B faces::

    vertices = template + shape @ id_basis + expression @ exp_basis        # (B, V, 3)

then applies the global head rotation ``pose`` (axis-angle, about the model origin).
Articulated models (FLAME) override :meth:`forward` with linear blend skinning.

Coefficients are raw (not normalised): the identity prior is ``N(0, diag(id_std**2))``, so
the prior energy is ``sum((shape / id_std)**2)``. Models whose deltas are "one standard
deviation" (ICT, FLAME) have ``id_std == 1``. Expression weights of ARKit models are in [0, 1].
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from face3d.errors import BadInputError, ModelFileError, ShapeError
from face3d.io.npz import read_npz

FORMAT_VERSION = 1


@dataclass
class LandmarkEmbedding:
    """Landmarks as points on the mesh: triangle index (L,) and barycentric coords (L, 3)."""

    tri: Tensor
    bary: Tensor


TensorOrArray = Tensor | np.ndarray
#: A loader option value :attr:`MorphableModel.load_options` records (text, number or flag).
LoadOption = str | int | float | bool
_V = TypeVar("_V")
REGION_PREFIX, TRI_PREFIX, BARY_PREFIX = "region__", "emb_tri__", "emb_bary__"


@dataclass(frozen=True)
class ModelArrays:
    """The arrays a :class:`MorphableModel` is built from (numpy arrays or tensors, stored by the
    model as float32 / int64 buffers; metres): template (V,3) and faces (F,3); optional identity
    basis (K_id,V,3) with its std (K_id,) (default ones); expression basis (K_exp,V,3) with its
    names; uvs (T,2) with uv_faces (F,3); albedo mean (V,3) per vertex or (H,W,3) in UV space,
    basis (K_alb, ...) and std (K_alb,); regions: name -> bool (V,) mask; embeddings: landmark set
    -> (tri (L,), bary (L,3)) or a :class:`LandmarkEmbedding`."""

    template: TensorOrArray
    faces: TensorOrArray
    id_basis: TensorOrArray | None = None
    id_std: TensorOrArray | None = None
    exp_basis: TensorOrArray | None = None
    exp_names: Sequence[str] | None = None
    uvs: TensorOrArray | None = None
    uv_faces: TensorOrArray | None = None
    albedo_mean: TensorOrArray | None = None
    albedo_basis: TensorOrArray | None = None
    albedo_std: TensorOrArray | None = None
    regions: Mapping[str, TensorOrArray] | None = None
    embeddings: Mapping[str, tuple[TensorOrArray, TensorOrArray] | LandmarkEmbedding] | None = None


class _BufferMap(MutableMapping[str, _V]):
    """A dict-like view of the buffers ``<prefix><name>`` of a model, so that ``model.to()``,
    ``.cuda()`` and ``.double()`` move and cast the values with the rest of the model."""

    def __init__(self, model: MorphableModel, prefix: str) -> None:
        self._model, self._prefix = model, prefix

    def _buffer(self, name: object) -> Tensor:
        t = self._model._buffers.get(self._prefix + name) if isinstance(name, str) else None
        if t is None:
            raise KeyError(name)
        return t

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        return iter([k[n:] for k, t in self._model._buffers.items() if k.startswith(self._prefix) and t is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self)})"


class RegionMap(_BufferMap[Tensor]):
    """``model.regions``: name -> bool (V,) vertex mask, each a buffer ``region__<name>``."""

    def __init__(self, model: MorphableModel) -> None:
        super().__init__(model, REGION_PREFIX)

    def __getitem__(self, name: str) -> Tensor:
        return self._buffer(name)

    def __setitem__(self, name: str, mask: Tensor | np.ndarray) -> None:
        m = self._model
        t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask, dtype=torch.bool)
        if t.shape != (m.n_vertices,):
            raise ShapeError(f"region '{name}'", f"({m.n_vertices},) bool", tuple(t.shape))
        m.register_buffer(REGION_PREFIX + _buffer_name(name, "region"), t.to(m.template.device))

    def __delitem__(self, name: str) -> None:
        self._buffer(name)
        del self._model._buffers[REGION_PREFIX + name]


class EmbeddingMap(_BufferMap[LandmarkEmbedding]):
    """``model.embeddings``: landmark set name -> :class:`LandmarkEmbedding`, stored as buffers
    ``emb_tri__<name>`` (L,) int64 and ``emb_bary__<name>`` (L, 3) float."""

    def __init__(self, model: MorphableModel) -> None:
        super().__init__(model, TRI_PREFIX)

    def __getitem__(self, name: str) -> LandmarkEmbedding:
        return LandmarkEmbedding(self._buffer(name), self._model._buffers[BARY_PREFIX + name])  # type: ignore[arg-type]

    def __setitem__(self, name: str, value: LandmarkEmbedding | tuple[TensorOrArray, TensorOrArray]) -> None:
        self._model.set_embedding(name, *(value if isinstance(value, tuple) else (value.tri, value.bary)))

    def __delitem__(self, name: str) -> None:
        self._buffer(name)
        del self._model._buffers[TRI_PREFIX + name], self._model._buffers[BARY_PREFIX + name]


def _buffer_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise BadInputError(f"{what} name must be a non-empty string without '.', got {name!r}")
    return name


def vertex_embedding(faces: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices as landmark points: for each of ``ids`` (L,), the lowest-numbered triangle of ``faces``
    (F, 3) that uses it and a one-hot barycentric on its corner -> (tri (L,) int64, bary (L, 3) float32)."""
    first = np.full(max(int(faces.max()), int(ids.max())) + 1, -1, dtype=np.int64)
    corner = np.zeros_like(first)
    flat = faces.ravel()
    order = np.arange(flat.size)[::-1]
    first[flat[order]] = order // 3
    corner[flat[order]] = order % 3
    tri = first[ids]
    if (tri < 0).any():
        raise BadInputError(f"landmark vertices {ids[tri < 0].tolist()} are used by no triangle")
    bary = np.zeros((len(ids), 3), np.float32)
    bary[np.arange(len(ids)), corner[ids]] = 1.0
    return tri, bary


#: (3, 9): axis-angle (x, y, z) @ _SKEW = its cross-product matrix, flattened row by row.
_SKEW = torch.tensor([[0.0, 0, 0, 0, 0, -1, 0, 1, 0], [0, 0, 1, 0, 0, 0, -1, 0, 0], [0, -1, 0, 1, 0, 0, 0, 0, 0]])


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues: axis-angle (..., 3) radians -> rotation matrices (..., 3, 3). Differentiable at 0."""
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)  # (...,1,1)
    theta = torch.sqrt(theta2 + 1e-16)
    # [[0, -z, y], [z, 0, -x], [-y, x, 0]] as one product with a ±1/0 matrix (exact: one term per entry)
    skew = (aa @ _SKEW.to(aa)).reshape(aa.shape[:-1] + (3, 3))
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / torch.where(small, torch.ones_like(theta2), theta2))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


_Slices = tuple[Tensor, Tensor, Tensor]


@dataclass
class _SliceMemo:
    """One model's sliced bases: id-set key -> (the buffers they came from, their versions, the
    slices); ``last``: the previous call's id tensor, its version and key (the fitter passes the
    same tensor on every step, so its ids need not be read and hashed again)."""

    slices: dict[tuple[bytes, str], tuple[tuple[weakref.ref[Tensor], ...], tuple[int, ...], _Slices]] = field(default_factory=dict)
    last: tuple[weakref.ref[Tensor], int, tuple[bytes, str]] | None = None


_SLICES: weakref.WeakKeyDictionary[MorphableModel, _SliceMemo] = weakref.WeakKeyDictionary()


_R = TypeVar("_R")
_MODEL_MEMOS: weakref.WeakKeyDictionary[MorphableModel, dict[str, tuple[tuple[Any, ...], tuple[int, ...], Any]]] = weakref.WeakKeyDictionary()


def model_memo(model: MorphableModel, name: str, sources: tuple[Tensor | None, ...], compute: Callable[[], _R]) -> _R:
    """``compute()`` kept per model under ``name`` while ``sources`` (the model's tensors it reads;
    None for an absent one) are the same tensors, unchanged in place; recomputed otherwise. The
    value is shared by every caller: return copies of mutable values, or make them read-only."""
    versions = tuple(-1 if t is None else t._version for t in sources)
    memo = _MODEL_MEMOS.setdefault(model, {})
    hit = memo.get(name)
    if hit is not None and hit[1] == versions and all((r is None and t is None) or (r is not None and r() is t) for r, t in zip(hit[0], sources)):
        return hit[2]  # type: ignore[no-any-return]
    value = compute()
    memo[name] = (tuple(None if t is None else weakref.ref(t) for t in sources), versions, value)
    return value


def sliced_bases(model: MorphableModel, vertices: Tensor) -> _Slices:
    """The template (N, 3) and the flattened identity (K_id, N·3) and expression (K_exp, N·3) bases
    of ``model``'s vertices ``vertices`` (N,) int64, contiguous. Cached per model and id set (up to 8
    sets) while the model's template and bases are the same tensors, unchanged in place: the
    fitter evaluates the same few vertex subsets on every step of every photo."""
    src = (model.template, model.id_basis, model.exp_basis)
    memo = _SLICES.setdefault(model, _SliceMemo())
    last = memo.last
    if last is not None and last[0]() is vertices and last[1] == vertices._version:
        key = last[2]
    else:
        key = (vertices.to(device="cpu", dtype=torch.int64).numpy().tobytes(), str(model.template.device))
        memo.last = (weakref.ref(vertices), vertices._version, key)
    hit = memo.slices.get(key)
    if hit is not None and all(r() is t for r, t in zip(hit[0], src)) and hit[1] == tuple(t._version for t in src):
        return hit[2]
    idx = vertices.to(device=model.template.device, dtype=torch.int64)
    n = idx.shape[0]
    out = (model.template[idx].contiguous(), model.id_basis[:, idx].reshape(model.n_shape, n * 3).contiguous(),
           model.exp_basis[:, idx].reshape(model.n_expression, n * 3).contiguous())
    if len(memo.slices) >= 8:
        memo.slices.clear()
    memo.slices[key] = (tuple(weakref.ref(t) for t in src), tuple(t._version for t in src), out)
    return out


class MorphableModel(nn.Module):
    """A linear 3D morphable face model (identity + expression [+ albedo]) as a torch module.

    Buffers (all float32 unless noted, metres):
      template (V,3); faces (F,3) int64; uvs (T,2) and uv_faces (F,3) optional;
      id_basis (K_id,V,3), id_std (K_id,); exp_basis (K_exp,V,3);
      albedo_mean (V,3) in [0,1] (per vertex) or (H,W,3) (UV), albedo_basis (K_alb, ...), albedo_std (K_alb,).
    ``regions`` (name -> bool (V,) mask) and ``embeddings`` (set name -> LandmarkEmbedding: tri
    (L,) int64, bary (L, 3) float32) are dict-like views of buffers too, so ``.to(device)`` and
    ``.to(dtype)`` move them with the model.
    Attributes: ``name``, ``version``, ``exp_names`` (list of str, ARKit names where they apply),
    ``meta`` (licence, source, units note).
    """

    template: Tensor
    faces: Tensor
    id_basis: Tensor
    id_std: Tensor
    exp_basis: Tensor
    uvs: Tensor | None
    uv_faces: Tensor | None
    albedo_mean: Tensor | None
    albedo_basis: Tensor | None
    albedo_std: Tensor | None

    def __init__(self, arrays: ModelArrays, name: str = "model", version: str = "1", meta: Mapping[str, Any] | None = None) -> None:
        """A model of ``arrays`` (:class:`ModelArrays`: template and faces, the optional bases, UVs,
        albedo, regions and landmark embeddings), called ``name`` at ``version``, with ``meta``."""
        super().__init__()
        f32 = lambda a: torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a, dtype=torch.float32)  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a, dtype=torch.int64)  # noqa: E731
        if not isinstance(arrays, ModelArrays):
            raise BadInputError(f"MorphableModel: expected a ModelArrays, got {type(arrays).__name__}")
        a = arrays
        id_basis, id_std, exp_basis, exp_names, albedo_basis = a.id_basis, a.id_std, a.exp_basis, a.exp_names, a.albedo_basis
        template = f32(a.template)
        if template.ndim != 2 or template.shape[1] != 3:
            raise ShapeError("template", "(V, 3)", tuple(template.shape))
        V = template.shape[0]
        faces = i64(a.faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ShapeError("faces", "(F, 3)", tuple(faces.shape))
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= V):
            raise BadInputError(f"faces index vertices outside [0, {V})")
        self.register_buffer("template", template)
        self.register_buffer("faces", faces)
        id_basis = f32(id_basis) if id_basis is not None else torch.zeros(0, V, 3)
        if id_basis.ndim != 3 or id_basis.shape[1:] != (V, 3):
            raise ShapeError("id_basis", f"(K, {V}, 3)", tuple(id_basis.shape))
        self.register_buffer("id_basis", id_basis)
        self.register_buffer("id_std", f32(id_std) if id_std is not None else torch.ones(id_basis.shape[0]))
        exp_basis = f32(exp_basis) if exp_basis is not None else torch.zeros(0, V, 3)
        if exp_basis.ndim != 3 or exp_basis.shape[1:] != (V, 3):
            raise ShapeError("exp_basis", f"(K, {V}, 3)", tuple(exp_basis.shape))
        self.register_buffer("exp_basis", exp_basis)
        self.exp_names = list(exp_names) if exp_names is not None else [f"exp{i:03d}" for i in range(exp_basis.shape[0])]
        if len(self.exp_names) != exp_basis.shape[0]:
            raise BadInputError(f"exp_names has {len(self.exp_names)} names for {exp_basis.shape[0]} expression shapes")
        self.register_buffer("uvs", f32(a.uvs) if a.uvs is not None else None)
        self.register_buffer("uv_faces", i64(a.uv_faces) if a.uv_faces is not None else None)
        self.register_buffer("albedo_mean", f32(a.albedo_mean) if a.albedo_mean is not None else None)
        self.register_buffer("albedo_basis", f32(albedo_basis) if albedo_basis is not None else None)
        self.register_buffer(
            "albedo_std",
            f32(a.albedo_std) if a.albedo_std is not None else (torch.ones(len(albedo_basis)) if albedo_basis is not None else None),
        )
        self.regions = a.regions or {}
        for k, e in (a.embeddings or {}).items():
            self.set_embedding(k, *(e if isinstance(e, tuple) else (e.tri, e.bary)))
        self.name = name
        self.version = version
        self.meta: dict[str, Any] = dict(meta or {})

    # ---------------------------------------------------------------- sizes
    @property
    def n_vertices(self) -> int:
        return int(self.template.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.id_basis.shape[0])

    @property
    def n_expression(self) -> int:
        return int(self.exp_basis.shape[0])

    @property
    def n_albedo(self) -> int:
        return 0 if self.albedo_basis is None else int(self.albedo_basis.shape[0])

    @property
    def per_vertex_albedo(self) -> bool:
        """True when the albedo model is per vertex: ``albedo_mean`` (V, 3), with ``n_albedo`` modes."""
        a = self.albedo_mean
        return a is not None and a.ndim == 2 and a.shape[0] == self.n_vertices

    @property
    def regions(self) -> RegionMap:
        """Vertex regions: name -> bool (V,) mask (buffers: ``.to()`` moves them)."""
        return RegionMap(self)

    @regions.setter
    def regions(self, masks: Mapping[str, Tensor | np.ndarray]) -> None:
        view = RegionMap(self)
        new = dict(masks)  # may be a view of this model's own regions
        for k in list(view):
            del view[k]
        for k, m in new.items():
            view[k] = m

    @property
    def embeddings(self) -> EmbeddingMap:
        """Landmark embeddings: set name -> :class:`LandmarkEmbedding` (buffers: ``.to()`` moves them)."""
        return EmbeddingMap(self)

    @property
    def is_articulated(self) -> bool:
        """True when the model has joints (FLAME: neck, jaw, eyes) and so overrides :meth:`forward`:
        it takes ``jaw``/``neck``/``eyes``, and its landmarks need the full forward pass."""
        return type(self).forward is not MorphableModel.forward

    @property
    def load_options(self) -> dict[str, LoadOption]:
        """The loader options that rebuild this model as ``load_model(self.name, **load_options)``
        (e.g. ICT's ``{"parts": "face"}``; ``{}`` for the model a name loads); recorded in ``meta``
        by :func:`face3d.models.load_model` and by loaders that select a variant."""
        return dict(self.meta.get("load_options", {}))

    @property
    def has_arkit(self) -> bool:
        """True when the expression basis is named with ARKit blendshape names."""
        from face3d.arkit import ARKIT_INDEX

        return self.n_expression > 0 and all(n in ARKIT_INDEX for n in self.exp_names)

    # ---------------------------------------------------------------- forward
    def _coeffs(self, x: Tensor | None, k: int, B: int, arg: str, ref: Tensor) -> Tensor:
        if x is None:
            return ref.new_zeros(B, k)
        if x.ndim == 1:
            x = x.unsqueeze(0)
        if x.ndim != 2 or x.shape[1] > k:
            raise ShapeError(arg, f"(B, <= {k})", tuple(x.shape))
        if x.shape[1] < k:
            x = torch.cat([x, x.new_zeros(x.shape[0], k - x.shape[1])], 1)
        return x.to(ref.dtype)

    @staticmethod
    def _batch(*xs: Tensor | None) -> int:
        bs = {x.shape[0] if x.ndim > 1 else 1 for x in xs if x is not None}
        if len(bs) > 1:
            raise BadInputError(f"inconsistent batch sizes {sorted(bs)}")
        return bs.pop() if bs else 1

    def blend_shapes(self, shape: Tensor | None, expression: Tensor | None, batch: int, vertices: Tensor | None = None) -> Tensor:
        """Template plus identity and expression offsets, (batch, V, 3) metres, no pose; missing
        coefficients are zero. ``vertices`` (N,) int64 ids: only those vertices, (batch, N, 3), from
        bases sliced once per model and id set (:func:`sliced_bases`)."""
        ref = self.template
        s = self._coeffs(shape, self.n_shape, batch, "shape", ref)
        e = self._coeffs(expression, self.n_expression, batch, "expression", ref)
        if vertices is None:
            tpl, V = ref, self.n_vertices
            idb, exb = self.id_basis.reshape(self.n_shape, V * 3), self.exp_basis.reshape(self.n_expression, V * 3)
        else:
            tpl, idb, exb = sliced_bases(self, vertices)
            V = tpl.shape[0]
        v = tpl.unsqueeze(0) + (s @ idb).reshape(batch, V, 3)
        if self.n_expression:
            v = v + (e @ exb).reshape(batch, V, 3)
        return v

    def forward(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        pose: Tensor | None = None,
        jaw: Tensor | None = None,
        **kwargs: Tensor | None,
    ) -> Tensor:
        """Vertices (B, V, 3) in metres.

        shape (B, K_id) raw identity coefficients (missing trailing ones are 0);
        expression (B, K_exp) expression weights; pose (B, 3) global head rotation,
        axis-angle radians about the model origin. ``jaw``/``neck``/``eyes`` are only
        accepted by articulated models (a linear model raises if they are non-zero).
        """
        for k, v in [("jaw", jaw), *kwargs.items()]:
            if v is not None and bool(torch.any(v != 0)):
                raise BadInputError(f"model '{self.name}' has no articulation: argument '{k}' must be None")
        B = self._batch(shape, expression, pose)
        ref = self.template
        v = self.blend_shapes(shape, expression, B)
        if pose is not None:
            R = axis_angle_to_matrix(pose.reshape(-1, 3).to(ref.dtype))
            v = v @ R.transpose(1, 2)
        return v

    def identity_prior(self, shape: Tensor) -> Tensor:
        """Negative log prior (up to a constant) of identity coefficients: sum((s/std)^2), (B,)."""
        return ((shape / self.id_std[: shape.shape[-1]]) ** 2).sum(-1)

    def albedo(self, coeffs: Tensor | None = None) -> Tensor:
        """Albedo in [0,1]: (B, V, 3) per-vertex or (B, H, W, 3) UV, from raw coefficients (B, K_alb)."""
        if self.albedo_mean is None:
            raise BadInputError(f"model '{self.name}' has no albedo model")
        mean = self.albedo_mean.unsqueeze(0)
        if coeffs is None or self.albedo_basis is None or self.n_albedo == 0:
            return mean if coeffs is None else mean.expand(coeffs.shape[0], *mean.shape[1:])
        c = self._coeffs(coeffs, self.n_albedo, coeffs.shape[0], "coeffs", self.albedo_mean)
        flat = self.albedo_basis.reshape(self.n_albedo, -1)
        return mean + (c @ flat).reshape(c.shape[0], *self.albedo_mean.shape)

    # ---------------------------------------------------------------- landmarks
    def set_embedding(self, name: str, tri: TensorOrArray, bary: TensorOrArray) -> None:
        """Add or replace landmark set ``name``: triangle ids (L,) and barycentric coordinates (L, 3)."""
        _buffer_name(name, "embedding")
        tri_t = torch.as_tensor(np.asarray(tri) if not isinstance(tri, Tensor) else tri, dtype=torch.int64)
        bary_t = torch.as_tensor(np.asarray(bary) if not isinstance(bary, Tensor) else bary, dtype=torch.float32)
        if tri_t.ndim != 1 or bary_t.shape != (tri_t.shape[0], 3):
            raise ShapeError(f"embedding '{name}'", "tri (L,), bary (L, 3)", (tuple(tri_t.shape), tuple(bary_t.shape)))
        if tri_t.numel() and (int(tri_t.min()) < 0 or int(tri_t.max()) >= self.faces.shape[0]):
            raise BadInputError(f"embedding '{name}' refers to triangles outside [0, {self.faces.shape[0]})")
        self.register_buffer(TRI_PREFIX + name, tri_t.to(self.faces.device))
        self.register_buffer(BARY_PREFIX + name, bary_t.to(self.template))

    def landmarks(self, vertices: Tensor, set: str = "ibug68") -> Tensor:
        """Landmark positions (B, L, 3) on ``vertices`` (B, V, 3) for the embedding ``set``
        ('ibug68', 'mediapipe478', or any other registered set)."""
        if set not in self.embeddings:
            raise BadInputError(f"model '{self.name}' has no '{set}' landmark embedding (has {sorted(self.embeddings)})")
        emb = self.embeddings[set]
        tri = self.faces[emb.tri]  # (L,3)
        corners = vertices[:, tri]  # (B,L,3,3)
        return (corners * emb.bary.to(vertices).unsqueeze(0).unsqueeze(-1)).sum(2)

    # ---------------------------------------------------------------- sub-meshes
    def subset(self, vertices: Tensor | np.ndarray, name: str | None = None) -> "MorphableModel":
        """A new model restricted to ``vertices``: a bool mask (V,) or vertex indices.

        Kept vertices stay in their original (ascending) order; triangles survive only when
        all three corners are kept; UVs are compacted to those still referenced; per-vertex
        albedo, regions and bases are sliced. A landmark set survives when all its triangles
        do (triangle ids are renumbered); the names of dropped sets go to
        ``meta['dropped_embeddings']``.
        """
        V = self.n_vertices
        sel = torch.as_tensor(np.asarray(vertices) if not isinstance(vertices, Tensor) else vertices)
        if sel.dtype == torch.bool:
            if sel.shape != (V,):
                raise ShapeError("vertices", f"bool mask ({V},) or int indices", tuple(sel.shape))
            mask = sel.cpu()
        else:
            if sel.ndim != 1 or (sel.numel() and (int(sel.min()) < 0 or int(sel.max()) >= V)):
                raise BadInputError(f"subset: vertex indices must be a 1-D array within [0, {V})")
            mask = torch.zeros(V, dtype=torch.bool)
            mask[sel.long().cpu()] = True
        if not bool(mask.any()):
            raise BadInputError("subset: no vertex selected")
        new_id = torch.full((V,), -1, dtype=torch.int64)
        keep = torch.nonzero(mask).squeeze(1)
        new_id[keep] = torch.arange(keep.numel())
        faces = self.faces.cpu()
        face_keep = mask[faces].all(1)
        new_faces = new_id[faces[face_keep]]
        new_face_id = torch.full((faces.shape[0],), -1, dtype=torch.int64)
        new_face_id[face_keep] = torch.arange(int(face_keep.sum()))
        uvs = uv_faces = None
        if self.uvs is not None and self.uv_faces is not None:
            used, inverse = torch.unique(self.uv_faces.cpu()[face_keep], return_inverse=True)
            uvs, uv_faces = self.uvs.cpu()[used], inverse.reshape(-1, 3)
        embeddings: dict[str, tuple[Tensor, Tensor]] = {}
        dropped = [*self.meta.get("dropped_embeddings", [])]
        for k, e in self.embeddings.items():
            t = new_face_id[e.tri.cpu()]
            if bool((t >= 0).all()):
                embeddings[k] = (t, e.bary)
            else:
                dropped.append(k)
        meta = dict(self.meta)
        if dropped:
            meta["dropped_embeddings"] = dropped
        keep_d = keep.to(self.template.device)
        return MorphableModel(ModelArrays(
            self.template[keep_d], new_faces, id_basis=self.id_basis[:, keep_d], id_std=self.id_std,
            exp_basis=self.exp_basis[:, keep_d], exp_names=self.exp_names, uvs=uvs, uv_faces=uv_faces,
            albedo_mean=self.albedo_mean[keep_d] if self.per_vertex_albedo and self.albedo_mean is not None else self.albedo_mean,
            albedo_basis=self.albedo_basis[:, keep_d] if self.per_vertex_albedo and self.albedo_basis is not None else self.albedo_basis,
            albedo_std=self.albedo_std, regions={k: m.cpu()[mask] for k, m in self.regions.items()}, embeddings=embeddings,
        ), name=name or self.name, version=self.version, meta=meta)

    # ---------------------------------------------------------------- native file format
    def to_npz(self, path: str | Path, compress: bool = True) -> Path:
        """Save in face3d's native model format (npz, float32, atomic write); ``compress=False``
        stores the arrays uncompressed (larger, several times faster to write and read: caches)."""
        from face3d.io.atomic import atomic_path

        arrays: dict[str, np.ndarray] = {}
        for key in ["template", "faces", "id_basis", "id_std", "exp_basis", "uvs", "uv_faces", "albedo_mean", "albedo_basis", "albedo_std"]:
            t = getattr(self, key)
            if t is not None:
                arrays[key] = t.detach().cpu().numpy()
        for k, m in self.regions.items():
            arrays[f"region__{k}"] = m.cpu().numpy()
        for k, e in self.embeddings.items():
            arrays[f"emb_tri__{k}"] = e.tri.cpu().numpy().astype(np.int32)
            arrays[f"emb_bary__{k}"] = e.bary.detach().cpu().float().numpy()
        header = {"format": "face3d-model", "format_version": FORMAT_VERSION, "name": self.name,
                  "version": self.version, "exp_names": self.exp_names, "meta": self.meta}
        arrays["header_json"] = np.array(json.dumps(header))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                (np.savez_compressed if compress else np.savez)(fh, **arrays)  # type: ignore[arg-type]
        return Path(path)

    @classmethod
    def from_npz(cls, path: str | Path) -> "MorphableModel":
        """Load a model saved by :meth:`to_npz`; raises ModelFileError on a wrong/corrupt file."""
        path = Path(path)
        data = read_npz(path, "npz model file")
        if "header_json" not in data:
            raise ModelFileError(path, "not a face3d model file (no header_json)")
        header = json.loads(str(data.pop("header_json")))
        if header.get("format") != "face3d-model":
            raise ModelFileError(path, "not a face3d model file")
        for req in ("template", "faces"):
            if req not in data:
                raise ModelFileError(path, f"missing array '{req}'")
        regions = {k.split("__", 1)[1]: v for k, v in data.items() if k.startswith("region__")}
        embeddings = {k.split("__", 1)[1]: (v, data["emb_bary__" + k.split("__", 1)[1]]) for k, v in data.items() if k.startswith("emb_tri__")}
        kw = {k: data.get(k) for k in ["id_basis", "id_std", "exp_basis", "uvs", "uv_faces", "albedo_mean", "albedo_basis", "albedo_std"]}
        try:
            arrays = ModelArrays(data["template"], data["faces"], exp_names=header.get("exp_names"), regions=regions,
                                 embeddings=embeddings, **kw)
            return cls(arrays, name=header.get("name", path.stem), version=header.get("version", "1"), meta=header.get("meta", {}))
        except (ShapeError, BadInputError) as exc:
            raise ModelFileError(path, f"inconsistent model arrays: {exc}") from None

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, V={self.n_vertices}, F={self.faces.shape[0]}, shape={self.n_shape}, "
                f"expression={self.n_expression}, albedo={self.n_albedo}, landmarks={sorted(self.embeddings)}")
