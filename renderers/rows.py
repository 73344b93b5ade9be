"""Row gather / scatter-add with compiled CPU backward passes.

``torch.index_select``'s backward (and ``index_add``) loop over indices with per-row overhead in
torch's CPU kernels; on the 52k-triangle face they were the largest cost of a backward pass.
These autograd functions keep torch semantics and use a numba loop for the accumulation on CPU
(CUDA tensors use torch's own ops). First-order gradients only.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch.autograd.function import once_differentiable


@njit(cache=True)
def _scatter_add(out, idx, vals):
    for i in range(idx.shape[0]):
        r = idx[i]
        for c in range(vals.shape[1]):
            out[r, c] += vals[i, c]


def _accumulate(n_rows: int, idx: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    out = np.zeros((n_rows, vals.shape[1]), dtype=torch.empty(0, dtype=vals.dtype).numpy().dtype)
    if idx.numel():
        _scatter_add(out, idx.contiguous().numpy(), vals.detach().contiguous().numpy())
    return torch.from_numpy(out)


class _TakeRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(idx)
        ctx.n_rows = src.shape[0]
        return src.index_select(0, idx)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        return _accumulate(ctx.n_rows, idx, grad), None


class _AddRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vals: torch.Tensor, idx: torch.Tensor, n_rows: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(idx)
        return _accumulate(n_rows, idx, vals)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        return grad.index_select(0, idx), None, None


def take_rows(src: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """src (R,C), idx (N,) int64 → (N,C) = src[idx]; gradient accumulated by a compiled loop on CPU."""
    if src.device.type != "cpu" or not src.requires_grad:
        return src.index_select(0, idx)
    return _TakeRows.apply(src, idx)


def add_rows(vals: torch.Tensor, idx: torch.Tensor, n_rows: int) -> torch.Tensor:
    """vals (N,C), idx (N,) → (n_rows, C) with out[idx[i]] += vals[i]; compiled on CPU."""
    if vals.device.type != "cpu":
        return torch.zeros(n_rows, vals.shape[1], dtype=vals.dtype, device=vals.device).index_add(0, idx, vals)
    if not vals.requires_grad:
        return _accumulate(n_rows, idx, vals)
    return _AddRows.apply(vals, idx, n_rows)
