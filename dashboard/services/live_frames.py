"""What Train live draws of one moment of the live run, and the model Interpolate's 2-D mode walks.

Every table is computed from the copy of the model that `live.moment` took between two training
steps (never from the model the thread is training), once per step (`_memo`), and returned as
pandas DataFrames ready for `charts.py`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from dashboard.services import catalogue, layers, sources, toy
from dashboard.services.live import LiveRun, Moment, existing_run, snapshot
from flowcore.core import Flow

SPIKE_NATS = 20.0  # the loss chart shows values up to this far above its lowest one, and clips the rest


def _memo(run: LiveRun, at: Moment, name: str, make: Any) -> Any:
    """`make(flow)` for the model of moment `at`, once per step."""
    if run.memo.get("step") != at.step:
        run.memo = {"step": at.step}
    if name not in run.memo:
        run.memo[name] = make(at.flow)
    return run.memo[name]


def density_frames(run: LiveRun, at: Moment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Density grid, and training points plus model samples, of moment `at`."""
    def make(flow: Flow) -> tuple[pd.DataFrame, pd.DataFrame]:
        samples = toy.model_samples(flow, toy.N_SHOWN, run.settings.seed)
        points = pd.concat([toy.points_frame(run.train, "data"), toy.points_frame(samples, "model samples")],
                           ignore_index=True)
        return toy.density_frame(flow, run.bounds), points
    return _memo(run, at, "density", make)


def maths_check(run: LiveRun, at: Moment, seed: int = 0) -> tuple[pd.DataFrame, float, float]:
    """For the model of moment `at`: the log-det check at three random points of the plotted
    square (`toy.logdet_check`), the density integrated over that square, and the share of model
    samples inside it."""
    b = run.bounds
    u = torch.rand(3, 2, generator=torch.Generator().manual_seed(seed))
    points = torch.stack([b.x0 + u[:, 0] * (b.x1 - b.x0), b.y0 + u[:, 1] * (b.y1 - b.y0)], 1)
    return _memo(run, at, f"maths{seed}", lambda flow: (
        toy.logdet_check(flow, points), toy.density_integral(flow, b), toy.mass_inside(flow, b)))


def maths_table(table: pd.DataFrame) -> pd.DataFrame:
    """`toy.logdet_check`'s table with the point as one short column, "(x1, x2)"."""
    point = [f"({x1:.2f}, {x2:.2f})" for x1, x2 in zip(table["x1"], table["x2"], strict=True)]
    return table.drop(columns=["x1", "x2"]).assign(point=point)[["point", "autograd", "flow", "difference"]]


def loss_frame(run: LiveRun, at: Moment, max_points: int = 300) -> pd.DataFrame:
    """Batch NLL (median of at most `max_points` bins) and held-out NLL up to moment `at`, long
    format, with a column `shown` that holds every value within `SPIKE_NATS` of the lowest (the
    whole curve, a rising held-out NLL included) and clips what lies beyond (a divergence's spikes)."""
    rows, losses, evals = [], run.losses[:at.n_losses], run.evals[:at.n_evals]
    if losses:
        frame = pd.DataFrame(losses, columns=["step", "nll"])
        bins = max(1, -(-len(frame) // max_points))
        frame = frame.groupby(frame["step"].sub(1) // bins).agg({"step": "max", "nll": "median"})
        rows.append(frame.assign(series="training batches"))
    if evals:
        rows.append(pd.DataFrame(evals, columns=["step", "nll"]).assign(series="held-out points"))
    if not rows:
        return pd.DataFrame(columns=["step", "nll", "shown", "series"])
    frame = pd.concat(rows, ignore_index=True)
    finite = frame["nll"][frame["nll"].abs() < 1e30]
    lo = float(finite.min()) if len(finite) else 0.0
    hi = max(float(finite[finite <= lo + SPIKE_NATS].max()) if len(finite) else lo, lo + 0.1)
    return frame.assign(shown=frame["nll"].clip(lo, hi).fillna(hi))


def stages(run: LiveRun, at: Moment) -> list[layers.Stage]:
    """The layer scrubber's stages (`layers.layer_stages`) of the model of moment `at`."""
    return _memo(run, at, "stages", lambda flow: layers.layer_stages(flow, run.train, run.bounds, run.settings.seed))


def toy_model_for_paths() -> tuple[Flow, torch.Tensor, str]:
    """The session's trained model (if it has trained) or the shared default, its data, and a
    sentence saying which one it is."""
    run = existing_run()
    if run is not None and run.step >= 100:
        s = run.settings
        return snapshot(run)[1], run.train, (f"Your model from Train live: {catalogue.title(s.model)} on "
                                             f"{sources.data_title(s.data)}, after {run.step:,} steps.")
    flow = toy.default_flow("moons")
    return flow, toy.split("moons", toy.DEFAULT_FLOW["seed"])[0], (
        f"The default model, {toy.describe(flow)}: this session has not yet trained a model for 100 "
        "steps on Train live.")
