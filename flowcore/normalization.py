"""Elementwise scalings: ActNorm (Glow) and NICE's diagonal scaling."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowcore.core import Bijection, spatial_size


def _view(p: Tensor, x: Tensor) -> Tensor:
    return p.view(1, -1) if x.dim() == 2 else p.view(1, -1, 1, 1)


class ActNorm(Bijection):
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
