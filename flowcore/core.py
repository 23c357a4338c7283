"""The bijection interface, composition, and `Flow` (base distribution + transform).

One direction, written down once: `forward` maps data to latent and returns
`(z, log_det)` with `log_det = log|det dz/dx|` of shape `(B,)`; `inverse` maps
latent to data and returns `(x, log_det)` with `log_det = log|det dx/dz|`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class Bijection(nn.Module):
    """An invertible map with a tractable log-determinant.

    Subclasses implement `forward(x) -> (z, log_det)` and `inverse(z) -> (x, log_det)`.
    All state lives in parameters or buffers, so save/load is exact.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def spatial_size(x: Tensor) -> int:
    """Positions per channel: 1 for vectors `(B, D)`, `H * W` for images `(B, C, H, W)`."""
    return 1 if x.dim() == 2 else x[0, 0].numel()


class Compose(Bijection):
    """Bijections applied one after another (data -> latent in the given order)."""

    def __init__(self, layers: Iterable[Bijection]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def trace(self, x: Tensor) -> list[tuple[str, Tensor]]:
        """Outputs after every layer, starting with the input: `[(name, tensor), ...]`."""
        out = [("data", x)]
        for layer in self.layers:
            x, _ = layer(x)
            out.append((type(layer).__name__, x))
        return out


class Flow(nn.Module):
    """A normalizing flow: a base distribution on the latent and a bijective transform.

    `log_prob(x) = base.log_prob(z) + log|det dz/dx|` with `z = transform(x)`.
    Image flows take pixel values on the `[0, 256)` scale (8-bit image + uniform
    noise); any rescaling or logit is a layer of `transform` and counted in its log-det.
    """

    def __init__(self, transform: Bijection, base: BaseDistribution, shape: tuple[int, ...],
                 config: Any = None) -> None:
        super().__init__()
        self.transform = transform
        self.base = base
        self.shape = tuple(shape)
        self.config = config

    @property
    def event_dim(self) -> int:
        """Number of dimensions of one data point (e.g. 784 for MNIST)."""
        return math.prod(self.shape)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data `(B, *shape)` -> latent `(B, D)` and `log|det dz/dx|` `(B,)`."""
        z, log_det = self.transform(x)
        return z.reshape(z.shape[0], -1), log_det

    def decode(self, z: Tensor) -> Tensor:
        """Latent `(B, D)` -> data `(B, *shape)`, the exact inverse of `encode`."""
        x, _ = self.transform.inverse(z)
        return x.reshape(z.shape[0], *self.shape).contiguous()  # layers may hand back channels-last

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density of `x` in nats, shape `(B,)`."""
        z, log_det = self.encode(x)
        return self.base.log_prob(z) + log_det

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` samples; `temperature` scales the spread of the base distribution."""
        z = self.base.sample(n, temperature=temperature, generator=generator, device=self.device)
        return self.decode(z)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class BaseDistribution(nn.Module):
    """A fixed, factorised distribution over `R^D`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample_standard(self, shape: tuple[int, ...], generator: torch.Generator | None,
                        device: torch.device) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        """Samples `(n, D)`; at temperature 0 this is the mode, 0."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        gen_device = generator.device if generator is not None else torch.device(device)
        eps = self.sample_standard((n, self.dim), generator, gen_device)
        return (eps * temperature).to(device)


class StandardNormal(BaseDistribution):
    """N(0, I) in D dimensions."""

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * math.log(2 * math.pi))

    def sample_standard(self, shape, generator, device):
        return torch.randn(shape, generator=generator, device=device)


class StandardLogistic(BaseDistribution):
    """Standard logistic in every dimension, the prior of NICE.

    References: Dinh et al., NICE: Non-linear Independent Components Estimation (arXiv:1410.8516).
    """

    def log_prob(self, z: Tensor) -> Tensor:
        return -(nn.functional.softplus(z) + nn.functional.softplus(-z)).sum(dim=1)

    def sample_standard(self, shape, generator, device):
        u = torch.rand(shape, generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
        return torch.log(u) - torch.log1p(-u)
