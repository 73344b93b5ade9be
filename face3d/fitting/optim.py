"""A minimal Adam (Kingma & Ba 2015) over groups of tensors with per-group learning rates.

``torch.optim`` imports ``torch._dynamo`` on first use, which costs seconds on a small CPU;
the fitter only needs plain Adam with a step-wise learning-rate schedule.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Adam:
    """Adam over ``groups``: a list of (tensors, learning rate). Tensors must require grad."""

    def __init__(self, groups: list[tuple[list[Tensor], float]], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [(list(ts), float(lr)) for ts, lr in groups]
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self.scale = 1.0
        self.m = {id(x): torch.zeros_like(x) for ts, _ in self.groups for x in ts}
        self.v = {id(x): torch.zeros_like(x) for ts, _ in self.groups for x in ts}

    def zero_grad(self) -> None:
        for ts, _ in self.groups:
            for x in ts:
                x.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every tensor that has a gradient (the same arithmetic per tensor as
        ``m.mul_(b1).add_(g, alpha=1 - b1)``, ... , ``x.addcdiv_(m / c1, sqrt(v / c2) + eps, value=-lr·scale)``,
        as a few ``torch._foreach_*`` calls)."""
        self.t += 1
        c1 = 1 - self.b1**self.t
        c2 = 1 - self.b2**self.t
        xs, lrs = [], []
        for ts, lr in self.groups:
            for x in ts:
                if x.grad is not None:
                    xs.append(x)
                    lrs.append(-lr * self.scale)
        if not xs:
            return
        gs = [x.grad for x in xs]
        ms, vs = [self.m[id(x)] for x in xs], [self.v[id(x)] for x in xs]
        torch._foreach_mul_(ms, self.b1)
        torch._foreach_add_(ms, gs, alpha=1 - self.b1)
        torch._foreach_mul_(vs, self.b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - self.b2)
        denom = torch._foreach_div(vs, c2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(xs, torch._foreach_div(ms, c1), denom, lrs)
