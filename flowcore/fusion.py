"""Neighbouring layers run as one: the only place that knows which pairs of layers fold together.

`Compose` runs its layers through `plan(layers)`; the layers themselves are written as their
formulas and know nothing of this. One fold exists: an `ActNorm` followed by a linear bijection
(Glow's first two layers of a step) is one affine map,

    W ((x + b) * exp(s)) = (W diag(exp(s))) x + W (b * exp(s)),

so the pair costs one 1x1 convolution with a bias instead of an add, a multiply and a
convolution over the whole tensor; on a GPU that is fewer kernel launches (the measurement is in
BENCHMARKS.md). The folded weights are products of C x C matrices, recomputed at every call. While
the ActNorm waits for its data-dependent initialisation (first training batch) the two layers
run one after the other. In float32 the folded bias loses accuracy only where an input channel's
mean is thousands of times its spread, far from what ActNorm sees in these flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from flowcore.core import Bijection, spatial_size
from flowcore.linear import LinearBijection, _apply
from flowcore.normalization import ActNorm


class Runnable(Protocol):
    """What `Compose` runs: a layer, or several layers as one."""

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]: ...


class ActNormLinear:
    """An `ActNorm` then a `LinearBijection`, run as one affine map (see the module docstring)."""

    def __init__(self, norm: ActNorm, linear: LinearBijection) -> None:
        self.norm, self.linear = norm, linear

    def _log_det(self) -> Tensor:
        return self.norm.log_scale.sum() + self.linear.log_abs_det()

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.norm.training and not bool(self.norm.initialized):
            z, ld_norm = self.norm(x)
            y, ld_linear = self.linear(z)
            return y, ld_norm + ld_linear
        scale = torch.exp(self.norm.log_scale)
        weight = self.linear.weight()
        y = _apply(x, weight * scale, weight @ (self.norm.bias * scale))
        return y, (self._log_det() * spatial_size(x)).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        weight = torch.linalg.inv(self.linear.weight()) * torch.exp(-self.norm.log_scale)[:, None]
        x = _apply(z, weight, -self.norm.bias)
        return x, (-self._log_det() * spatial_size(z)).expand(z.shape[0])


def plan(layers: Sequence[Bijection]) -> list[Runnable]:
    """`layers` as they run: each ActNorm directly followed by a linear bijection as one step."""
    out: list[Runnable] = []
    i = 0
    while i < len(layers):
        if i + 1 < len(layers) and type(layers[i]) is ActNorm and isinstance(layers[i + 1], LinearBijection):
            out.append(ActNormLinear(layers[i], layers[i + 1]))
            i += 2
        else:
            out.append(layers[i])
            i += 1
    return out
