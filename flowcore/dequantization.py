"""Variational dequantisation: a learned noise distribution q(u | x) instead of U[0, 1)^D.

Uniform dequantisation trains a density on `y = x + v`, `v ~ U[0, 1)^D`, and its bits/dim bound
the discrete model's: `E_v[-log p(x + v)] >= -log P(x)`. The bound is loose where the density
is far from flat inside a pixel's unit cell (with a logit pre-processing, black and white pixels
sit where its Jacobian is steepest). Flow++ replaces the uniform noise by a learned `q(u | x)`:

    -log P(x) <= E_{u ~ q(u|x)}[log q(u | x) - log p(x + u)]

`VariationalDequantizer` is that `q`, written as the flow's first bijection: on each unit cell it
maps `y = x + v` to `x + g(v; x)` with `g` a smooth bijection of `(0, 1)^D` onto itself,
conditioned on the integer image `x = floor(y)`. With `u = g(v; x)` and `v` uniform,
`q(u | x) = 1 / |det dg/dv|`, so the composed flow's density of `y` is

    log p(x + u) + log|det dg/dv| = log p(x + u) - log q(u | x),

and its uniform-dequantised NLL is exactly the variational bound above. Bits/dim keeps its one
definition (`flowcore.metrics`), the trainer, `eval` and every page measure the bound without
knowing, and the composed density still integrates to one over `[0, 256)^D` (each cell is mapped
onto itself).

`g`: `eps = logit(v)` (logistic), a per-pixel affine `z = mu(x) + exp(s(x)) eps`, `couplings`
checkerboard affine couplings of `z` conditioned on `x`, then `u = sigmoid(z)`. Every output
convolution starts at zero, so a new dequantiser is the identity (uniform dequantisation) and
can be added to a trained flow without changing its bits/dim.

References: Ho et al., Flow++ (arXiv:1902.00275), section 3.1; Hoogeboom et al., Learning
Discrete Distributions by Dequantization (arXiv:2001.11235).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowcore.core import Bijection

PIXEL_LEVELS = 256  # 8-bit images: integer values 0..255, cells [x, x + 1)
_TINY = 2.0 ** -24  # keeps v and u off 0 and 1, where the logit is infinite


def _sum(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


def _in_cell(cell: Tensor, u: Tensor) -> Tensor:
    """`cell + u`, kept below `cell + 1`: in float32, `u` within about 1e-5 of 1 would round up to
    the next cell (uniform noise has the same limit, `dequantize`); such points stay on the edge."""
    return torch.minimum(cell + u, torch.nextafter(cell + 1, cell))


def _logit(p: Tensor) -> tuple[Tensor, Tensor]:
    """`logit(p)` and its log-derivative `-log p - log(1 - p)`, elementwise."""
    log_p, log_1mp = torch.log(p), torch.log1p(-p)
    return log_p - log_1mp, -log_p - log_1mp


def _checkerboard(height: int, width: int) -> Tensor:
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((rows + cols) % 2).float()[None, None]


class _Conditioner(nn.Module):
    """3x3 conv, ReLU, 3x3 conv, ReLU, 3x3 conv to `2 * channels` outputs (shift, log-scale),
    the last convolution zero-initialised."""

    def __init__(self, inputs: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(inputs, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: Tensor, clamp: float) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(h).chunk(2, dim=1)
        return shift, clamp * torch.tanh(raw / clamp)  # log-scale bounded to (-clamp, clamp)


class VariationalDequantizer(Bijection):
    """`y = x + v` -> `x + u`, `u = g(v; x)`, on images `(B, C, H, W)` of pixel values in `[0, 256)`.

    `couplings` checkerboard couplings after the per-pixel affine, conditioners of `hidden`
    channels; `clamp` bounds every log-scale. The log-det is `log|det dg/dv| = -log q(u | x)`.
    """

    def __init__(self, shape: tuple[int, int, int], couplings: int = 2, hidden: int = 32,
                 clamp: float = 3.0) -> None:
        super().__init__()
        channels, height, width = shape
        self.clamp = clamp
        self.base = _Conditioner(channels, channels, hidden)
        self.couplings = nn.ModuleList(_Conditioner(2 * channels, channels, hidden) for _ in range(couplings))
        self.register_buffer("mask", _checkerboard(height, width), persistent=False)

    @staticmethod
    def _context(cell: Tensor) -> Tensor:
        return cell.clamp(0, PIXEL_LEVELS - 1) / (PIXEL_LEVELS - 1) - 0.5

    def _masks(self) -> list[Tensor]:
        return [self.mask if i % 2 == 0 else 1 - self.mask for i in range(len(self.couplings))]

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        cell = torch.floor(y).detach()
        v = (y - cell).clamp(_TINY, 1 - _TINY)
        context = self._context(cell)
        eps, log_det = _logit(v)  # logistic noise: v uniform <=> eps = logit(v) standard logistic
        shift, log_scale = self.base(context, self.clamp)
        z = shift + eps * torch.exp(log_scale)
        log_det = log_det + log_scale
        for net, mask in zip(self.couplings, self._masks(), strict=True):
            shift, log_scale = net(torch.cat([z * mask, context], dim=1), self.clamp)
            z = z * mask + (1 - mask) * (z * torch.exp(log_scale) + shift)
            log_det = log_det + (1 - mask) * log_scale
        log_det = log_det + F.logsigmoid(z) + F.logsigmoid(-z)  # d sigmoid / d z
        return _in_cell(cell, torch.sigmoid(z)), _sum(log_det)

    def inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        cell = torch.floor(w).detach()
        u = (w - cell).clamp(_TINY, 1 - _TINY)
        context = self._context(cell)
        z, log_det = _logit(u)
        for net, mask in reversed(list(zip(self.couplings, self._masks(), strict=True))):
            shift, log_scale = net(torch.cat([z * mask, context], dim=1), self.clamp)
            z = z * mask + (1 - mask) * (z - shift) * torch.exp(-log_scale)
            log_det = log_det - (1 - mask) * log_scale
        shift, log_scale = self.base(context, self.clamp)
        eps = (z - shift) * torch.exp(-log_scale)
        log_det = log_det - log_scale + F.logsigmoid(eps) + F.logsigmoid(-eps)
        return _in_cell(cell, torch.sigmoid(eps)), _sum(log_det)

