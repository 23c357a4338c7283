"""Shape-changing bijections: squeeze (space to channels) and flatten. Both have log-det 0.

References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803).
"""

from __future__ import annotations

from torch import Tensor

from flowcore.core import Bijection


class Squeeze(Bijection):
    """Each 2x2 spatial block becomes 4 channels: `(B, C, H, W) -> (B, 4C, H/2, W/2)`."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs even height and width, got {h}x{w}")
        # (B, C, H, W) -> (B, C, H/2, 2, W/2, 2) -> (B, C, 2, 2, H/2, W/2) -> (B, 4C, H/2, W/2)
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        b, c4, h2, w2 = z.shape
        c = c4 // 4
        # (B, 4C, H/2, W/2) -> (B, C, 2, 2, H/2, W/2) -> (B, C, H/2, 2, W/2, 2) -> (B, C, H, W)
        x = z.view(b, c, 2, 2, h2, w2).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h2, 2 * w2), z.new_zeros(b)


class Flatten(Bijection):
    """`(B, *shape) -> (B, D)` and back."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.shape), z.new_zeros(z.shape[0])
