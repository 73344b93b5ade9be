"""Argument validation shared by the public functions (raises face3d.errors.ShapeError)."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch

from face3d.errors import ShapeError


class PerTensor:
    """Values memoised per tensor object, valid while its in-place version counter is unchanged
    (held by weak reference, so a freed tensor whose id is reused never hits); LRU of ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[weakref.ref, int, Any]] = OrderedDict()

    def get(self, t: torch.Tensor, compute: Callable[[], Any]) -> Any:
        """The value stored for ``t``, or ``compute()`` stored for it."""
        hit = self._items.get(id(t))
        if hit is not None and hit[0]() is t and hit[1] == t._version:
            self._items.move_to_end(id(t))
            return hit[2]
        value = compute()
        self._items[id(t)] = (weakref.ref(t), t._version, value)
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


# render_mesh validates the same (F,3) faces in several primitives per call
_RANGE = PerTensor(64)


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"shape {tuple(t.shape)} dtype {t.dtype}"
    return type(t).__name__


def float_tensor(name: str, t: object, ndim: int, last: int | None, expected: str) -> torch.Tensor:
    """Check ``t`` is a floating tensor with ``ndim`` dims (and last dim ``last``)."""
    if (
        not isinstance(t, torch.Tensor)
        or not t.is_floating_point()
        or t.dim() != ndim
        or (last is not None and t.shape[-1] != last)
    ):
        raise ShapeError(name, expected, _desc(t))
    return t


def index_tensor(name: str, t: object, num_vertices: int | None = None) -> torch.Tensor:
    """Check ``t`` is an (F,3) int32/int64 tensor with indices in [0, num_vertices)."""
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64) or t.dim() != 2 or t.shape[1] != 3:
        raise ShapeError(name, "int32/int64 tensor (F,3)", _desc(t))
    if num_vertices is not None and t.numel() > 0:
        lo, hi = _index_range(t)
        if lo < 0 or hi >= num_vertices:
            raise ShapeError(name, f"indices in [0, {num_vertices})", f"index range [{lo}, {hi}]")
    return t


def _index_range(t: torch.Tensor) -> tuple[int, int]:
    def compute() -> tuple[int, int]:
        lo, hi = torch.aminmax(t)
        return int(lo), int(hi)

    return _RANGE.get(t, compute)


def resolution_pair(resolution: object) -> tuple[int, int]:
    """Check ``resolution`` is (H, W) of positive ints."""
    try:
        h, w = (int(r) for r in resolution)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ShapeError("resolution", "(H, W) of positive ints", repr(resolution)) from None
    if h <= 0 or w <= 0:
        raise ShapeError("resolution", "(H, W) of positive ints", repr(resolution))
    return h, w


def rast_tensor(t: object) -> torch.Tensor:
    """Check ``rast`` is a (B,H,W,4) floating tensor."""
    return float_tensor("rast", t, 4, 4, "float tensor (B,H,W,4) from rasterize")


def batch_match(name: str, n: int, batch: int) -> None:
    """Check a batch dimension ``n`` is ``batch`` or 1."""
    if n not in (1, batch):
        raise ShapeError(name, f"batch size 1 or {batch}", f"batch size {n}")
