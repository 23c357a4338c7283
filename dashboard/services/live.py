"""Train live's run: each session's own 2-D model, its trainer and the thread that trains it.

Each browser session keeps its run in `st.session_state` (`loops.LIVE_KEY`), so sessions never
share a model. While playing, the run trains on a thread of its own (`dashboard/background.py`)
and the page redraws what `moment` reads between two steps; the thread never touches
`st.session_state`. Its steps count towards the session's step budget (`loops.py`).

The toy sets are infinite: the run trains on a fresh batch drawn from the generator at every
step (`flowcore.batches.fresh_toy`) and measures a fixed held-out set. Uploaded and drawn points are finite:
the run trains on 80 % of them and holds out the rest, and the status line says when it
memorises them. Where those points come from is `sources.py`; what the page draws of a moment
is `live_frames.py`.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import streamlit as st
import torch

from dashboard.background import Background
from dashboard.services import catalogue, draw, limits, loops, sources, status, toy
from dashboard.services.sources import DRAW, Upload
from flowcore.batches import fresh_toy
from flowcore.core import Flow
from flowcore.train import StepRecord, TrainConfig, Trainer

# While playing, the model trains on a thread of its own (`background.py`) and the live view is
# redrawn every 0.18 s (st.fragment run_every; a redraw takes ~0.015 s of CPU: the density on a
# 48 x 48 grid, 500 samples, one JPEG), so training never waits for a redraw.
REFRESH_S = 0.18
LOSS_REFRESH_S = 1.0  # the loss curve is redrawn every second
PROGRESS_EVERY_S = 0.05  # (wall time, step) is recorded this often, for the steps/s metric
FIRST_STEP_WAIT_S = 0.05  # a started training thread's first step (~5 ms) is awaited at most this long
BATCH_SIZE = 1024  # points per optimisation step (fewer if the data set is smaller)
EVAL_EVERY = 25  # held-out NLL (1,000 points, ~2 ms) is measured every 25 steps
HELD_OUT_SHARE = 0.2  # of uploaded or drawn points, held out for the held-out NLL
DEPTHS = (2, 3, 4, 5, 6, 8)
WIDTHS = (16, 32, 64, 128)
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2, 0.1, 1.0, 10.0)
MODELS = catalogue.MODEL_NAMES


@dataclass(frozen=True)
class Settings:
    """Everything that defines a live run; changing any of it starts a new model.

    The defaults (with batches of `BATCH_SIZE`) are chosen for the first thing a visitor sees: two
    moons learned in 2-4 s of Play with 5 redraws a second and as many optimisation steps as fit.
    Depth 4 costs ~4.3 ms of CPU per step against ~6.3 ms for depth 6, and its held-out NLL on two
    moons stays within 0.1 nats of its final value from ~200 steps on. Depth 6 fits several other
    sets better (held-out NLL after 1,000 steps, depth 4 vs 6, seed 0: 8 Gaussians 2.01 vs 1.48,
    circles 2.36 vs 2.09, pinwheel 2.18 vs 2.04, swiss roll 2.51 vs 2.39, moons 1.79 vs 1.76;
    checkerboard, 2 spirals and rings within 0.08), which the depth slider offers."""

    data: str = "moons"
    model: str = "realnvp"
    depth: int = 4
    width: int = 32
    lr: float = 5e-3
    seed: int = 0


DEFAULTS = Settings()


@dataclass
class LiveRun:
    """One session's model, trainer and what its charts need."""

    settings: Settings
    train: torch.Tensor
    held_out: torch.Tensor
    flow: Flow
    trainer: Trainer
    bounds: toy.Bounds
    source: Upload | None = None  # the uploaded or drawn points trained on, if any
    playing: bool = False
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, batch NLL)
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out NLL)
    divergences: list[StepRecord] = field(default_factory=list)
    progress: deque = field(default_factory=lambda: deque(maxlen=64))  # (wall time, step)
    redraws: deque = field(default_factory=lambda: deque(maxlen=32))  # wall times of redraws
    memo: dict[str, Any] = field(default_factory=dict)  # frames of the step in `view`
    view: tuple[int, Flow] | None = None  # (step, a copy of the flow at that step) for drawing
    background: Background = field(default_factory=lambda: Background(loops.IDLE_STOP_S, "flows-live-training"))
    budget_spent: bool = False  # Play paused by itself: `limits.MAX_STEPS_UNATTENDED` steps without a click
    start_nll: float = float("nan")  # held-out NLL of the model before its first step

    @property
    def step(self) -> int:
        return self.trainer.steps_done

    @property
    def params(self) -> int:
        return self.flow.num_parameters()

    def stop(self) -> None:
        """Pause, and wait for the training thread to finish its step."""
        self.playing = False
        self.background.join()


