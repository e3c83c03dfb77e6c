"""Minimal in-place SGD and Adam for lists of tensors.

Why not ``torch.optim``: constructing any ``torch.optim.Optimizer`` imports
``torch._dynamo`` (and sympy), which costs seconds of start-up in every
process (each CLI run, each pytest-xdist worker) for no benefit to a model of
four tensors. These two updates are short and are the textbook rules (Adam as
in Kingma & Ba 2015, Algorithm 1, with bias correction), so the federated
client can reuse them on its user vector as well.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["SGD", "Adam", "Optimizer"]


class Optimizer:
    """Holds the parameters; subclasses implement :meth:`step`."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Drop the gradients (set to None, so the next backward allocates fresh)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """``p <- p - lr * grad``."""

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.sub_(p.grad, alpha=self.lr)


class Adam(Optimizer):
    """Adam with bias correction; same defaults as ``torch.optim.Adam``."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)
