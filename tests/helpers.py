"""Shared test utilities: parameter randomisation, the autograd Jacobian log-det, a hostile pickle,
the small moons data and Glow the trainer tests train."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

import flowcore


def moons(n: int = 1000, seed: int = 0) -> Tensor:
    return flowcore.toy_data("moons", n, seed)


def tiny_glow() -> flowcore.Flow:
    """A 2-D Glow of three steps, seeded: the same weights on every call."""
    torch.manual_seed(0)
    return flowcore.build("glow", (2,), hidden=16, steps=3)


def randomize(module: nn.Module, scale: float = 0.1, seed: int = 0) -> nn.Module:
    """Perturb every parameter so that no layer is the identity it starts as."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) * scale)
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


class MarkerPickle:
    """Unpickling this creates the file `marker`: stands in for any code a pickle could run."""

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))
