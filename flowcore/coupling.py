"""Coupling layers: additive (NICE) and affine (RealNVP, Glow), and the masks that split inputs.

A coupling splits its input into a conditioning part `a` and a transformed part `b`;
a conditioner network reads `a` and outputs the parameters of an elementwise bijection
of `b`. The conditioner is passed in as a factory `(in_features, out_features) -> nn.Module`,
so the layer never knows which network it drives.

References:
    Dinh et al., NICE (arXiv:1410.8516); Dinh et al., Density estimation using Real NVP
    (arXiv:1605.08803); Kingma & Dhariwal, Glow (arXiv:1807.03039).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowcore.core import Bijection
from flowcore.layout import channel_halves

Conditioner = Callable[[int, int], nn.Module]


def _sum_except_batch(x: Tensor) -> Tensor:
    return x.sum(dim=tuple(range(1, x.dim())))


class Mask(nn.Module):
    """How a coupling splits its input into (conditioning part, transformed part)."""

    in_features: int  # size (channels for images) of the conditioner's input
    out_features: int  # size (channels) of the transformed part, per parameter

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def merge(self, a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def restrict(self, p: Tensor) -> Tensor:
        """Zero the parameters that fall on the conditioning part (identity for true splits)."""
        return p


class BinaryMask(Mask):
    """A fixed 0/1 pattern: where the mask is 1 the input conditions, where 0 it is transformed.

    The conditioner sees `x * mask` (full size) and its outputs are multiplied by `1 - mask`.
    """

    def __init__(self, mask: Tensor, channels: int) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.in_features = channels
        self.out_features = channels

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.mask.to(x.dtype)
        return x * m, x * (1 - m)

    def merge(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b * (1 - self.mask.to(b.dtype))

    def restrict(self, p: Tensor) -> Tensor:
        return p * (1 - self.mask.to(p.dtype))


class HalfMask(Mask):
    """The first half of dimension 1 conditions the second (or the reverse with `swap`): the
    features of vectors `(B, D)`, the channels of images `(B, C, H, W)`."""

    def __init__(self, features: int, swap: bool = False) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling needs at least 2 features (channels of images), got {features}")
        self.first = features // 2
        self.swap = swap
        self.in_features = features - self.first if swap else self.first
        self.out_features = features - self.in_features

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = channel_halves(x, self.first)
        return (x2, x1) if self.swap else (x1, x2)

    def merge(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([b, a] if self.swap else [a, b], dim=1)


class AlternatingMask(Mask):
    """Vectors `(B, D)`: even indices condition odd ones (or the reverse with `parity=1`).

    A true split, so the conditioner sees only `D/2` inputs, as in NICE. The halves are
    strided views (`x[:, parity::2]`, no gather) and the merge interleaves them with one
    copy: on the small 2-D models a gather and a scatter per coupling are a noticeable part
    of a step (the A/B is in BENCHMARKS.md). `split` and `merge` do not use the index
    buffers `idx_a`, `idx_b` and `inv`; they stay in the `state_dict` because saved models
    hold them, and a strict `load_state_dict` needs the same keys.
    """

    def __init__(self, features: int, parity: int = 0) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling needs at least 2 features, got {features}")
        idx = torch.arange(features)
        idx_a, idx_b = idx[idx % 2 == parity], idx[idx % 2 != parity]
        self.register_buffer("idx_a", idx_a)
        self.register_buffer("idx_b", idx_b)
        self.register_buffer("inv", torch.argsort(torch.cat([idx_a, idx_b])))
        self.parity = parity
        self.in_features = len(idx_a)
        self.out_features = len(idx_b)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.parity :: 2], x[:, 1 - self.parity :: 2]

    def merge(self, a: Tensor, b: Tensor) -> Tensor:
        even, odd = (a, b) if self.parity == 0 else (b, a)
        pairs = odd.shape[1]  # an odd D leaves one even index over, the last one
        z = torch.stack([even[:, :pairs], odd], dim=2).flatten(1)
        return z if even.shape[1] == pairs else torch.cat([z, even[:, pairs:]], dim=1)


class CheckerboardMask(BinaryMask):
    """Images `(B, C, H, W)`: a spatial checkerboard, the same on every channel."""

    def __init__(self, shape: tuple[int, int, int], parity: int = 0) -> None:
        c, h, w = shape
        ij = torch.arange(h)[:, None] + torch.arange(w)[None, :]
        mask = ((ij % 2) == parity).float().expand(c, h, w).clone()
        super().__init__(mask, c)


class AdditiveCoupling(Bijection):
    """`z_b = x_b + t(x_a)`: volume preserving, log-det 0 (NICE)."""

    def __init__(self, mask: Mask, conditioner: Conditioner) -> None:
        super().__init__()
        self.mask = mask
        self.net = conditioner(mask.in_features, mask.out_features)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.mask.split(x)
        z = self.mask.merge(a, b + self.mask.restrict(self.net(a)))
        return z, x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.mask.split(z)
        x = self.mask.merge(a, b - self.mask.restrict(self.net(a)))
        return x, z.new_zeros(z.shape[0])


class AffineCoupling(Bijection):
    """`z_b = x_b * exp(s(x_a)) + t(x_a)` with a bounded log-scale (RealNVP, Glow).

    The raw log-scale `h` is soft-clamped to `s = clamp * tanh(h / clamp)`, so `|s| < clamp`
    and float32 training cannot overflow; at `h = 0` the layer is the identity.
    """

    def __init__(self, mask: Mask, conditioner: Conditioner, clamp: float = 2.0) -> None:
        super().__init__()
        if clamp <= 0:
            raise ValueError(f"clamp must be positive, got {clamp}")
        self.mask = mask
        self.clamp = clamp
        self.net = conditioner(mask.in_features, 2 * mask.out_features)

    def _params(self, a: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(a)
        shift, raw = channel_halves(h, h.shape[1] // 2)
        log_scale = self.clamp * torch.tanh(raw / self.clamp)
        return self.mask.restrict(shift), self.mask.restrict(log_scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.mask.split(x)
        shift, log_scale = self._params(a)
        z = self.mask.merge(a, torch.addcmul(shift, b, torch.exp(log_scale)))  # b * exp(s) + t
        return z, _sum_except_batch(log_scale)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.mask.split(z)
        shift, log_scale = self._params(a)
        x = self.mask.merge(a, (b - shift) * torch.exp(-log_scale))
        return x, -_sum_except_batch(log_scale)
