"""What the layers' speed seams earn: `python -m benchmarks.layers_ab [--threads N] [--repeats R]`.

Two seams keep speed work out of the layers: `flowcore.fusion` (an ActNorm and the 1x1
convolution after it run as one affine map) and `flowcore.layout` (images run channels-last).
This script times the same models with each seam switched off, in one process, alternating
the contenders within every repeat (`benchmarks.timing.alternate`), and prints a table of
medians and of each contender's time over the time with both seams on. Models: the benchmarks' MNIST
Glow and RealNVP (`benchmarks/mnist_models.json`, batch 64, `log_prob` of 500 images, 64 samples) and
the dashboard's 2-D Glow and RealNVP (batch 256, `log_prob` and samples of 4,096 points).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

import flowcore
import flowcore.coupling
import flowcore.fusion
import flowcore.layout
import flowcore.nets
import flowcore.priors
import flowcore.reshape
from benchmarks.images import load_config
from benchmarks.timing import alternate, median

_PLAN = flowcore.fusion.plan
_LAYOUT = {name: getattr(flowcore.layout, name)
           for name in ("space_to_depth", "depth_to_space", "channels_last", "channel_halves")}
_USERS = (flowcore.layout, flowcore.reshape, flowcore.nets, flowcore.priors, flowcore.coupling)
MODES = {"both on": (True, True), "no fold": (False, True), "no channels-last": (True, False),
         "both off": (False, False)}


def _contiguous_layout() -> dict[str, Callable]:
    return {"space_to_depth": lambda x: _LAYOUT["space_to_depth"](x).contiguous(),
            "depth_to_space": lambda z, channels_last=False: _LAYOUT["depth_to_space"](z.contiguous()),
            "channels_last": lambda x: x,
            "channel_halves": lambda x, first: (x[:, :first], x[:, first:])}


def set_mode(fold: bool, channels_last: bool) -> None:
    """Switch the seams: `fold` decides for flows built afterwards, `channels_last` at once."""
    flowcore.fusion.plan = _PLAN if fold else list
    functions = _LAYOUT if channels_last else _contiguous_layout()
    for module in _USERS:
        for name, fn in functions.items():
            if hasattr(module, name):
                setattr(module, name, fn)


def tasks(name: str, shape: tuple[int, ...], overrides: dict, batch: int, fold: bool) -> dict[str, Callable]:
    set_mode(fold, True)
    torch.manual_seed(0)
    flow = flowcore.build(name, shape, **overrides)
    image = len(shape) == 3
    x = (torch.randint(0, 256, (500, *shape)).float() + torch.rand(500, *shape)) if image else torch.randn(4096, 2)
    optimizer = torch.optim.Adam(flow.parameters(), 1e-4)

    def train() -> None:
        flow.train()
        optimizer.zero_grad()
        (-flow.log_prob(x[:batch]).mean()).backward()
        optimizer.step()

    def log_prob() -> None:
        flow.eval()
        with torch.no_grad():
            flow.log_prob(x)

    def sample() -> None:
        flow.eval()
        flow.sample(64 if image else 4096)

    train()  # ActNorm's data-dependent initialisation, and the steps of Compose worked out
    return {"train step": train, "log_prob": log_prob, "sample": sample}


MODELS = [("glow", (1, 28, 28), load_config("glow")[0], 64), ("realnvp", (1, 28, 28), load_config("realnvp")[0], 64),
          ("glow", (2,), {}, 256), ("realnvp", (2,), {}, 256)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| model | timing | " + " | ".join(MODES) + " |")
    print("| --- | --- |" + " ---: |" * len(MODES))
    for name, shape, overrides, batch in MODELS:
        per_mode = {mode: tasks(name, shape, overrides, batch, fold) for mode, (fold, _) in MODES.items()}
        for op in ("train step", "log_prob", "sample"):
            fns = [lambda m=mode, f=fns[op]: (set_mode(*MODES[m]), f()) for mode, fns in per_mode.items()]
            calls = 3 if len(shape) == 3 else 20
            times = alternate(fns, args.repeats, calls, 1, torch.device("cpu"))
            base = median(times[0])
            cells = [f"{median(t) * 1e3:.1f} ms ({median(t) / base:.2f}x)" for t in times]
            print(f"| {name} {'x'.join(map(str, shape))} | {op} | " + " | ".join(cells) + " |", flush=True)
    set_mode(True, True)


if __name__ == "__main__":
    sys.exit(main())
