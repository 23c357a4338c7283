"""A 2-D flow layer by layer: the plane after each layer, and what each layer does, in words.

Stage k shows the data and a square grid of data space pushed forward through layers 1..k,
and samples of the base distribution pulled back through layers L..k+1: stage 0 is data
space, stage L the latent space. Layers are described by their type (`DESCRIPTIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dashboard.services.toy import N_SHOWN, Bounds, bounds_of, evaluating, points_frame
from flowcore.core import Flow
from flowcore.coupling import AdditiveCoupling, AffineCoupling
from flowcore.linear import LUInvertibleLinear
from flowcore.normalization import ActNorm, DiagonalScaling

GRID_LINES, GRID_POINTS = 13, 50  # warped grid: lines per direction, points per line

DESCRIPTIONS = {  # what a layer of each type does to the plane; {role}: which coordinate a coupling moves
    AffineCoupling: "Affine coupling: {role}, stretching and shifting it by amounts a small neural "
                    "network computes from the kept coordinate.",
    AdditiveCoupling: "Additive coupling: {role}, shifting it by an amount a small neural network "
                      "computes from the kept coordinate. Areas are preserved.",
    ActNorm: "ActNorm: shifts and scales each coordinate (initialised from the first batch so the "
             "output starts with mean 0 and spread 1).",
    LUInvertibleLinear: "Invertible linear map (Glow's 1x1 convolution): rotates, shears and scales "
                        "the whole plane.",
    DiagonalScaling: "Scaling: stretches each coordinate by a learned factor (NICE's last layer); "
                     "the only layer of NICE that changes areas.",
}


def _role(layer: torch.nn.Module) -> str:
    """Which coordinate a 2-D coupling keeps and which it moves: the mask splits the point (1, 2)
    into (kept part, moved part), and the moved value names the coordinate."""
    mask = getattr(layer, "mask", None)
    if mask is None:
        return ""
    _, moved = mask.split(torch.tensor([[1.0, 2.0]]))
    moved = moved[moved != 0]
    if moved.numel() != 1:
        return ""
    changed = int(moved[0])
    return f"keeps coordinate {3 - changed} and moves coordinate {changed}"


def describe(layer: torch.nn.Module) -> str:
    """What `layer` does to the plane, in a sentence (its class name for a type not described)."""
    for kind, text in DESCRIPTIONS.items():
        if isinstance(layer, kind):
            return text.format(role=_role(layer))
    return type(layer).__name__


@dataclass(frozen=True)
class Stage:
    """The plane after the first `index` layers of a 2-D flow."""

    index: int
    name: str
    description: str
    points: pd.DataFrame  # x, y, kind ("data pushed forward" / "samples pulled back")
    grid: pd.DataFrame  # x, y, line, order: grid lines of data space pushed forward
    window: tuple[float, float, float, float]  # x0, x1, y0, y1 that frame the points


def _grid_lines(b: Bounds) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """`GRID_LINES` vertical and as many horizontal lines across `b`, `GRID_POINTS` points each:
    the points `(N, 2)`, each point's line id and its order along the line."""
    t = np.linspace(0, 1, GRID_POINTS)
    lines, ids = [], []
    for i, s in enumerate(np.linspace(0, 1, GRID_LINES)):
        x, y = b.x0 + s * (b.x1 - b.x0), b.y0 + s * (b.y1 - b.y0)
        lines.append(np.stack([np.full_like(t, x), b.y0 + t * (b.y1 - b.y0)], 1))  # vertical
        lines.append(np.stack([b.x0 + t * (b.x1 - b.x0), np.full_like(t, y)], 1))  # horizontal
        ids += [2 * i, 2 * i + 1]
    pts = torch.from_numpy(np.concatenate(lines).astype(np.float32))
    return pts, np.repeat(ids, GRID_POINTS), np.tile(np.arange(GRID_POINTS), len(ids))


def layer_stages(flow: Flow, data: torch.Tensor, b: Bounds, seed: int) -> list[Stage]:
    """Stage k: data and grid lines pushed through layers 1..k, and base samples pulled back
    through layers L..k+1, so stage 0 is data space and stage L the latent space."""
    layers = list(flow.transform.layers)
    grid, line_id, order = _grid_lines(b)
    n = min(len(data), N_SHOWN)
    with evaluating(flow):
        forward = flow.transform.trace(torch.cat([data[:n], grid]))
        z = flow.base.sample(N_SHOWN, generator=torch.Generator().manual_seed(seed))
        backward = [z]
        for layer in reversed(layers):
            z, _ = layer.inverse(z)
            backward.append(z)
    backward.reverse()
    stages = []
    for k, ((name, out), pulled) in enumerate(zip(forward, backward, strict=True)):
        out = out.nan_to_num(0.0, 1e6, -1e6)
        pulled = pulled.nan_to_num(0.0, 1e6, -1e6)
        points = pd.concat([points_frame(out[:n], "data pushed forward"),
                            points_frame(pulled, "samples pulled back")], ignore_index=True)
        g = out[n:].numpy()
        grid_df = pd.DataFrame({"x": g[:, 0], "y": g[:, 1], "line": line_id, "order": order})
        if k == 0:
            text = "The data, before any layer. Grey lines: a square grid in data space."
        else:
            text = describe(layers[k - 1])
        b_k = bounds_of(torch.cat([out[:n], pulled]), margin=0.1)
        stages.append(Stage(k, "data" if k == 0 else name, text, points, grid_df, (b_k.x0, b_k.x1, b_k.y0, b_k.y1)))
    return stages
