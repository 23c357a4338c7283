"""The live race of "Compare": NICE, RealNVP and Glow trained side by side on the same 2-D data.

All three get the same data, seed, depth, learning rate and step budget, and either the same
width or (parameter-matched) each its own width, chosen so that every model has about as many
parameters as RealNVP at the shared width. Held-out NLL is measured every `EVAL_EVERY` steps.
The race is this session's one training loop while it runs (it pauses Train live), and its
steps count towards the session's step budget (`loops.py`). Like Train live it trains on a thread of its own
(`background.py`), one step of each model in turn, while the page redraws; it pauses when no
redraw comes (closed or throttled tab).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.background import Background
from dashboard.services import catalogue, limits, loops, toy
from flowcore.train import TrainConfig, Trainer

BUDGETS = (200, 500, 1000, 2000)  # steps per model
EVAL_EVERY = 25
REFRESH_S = 1.0  # the race view (curves and a table) is redrawn once a second while it runs: a new
# held-out point comes every EVAL_EVERY steps (~1 s), and redrawing more often takes CPU from the race
# thread (steps per model per second in a browser on a 2-core machine: 20 at 0.18 s, 25.5 at 0.5 s,
# 27-29 at 1 s)
DEPTH, WIDTH, LR = 4, 64, 3e-3
BATCH_SIZE = 512  # three models train in turn: smaller batches than Train live's keep it lively
MATCH_TO = "realnvp"  # parameter-matched races size every family to this one's count at WIDTH
MATCH_WIDTHS = range(8, 2 * WIDTH + 1)  # the widths a matched race may pick from
DENSITY_SIDE = 40  # final densities are drawn on a 40 x 40 grid (three of them, side by side)

@dataclass
class Race:
    data: str
    seed: int
    budget: int
    trainers: dict[str, Trainer]
    matched: bool = False
    widths: dict[str, int] = field(default_factory=dict)
    running: bool = True
    curves: list[tuple[str, int, float, float]] = field(default_factory=list)  # (model, step, seconds, NLL)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time spent training each model
    diverged: dict[str, int] = field(default_factory=dict)
    background: Background = field(default_factory=lambda: Background(loops.IDLE_STOP_S, "flows-race"))

    @property
    def step(self) -> int:
        return min(t.steps_done for t in self.trainers.values())

    @property
    def done(self) -> bool:
        return self.step >= self.budget

    def stop(self) -> None:
        """Stop, and wait for the race thread to finish the step it is in."""
        self.running = False
        self.background.join()


def race() -> Race | None:
    return st.session_state.get(loops.RACE_KEY)


@st.cache_data(show_spinner=False)
def widths(matched: bool) -> dict[str, int]:
    """The width of each family's conditioners: `WIDTH` for all, or (matched) the width whose
    parameter count is nearest that of `MATCH_TO` at `WIDTH`."""
    if not matched:
        return dict.fromkeys(catalogue.MODEL_NAMES, WIDTH)
    target = toy.build_flow(MATCH_TO, DEPTH, WIDTH).num_parameters()
    return {name: min(MATCH_WIDTHS, key=lambda w: abs(toy.build_flow(name, DEPTH, w).num_parameters() - target))
            for name in catalogue.MODEL_NAMES}


@st.cache_data(show_spinner=False)
def sizes(matched: bool) -> pd.DataFrame:
    """Per family: width and parameter count of a race's models (what `start` would build)."""
    return pd.DataFrame([{"model": catalogue.title(name), "width": w,
                          "parameters": toy.build_flow(name, DEPTH, w).num_parameters()}
                         for name, w in widths(matched).items()])


def start(data: str, seed: int, budget: int, matched: bool = False) -> None:
    """A new race from scratch (identical initial conditions for the same seed)."""
    stop()
    train, held_out = toy.split(data, seed)
    trainers = {}
    chosen = widths(matched)
    for name in catalogue.MODEL_NAMES:
        flow = toy.build_flow(name, DEPTH, chosen[name], seed)
        config = TrainConfig(steps=budget, batch_size=BATCH_SIZE, lr=LR, decay="none",
                             eval_every=EVAL_EVERY, rollback_every=loops.ROLLBACK_EVERY, seed=seed)
        trainers[name] = Trainer(flow, train, config, eval_data=held_out)
    r = Race(data, seed, budget, trainers, matched, chosen, seconds=dict.fromkeys(trainers, 0.0),
             diverged=dict.fromkeys(trainers, 0))
    for name, t in trainers.items():
        r.curves.append((name, 0, 0.0, t.evaluate()[0]))
    st.session_state[loops.RACE_KEY] = r
    loops.claim_loop("race")
    r.running = loops.steps_left() >= len(trainers)


