"""Polyak averaging: an exponential moving average of a flow's weights, kept beside the weights
the optimiser moves, and used in their place for evaluation and for the final model.

After the optimiser's n-th accepted update the average `a` moves toward the weights `w`:

    a <- a + (1 - d_n) (w - a),    d_n = min(decay, (1 + n) / (10 + n)),

with `a` equal to the weights at the first update (n = 0, d_0 = 0.1). The ramp `d_n` keeps the
average from being dominated by the first weights of a run (TensorFlow's
`ExponentialMovingAverage(num_updates=...)` and Glow's reference code average the same way); with
decay 0.999 the average follows about the last 1,000 updates. Every floating-point entry of the
state dict is averaged (ActNorm's scales and biases included); integer and boolean buffers are
the model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def decay_at(decay: float, updates: int) -> float:
    """The decay of the update after `updates` earlier ones: `min(decay, (1 + n) / (10 + n))`."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """The moving average of `decay` (0 < decay < 1) over a model's floating-point state."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.updates = 0
        self.weights: dict[str, Tensor] | None = None  # None until the first update

    @staticmethod
    def _live(model: nn.Module) -> dict[str, Tensor]:
        return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward the model's current weights (one accepted optimiser step)."""
        live = self._live(model)
        if self.weights is None:
            self.weights = {k: v.detach().clone() for k, v in live.items()}
        else:
            weight = 1.0 - decay_at(self.decay, self.updates)
            averaged = list(self.weights.values())
            current = [live[k].to(a.device, a.dtype) for k, a in self.weights.items()]
            torch._foreach_lerp_(averaged, current, weight)
        self.updates += 1

    @contextmanager
    def applied(self, model: M) -> Iterator[M]:
        """The model with the averaged weights inside the block, its own weights again after it
        (also on an exception); the model unchanged while no update has been made."""
        if self.weights is None:
            yield model
            return
        live = self._live(model)
        kept = {k: v.detach().clone() for k, v in live.items()}
        with torch.no_grad():
            for k, v in live.items():
                v.copy_(self.weights[k])
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, v in live.items():
                    v.copy_(kept[k])

    def state_dict(self) -> dict[str, Any]:
        """The average for a checkpoint: update count and float32 CPU copies of the weights."""
        weights = {} if self.weights is None else {k: v.detach().cpu().float() for k, v in self.weights.items()}
        return {"updates": self.updates, "weights": weights}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Restore `state_dict()`'s output (on the model's device and dtype); one without weights
        restarts the average at the next update."""
        live = self._live(model)
        weights = state.get("weights") or {}
        if not weights:
            self.updates, self.weights = 0, None
            return
        if set(weights) != set(live):
            raise ValueError("the saved weight average does not match the model's state: "
                             f"{sorted(set(weights) ^ set(live))[:3]} differ")
        self.updates = int(state["updates"])
        self.weights = {k: weights[k].to(v.device, v.dtype).clone() for k, v in live.items()}