def _state() -> Any:
    return st.session_state


def _source(settings: Settings) -> Upload | None:
    return sources.source(settings.data)


def in_use(run: LiveRun) -> str:
    """Which data the live model trains on, in a few words."""
    if run.source is not None and run.source.drawn:
        return f"your drawing, {len(run.source.points):,} points"
    if run.source is not None:
        return f"{run.source.name}, {len(run.source.points):,} points"
    return f"{toy.TOY_TITLES.get(run.settings.data, run.settings.data)} (built in, a fresh batch every step)"


# --- The live run --------------------------------------------------------------------------


def _new_run(settings: Settings, playing: bool) -> LiveRun:
    source = _source(settings)
    config = dict(steps=10**12, lr=settings.lr, decay="none", eval_every=EVAL_EVERY,  # steps: no end of its own
                  rollback_every=loops.ROLLBACK_EVERY, seed=settings.seed)
    flow = toy.build_flow(settings.model, settings.depth, settings.width, settings.seed)
    if source is not None:
        pts = source.points
        perm = torch.randperm(len(pts), generator=torch.Generator().manual_seed(settings.seed))
        n_held = max(1, round(len(pts) * HELD_OUT_SHARE))
        train, held_out = pts[perm[n_held:]], pts[perm[:n_held]]
        trainer = Trainer(flow, train, TrainConfig(batch_size=min(BATCH_SIZE, len(train)), **config),
                          eval_data=held_out)
        bounds = toy.Bounds(*draw.WINDOW, *draw.WINDOW) if source.drawn else toy.bounds_of(train)
    else:
        name = settings.data if settings.data in toy.TOY_NAMES else "moons"
        train, held_out = toy.split(name, settings.seed)  # train: the points drawn over the density
        trainer = Trainer(flow, fresh_toy(name), TrainConfig(batch_size=BATCH_SIZE, **config), eval_data=held_out)
        bounds = toy.bounds_of(train)
    start_nll = trainer.evaluate()[0]  # the untrained model (~2 ms): what the status compares with
    return LiveRun(settings, train, held_out, flow, trainer, bounds, source, playing=playing, start_nll=start_nll)


def live_run(settings: Settings) -> LiveRun:
    """This session's run; a new one (keeping play/pause) when `settings` or the uploaded or drawn
    points changed. While "Draw" is chosen and nothing usable is drawn, the previous run stays
    (a first visit gets the default data, and the page says so)."""
    run = _state().get(loops.LIVE_KEY)
    if settings.data == DRAW and sources.drawn() is None:
        if run is not None:
            return run
        settings = replace(settings, data=DEFAULTS.data)
    if run is None or run.settings != settings or run.source is not _source(settings):
        playing = run.playing if run else False
        if run is not None:
            run.stop()
        run = _new_run(settings, playing=playing)
        _state()[loops.LIVE_KEY] = run
    return run


def existing_run() -> LiveRun | None:
    return _state().get(loops.LIVE_KEY)


def _record(run: LiveRun, record: StepRecord) -> None:
    run.losses.append((record.step, record.loss))
    if record.eval_loss is not None:
        run.evals.append((record.step, record.eval_loss))
    if record.diverged:
        run.divergences.append(record)


def _one_step(run: LiveRun, count: loops.StepCount) -> None:
    record = run.trainer.step()
    count.used += 1  # plain Python from the step to its bookkeeping: nothing can stop in between
    _record(run, record)


def _looping_step(run: LiveRun, count: loops.StepCount) -> Any:
    """The step function of the run's training thread: one step while playing and within budget.
    It touches no `st.session_state` (another thread): the step count comes in as `count`."""
    marked = [0.0]

    def step() -> bool:
        if not run.playing:
            return False
        if count.used >= limits.MAX_STEPS_UNATTENDED:
            run.playing, run.budget_spent = False, True
            return False
        _one_step(run, count)
        now = time.perf_counter()
        if now - marked[0] >= PROGRESS_EVERY_S:
            run.progress.append((now, run.step))
            marked[0] = now
        return True

    return step


def advance() -> bool:
    """Called by every redraw of the live view: keeps the training thread going while playing
    (it pauses by itself when redraws stop coming). Returns whether the run is playing."""
    run = _state().get(loops.LIVE_KEY)
    if run is None:
        return False
    run.redraws.append(time.perf_counter())
    run.background.beat()
    if run.background.failure is not None:
        run.playing = False
    if run.playing and not run.background.running():
        if loops.steps_left() == 0:
            run.playing, run.budget_spent = False, True
        else:
            _start(run)
    return run.playing


