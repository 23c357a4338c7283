"""2-D flows for the pages: building, a shared default model, and what the charts plot.

Everything here is stateless (the session's live run is `live.py`); every function returns
pandas DataFrames ready for `charts.py`. Flows are evaluated in eval mode under
`torch.inference_mode` (`evaluating`), so drawing never changes a model (nor initialises its
ActNorm). A layer-by-layer view of a flow is `layers.py`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from dashboard.services import catalogue, latent_paths
from flowcore import core
from flowcore.batches import fresh_toy
from flowcore.checkpoint import CheckpointError, load
from flowcore.core import Flow
from flowcore.data import TOY_SETS, toy_split
from flowcore.models import build
from flowcore.train import TrainConfig, Trainer

TOY_NAMES = tuple(TOY_SETS)
TOY_TITLES = {"moons": "Two moons", "circles": "Circles", "8gaussians": "Eight Gaussians",
              "checkerboard": "Checkerboard", "pinwheel": "Pinwheel", "2spirals": "Two spirals",
              "rings": "Rings", "swissroll": "Swiss roll"}
N_TRAIN, N_HELD_OUT = 2000, 1000  # points drawn from a toy set for training / held-out NLL
HEATMAP_SIDE = 48  # the density is evaluated on a 48 x 48 grid (drawn smoothed; 60 looked the same)
N_SHOWN = 500  # data points and model samples drawn over the density
DEPTH_OPTION = {"nice": "couplings", "realnvp": "couplings", "glow": "steps"}
DEFAULT_FLOW = dict(model="realnvp", depth=6, width=64, lr=5e-3, steps=400, seed=0)  # see default_flow
DEFAULT_ASSET = Path(__file__).resolve().parents[1] / "assets" / "moons-realnvp.safetensors"


def build_flow(model: str, depth: int, width: int, seed: int = 0) -> Flow:
    """A 2-D flow with initial weights drawn from `seed` (the global RNG is left as it was);
    `depth` counts couplings (NICE, RealNVP) or steps of flow (Glow)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(model, (2,), hidden=int(width), **{DEPTH_OPTION[model]: int(depth)})


