"""Shared test utilities: parameter randomisation and the autograd Jacobian log-det."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def randomize(module: nn.Module, scale: float = 0.1, seed: int = 0) -> nn.Module:
    """Perturb every parameter so that no layer is the identity it starts as."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def jacobian_log_det(fn, x: Tensor) -> Tensor:
    """`log|det J|` of `fn` at every sample of `x`, `fn` mapping `(1, *shape)` to `(1, ...)`."""
    out = []
    for xi in x:
        def flat(v: Tensor, shape=xi.shape) -> Tensor:
            return fn(v.view(1, *shape)).reshape(-1)

        jac = torch.autograd.functional.jacobian(flat, xi.reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)
