"""Does the flat parameter vector earn its lines? Training steps/s with and without it.

`python -m benchmarks.flatparams_ab [--repeats 7] [--threads 1] [--quick]` prints a Markdown
table. Both contenders are `flowcore.Trainer`s of the same model, seed and batches in one
process; they differ only in `flowcore.params.parameter_layout`: `FlatVector` (parameters and
gradients as views of one vector each) or `EachTensor` (as they are; `FLAT_LIMIT` set to 0 while
that trainer is made). Each repeat times `calls` steps of each, in turn, the order flipping every
repeat; a rate is the median over repeats and a gain is the median of the per-repeat ratios.
Steps are timed by the CPU time of this process (torch on one thread by default), which other
processes on a shared machine barely change, and by the wall clock, which they do.

Models: the dashboard's 2-D flows at their defaults (`flowcore.build(name, (2,))`), batches of
256 drawn fresh every step from two moons (`flowcore.batches.fresh_toy`); and the benchmarks' MNIST
Glow (`benchmarks/mnist_models.json`, its training settings with batches of 64),
on random 8-bit images (the speed of a step does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

import flowcore
import flowcore.params
from benchmarks import timing
from benchmarks.images import model_spec
from flowcore.batches import fresh_toy
from flowcore.device import hardware_name
from flowcore.params import FlatVector
from flowcore.schedule import TrainConfig
from flowcore.train import Trainer

TOY_BATCH, MNIST_BATCH = 256, 64
MODES = {  # repeats; steps per measurement and warm-up steps of each trainer: 2-D, MNIST
    "full": {"repeats": 7, "calls": (100, 5), "warmup": (30, 2)},
    "quick": {"repeats": 2, "calls": (5, 1), "warmup": (2, 1)},
}


@contextlib.contextmanager
def each_tensor() -> Iterator[None]:
    """Trainers made inside the block keep one tensor per parameter."""
    limit = flowcore.params.FLAT_LIMIT
    flowcore.params.FLAT_LIMIT = 0
    try:
        yield
    finally:
        flowcore.params.FLAT_LIMIT = limit


def toy_trainer(name: str) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=10**9, batch_size=TOY_BATCH, lr=3e-3, decay="none")
    return Trainer(flowcore.build(name, (2,)), fresh_toy("moons"), config)


def mnist_trainer() -> Trainer:
    spec = model_spec("glow")
    torch.manual_seed(0)
    flow = flowcore.build("glow", (1, 28, 28), **spec["model"])
    images = torch.randint(0, 256, (2048, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    config = TrainConfig.from_dict({**spec["train"], "steps": 10**9, "batch_size": MNIST_BATCH})
    return Trainer(flow, images, config)


def measure(label: str, make: Callable[[], Trainer], calls: int, warmup: int, repeats: int) -> dict[str, Any]:
    flat = make()
    with each_tensor():
        each = make()
    assert isinstance(flat.layout, FlatVector) and not isinstance(each.layout, FlatVector)
    params = list(flat.flow.parameters())
    for _ in range(warmup):
        flat.step(), each.step()
    cpu: list[list[float]] = [[], []]
    wall: list[list[float]] = [[], []]
    for r in range(repeats):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            step = (flat, each)[i].step
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                step()
            cpu[i].append((time.process_time() - cpu0) / calls)
            wall[i].append((time.perf_counter() - wall0) / calls)
    return {"model": label, "numbers": sum(p.numel() for p in params), "tensors": len(params),
            "flat": 1 / timing.median(cpu[0]), "each": 1 / timing.median(cpu[1]),
            "gain": timing.median_ratio(cpu[1], cpu[0]) - 1, "wall_gain": timing.median_ratio(wall[1], wall[0]) - 1}


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| model | parameters (tensors) | steps per CPU second, one tensor each | the same, flat vector | "
           "flat vector gain, CPU time | gain, wall clock |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rate = "{:.1f}" if r["each"] < 10 else "{:.0f}"
        out.append(f"| {r['model']} | {r['numbers']:,} ({r['tensors']}) | {rate.format(r['each'])} | "
                   f"{rate.format(r['flat'])} | {r['gain']:+.1%} | {r['wall_gain']:+.1%} |")
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the dashboard trains on one)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, fewer steps: checks that it runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = MODES["quick" if args.quick else "full"]
    repeats, calls, warmup = args.repeats or mode["repeats"], mode["calls"], mode["warmup"]
    rows = [measure(f"2-D {name}, batch {TOY_BATCH}", lambda name=name: toy_trainer(name), calls[0], warmup[0],
                    repeats) for name in ("nice", "realnvp", "glow")]
    rows.append(measure(f"MNIST Glow (benchmarks/mnist_models.json), batch {MNIST_BATCH}", mnist_trainer, calls[1],
                        warmup[1], repeats))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        f"`{shlex.join(['python', '-m', 'benchmarks.flatparams_ab', *(sys.argv[1:] if argv is None else argv)])}`",
        "",
        f"{hardware_name('cpu')}, {os.cpu_count()} cores, {args.threads} torch thread(s), Python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {repeats} alternating repeats "
        f"(2-D: {calls[0]} steps each, MNIST: {calls[1]}), medians; load average at the end "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        "",
        *table(rows),
    ]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
