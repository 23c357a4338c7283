"""The 2-D benchmark: optimisation steps per second and time to converge on two moons.

The models are those of the dashboard's race (`dashboard/services/race.py`, the same settings
for all three): `flowcore.build(name, (2,), hidden=64, couplings|steps=4)`, Adam at lr 3e-3,
batches of 512 (the race's, `race.BATCH_SIZE`) from 2000 training points, held-out NLL on 1000
more, drawn apart (`flowcore.data.toy_split` with seed 0: training points from seed 0, held-out
points from seed 1).

- steps/s: a plain loop (`zero_grad`, `-log_prob(x).mean()`, `backward`, `step` of a default
  `torch.optim.Adam`), and the same through `flowcore.Trainer` as the dashboard runs it (no
  evaluation, rollback every 20);
- converged: for each of `SEEDS` seeds (initialisation and batch order; the points stay the
  same), the long-run value is the held-out NLL after `LONG_STEPS` steps with a cosine
  schedule; a fresh model with the same seed then trains at the constant lr through
  `flowcore.Trainer` (as the dashboard trains) and is evaluated every `EVAL_EVERY` steps with
  the clock stopped; its time is the training wall time until the first evaluation within
  `TOLERANCE` nats of its own long-run value. The results are medians over the seeds. One
  seed alone is not a measurement: on 2,000 points a 4,000-step run's end point moves by up
  to 0.3 nats with the seed, or with float rounding; measured against one value common to all
  seeds, a seed whose end point is higher never "converges" (see BENCHMARKS.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

import flowcore
from flowcore.core import evaluating
from flowcore.data import toy_split
from flowcore.train import TrainConfig, Trainer

MODELS = ("nice", "realnvp", "glow")
DEPTH_OPTION = {"nice": "couplings", "realnvp": "couplings", "glow": "steps"}
DEPTH, WIDTH, LR, BATCH = 4, 64, 3e-3, 512
THREADS = 1  # torch threads: the dashboard trains each session's 2-D model on one (FLOWCORE_TORCH_THREADS)
N_TRAIN, N_HELD_OUT = 2000, 1000
LONG_STEPS = 4000
EVAL_EVERY = 10
TOLERANCE = 0.05  # nats
MAX_STEPS = 3000  # give up on converging after this many steps
SEEDS = 3  # the long-run value and the time to converge are medians over this many seeds


@dataclass
class ToyResult:
    name: str
    parameters: int
    steps_per_s: float  # plain loop
    trainer_steps_per_s: float  # through flowcore.Trainer
    long_run_nll: float  # median over the seeds (each seed is measured against its own)
    steps_to_converge: int | None  # of the median seed by time (one run); None: it was not within TOLERANCE
    seconds_to_converge: float | None  # the median over the seeds (an odd number of them)
    final_nll: float  # held-out NLL when the median seed's converge run stopped
    long_run_nlls: tuple[float, ...] = ()  # per seed
    seed_steps: tuple[int | None, ...] = ()  # per seed (None: not within TOLERANCE after max_steps)


def build(name: str) -> flowcore.Flow:
    return flowcore.build(name, (2,), hidden=WIDTH, **{DEPTH_OPTION[name]: DEPTH})


def split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out points of two moons, two independent draws (`flowcore.data.toy_split`)."""
    return toy_split("moons", N_TRAIN, N_HELD_OUT, seed)


class _Loop:
    """The plain training loop, with a seeded batch order."""

    def __init__(self, name: str, train: torch.Tensor, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.flow = build(name)
        self.train = train
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=LR)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0

    def step(self, lr: float = LR) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(self.train), (BATCH,), generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss = -self.flow.log_prob(self.train[idx]).mean()
        loss.backward()
        self.optimizer.step()
        self.steps += 1


def _trainer(name: str, train: torch.Tensor, steps: int, decay: str, seed: int = 0) -> Trainer:
    """`flowcore.Trainer` on a fresh model, as the dashboard runs it (no evaluation, rollback every 20)."""
    torch.manual_seed(seed)
    config = TrainConfig(steps=steps, batch_size=BATCH, lr=LR, decay=decay, min_lr_ratio=0.01,
                         rollback_every=20, seed=seed)
    return Trainer(build(name), train, config)


def held_out_nll(flow: flowcore.Flow, held_out: torch.Tensor) -> float:
    """Mean negative log-likelihood of `held_out` in eval mode (the flow's mode is kept)."""
    with evaluating(flow), torch.inference_mode():
        return -flow.log_prob(held_out).mean().item()


def long_run_nll(name: str, train: torch.Tensor, held_out: torch.Tensor, steps: int, seed: int = 0) -> float:
    """Held-out NLL after `steps` steps from lr 3e-3 down a cosine to 1% of it."""
    trainer = _trainer(name, train, steps, "cosine", seed)
    for _ in trainer.run():
        pass
    return held_out_nll(trainer.flow, held_out)


def steps_per_second(name: str, train: torch.Tensor, steps: int, repeats: int) -> tuple[float, float]:
    """Median steps/s of the plain loop and of `flowcore.Trainer`, alternating, after warm-up."""
    loop = _Loop(name, train)
    config = TrainConfig(steps=10**9, batch_size=BATCH, lr=LR, decay="none", rollback_every=20, seed=0)
    trainer = Trainer(build(name), train, config)
    for _ in range(10):
        loop.step()
        trainer.step()
    loop_rates, trainer_rates = [], []
    for r in range(repeats):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            for _ in range(steps):
                loop.step() if which == 0 else trainer.step()
            rate = steps / (time.perf_counter() - start)
            (loop_rates if which == 0 else trainer_rates).append(rate)
    return _median(loop_rates), _median(trainer_rates)


def time_to_converge(name: str, train: torch.Tensor, held_out: torch.Tensor, target: float,
                     max_steps: int, seed: int = 0) -> tuple[int | None, float | None, float]:
    """Steps and training seconds until held-out NLL <= target (evaluations not timed)."""
    trainer = _trainer(name, train, max_steps, "none", seed)
    elapsed, nll = 0.0, math.inf
    while trainer.steps_done < max_steps:
        start = time.perf_counter()
        for _ in range(EVAL_EVERY):
            trainer.step()
        elapsed += time.perf_counter() - start
        nll = held_out_nll(trainer.flow, held_out)
        if nll <= target:
            return trainer.steps_done, elapsed, nll
    return None, None, nll


def run(name: str, long_steps: int = LONG_STEPS, max_steps: int = MAX_STEPS, rate_steps: int = 100,
        repeats: int = 5, seeds: int = SEEDS) -> ToyResult:
    train, held_out = split()
    long_nlls = tuple(long_run_nll(name, train, held_out, long_steps, seed) for seed in range(seeds))
    long_nll = _median(list(long_nlls))
    rate, trainer_rate = steps_per_second(name, train, rate_steps, repeats)
    runs = [time_to_converge(name, train, held_out, long_nlls[seed] + TOLERANCE, max_steps, seed)
            for seed in range(seeds)]
    ranked = sorted(runs, key=lambda r: math.inf if r[1] is None else r[1])  # by time; never converged last
    steps, seconds, final = ranked[len(ranked) // 2]  # the median seed's steps and time, from one run
    params = sum(p.numel() for p in build(name).parameters())
    return ToyResult(name, params, rate, trainer_rate, long_nll, steps, seconds, final, long_nlls,
                     tuple(r[0] for r in runs))


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
