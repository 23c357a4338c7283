"""The bijection interface, composition, and `Flow` (base distribution + transform).

One direction, written down once: `forward` maps data to latent and returns
`(z, log_det)` with `log_det = log|det dz/dx|` of shape `(B,)`; `inverse` maps
latent to data and returns `(x, log_det)` with `log_det = log|det dx/dz|`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from flowcore.layout import standard


class Bijection(nn.Module):
    """An invertible map with a tractable log-determinant.

    Subclasses implement `forward(x) -> (z, log_det)` and `inverse(z) -> (x, log_det)`.
    All state lives in parameters or buffers, so save/load is exact.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in evaluation mode inside the block, back in the mode it had afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def spatial_size(x: Tensor) -> int:
    """Positions per channel: 1 for vectors `(B, D)`, `H * W` for images `(B, C, H, W)`."""
    return 1 if x.dim() == 2 else x[0, 0].numel()


class Compose(Bijection):
    """Bijections applied one after another (data -> latent in the given order)."""

    def __init__(self, layers: Iterable[Bijection]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self._steps: tuple[tuple[int, ...], list[Any]] | None = None

    def steps(self) -> list[Any]:
        """The layers as they run (`flowcore.fusion.plan`: some neighbours as one step), worked
        out on first use and again whenever `layers` changes."""
        ids = tuple(map(id, self.layers))
        if self._steps is None or self._steps[0] != ids:
            from flowcore.fusion import plan  # fusion knows layer types that are built on this module

            self._steps = (ids, plan(list(self.layers)))
        return self._steps[1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps():
            x, ld = step(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = z.new_zeros(z.shape[0])
        for step in reversed(self.steps()):
            z, ld = step.inverse(z)
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

    An image flow may start with a `dequantizer` (`flowcore.dequantization.VariationalDequantizer`):
    a bijection of each pixel's unit cell onto itself, applied before `transform`, whose log-det
    turns the uniform-dequantised density into the variational bound (see that module).

    `flowcore.build` fills `config` and `name`; a flow composed by hand from flowcore's layers
    has no config, and `flowcore.load(path, into=flow)` loads its saved weights into a flow of
    the same structure.
    """

    def __init__(self, transform: Bijection, base: BaseDistribution, shape: tuple[int, ...],
                 config: Any = None, name: str = "custom", metadata: dict[str, Any] | None = None,
                 dequantizer: Bijection | None = None) -> None:
        super().__init__()
        self.transform = transform
        self.base = base
        self.dequantizer = dequantizer  # registered last: its parameters follow the model's
        self.shape = tuple(shape)
        self.config = config  # the frozen config `flowcore.build` made it from; None for a hand-built flow
        self.name = name  # the model family ("nice", "realnvp", "glow") or a name of the user's choice
        self.metadata: dict[str, Any] = dict(metadata or {})  # data set, training, metrics: saved with the weights

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
        return self._run("encode", x)

    def decode(self, z: Tensor) -> Tensor:
        """Latent `(B, D)` -> data `(B, *shape)`, the exact inverse of `encode`."""
        return self._run("decode", z)

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.dequantizer is None:
            z, log_det = self.transform(x)
        else:
            x, cell_log_det = self.dequantizer(x)
            z, log_det = self.transform(x)
            log_det = log_det + cell_log_det
        return z.reshape(z.shape[0], -1), log_det

    def _decode(self, z: Tensor) -> Tensor:
        x, _ = self.transform.inverse(z)
        x = x.reshape(z.shape[0], *self.shape)
        if self.dequantizer is not None:
            x, _ = self.dequantizer.inverse(x)
        return standard(x)

    def compile(self, **options: Any) -> Flow:
        """Run `encode` and `decode` (so `log_prob` and `sample`) through `torch.compile`
        whenever autograd is off: evaluation and sampling. Returns the flow itself.

        `options` go to `torch.compile` (`mode`, `dynamic`, ...). The first call for each input
        shape compiles, which takes tens of seconds on a CPU; later calls are faster (measured in
        BENCHMARKS.md). Training keeps the eager code: with gradients on, nothing changes. Where
        `torch.compile` is not available or fails (no C++ compiler, an unsupported platform or
        Python), a `RuntimeWarning` says so once and the flow goes on without it. Parameter names
        and checkpoints are unchanged.
        """
        try:
            self._compiled = {"encode": torch.compile(self._encode, **options),
                              "decode": torch.compile(self._decode, **options)}
        except Exception as error:  # noqa: BLE001 - checked when wrapping: platform, Python, options
            self._compiled = None
            _warn_compile(error)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # compiled code is bound to this object: copies start uncompiled
        state.pop("_compiled", None)
        return state

    @property
    def compiled(self) -> bool:
        """Whether evaluation and sampling run compiled code (`compile()` called and working)."""
        return bool(self.__dict__.get("_compiled"))

    def _run(self, name: str, arg: Tensor) -> Any:
        eager = self._encode if name == "encode" else self._decode
        compiled = self.__dict__.get("_compiled")
        if not compiled or torch.is_grad_enabled():
            return eager(arg)
        try:
            out = compiled[name](arg)
        except Exception as error:  # noqa: BLE001 - any compiler failure: fall back (bad input fails below)
            out = eager(arg)  # an error of the input itself is raised here, as without compile
            self._compiled = None
            _warn_compile(error)
            return out
        # compiled code may hand back buffers it reuses on the next call (CUDA graphs,
        # mode="reduce-overhead"): the caller gets tensors of its own
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    @property
    def classes(self) -> int:
        """Number of classes the flow is conditioned on (0: unconditional)."""
        return int(getattr(self.base, "classes", 0))

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Log-density of `x` in nats, shape `(B,)`.

        A class-conditional flow gives `log p(x | y)` for labels `y` `(B,)`, and without labels
        the marginal `log p(x)` under a uniform class prior (see `flowcore.conditional`)."""
        z, log_det = self.encode(x)
        if y is not None and not self.classes:
            raise ValueError("this flow is not class-conditional: call log_prob(x) without labels")
        return (self.base.log_prob(z, y) if self.classes else self.base.log_prob(z)) + log_det

    def class_log_probs(self, x: Tensor) -> Tensor:
        """`log p(x | y)` for every class `y`: `(B, K)`; only for class-conditional flows."""
        if not self.classes:
            raise ValueError("this flow is not class-conditional")
        z, log_det = self.encode(x)
        return self.base.log_prob_all(z) + log_det[:, None]

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """The most likely class of each input, `argmax_y p(y | x)` (Bayes' rule, uniform prior): `(B,)`."""
        return self.class_log_probs(x).argmax(dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None, y: Tensor | list[int] | None = None) -> Tensor:
        """Draw `n` samples; `temperature` scales the spread of the base distribution.

        The latent is drawn in the flow's dtype on its device. A class-conditional flow draws
        from `p(x | y)` for labels `y` (`n` of them), or from the marginal when `y` is None
        (classes drawn uniformly with `generator`)."""
        dtype = next((t.dtype for t in self.parameters() if t.is_floating_point()), torch.float32)
        if self.classes:
            if y is None:
                gen_device = generator.device if generator is not None else torch.device("cpu")
                y = torch.randint(0, self.classes, (n,), generator=generator, device=gen_device)
            z = self.base.sample(torch.as_tensor(y), temperature, generator, self.device)
        elif y is not None:
            raise ValueError("this flow is not class-conditional: sample without labels")
        else:
            z = self.base.sample(n, temperature=temperature, generator=generator, device=self.device)
        return self.decode(z.to(dtype))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _warn_compile(error: Exception) -> None:
    warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); "
                  "this flow runs without it from now on", RuntimeWarning, stacklevel=4)


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
