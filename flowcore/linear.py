"""Linear bijections on the feature/channel axis: permutations and invertible 1x1 convolutions.

Each works on vectors `(B, D)` (mixing features) and on images `(B, C, H, W)` (mixing
channels at every pixel, i.e. a 1x1 convolution); the log-det of an image is the
matrix log-det times `H * W`.

References: Kingma & Dhariwal, Glow (arXiv:1807.03039).
"""

from __future__ import annotations

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


class LinearBijection(Bijection):
    """`z = W x` on the feature/channel axis: log-det `log|det W|` (times `H * W` on images).

    Subclasses give `weight()` and `log_abs_det()`; the inverse multiplies by `W^-1`.
    """

    def weight(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def log_abs_det(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _apply(x, self.weight()), (self.log_abs_det() * spatial_size(x)).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return _apply(z, torch.linalg.inv(self.weight())), (-self.log_abs_det() * spatial_size(z)).expand(z.shape[0])


def _random_rotation(features: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(features, features, generator=g))
    return q


class InvertibleLinear(LinearBijection):
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


class LUInvertibleLinear(LinearBijection):
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
