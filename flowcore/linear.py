"""Linear bijections on the feature/channel axis: permutations and invertible 1x1 convolutions.

Each works on vectors `(B, D)` (mixing features) and on images `(B, C, H, W)` (mixing
channels at every pixel, i.e. a 1x1 convolution); the log-det of an image is the
matrix log-det times `H * W`.

References: Kingma & Dhariwal, Glow (arXiv:1807.03039).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowcore.core import Bijection, spatial_size


def _apply(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Multiply the channel/feature axis by `weight` (C_out, C_in), then add `bias` if given."""
    if x.dim() == 2:
        return x @ weight.T if bias is None else torch.addmm(bias, x, weight.T)
    return nn.functional.conv2d(x, weight[:, :, None, None], bias)


class Permutation(Bijection):
    """A fixed permutation of features/channels; log-det 0."""

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm.long())
        self.register_buffer("inv_perm", torch.argsort(perm).long())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """Reverses the order of features/channels (RealNVP/Glow's fixed permutation)."""

    def __init__(self, features: int) -> None:
        super().__init__(torch.arange(features - 1, -1, -1))


class Shuffle(Permutation):
    """A random but seeded permutation of features/channels."""

    def __init__(self, features: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        super().__init__(torch.randperm(features, generator=g))


class ParameterCache:
    """Values computed from the parameters of some modules, kept between calls in evaluation.

    A value is reused only while autograd is off (`torch.no_grad` / `inference_mode`) and every
    module is in eval mode; otherwise it is recomputed (with gradients it must stay part of the
    graph). It is recomputed as well when a parameter is replaced (`load_state_dict(assign=True)`,
    `torch.func.functional_call`) or its version counter (bumped by in-place updates:
    `load_state_dict`, most optimiser steps), storage, dtype or device (`.to()`) changes, and after
    every `train()` / `eval()` of the modules, because fused optimiser kernels
    (`torch.optim.Adam(fused=True)`) update parameters without bumping their versions. Writes
    through `.data` are not seen: call `eval()` after them. Not used while `torch.compile` traces,
    nor for parameters created under `torch.inference_mode` (they have no version counter).
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        self._modules = modules
        self._values: dict[str, tuple[tuple, Any]] = {}

    def _key(self) -> tuple:
        params = [p for m in self._modules for p in m.parameters()]
        first = params[0] if params else None  # `.to()` converts all of them together
        return (*[id(p) for p in params], *[p._version for p in params], *[p.data_ptr() for p in params],
                *[getattr(m, "mode_switches", 0) for m in self._modules],
                getattr(first, "dtype", None), getattr(first, "device", None))

    def get(self, name: str, compute: Callable[[], Any]) -> Any:
        if (torch.is_grad_enabled() or torch.compiler.is_compiling()
                or any(m.training for m in self._modules)):
            return compute()
        try:
            key = self._key()
        except RuntimeError:  # inference tensors (made under inference_mode) keep no version counter
            return compute()
        hit = self._values.get(name)
        if hit is None or hit[0] != key:
            hit = (key, compute())
            self._values[name] = hit
        return hit[1]


class ModeCounted(nn.Module):
    """Counts `train()` / `eval()` calls, so that a `ParameterCache` starts afresh after each."""

    mode_switches = 0

    def train(self, mode: bool = True) -> ModeCounted:
        self.mode_switches += 1
        return super().train(mode)


class _CachedInverse(ModeCounted, Bijection):
    """Caches the weight and its inverse until a parameter changes (see `ParameterCache`)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = ParameterCache([self])

    def weight(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def log_abs_det(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _inverse(self) -> tuple[Tensor, Tensor]:
        return self._cache.get("inverse", lambda: (torch.linalg.inv(self.weight()), self.log_abs_det()))

    def inverse_weight(self) -> Tensor:
        return self._inverse()[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weight, log_det = self._cache.get("forward", lambda: (self.weight(), self.log_abs_det()))
        return _apply(x, weight), (log_det * spatial_size(x)).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        weight, log_det = self._inverse()
        return _apply(z, weight), (-log_det * spatial_size(z)).expand(z.shape[0])


def _random_rotation(features: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(features, features, generator=g))
    return q


class InvertibleLinear(_CachedInverse):
    """A full invertible matrix, initialised as a random rotation; log-det by `slogdet`.

    On images this is Glow's invertible 1x1 convolution.
    """

    def __init__(self, features: int, seed: int = 0) -> None:
        super().__init__()
        self.w = nn.Parameter(_random_rotation(features, seed))

    def weight(self) -> Tensor:
        return self.w

    def log_abs_det(self) -> Tensor:
        return torch.linalg.slogdet(self.w)[1]


class LUInvertibleLinear(_CachedInverse):
    """`W = P L (U + diag(sign * exp(log_s)))`: log-det is `sum(log_s)`, O(C) per step.

    `P` and `sign` are fixed buffers; `L` is unit lower triangular, `U` strictly upper.
    """

    def __init__(self, features: int, seed: int = 0) -> None:
        super().__init__()
        p, lower, upper = torch.linalg.lu(_random_rotation(features, seed))
        diag = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("l_mask", torch.tril(torch.ones(features, features), -1))
        self.register_buffer("eye", torch.eye(features))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diag.abs()))

    def weight(self) -> Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def log_abs_det(self) -> Tensor:
        return self.log_s.sum()
