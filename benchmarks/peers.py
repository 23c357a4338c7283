"""The peer library, normflows, built to match the flowcore MNIST models the benchmarks time.

Each builder takes the build options of a flowcore model (`benchmarks/mnist_models.json`) and returns a normflows model
with the same layer structure: same levels, steps, hidden widths, coupling type and
multi-scale split. Where normflows has no exact counterpart the closest layer it ships is
used, and `NOTES` says what differs, so the parameter counts in the report can be read
against it. normflows maps latent -> data in `forward`; its `log_prob` runs the inverses.
Its image models take pixels on `[0, 1]` (flowcore: `[0, 256)`), so the benchmark divides
by 256 before timing.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

try:  # optional: the benchmark reports "not installed" without it
    import normflows as nf
except ImportError:  # pragma: no cover - depends on the environment
    nf = None

NOTES = {
    "nice": "normflows: AffineCouplingBlock(scale=False) with its checkerboard split (odd/even pixels, "
            "the same true split as NICE), nets.MLP conditioners, AffineConstFlow scaling, Logit; "
            "base N(0, I) (normflows has no logistic prior; flowcore's logistic costs slightly more).",
    "realnvp": "normflows: MultiscaleFlow of AffineCouplingBlock (exp scale; checkerboard split on "
               "(C, H, W/2), channel split after the squeeze), nets.ConvResidualNet conditioners with "
               "the same width and blocks (last layer zeroed), Merge, N(0, I) priors, Logit. "
               "flowcore's model runs checkerboard conditioners on the space-to-depth view "
               "(half_res): normflows has no such option, so its conditioners see twice the positions. "
               "Both put an ActNorm after every coupling; flowcore's conditioners also carry ActNorm "
               "(net_actnorm), which normflows' ConvResidualNet cannot.",
    "glow": "normflows: its Glow example: GlowBlock (ActNorm, LU 1x1 conv, affine coupling with "
            "ConvNet2d 3-1-3, ActNorm in it when the config sets net_actnorm, sigmoid scale), Squeeze, "
            "Merge, GlowBase priors, Logit. flowcore's split "
            "prior is conditional (a zero-init 3x3 conv of the kept half) and its top prior is per "
            "element; normflows' GlowBase is per channel: flowcore does slightly more work there.",
}


def available() -> bool:
    return nf is not None


def version() -> str:
    return getattr(nf, "__version__", "?") if nf is not None else "not installed"


def _zero_last(net: nn.Module) -> nn.Module:
    last = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


def nice(cfg: dict[str, Any], shape: tuple[int, ...]) -> nn.Module:
    """NICE: additive couplings over odd/even pixels, diagonal scaling, logit pre-processing."""
    d = math.prod(shape)
    half = d // 2
    couplings = []
    for i in range(cfg.get("couplings", 4)):
        mlp = nf.nets.MLP([half, *[cfg.get("hidden", 512)] * cfg.get("layers", 4), d - half], init_zeros=True)
        mode = "checkerboard" if i % 2 == 0 else "checkerboard_inv"
        couplings.append(nf.flows.AffineCouplingBlock(mlp, scale=False, split_mode=mode))
    # normflows lists flows latent -> data: scaling, couplings in reverse, then the logit.
    flows = [nf.flows.AffineConstFlow((d,), shift=False), *reversed(couplings),
             nf.transforms.Logit(cfg.get("logit_alpha", 0.05))]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), flows)


def _realnvp_net(cin: int, cout: int, cfg: dict[str, Any]) -> nn.Module:
    return _zero_last(nf.nets.ConvResidualNet(cin, cout, cfg.get("hidden", 32), num_blocks=cfg.get("blocks", 2)))


def _then_actnorm(coupling: nn.Module, c: int, cfg: dict[str, Any]) -> list[nn.Module]:
    """A coupling, followed (data -> latent) by a per-channel ActNorm when the config has `actnorm`.

    normflows' ConvResidualNet has no ActNorm inside, so `net_actnorm` is not matched (its
    conditioners end in zeros either way, so the densities at initialisation still agree)."""
    return [coupling, nf.flows.ActNorm((c, 1, 1))] if cfg.get("actnorm") else [coupling]


def _checker(c: int, i: int, cfg: dict[str, Any]) -> list[nn.Module]:
    mode = "checkerboard" if i % 2 == 0 else "checkerboard_inv"
    coupling = nf.flows.AffineCouplingBlock(_realnvp_net(c, 2 * c, cfg), scale=True, scale_map="exp",
                                            split_mode=mode)
    return _then_actnorm(coupling, c, cfg)


def _channel(c: int, i: int, cfg: dict[str, Any]) -> list[nn.Module]:
    mode = "channel" if i % 2 == 0 else "channel_inv"
    coupling = nf.flows.AffineCouplingBlock(_realnvp_net(c // 2, 2 * (c - c // 2), cfg), scale=True,
                                            scale_map="exp", split_mode=mode)
    return _then_actnorm(coupling, c, cfg)


def realnvp(cfg: dict[str, Any], shape: tuple[int, int, int]) -> nn.Module:
    """RealNVP, two or more scales: 3 checkerboard, squeeze, 3 channel couplings, factor out half;
    the last scale 4 checkerboard couplings (the structure of `flowcore.models._realnvp_level`)."""
    scales = cfg.get("scales", 2)
    c, h, w = shape
    levels = []  # data -> latent order: (flows in data -> latent order, shape of the factored-out part)
    for s in range(scales):
        if s == scales - 1:
            levels.append(([m for i in range(4) for m in _checker(c, i, cfg)], (c, h, w)))
            break
        fl = [m for i in range(3) for m in _checker(c, i, cfg)] + [nf.flows.Squeeze()]
        c, h, w = 4 * c, h // 2, w // 2
        fl += [m for i in range(3) for m in _channel(c, i, cfg)]
        levels.append((fl, (c // 2, h, w)))
        c = c - c // 2
    # normflows: index 0 is the deepest level, each list runs latent -> data.
    # Squeeze.forward in normflows goes channels -> space (latent -> data direction).
    flows = [list(reversed(fl)) for fl, _ in reversed(levels)]
    q0 = [nf.distributions.DiagGaussian(out, trainable=False) for _, out in reversed(levels)]
    merges = [nf.flows.Merge() for _ in range(len(levels) - 1)]
    return nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(cfg.get("logit_alpha", 0.05)),
                             class_cond=False)


def glow(cfg: dict[str, Any], shape: tuple[int, int, int]) -> nn.Module:
    """Glow as in normflows' own example: `levels` x (`steps` GlowBlocks), squeeze, merge, GlowBase."""
    levels, steps, hidden = cfg.get("levels", 2), cfg.get("steps", 4), cfg.get("hidden", 64)
    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(levels):  # i = 0 is the deepest level
        channels = c * 2 ** (levels + 1 - i)
        flows.append([nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=True,
                                         net_actnorm=bool(cfg.get("net_actnorm", False)))
                      for _ in range(steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.GlowBase(latent))
    return nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(cfg.get("logit_alpha", 0.05)),
                             class_cond=False)


BUILDERS = {"nice": nice, "realnvp": realnvp, "glow": glow}


def build(name: str, cfg: dict[str, Any], shape: tuple[int, ...]) -> nn.Module:
    """The normflows model matched to flowcore's `name` with config section `cfg`."""
    if nf is None:
        raise RuntimeError("normflows is not installed: pip install -r benchmarks/requirements.txt")
    return BUILDERS[name](cfg, tuple(shape))