def split(name: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`N_TRAIN` training and `N_HELD_OUT` held-out points of toy set `name`, two independent
    draws (`flowcore.data.toy_split`: from `seed` and from `seed + 1`)."""
    return toy_split(name, N_TRAIN, N_HELD_OUT, seed)


@contextlib.contextmanager
def evaluating(flow: Flow) -> Iterator[Flow]:
    """Eval mode (`flowcore.core.evaluating`: the previous mode after) and no autograd inside the block."""
    with core.evaluating(flow), torch.inference_mode():
        yield flow


def train_default_flow(data: str = "moons", steps: int | None = None) -> Flow:
    """The default 2-D flow (`DEFAULT_FLOW`) trained on `data`, a fresh batch from the generator
    every step as on Train live (3,000 steps on a fixed set of `N_TRAIN` points reach a held-out
    NLL of 1.82 nats per point, on fresh batches 1.72); its metadata says how."""
    d = {**DEFAULT_FLOW, "steps": steps or DEFAULT_FLOW["steps"]}
    flow = build_flow(d["model"], d["depth"], d["width"], d["seed"])
    _, held_out = split(data, d["seed"])
    config = TrainConfig(steps=d["steps"], batch_size=256, lr=d["lr"], decay="cosine",
                         seed=d["seed"], rollback_every=25)
    trainer = Trainer(flow, fresh_toy(data), config, eval_data=held_out)
    for _ in trainer.run():
        pass
    flow.metadata = {**d, "data": data, "held_out_nll": trainer.evaluate()[0]}
    return flow.eval().requires_grad_(False)


@st.cache_resource(show_spinner="Preparing a small 2-D flow (once per server) ...")
def default_flow(data: str = "moons") -> Flow:
    """A small flow on `data`, shared read-only by every session: the one shipped in
    `DEFAULT_ASSET` for two moons (see `dashboard/make_assets.py`), else trained here."""
    if data == "moons" and DEFAULT_ASSET.is_file():
        try:
            return load(DEFAULT_ASSET).requires_grad_(False)
        except CheckpointError:
            pass  # written by an incompatible flowcore: train a fresh one instead
    return train_default_flow(data)


def describe(flow: Flow) -> str:
    """How a default flow was made, in a few words (from its metadata)."""
    m = {**DEFAULT_FLOW, **(getattr(flow, "metadata", None) or {})}
    nll = (f", held-out NLL {m['held_out_nll']:.2f} nats per point (the negative log-likelihood of points it "
           "never trained on: lower is better)" if "held_out_nll" in m else "")
    return (f"a {catalogue.title(m['model'])} flow ({m['depth']} layers of width {m['width']}) trained for "
            f"{m['steps']:,} steps on {TOY_TITLES.get(m.get('data', 'moons'), 'two moons').lower()}{nll}")


@dataclass(frozen=True)
class Bounds:
    """The data-space window that charts show (fixed per data set, so frames do not jump)."""

    x0: float
    x1: float
    y0: float
    y1: float


def bounds_of(points: torch.Tensor, margin: float = 0.15) -> Bounds:
    """A square window (equal units on both axes, so shapes are not distorted) around all
    but the most extreme 0.2 % of `points` on each side, plus a margin."""
    lo = torch.quantile(points, 0.002, dim=0)
    hi = torch.quantile(points, 0.998, dim=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max().clamp_min(1e-3)) * (0.5 + margin)
    (x0, y0), (x1, y1) = (centre - half).tolist(), (centre + half).tolist()
    return Bounds(x0, x1, y0, y1)


def points_frame(points: torch.Tensor, kind: str, limit: int = N_SHOWN) -> pd.DataFrame:
    p = points[:limit].detach().cpu().numpy()
    return pd.DataFrame({"x": p[:, 0], "y": p[:, 1], "kind": kind})


def density_frame(flow: Flow, b: Bounds, side: int = HEATMAP_SIDE) -> pd.DataFrame:
    """`p(x)` at the centres of a `side x side` grid of cells: columns x, y, density."""
    xs = b.x0 + (np.arange(side) + 0.5) * (b.x1 - b.x0) / side
    ys = b.y0 + (np.arange(side) + 0.5) * (b.y1 - b.y0) / side
    gx, gy = np.meshgrid(xs, ys)
    centres = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))
    with evaluating(flow):
        density = flow.log_prob(centres).exp().nan_to_num(0.0, 0.0, 0.0).numpy()
    return pd.DataFrame({"x": centres[:, 0].numpy(), "y": centres[:, 1].numpy(), "density": density})


def model_samples(flow: Flow, n: int, seed: int) -> torch.Tensor:
    """`n` samples with a fixed seed: the same latent points every frame, so motion is visible."""
    with evaluating(flow):
        return flow.sample(n, generator=torch.Generator().manual_seed(seed))


# --- Check the maths ----------------------------------------------------------------------


def logdet_check(flow: Flow, points: torch.Tensor) -> pd.DataFrame:
    """For each of `points` (N, 2): log|det dz/dx| from the autograd Jacobian of the whole flow (a
    float64 copy, so the reference is exact to ~1e-12) beside the flow's own sum of per-layer
    log-dets (float32, as it trains). Columns x1, x2, autograd, flow, difference."""
    flow64 = copy.deepcopy(flow).double().eval().requires_grad_(False)
    with evaluating(flow):
        own = flow.encode(points.float())[1].double()
    rows = []
    for x, ld in zip(points.double(), own, strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: flow64.encode(v[None])[0][0], x)  # (2, 2)
        reference = float(torch.linalg.slogdet(jac).logabsdet)
        rows.append({"x1": float(x[0]), "x2": float(x[1]), "autograd": reference, "flow": float(ld),
                     "difference": float(ld) - reference})
    return pd.DataFrame(rows)


def density_integral(flow: Flow, b: Bounds, side: int = 200) -> float:
    """The learned density integrated over the window `b` (midpoint rule on a `side x side` grid):
    about 1 when the window holds (nearly) all of the model's probability mass."""
    frame = density_frame(flow, b, side)
    return float(frame["density"].sum() * (b.x1 - b.x0) * (b.y1 - b.y0) / len(frame))


def mass_inside(flow: Flow, b: Bounds, n: int = 10_000, seed: int = 0) -> float:
    """Share of `n` model samples that land inside the window `b` (what the integral should approach)."""
    x = model_samples(flow, n, seed)
    inside = (x[:, 0] >= b.x0) & (x[:, 0] <= b.x1) & (x[:, 1] >= b.y0) & (x[:, 1] <= b.y1)
    return float(inside.float().mean())


# --- Latent paths in 2-D -------------------------------------------------------------------


def toy_path(flow: Flow, a: torch.Tensor, b: torch.Tensor, steps: int, path: str) -> tuple[pd.DataFrame, ...]:
    """A path between the latents of data points `a` and `b` `(2,)`: the path in latent space
    and its image in data space, each with columns x, y, t (0 at `a`, 1 at `b`)."""
    with evaluating(flow):
        z, _ = flow.encode(torch.stack([a, b]))
        zs = latent_paths.latent_path(z[0], z[1], steps, path)
        xs = flow.decode(zs)
    t = np.linspace(0, 1, steps)
    latent = pd.DataFrame({"x": zs[:, 0].numpy(), "y": zs[:, 1].numpy(), "t": t})
    data = pd.DataFrame({"x": xs[:, 0].numpy(), "y": xs[:, 1].numpy(), "t": t})
    return latent, data


def encode_points(flow: Flow, points: torch.Tensor) -> torch.Tensor:
    with evaluating(flow):
        return flow.encode(points)[0]


def base_to_data(flow: Flow, n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """The Home picture: base samples and the same points after the flow, coloured by angle."""
    z = flow.base.sample(n, generator=torch.Generator().manual_seed(seed))
    with evaluating(flow):
        x = flow.decode(z)
    angle = torch.atan2(z[:, 1], z[:, 0]).numpy() * 180 / math.pi
    return pd.concat([
        pd.DataFrame({"x": z[:, 0].numpy(), "y": z[:, 1].numpy(), "angle": angle,
                      "panel": "1. Gaussian base samples z"}),
        pd.DataFrame({"x": x[:, 0].numpy(), "y": x[:, 1].numpy(), "angle": angle,
                      "panel": "2. The same points after the flow, x = f⁻¹(z)"}),
    ], ignore_index=True)


def path_frames(flow: Flow, points: torch.Tensor, pair_seed: int, steps: int,
                path: str) -> tuple[dict[str, pd.DataFrame], dict[str, Bounds]]:
    """Two data points picked by `pair_seed`, the latent path between them and its image in
    data space: frames "data" and "latent" (point clouds), "latent_path" and "data_path", and
    a square window for each space."""
    g = torch.Generator().manual_seed(pair_seed)
    i, j = torch.randperm(len(points), generator=g)[:2].tolist()
    latent_path, data_path = toy_path(flow, points[i], points[j], steps, path)
    codes = encode_points(flow, points[:1000])
    frames = {"data": points_frame(points, "data", 1000), "latent": points_frame(codes, "data"),
              "latent_path": latent_path, "data_path": data_path}
    return frames, {"data": bounds_of(points[:1000]), "latent": bounds_of(codes)}
