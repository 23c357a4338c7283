"""Shape-changing bijections: squeeze (space to channels) and flatten. Both have log-det 0.

References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803).
"""

from __future__ import annotations

from torch import Tensor

from flowcore.core import Bijection
from flowcore.layout import channels_last, depth_to_space, space_to_depth


class Squeeze(Bijection):
    """Each 2x2 spatial block becomes 4 channels: `(B, C, H, W) -> (B, 4C, H/2, W/2)`.

    Values and order as `pixel_unshuffle` / `pixel_shuffle`; the memory layout is
    `flowcore.layout`'s business.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return space_to_depth(x), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return depth_to_space(z, channels_last=True), z.new_zeros(z.shape[0])


class Flatten(Bijection):
    """`(B, *shape) -> (B, D)` and back."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return channels_last(z.reshape(z.shape[0], *self.shape)), z.new_zeros(z.shape[0])
