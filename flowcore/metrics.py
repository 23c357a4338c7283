"""Bits per dimension, defined once.

Image flows take pixel values on the `[0, 256)` scale: an 8-bit image `x` plus uniform
noise `u ~ U[0, 1)^D`. `Flow.log_prob` is a density on that scale, so

    bits/dim = E_u[-log p(x + u)] / (D ln 2)

with no extra constant; any rescaling or logit inside the flow is in its log-det.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowcore.core import Flow, evaluating
from flowcore.preprocess import dequantize


def nats_to_bits_per_dim(nll_nats: Tensor | float, dim: int) -> Tensor | float:
    """Negative log-likelihood in nats per data point -> bits per dimension."""
    return nll_nats / (dim * math.log(2))


@torch.inference_mode()
def nll_per_image(flow: Flow, images_uint8: Tensor, batch_size: int = 500,
                  generator: torch.Generator | None = None) -> Tensor:
    """`-log p(x + u)` in nats for every image (one noise draw each), float64 `(N,)`."""
    device = flow.device
    out = []
    for start in range(0, len(images_uint8), batch_size):
        x = dequantize(images_uint8[start : start + batch_size], generator).to(device)
        out.append(-flow.log_prob(x).double().cpu())
    return torch.cat(out)


def bits_per_dim(flow: Flow, images_uint8: Tensor, batch_size: int = 500,
                 generator: torch.Generator | None = None) -> float:
    """Mean bits/dim of `images_uint8` `(N, C, H, W)` (values 0..255) under uniform dequantisation."""
    if images_uint8.dim() != 4 or tuple(images_uint8.shape[1:]) != tuple(flow.shape):
        raise ValueError(f"expected images of shape (N, {', '.join(map(str, flow.shape))}), "
                         f"got {tuple(images_uint8.shape)}")
    with evaluating(flow):
        nll = nll_per_image(flow, images_uint8, batch_size, generator)
    return float(nats_to_bits_per_dim(nll.mean(), flow.event_dim))
