"""Conditioner networks for coupling layers. Every one ends in a zero-initialised layer,
so each coupling starts as the identity and training starts stable.

Each class is called as `Net(in_features, out_features, **hyper_parameters)`; a coupling
receives `functools.partial(Net, **hyper_parameters)` as its factory.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from flowcore.layout import depth_to_space, space_to_depth
from flowcore.normalization import ActNorm


def _zero(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Sequential):
    """`layers` hidden layers of width `hidden` with ReLU, then a zero-initialised linear layer."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, layers: int = 2) -> None:
        mods: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(_zero(nn.Linear(width, out_features)))
        super().__init__(*mods)


class ChannelNorm(nn.Module):
    """ActNorm as a plain layer inside a conditioner: per-channel `(x + b) * exp(s)`, set from the
    first training batch to zero mean and unit variance (the log-det is not needed here)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ActNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)[0]


class GlowNet(nn.Sequential):
    """Glow's conditioner: conv 3x3 -> ReLU -> conv 1x1 -> ReLU -> zero conv 3x3.

    With `actnorm=True`, as in the Glow reference code, each hidden convolution is followed by
    an ActNorm with data initialisation instead of a bias: on MNIST this learns faster per step.

    References: Kingma & Dhariwal, Glow (arXiv:1807.03039), section 3.3.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, actnorm: bool = False) -> None:
        super().__init__(  # in-place ReLUs: a convolution's (or norm's) output is needed by nothing else
            *_conv(in_channels, hidden, 3, actnorm), nn.ReLU(inplace=True),
            *_conv(hidden, hidden, 1, actnorm), nn.ReLU(inplace=True),
            _zero(nn.Conv2d(hidden, out_channels, 3, padding=1)),
        )


def _conv(c_in: int, c_out: int, kernel: int, actnorm: bool) -> list[nn.Module]:
    """A convolution, followed by an ActNorm (in place of its bias) when `actnorm`."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not actnorm)
    return [conv, ChannelNorm(c_out)] if actnorm else [conv]


class ResidualBlock(nn.Module):
    """`x + conv(relu(conv(relu(x))))`, 3x3 convolutions (each with an ActNorm when `actnorm`)."""

    def __init__(self, channels: int, actnorm: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(  # the first ReLU keeps x for the skip; the second may overwrite
            nn.ReLU(), *_conv(channels, channels, 3, actnorm),
            nn.ReLU(inplace=True), *_conv(channels, channels, 3, actnorm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(nn.Sequential):
    """Real NVP's conditioner: conv 3x3 in, `blocks` residual blocks, ReLU, zero conv 3x3 out.

    With `actnorm=True` every hidden convolution is followed by an ActNorm with data
    initialisation (standing in for the paper's batch normalisation).

    References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803), section 4.1.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, blocks: int = 2,
                 actnorm: bool = False) -> None:
        super().__init__(
            *_conv(in_channels, hidden, 3, actnorm),
            *[ResidualBlock(hidden, actnorm) for _ in range(blocks)],
            nn.ReLU(inplace=True),  # its input (a convolution's or a sum's output) is needed by nothing else
            _zero(nn.Conv2d(hidden, out_channels, 3, padding=1)),
        )


class ZeroConv(nn.Conv2d):
    """A zero-initialised 3x3 convolution: Glow's learned prior for factored-out latents."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        _zero(self)


class HalfResolution(nn.Module):
    """Runs a conditioner on the space-to-depth view: `(B, C, H, W) -> (B, 4C, H/2, W/2)`.

    Wrapped around a checkerboard coupling's network, the 3x3 convolutions see a twice
    larger neighbourhood at a quarter of the cost; the mask, and so the maths, is unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, net: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        self.net = net(4 * in_channels, 4 * out_channels)

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, 4C, H/2, W/2) -> net -> (B, 4C', H/2, W/2) -> (B, C', H, W); as
        # pixel_unshuffle / pixel_shuffle, but the network sees a channels-last tensor (faster convolutions)
        return depth_to_space(self.net(space_to_depth(x)))
