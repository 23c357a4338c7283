"""Divergence is never silent: finiteness checks, the loss-spike guard, and the snapshot a
diverged step rolls back to.

A step diverges when its loss or gradient norm is not finite, when the optimiser step makes a
parameter non-finite, or (with the spike guard) when a finite loss lies far above its running
mean: a step that wrecked the model shows only in the next step's loss, so the snapshot it
rolls back to is the state from before the previous update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SPIKE_WARMUP = 100  # steps of loss statistics before the spike guard acts
SPIKE_WINDOW = 50  # the running mean/variance of the loss follow about this many steps


def all_finite(tensors: list[Tensor]) -> bool:
    """Whether every element of `tensors` is finite (True for none), with one sync: for several
    tensors, their largest absolute value (it cannot overflow, and it is NaN or inf exactly when
    some element is)."""
    if len(tensors) == 1:  # a flat parameter vector: one reduction, no grouping by device
        return bool(tensors[0].isfinite().all())
    return bool(nn.utils.get_total_norm(tensors, math.inf).isfinite())


def grad_norm(grads: list[Tensor]) -> Tensor:
    """The global L2 norm of `grads`, what `clip_grad_norm_` computes (0 when there are none)."""
    if len(grads) == 1:
        return torch.linalg.vector_norm(grads[0])
    return nn.utils.get_total_norm(grads)


@dataclass
class LossStats:
    """Running statistics of the losses of accepted steps.

    Mean and variance are exponential moving averages over about `SPIKE_WINDOW` steps (plain
    averages over the first `SPIKE_WINDOW`)."""

    count: int = 0  # accepted steps seen
    mean: float = 0.0  # running mean of the loss
    var: float = 0.0  # running variance of the loss

    def add(self, loss: float) -> None:
        a = max(1 / (self.count + 1), 1 / SPIKE_WINDOW)
        delta = loss - self.mean
        self.count += 1
        self.mean, self.var = self.mean + a * delta, (1 - a) * (self.var + a * delta * delta)

    def as_list(self) -> list[float]:
        """`[count, mean, var]`, as checkpoints store them."""
        return [float(self.count), self.mean, self.var]

    @classmethod
    def from_list(cls, values: list[float]) -> LossStats:
        count, mean, var = (float(v) for v in values)
        return cls(int(count), mean, var)


class SpikeGuard:
    """Counts a loss more than `threshold` running standard deviations above the running mean
    as divergence, from step `SPIKE_WARMUP` on; `threshold` 0 keeps the statistics but never acts."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stats = LossStats()

    def check(self, loss: float) -> str | None:
        """Why `loss` is a spike, or None (then it joins the statistics)."""
        s, k = self.stats, self.threshold
        std = math.sqrt(s.var)
        if k > 0 and s.count >= SPIKE_WARMUP and std > 0 and loss > s.mean + k * std:  # std 0: no scale
            return (f"loss {loss:.6g} is {(loss - s.mean) / std:.0f} running standard deviations "
                    f"above its running mean {s.mean:.6g}")
        s.add(loss)
        return None


class Snapshot:
    """Model and optimiser state, copied into buffers reused from step to step (cheap), restored
    when a step diverges."""

    def __init__(self) -> None:
        self._keys: list[tuple] | None = None
        self._tensors: list[Tensor] = []

    @property
    def taken(self) -> bool:
        return self._keys is not None

    def clear(self) -> None:
        """Forget the copy (after a change of the state's layout, dtype or device)."""
        self._keys, self._tensors = None, []

    def take(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        keys, tensors = _items(model, optimizer)
        if keys == self._keys:
            torch._foreach_copy_(self._tensors, [t.detach() for t in tensors])
        else:
            self._keys, self._tensors = keys, [t.detach().clone() for t in tensors]

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Put the copy back (nothing happens before the first `take`)."""
        if self._keys is None:
            return
        params = _optimized(optimizer)
        state = model.state_dict()
        optimizer.state.clear()
        with torch.no_grad():
            for key, saved in zip(self._keys, self._tensors, strict=True):
                if key[0] == "model":
                    state[key[1]].copy_(saved)
                else:
                    optimizer.state[params[key[1]]][key[2]] = saved.clone()


def _optimized(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _items(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[tuple], list[Tensor]]:
    keys, tensors = [], []
    for k, v in model.state_dict().items():
        keys.append(("model", k))
        tensors.append(v)
    for i, p in enumerate(_optimized(optimizer)):
        for k, v in optimizer.state.get(p, {}).items():
            if isinstance(v, Tensor):
                keys.append(("optimizer", i, k))
                tensors.append(v)
    return keys, tensors
