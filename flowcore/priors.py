"""Learned priors written as bijections onto a standard normal.

Glow models factored-out latents with a Gaussian whose mean and scale are predicted from
the kept half, and the top latent with a learned Gaussian. Writing `eps = (z - mu) / sigma`
as a bijection (log-det `-sum(log sigma)`) gives exactly the same density with a fixed
N(0, I) base, keeps `encode`/`decode` exact, and makes temperature act as in the Glow
paper: sampling `eps ~ N(0, T^2 I)` gives `z = mu + T * sigma * eps`.

References: Kingma & Dhariwal, Glow (arXiv:1807.03039); Dinh et al., Real NVP (arXiv:1605.08803).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowcore.core import Bijection
from flowcore.layout import channel_halves, channels_last


def _bounded(raw: Tensor, bound: float = 5.0) -> Tensor:
    return bound * torch.tanh(raw / bound)


class LearnedPrior(Bijection):
    """A learned Gaussian per element, `eps = (x - mu) * exp(-log_sigma)`, zero-initialised."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(shape))
        self.log_sigma = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_sigma = _bounded(self.log_sigma)
        z = (x - self.mu) * torch.exp(-log_sigma)
        return z, (-log_sigma.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_sigma = _bounded(self.log_sigma)
        x = z * torch.exp(log_sigma) + self.mu
        return x, log_sigma.sum().expand(z.shape[0])


class Split(Bijection):
    """Multi-scale factor-out: half of the channels leave the flow here, the rest go on.

    `x (B, C, H, W)` is split into `x_keep` (first `C - C//2` channels) and `x_out`.
    `x_keep` goes through `inner` (which ends flat); `x_out` is standardised by a Gaussian
    whose mean and log-scale come from `prior(x_keep)` (Glow), or left as it is when
    `prior` is None (Real NVP, standard normal). Output: `cat(inner(x_keep), eps.flatten())`.
    """

    def __init__(self, shape: tuple[int, int, int], inner: Bijection,
                 prior: nn.Module | None = None) -> None:
        super().__init__()
        c, h, w = shape
        if c < 2:
            raise ValueError(f"split needs at least 2 channels, got {c}")
        self.keep = c - c // 2
        self.out_shape = (c // 2, h, w)
        self.keep_dim = self.keep * h * w
        self.inner = inner
        self.prior = prior

    def _standardize_params(self, x_keep: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.prior is None:
            return None
        h = self.prior(x_keep)
        mu, raw = channel_halves(h, h.shape[1] // 2)
        return mu, _bounded(raw)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_keep, x_out = channel_halves(x, self.keep)
        z_keep, log_det = self.inner(x_keep)
        params = self._standardize_params(x_keep)
        if params is not None:
            mu, log_sigma = params
            x_out = (x_out - mu) * torch.exp(-log_sigma)
            log_det = log_det - log_sigma.sum(dim=(1, 2, 3))
        return torch.cat([z_keep.flatten(1), x_out.flatten(1)], dim=1), log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        z_keep, eps = z[:, : self.keep_dim], z[:, self.keep_dim :]
        eps = channels_last(eps.reshape(z.shape[0], *self.out_shape))  # the layout of x_keep
        x_keep, log_det = self.inner.inverse(z_keep)
        params = self._standardize_params(x_keep)
        if params is not None:
            mu, log_sigma = params
            eps = eps * torch.exp(log_sigma) + mu
            log_det = log_det + log_sigma.sum(dim=(1, 2, 3))
        return torch.cat([x_keep, eps], dim=1), log_det
