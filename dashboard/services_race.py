"""The live race of "Compare": NICE, RealNVP and Glow trained side by side on the same 2-D data.

All three get the same data, seed, depth, width, learning rate and step budget; held-out
NLL is measured every `EVAL_EVERY` steps. The race is this session's one training loop
while it runs (it pauses Train live), and its steps count towards the session's cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import services
import services_toy as toy
import services_train as live
import streamlit as st

from flowcore.train import TrainConfig, Trainer

BUDGETS = (200, 500, 1000, 2000)  # steps per model
EVAL_EVERY = 25
STEPS_PER_REFRESH = 6  # per model and redraw (every live.REFRESH_S seconds)
DEPTH, WIDTH, LR = 4, 64, 3e-3
BATCH_SIZE = 512  # three models train per redraw: smaller batches than Train live's keep it lively

_KEY = live.RACE_KEY


@dataclass
class Race:
    data: str
    seed: int
    budget: int
    trainers: dict[str, Trainer]
    running: bool = True
    curves: list[tuple[str, int, float]] = field(default_factory=list)  # (model, step, held-out NLL)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time spent training each model
    diverged: dict[str, int] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return min(t.steps_done for t in self.trainers.values())

    @property
    def done(self) -> bool:
        return self.step >= self.budget


def race() -> Race | None:
    return st.session_state.get(_KEY)


def start(data: str, seed: int, budget: int) -> None:
    """A new race from scratch (identical initial conditions for the same seed)."""
    train, held_out = toy.toy_split(data, seed)
    trainers = {}
    for name in services.MODEL_NAMES:
        flow = toy.build_flow(name, DEPTH, WIDTH, seed)
        config = TrainConfig(steps=budget, batch_size=BATCH_SIZE, lr=LR, decay="none",
                             eval_every=EVAL_EVERY, rollback_every=live.ROLLBACK_EVERY, seed=seed)
        trainers[name] = Trainer(flow, train, config, eval_data=held_out)
    r = Race(data, seed, budget, trainers, seconds=dict.fromkeys(trainers, 0.0),
             diverged=dict.fromkeys(trainers, 0))
    for name, t in trainers.items():
        r.curves.append((name, 0, t.evaluate()[0]))
    st.session_state[_KEY] = r
    live.claim_loop("race")
    r.running = live.steps_left() > 0


def stop() -> None:
    if race() is not None:
        race().running = False


def resume() -> None:
    r = race()
    if r is not None and not r.done and live.steps_left() > 0:
        live.claim_loop("race")
        r.running = True


def advance() -> bool:
    """One slice of the race (a few steps of each model); returns whether it just stopped."""
    r = race()
    if r is None or not r.running:
        return False
    n = min(STEPS_PER_REFRESH, r.budget - r.step, live.steps_left() // len(r.trainers))
    count = live.step_count()  # fetched once: no session-state access between a step and its count
    for name, trainer in r.trainers.items():
        start_t = time.perf_counter()
        for _ in range(n):
            record = trainer.step()
            count.used += 1
            r.diverged[name] += record.diverged
            if record.eval_loss is not None:
                r.curves.append((name, record.step, record.eval_loss))
        r.seconds[name] += time.perf_counter() - start_t
    if r.done or n <= 0:
        r.running = False
    return not r.running


def curve_frame(r: Race) -> pd.DataFrame:
    frame = pd.DataFrame(r.curves, columns=["model", "step", "nll"])
    frame["model"] = frame["model"].map(services.title)
    return frame


def summary_frame(r: Race) -> pd.DataFrame:
    """Per model: parameters, steps, last held-out NLL, training seconds, divergences."""
    last = curve_frame(r).groupby("model").last()
    rows = []
    for name, trainer in r.trainers.items():
        rows.append({"model": services.title(name), "parameters": trainer.flow.num_parameters(),
                     "steps": trainer.steps_done,
                     "held-out NLL (nats/point)": round(float(last.loc[services.title(name), "nll"]), 3),
                     "training time (s, this server)": round(r.seconds[name], 2),
                     "diverged steps": r.diverged[name]})
    return pd.DataFrame(rows)