def stop() -> None:
    """Stop this session's race, if any, once its thread has finished the step it is in."""
    r = race()
    if r is not None:
        r.stop()


def resume() -> None:
    r = race()
    if r is not None and not r.done and loops.steps_left() >= len(r.trainers) and r.background.failure is None:
        loops.claim_loop("race")
        r.running = True


def _looping_step(r: Race, count: Any) -> Any:
    """The race thread's step: the model with the fewest steps trains next, so all three stay
    level; a new round starts only if the session's budget has a step left for each model.
    No `st.session_state` here (another thread): the step count comes in as `count`."""
    def step() -> bool:
        if not r.running:
            return False
        name, trainer = min(r.trainers.items(), key=lambda kv: kv[1].steps_done)
        level = trainer.steps_done == max(t.steps_done for t in r.trainers.values())
        if r.done or (level and limits.MAX_STEPS_UNATTENDED - count.used < len(r.trainers)):
            r.running = False
            return False
        start_t = time.perf_counter()
        record = trainer.step()
        count.used += 1  # plain Python from the step to its bookkeeping
        r.seconds[name] += time.perf_counter() - start_t
        r.diverged[name] += record.diverged
        if record.eval_loss is not None:
            r.curves.append((name, record.step, r.seconds[name], record.eval_loss))
        return True

    return step


def advance() -> bool:
    """Called by every redraw of the race view: keeps the race thread going while the race
    runs. Returns whether it is running."""
    r = race()
    if r is None:
        return False
    r.background.beat()
    if r.background.failure is not None:
        r.running = False
    if r.running and not r.background.running():
        if r.done or loops.steps_left() < len(r.trainers):
            r.running = False
        else:
            r.background.start(_looping_step(r, loops.step_count()))
    return r.running


def failure() -> str | None:
    r = race()
    return None if r is None or r.background.failure is None else (
        f"The race stopped: {r.background.failure}. Press Start race for a new one.")


def curve_frame(r: Race) -> pd.DataFrame:
    frame = pd.DataFrame(list(r.curves), columns=["model", "step", "seconds", "nll"])  # a copy: the thread appends
    frame["model"] = frame["model"].map(catalogue.title)
    return frame


def summary_frame(r: Race) -> pd.DataFrame:
    """Per model: width, parameters, last held-out NLL and training seconds (as shown, rounded)."""
    last = curve_frame(r).groupby("model").last()
    rows = []
    for name, trainer in r.trainers.items():
        rows.append({"model": catalogue.title(name), "width": r.widths.get(name),
                     "parameters": f"{trainer.flow.num_parameters():,}",
                     "held-out NLL (nats)": f"{float(last.loc[catalogue.title(name), 'nll']):.3f}",
                     "training (s)": f"{r.seconds[name]:.1f}"})
    return pd.DataFrame(rows)


def divergences(r: Race) -> str:
    """A sentence naming the models whose steps were undone after a non-finite loss, or ""."""
    undone = [f"{catalogue.title(n)} {k:,}" for n, k in r.diverged.items() if k]
    if not undone:
        return ""
    return f"Steps undone after a non-finite loss (learning rate halved each time): {', '.join(undone)}."


def result(r: Race) -> str:
    """One line: which model reached the lowest held-out NLL, how low, after how many steps."""
    best = curve_frame(r).groupby("model").last().sort_values("nll").iloc[0]
    return (f"{best.name} reached the lowest held-out NLL, {best.nll:.2f} nats, after {int(best.step):,} steps "
            f"({best.seconds:.1f} s of training)" + ("." if r.done else " so far."))


def densities(r: Race) -> tuple[dict[str, pd.DataFrame], toy.Bounds] | None:
    """Each model's density on one square window around the held-out points; None while the race
    runs (its thread is training the models)."""
    if r.running or r.background.running():
        return None
    window = toy.bounds_of(toy.split(r.data, r.seed)[1])
    return {catalogue.title(name): toy.density_frame(t.flow, window, DENSITY_SIDE)
            for name, t in r.trainers.items()}, window
