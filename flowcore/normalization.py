"""Elementwise scalings: ActNorm (Glow) and NICE's diagonal scaling."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowcore.core import Bijection, spatial_size
from flowcore.linear import ModeCounted, ParameterCache, _apply, _CachedInverse


def _view(p: Tensor, x: Tensor) -> Tensor:
    return p.view(1, -1) if x.dim() == 2 else p.view(1, -1, 1, 1)


class ActNorm(ModeCounted, Bijection):
    """Per-channel affine `z = (x + bias) * exp(log_scale)` with data-dependent initialisation.

    On the first forward pass in training mode, bias and scale are set so that the
    output has zero mean and unit variance per channel on that batch (averaged over all
    processes when `torch.distributed` is initialised, so every rank gets the same
    parameters). The `initialized` flag is a buffer, so it survives save/load.

    References: Kingma & Dhariwal, Glow (arXiv:1807.03039).
    """

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [0] if x.dim() == 2 else [0, 2, 3]
        n = torch.tensor(float(x.numel() // x.shape[1]), device=x.device, dtype=x.dtype)
        s1 = x.sum(dim=dims)
        s2 = x.pow(2).sum(dim=dims)
        if dist.is_available() and dist.is_initialized():
            stats = torch.cat([s1, s2, n.view(1)])
            dist.all_reduce(stats)
            s1, s2, n = stats[: len(s1)], stats[len(s1) : -1], stats[-1]
        mean = s1 / n
        var = (s2 / n - mean.pow(2)).clamp_min(0)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-0.5 * torch.log(var + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        z = (x + _view(self.bias, x)) * torch.exp(_view(self.log_scale, x))
        log_det = self.log_scale.sum() * spatial_size(x)
        return z, log_det.expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * torch.exp(-_view(self.log_scale, z)) - _view(self.bias, z)
        log_det = -self.log_scale.sum() * spatial_size(z)
        return x, log_det.expand(z.shape[0])

    def fused_with(self, following: Bijection) -> ActNormLinear | None:
        return ActNormLinear(self, following) if isinstance(following, _CachedInverse) else None


class ActNormLinear:
    """An ActNorm followed by an invertible linear map (Glow's first two layers of a step), run
    as one affine map: `W ((x + b) * exp(s)) = (W diag(exp(s))) x + W (b * exp(s))`.

    One 1x1 convolution with a bias instead of an add, a multiply and a convolution over the
    whole tensor; the folded weights are products of C x C matrices. In evaluation they are
    cached (`ParameterCache`). While the ActNorm still waits for its data-dependent
    initialisation (first training batch) the two layers run one after the other. In float32
    the folded bias loses accuracy only where an input channel's mean is thousands of times its
    spread, far from what ActNorm sees in these flows (logits, normalised activations).
    """

    def __init__(self, norm: ActNorm, linear: _CachedInverse) -> None:
        self.norm, self.linear = norm, linear
        self._cache = ParameterCache([norm, linear])

    def _pending_init(self) -> bool:
        return self.norm.training and not bool(self.norm.initialized)

    def _forward_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        scale = torch.exp(self.norm.log_scale)
        weight = self.linear.weight()
        log_det = self.norm.log_scale.sum() + self.linear.log_abs_det()
        return weight * scale, weight @ (self.norm.bias * scale), log_det

    def _inverse_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        weight = self.linear.inverse_weight() * torch.exp(-self.norm.log_scale)[:, None]
        log_det = self.norm.log_scale.sum() + self.linear.log_abs_det()
        return weight, -self.norm.bias, -log_det

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._pending_init():
            z, ld_norm = self.norm(x)
            y, ld_linear = self.linear(z)
            return y, ld_norm + ld_linear
        weight, bias, log_det = self._cache.get("forward", self._forward_weights)
        return _apply(x, weight, bias), (log_det * spatial_size(x)).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        weight, bias, log_det = self._cache.get("inverse", self._inverse_weights)
        return _apply(z, weight, bias), (log_det * spatial_size(z)).expand(z.shape[0])


class DiagonalScaling(Bijection):
    """`z = x * exp(s)` with one learned log-scale per dimension (NICE's last layer).

    Works on vectors `(B, D)` and on any `(B, *shape)` tensor with a scale per element.

    References: Dinh et al., NICE (arXiv:1410.8516).
    """

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x * torch.exp(self.log_scale)
        return z, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * torch.exp(-self.log_scale)
        return x, -self.log_scale.sum().expand(z.shape[0])
