"""The image benchmark: one `Runner` per (library, model) with the three timed operations.

Both libraries get the same images (MNIST test set when it is on disk, else random 8-bit
pixels), dequantised once outside the timing; normflows takes them divided by 256. Every
operation is what a user of that library would write:

- train: `zero_grad`, `-log_prob(x).mean()`, `backward`, `Adam.step` (batch size of the config);
- log_prob: `log_prob(x)` under `torch.inference_mode()` in eval mode (same batch size);
- sample: 64 samples under `torch.inference_mode()` (`Flow.sample` / normflows' `sample`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import flowcore
from benchmarks import peers
from flowcore.preprocess import dequantize

SHAPE = (1, 28, 28)
SAMPLES = 64  # images drawn per sampling call
LR = 1e-4  # a small step keeps many repeated steps on a few batches finite; speed does not depend on it
N_BATCHES = 4  # distinct batches cycled through while timing
LIBRARIES = ("flowcore", "normflows")

# --tiny: the same code paths on models small enough for a test that must finish in seconds.
TINY = {
    "nice": ({"couplings": 2, "hidden": 16, "layers": 1}, 8),
    "realnvp": ({"hidden": 4, "blocks": 1}, 8),
    "glow": ({"levels": 2, "steps": 1, "hidden": 8}, 8),
}


MODELS_FILE = Path(__file__).with_name("mnist_models.json")


def model_spec(name: str, models_file: str | Path = MODELS_FILE) -> dict[str, Any]:
    """The benchmark's MNIST model `name`: `{"model": build options, "train": training settings}`
    from `benchmarks/mnist_models.json` (fixed shapes, independent of what `pretrained/` ships)."""
    return json.loads(Path(models_file).read_text())[name]


def load_config(name: str, models_file: str | Path = MODELS_FILE, tiny: bool = False) -> tuple[dict[str, Any], int]:
    """The build options of the benchmark's MNIST model `name` and its batch size."""
    spec = model_spec(name, models_file)
    model, batch = dict(spec["model"]), int(spec["train"]["batch_size"])
    if tiny:
        small, batch = TINY[name]
        model = {**model, **small}
    return model, batch


def images(n: int, data_dir: str | Path | None = None, seed: int = 0) -> tuple[Tensor, str]:
    """`n` 8-bit images `(n, 1, 28, 28)`: the MNIST test set if found, else random pixels."""
    for folder in [data_dir, "../shared/data/mnist", "../../shared/data/mnist", "data"]:
        if folder is None:
            continue
        try:
            x, _ = flowcore.load_mnist("test", folder, download=False)
            return x[:n].clone(), "MNIST test images"
        except Exception:  # noqa: BLE001 - any failure means: not there, use synthetic pixels
            continue
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8), "random 8-bit pixels"


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Runner:
    """One model of one library, ready to be timed: each method runs its operation once."""

    library: str
    name: str
    model: nn.Module
    batches: list[Tensor]  # inputs as this library takes them, already on the device
    batch_size: int
    multiscale: bool = False  # normflows' MultiscaleFlow.log_prob takes a class label (None)
    _i: int = 0

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.last_loss = math.nan

    @property
    def parameters(self) -> int:
        return num_parameters(self.model)

    def _next(self) -> Tensor:
        self._i = (self._i + 1) % len(self.batches)
        return self.batches[self._i]

    def _log_prob(self, x: Tensor) -> Tensor:
        return self.model.log_prob(x, None) if self.multiscale else self.model.log_prob(x)

    def initialize(self) -> None:
        """Data-dependent initialisation (ActNorm) on the first batch, as a trainer does."""
        self.model.train()
        with torch.no_grad():
            self._log_prob(self.batches[0])

    def train_mode(self) -> None:
        self.model.train()

    def eval_mode(self) -> None:
        self.model.eval()

    def train_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = -self._log_prob(self._next()).mean()
        loss.backward()
        self.optimizer.step()
        self.last_loss = loss.detach()

    def log_prob(self) -> None:
        with torch.inference_mode():
            self._log_prob(self._next())

    def sample(self) -> None:
        with torch.inference_mode():
            self.model.sample(SAMPLES)

    def loss_is_finite(self) -> bool:
        return bool(torch.isfinite(torch.as_tensor(self.last_loss)).all())


def make_runner(library: str, name: str, overrides: dict[str, Any], batch_size: int, pixels: Tensor,
                device: torch.device, seed: int = 0) -> Runner:
    """Build `name` in `library` and dequantise `N_BATCHES` batches of `pixels` for it."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(N_BATCHES):
        idx = torch.arange(i * batch_size, (i + 1) * batch_size) % len(pixels)
        batches.append(dequantize(pixels[idx], g))
    if library == "flowcore":
        model = flowcore.build(name, SHAPE, **overrides)
        runner = Runner(library, name, model.to(device), [b.to(device) for b in batches], batch_size)
    elif library == "normflows":
        model = peers.build(name, overrides, SHAPE)
        inputs = [(b / 256.0).flatten(1) if name == "nice" else b / 256.0 for b in batches]
        runner = Runner(library, name, model.to(device), [b.to(device) for b in inputs], batch_size,
                        multiscale=name != "nice")
    else:
        raise ValueError(f"unknown library {library!r}; choose one of {', '.join(LIBRARIES)}")
    runner.initialize()
    return runner