def _start(run: LiveRun) -> None:
    """Start the training thread and give it up to `FIRST_STEP_WAIT_S` for its first step, so that
    the redraw that follows a click (or a new drawing while playing) already shows training."""
    first = run.step
    run.progress.append((time.perf_counter(), first))
    run.background.start(_looping_step(run, loops.step_count()))
    deadline = time.perf_counter() + FIRST_STEP_WAIT_S
    while run.step == first and run.background.running() and time.perf_counter() < deadline:
        time.sleep(0.002)


def failure() -> str | None:
    """Why training stopped, if a step failed (in words, for the page)."""
    run = existing_run()
    return None if run is None or run.background.failure is None else (
        f"Training stopped: {run.background.failure}. Press Reset for a fresh model.")


def play() -> None:
    """Play: a click, so a fresh step budget (`loops.claim_loop`). Training starts at once, while the page
    redraws (the first redraw then already shows steps)."""
    run = _state().get(loops.LIVE_KEY)
    if run is not None and run.background.failure is None:
        loops.claim_loop("live")
        run.playing, run.budget_spent = True, False
        _start(run)


def pause() -> None:
    if loops.LIVE_KEY in _state():
        _state()[loops.LIVE_KEY].stop()


def step_once() -> None:
    """One step (pausing Play or the race first); a click, so a fresh step budget."""
    run = _state().get(loops.LIVE_KEY)
    if run is not None:
        loops.claim_loop("live")
        run.budget_spent = False
        with run.background.holding():
            _one_step(run, loops.step_count())


def reset() -> None:
    """A fresh, untrained model with the same settings; a click, so a fresh step budget."""
    run = _state().get(loops.LIVE_KEY)
    if run is not None:
        loops.claim_loop("live")
        _state()[loops.LIVE_KEY] = _new_run(run.settings, playing=False)


def steps_per_second(run: LiveRun, window_s: float = 2.0) -> float | None:
    """Optimisation steps per second of wall-clock time over the last `window_s` seconds."""
    recent = [(t, s) for t, s in tuple(run.progress) if t >= time.perf_counter() - window_s]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] <= 0:
        return None
    return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


def redraws_per_second(run: LiveRun, window_s: float = 2.0) -> float | None:
    recent = [t for t in tuple(run.redraws) if t >= time.perf_counter() - window_s]
    if len(recent) < 2 or recent[-1] - recent[0] <= 0:
        return None
    return (len(recent) - 1) / (recent[-1] - recent[0])


def _take_view(run: LiveRun) -> tuple[int, Flow]:
    """(step, a copy of the flow at that step); the caller holds the training lock. Drawing then
    works on the copy while training goes on."""
    step = run.step
    if run.view is None or run.view[0] != step:
        flow = copy.deepcopy(run.flow) if run.view is None else run.view[1]
        flow.load_state_dict(run.flow.state_dict())
        run.view = (step, flow.eval())
    return run.view


def snapshot(run: LiveRun) -> tuple[int, Flow]:
    """(step, a copy of the flow at that step), read between two training steps."""
    with run.background.holding():
        return _take_view(run)


@dataclass(frozen=True)
class Moment:
    """What one redraw shows, all read between the same two training steps, so every number on
    it describes the same moment: the step, the model at that step, its curves up to that step."""

    step: int
    flow: Flow  # the copy of the model at `step` (valid until the next `moment` of this run)
    n_losses: int  # run.losses[:n_losses] and run.evals[:n_evals] are the curves up to `step`
    n_evals: int
    steps_left: int  # of the step budget
    status: status.Status
    held_out: tuple[int, float] | None  # (step measured, held-out NLL), the last one up to `step`

    @property
    def pause_at(self) -> int:
        """The step at which Play pauses by itself unless someone clicks."""
        return status.pause_step(self.step, self.steps_left)


def moment(run: LiveRun) -> Moment:
    """The run now, read in one go between two training steps."""
    with run.background.holding():
        step, flow = _take_view(run)
        n_losses, n_evals, left = len(run.losses), len(run.evals), loops.steps_left()
    evals = run.evals[:n_evals]  # append-only: the first n are those of the moment
    state = status.fit_status(evals, step, run.start_nll, finite=run.source is not None)
    return Moment(step, flow, n_losses, n_evals, left, state, evals[-1] if evals else None)


def current_lr(run: LiveRun) -> float:
    """The learning rate now: the one chosen, halved after each divergence."""
    return run.settings.lr * run.trainer.lr_multiplier
