"""NICE, RealNVP and Glow: a frozen config per family and a builder for each variant.

`shape == (D,)` builds the vector variant (MLP conditioners, for 2-D toy data);
`shape == (C, H, W)` builds the image variant. `build(name, shape, **overrides)` is the
one entry point; a config stores everything needed to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from flowcore.conditional import ClassConditionalNormal
from flowcore.core import BaseDistribution, Bijection, Compose, Flow, StandardLogistic, StandardNormal
from flowcore.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    AlternatingMask,
    CheckerboardMask,
    HalfMask,
)
from flowcore.dequantization import VariationalDequantizer
from flowcore.linear import LUInvertibleLinear
from flowcore.nets import MLP, GlowNet, HalfResolution, ResNet, ZeroConv
from flowcore.normalization import ActNorm, DiagonalScaling
from flowcore.preprocess import Logit
from flowcore.priors import LearnedPrior, Split
from flowcore.reshape import Flatten, Squeeze
from flowcore.validate import check_ints, reject_unknown

PRIORS = ("gaussian", "logistic")
DEQUANTIZERS = ("uniform", "variational")


@dataclass(frozen=True, kw_only=True)
class Dequantization:
    """How every image model takes its noise: the fields all three configs share (keyword-only, so
    each family's own fields keep their places in the constructor)."""

    dequantizer: str = "uniform"  # images only: "uniform" noise or a learned "variational" q(u | x)
    dequantizer_couplings: int = 2  # variational: checkerboard couplings of q (flowcore.dequantization)
    dequantizer_hidden: int = 32  # variational: conv channels of q's conditioners


@dataclass(frozen=True)
class NICEConfig(Dequantization):
    """NICE: additive couplings, a diagonal scaling, a factorised prior (arXiv:1410.8516)."""

    shape: tuple[int, ...]
    couplings: int = 4  # number of additive coupling layers
    hidden: int = 64  # width of each conditioner MLP
    layers: int = 3  # hidden layers per conditioner MLP
    prior: str = "logistic"  # base distribution: "logistic" (as in the paper) or "gaussian"
    logit_alpha: float = 0.05  # images only: logit pre-processing margin


@dataclass(frozen=True)
class RealNVPConfig(Dequantization):
    """Real NVP: affine couplings; images use a multi-scale architecture (arXiv:1605.08803)."""

    shape: tuple[int, ...]
    couplings: int = 6  # vectors: number of affine couplings
    hidden: int = 64  # MLP width (vectors) or conv channels (images)
    layers: int = 2  # vectors: hidden layers per MLP
    scales: int = 2  # images: number of scales (each but the last squeezes and factors out half)
    blocks: int = 2  # images: residual blocks per conditioner
    clamp: float = 2.0  # bound on the log-scale of each affine coupling
    logit_alpha: float = 0.05  # images only: logit pre-processing margin
    half_res: bool = False  # images: checkerboard conditioners run at half resolution (4x cheaper)
    actnorm: bool = False  # images: an ActNorm after every coupling (for the paper's batch normalisation)
    net_actnorm: bool = False  # images: ActNorm after each hidden convolution of the conditioners


@dataclass(frozen=True)
class GlowConfig(Dequantization):
    """Glow: steps of ActNorm -> invertible 1x1 conv -> affine coupling (arXiv:1807.03039)."""

    shape: tuple[int, ...]
    steps: int = 6  # steps of flow (vectors: in total; images: per level)
    hidden: int = 64  # MLP width (vectors) or conv channels (images)
    layers: int = 2  # vectors: hidden layers per MLP
    levels: int = 2  # images: levels (squeeze, steps, split with learned prior)
    clamp: float = 2.0  # bound on the log-scale of each affine coupling
    logit_alpha: float = 0.05  # images only: logit pre-processing margin
    net_actnorm: bool = False  # images: ActNorm after each hidden convolution of the conditioners
    classes: int = 0  # > 0: class-conditional prior over this many classes (flowcore.conditional)


CONFIGS = {"nice": NICEConfig, "realnvp": RealNVPConfig, "glow": GlowConfig}

# Image variants start from these instead of the vector defaults above.
IMAGE_DEFAULTS = {
    "nice": {"hidden": 512, "layers": 4},
    "realnvp": {"hidden": 32},
    "glow": {"steps": 4, "hidden": 64},
}


def _check_image_shape(shape: tuple[int, ...], halvings: int, what: str) -> None:
    _, h, w = shape
    k = 2**halvings
    if h % k or w % k:
        raise ValueError(f"{what} halves height and width {halvings} time(s), so they must be "
                         f"divisible by {k}; got {h}x{w}")


def _base(prior: str, dim: int) -> BaseDistribution:
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    return StandardLogistic(dim) if prior == "logistic" else StandardNormal(dim)


def _nice(c: NICEConfig) -> tuple[Bijection, BaseDistribution]:
    check_ints(c, ("couplings", "hidden", "layers"))
    dim = math.prod(c.shape)
    net = partial(MLP, hidden=c.hidden, layers=c.layers)
    pre: list[Bijection] = [] if len(c.shape) == 1 else [Logit(c.logit_alpha), Flatten(c.shape)]
    couplings = [AdditiveCoupling(AlternatingMask(dim, parity=i % 2), net) for i in range(c.couplings)]
    return Compose([*pre, *couplings, DiagonalScaling(dim)]), _base(c.prior, dim)


def _realnvp_level(c: RealNVPConfig, shape: tuple[int, int, int], scale: int) -> Bijection:
    ch, h, w = shape
    net = partial(ResNet, hidden=c.hidden, blocks=c.blocks, actnorm=c.net_actnorm)
    checker_net = partial(HalfResolution, net=net) if c.half_res and h % 2 == 0 and w % 2 == 0 else net

    def coupling(mask: Any, conditioner: Any, channels: int) -> list[Bijection]:
        layer = AffineCoupling(mask, conditioner, c.clamp)
        return [layer, ActNorm(channels)] if c.actnorm else [layer]

    def checkerboard(i: int) -> list[Bijection]:
        return coupling(CheckerboardMask(shape, i % 2), checker_net, ch)

    if scale == c.scales - 1:
        return Compose([*[m for i in range(4) for m in checkerboard(i)], Flatten(shape)])
    squeezed = (4 * ch, h // 2, w // 2)
    layers: list[Bijection] = [m for i in range(3) for m in checkerboard(i)]
    layers.append(Squeeze())
    layers += [m for i in range(3) for m in coupling(HalfMask(4 * ch, swap=i % 2 == 1), net, 4 * ch)]
    keep = (4 * ch - 2 * ch, h // 2, w // 2)
    layers.append(Split(squeezed, _realnvp_level(c, keep, scale + 1)))
    return Compose(layers)


def _realnvp(c: RealNVPConfig) -> tuple[Bijection, BaseDistribution]:
    if len(c.shape) == 1:
        check_ints(c, ("couplings", "hidden", "layers"))
        net = partial(MLP, hidden=c.hidden, layers=c.layers)
        d = c.shape[0]
        layers = [AffineCoupling(HalfMask(d, swap=i % 2 == 1), net, c.clamp) for i in range(c.couplings)]
        return Compose(layers), StandardNormal(d)
    check_ints(c, ("hidden", "scales"))
    check_ints(c, ("blocks",), minimum=0)
    _check_image_shape(c.shape, c.scales - 1, f"RealNVP with {c.scales} scales")
    body = _realnvp_level(c, c.shape, 0)
    return Compose([Logit(c.logit_alpha), body]), StandardNormal(math.prod(c.shape))


def _glow_step(c: GlowConfig, features: int, mask: Any, net: Any) -> list[Bijection]:
    coupling = AffineCoupling(mask, net, c.clamp)
    return [ActNorm(features), LUInvertibleLinear(features, seed=features), coupling]


def _glow_level(c: GlowConfig, shape: tuple[int, int, int], level: int) -> Bijection:
    ch, h, w = shape
    shape = (4 * ch, h // 2, w // 2)
    net = partial(GlowNet, hidden=c.hidden, actnorm=c.net_actnorm)
    layers: list[Bijection] = [Squeeze()]
    for _ in range(c.steps):
        layers += _glow_step(c, 4 * ch, HalfMask(4 * ch), net)
    if level == c.levels - 1:
        layers += [Flatten(shape), LearnedPrior((math.prod(shape),))]
        return Compose(layers)
    keep = 4 * ch - 2 * ch
    inner = _glow_level(c, (keep, h // 2, w // 2), level + 1)
    layers.append(Split(shape, inner, prior=ZeroConv(keep, 2 * (2 * ch))))
    return Compose(layers)


def _glow(c: GlowConfig) -> tuple[Bijection, BaseDistribution | ClassConditionalNormal]:
    transform = _glow_transform(c)
    dim = math.prod(c.shape)
    if c.classes:
        check_ints(c, ("classes",), minimum=2)
        return transform, ClassConditionalNormal(dim, c.classes)
    return transform, StandardNormal(dim)


def _glow_transform(c: GlowConfig) -> Bijection:
    if len(c.shape) == 1:
        check_ints(c, ("steps", "hidden", "layers"))
        d = c.shape[0]
        net = partial(MLP, hidden=c.hidden, layers=c.layers)
        layers: list[Bijection] = []
        for i in range(c.steps):
            layers += _glow_step(c, d, HalfMask(d, swap=i % 2 == 1), net)
        return Compose(layers)
    check_ints(c, ("steps", "hidden", "levels"))
    _check_image_shape(c.shape, c.levels, f"Glow with {c.levels} levels")
    return Compose([Logit(c.logit_alpha), _glow_level(c, c.shape, 0)])


_BUILDERS = {"nice": _nice, "realnvp": _realnvp, "glow": _glow}


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (D,) or (C, H, W), got {shape!r}") from None
    if len(shape) not in (1, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (D,) or (C, H, W) with positive sizes, got {shape}")
    if len(shape) == 1 and shape[0] < 2:
        raise ValueError(f"vector flows need at least 2 dimensions, got {shape}")
    return shape


def make_config(name: str, shape: Any, **overrides: Any) -> Any:
    """The config `build` would use: defaults for the shape, then `overrides`."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[name]
    shape = _check_shape(shape)
    reject_unknown(overrides, {f.name for f in dataclasses.fields(cls)} - {"shape"}, f"option(s) for {name}")
    defaults = IMAGE_DEFAULTS[name] if len(shape) == 3 else {}
    return cls(shape=shape, **{**defaults, **overrides})


def build(name: str, shape: Any, **overrides: Any) -> Flow:
    """Build a `Flow` by family name (`"nice"`, `"realnvp"`, `"glow"`) for data of `shape`.

    Example: `build("glow", (1, 28, 28), steps=8, hidden=128)`.
    """
    config = make_config(name, shape, **overrides)
    transform, base = _BUILDERS[name](config)
    return Flow(transform, base, config.shape, config, name=name, dequantizer=_dequantizer(config))


def _dequantizer(c: Any) -> VariationalDequantizer | None:
    """The config's learned dequantiser (None: uniform noise, the data pipeline's own)."""
    if c.dequantizer not in DEQUANTIZERS:
        raise ValueError(f"dequantizer must be one of {', '.join(DEQUANTIZERS)}, got {c.dequantizer!r}")
    if c.dequantizer == "uniform":
        return None
    if len(c.shape) != 3:
        raise ValueError("a variational dequantizer is for images (pixel values); vectors are continuous data")
    check_ints(c, ("dequantizer_hidden",))
    check_ints(c, ("dequantizer_couplings",), minimum=0)
    return VariationalDequantizer(c.shape, c.dequantizer_couplings, c.dequantizer_hidden)


def config_dict(flow: Flow) -> dict[str, Any]:
    """JSON-ready description from which `build_from_dict` rebuilds the same architecture.

    A flow composed by hand (no config) is described by its name and shape, marked
    `"hand_built": true`: its architecture is code, so it is loaded into a flow the caller builds."""
    if flow.config is None:
        return {"model": flow.name, "shape": list(flow.shape), "hand_built": True}
    d = dataclasses.asdict(flow.config)
    d["shape"] = list(d["shape"])
    return {"model": flow.name, **d}


def build_from_dict(d: dict[str, Any]) -> Flow:
    d = dict(d)
    name = d.pop("model", None)
    shape = d.pop("shape", None)
    if name is None or shape is None:
        raise ValueError("a model description needs 'model' and 'shape'")
    return build(name, shape, **d)
