"""Pre-processing of pixel values as bijections, and uniform dequantisation.

Image flows take `x` on the `[0, 256)` scale: an 8-bit image plus uniform noise in
`[0, 1)`. Whatever rescaling follows is a bijection whose log-det is counted, so
`Flow.log_prob` is always a density on that scale and bits/dim needs no extra constant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowcore.core import Bijection


def dequantize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """8-bit images (any integer or float dtype holding 0..255) -> float32 in `[0, 256)`."""
    x = images.to(torch.float32)
    noise = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
    return x + noise.to(x.device)


def _sum(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


class Rescale(Bijection):
    """`y = x / 256 - 0.5`, the pre-processing of the Glow paper; log-det `-D log 256`."""

    def __init__(self, scale: float = 256.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x[0].numel()
        return x / self.scale - 0.5, x.new_full((x.shape[0],), -d * math.log(self.scale))

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        d = z[0].numel()
        return (z + 0.5) * self.scale, z.new_full((z.shape[0],), d * math.log(self.scale))


class Logit(Bijection):
    """Real NVP's logit pre-processing: `p = alpha + (1 - 2 alpha) x / 256`, `y = logit(p)`.

    `alpha` keeps `p` away from 0 and 1. Log-det per element:
    `log((1 - 2 alpha) / 256) - log p - log(1 - p)`.

    References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803), section 4.1.
    """

    def __init__(self, alpha: float = 0.05, scale: float = 256.0) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha
        self.scale = scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # p and 1 - p each from its own end of the range: 1 - p near 0 keeps its precision
        # (float32 `log1p(-p)` would lose it for small alpha, where 1 - p is as small as alpha)
        k = (1 - 2 * self.alpha) / self.scale
        log_p, log_1mp = torch.log(self.alpha + k * x), torch.log(self.alpha + k * (self.scale - x))
        log_det = math.log((1 - 2 * self.alpha) / self.scale) - log_p - log_1mp
        return log_p - log_1mp, _sum(log_det)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        p = torch.sigmoid(z)
        x = (p - self.alpha) * self.scale / (1 - 2 * self.alpha)
        # dx/dz = scale / (1 - 2 alpha) * p (1 - p)
        log_det = (math.log(self.scale / (1 - 2 * self.alpha))
                   + nn.functional.logsigmoid(z) + nn.functional.logsigmoid(-z))
        return x, _sum(log_det)
