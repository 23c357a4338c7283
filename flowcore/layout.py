"""The memory layout of images inside a flow: the one place that knows it.

Image flows run channels-last (`torch.channels_last`, channels innermost at every pixel): the
convolutions of the couplings and priors run markedly faster on it on a CPU (the A/B is in
BENCHMARKS.md). Values, shapes and maths are the usual `(B, C, H, W)` ones everywhere; only
these functions decide where the layout is set, kept and undone:

- `space_to_depth` (squeeze) writes its output channels-last in the one copy it makes anyway;
- `channel_halves` splits channels into two compact halves (a channel slice of a channels-last
  tensor strides over the other channels at every pixel, and elementwise ops on such views run
  an order of magnitude slower: measured tanh 17x, subtraction 60x on a Glow coupling's tensors);
- `channels_last` lays out images that enter the flow from its latent side;
- `standard` hands images back to the caller in the ordinary contiguous layout.
"""

from __future__ import annotations

import torch
from torch import Tensor


def space_to_depth(x: Tensor) -> Tensor:
    """Each 2x2 spatial block becomes 4 channels, `(B, C, H, W) -> (B, 4C, H/2, W/2)`, channels-last.

    Channel `4c + 2i + j` holds pixel `(2y + i, 2x + j)` of channel `c`, as `pixel_unshuffle(x, 2)`.
    One copy, written straight into the channels-last layout: convolutions run faster on it,
    and need no conversion.
    """
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
    # (B, C, H, W) -> (B, C, H/2, 2, W/2, 2) -> (B, H/2, W/2, C, 2, 2), the memory of (B, 4C, H/2, W/2)
    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).contiguous()
    return z.view(b, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)


def depth_to_space(z: Tensor, channels_last: bool = False) -> Tensor:
    """The inverse of `space_to_depth`: `(B, 4C, H/2, W/2) -> (B, C, H, W)`, as `pixel_shuffle(z, 2)`.

    One copy; the result is contiguous, or channels-last with `channels_last=True`.
    """
    b, c4, h2, w2 = z.shape
    c = c4 // 4
    if z.is_contiguous(memory_format=torch.channels_last):
        x = z.permute(0, 2, 3, 1).view(b, h2, w2, c, 2, 2)  # the memory: (B, H/2, W/2, C, 2, 2)
    else:
        x = z.reshape(b, c, 2, 2, h2, w2).permute(0, 4, 5, 1, 2, 3)  # (B, H/2, W/2, C, 2, 2)
    if channels_last:
        # (B, H/2, W/2, C, 2, 2) -> (B, H/2, 2, W/2, 2, C), the memory of (B, C, H, W) channels-last
        x = x.permute(0, 1, 4, 2, 5, 3).contiguous().view(b, 2 * h2, 2 * w2, c)
        return x.permute(0, 3, 1, 2)
    # (B, H/2, W/2, C, 2, 2) -> (B, C, H/2, 2, W/2, 2) -> (B, C, H, W)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * h2, 2 * w2)


def channels_last(x: Tensor) -> Tensor:
    """Images `(B, C, H, W)` laid out channels-last (a copy unless they already are); others as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def channel_halves(x: Tensor, first: int) -> tuple[Tensor, Tensor]:
    """`x[:, :first], x[:, first:]`, each compact when `x` is a channels-last image.

    A channel slice of a channels-last tensor strides over the other channels at every pixel,
    and elementwise ops on such views run an order of magnitude slower (measured: tanh 17x,
    subtraction 60x on a Glow coupling's tensors); one copy of each half is far cheaper.
    """
    x1, x2 = x[:, :first], x[:, first:]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
    return x1, x2


def standard(x: Tensor) -> Tensor:
    """`x` in the ordinary contiguous layout (a copy only if it is not already)."""
    return x.contiguous()
