"""Argument validation shared by the public functions (raises face3d.errors.ShapeError)."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar, cast

import torch

from face3d.errors import ShapeError

T = TypeVar("T")


class PerTensor:
    """Values memoised per tensor object, valid while its in-place version counter is unchanged
    (held by weak reference, so a freed tensor whose id is reused never hits); LRU of ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[weakref.ref, int, object]] = OrderedDict()

    def get(self, t: torch.Tensor, compute: Callable[[], T]) -> T:
        """The value stored for ``t``, or ``compute()`` stored for it."""
        hit = self._items.get(id(t))
        if hit is not None and hit[0]() is t and hit[1] == t._version:
            self._items.move_to_end(id(t))
            return cast(T, hit[2])
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
    """Check ``t`` is a float32/float64 tensor with ``ndim`` dims (and last dim ``last``); float16 and
    bfloat16 are refused (the kernels compute in float32/float64 only)."""
    if (
        not isinstance(t, torch.Tensor)
        or t.dtype not in (torch.float32, torch.float64)
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


MAX_SIDE = 16384
"""Largest image side the primitives accept (a (1e5, 1e5) request would need 160 GB per channel set)."""
MAX_PIXELS = 1 << 28
"""Largest B·H·W one call may produce (2^28: the (B,H,W,4) float32 output alone is 4 GiB)."""


def resolution_pair(resolution: object, batch: int = 1) -> tuple[int, int]:
    """Check ``resolution`` is (H, W) of ints in [1, MAX_SIDE] with ``batch``·H·W <= MAX_PIXELS."""
    expected = f"(H, W) of ints from 1 to {MAX_SIDE}"
    try:
        h, w = (int(r) for r in resolution)  # type: ignore[attr-defined]
    except (TypeError, ValueError, OverflowError):
        raise ShapeError("resolution", expected, repr(resolution)) from None
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ShapeError("resolution", expected, repr(resolution))
    if batch * h * w > MAX_PIXELS:
        raise ShapeError("resolution", f"batch x H x W <= {MAX_PIXELS} pixels", f"{batch} x {h} x {w}")
    return h, w


def rast_tensor(t: object) -> torch.Tensor:
    """Check ``rast`` is a (B,H,W,4) floating tensor."""
    return float_tensor("rast", t, 4, 4, "float tensor (B,H,W,4) from rasterize")


def batch_match(name: str, n: int, batch: int) -> None:
    """Check a batch dimension ``n`` is ``batch`` or 1."""
    if n not in (1, batch):
        raise ShapeError(name, f"batch size 1 or {batch}", f"batch size {n}")
