"""How the optimiser holds a model's parameters: one tensor each, or views of one flat vector.

`parameter_layout(params)` picks the layout; the trainer then works only through the
`ParameterLayout` interface (the tensors the optimiser updates, their gradients, zeroing them,
whether the layout still backs the model, optimiser state in the per-parameter layout that
checkpoints keep), so it never asks which layout it has.

A small model's parameters come in a few dozen tensors of a few hundred numbers. As views of one
vector, the optimiser update, the gradient norm and the finiteness check run once per step on
that vector instead of once per tensor, which for the dashboard's 2-D flows is a measurable share
of a step (`benchmarks/flatparams_ab.py`; the table is in BENCHMARKS.md). DistributedDataParallel's
`gradient_as_bucket_view` uses the same idea, and brings its own buckets, so a run under
torchrun keeps one tensor each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

FLAT_LIMIT = 1 << 20  # numbers: up to this many, the parameters share one vector


class ParameterLayout(ABC):
    """A model's parameters as the optimiser sees them."""

    params: list[nn.Parameter]  # the model's own, in `parameters()` order
    tensors: list[Tensor]  # what the optimiser updates (build it over these)

    @abstractmethod
    def grads(self) -> list[Tensor]:
        """The gradients of `tensors` to measure, clip and check (those that exist)."""

    @abstractmethod
    def zero_grad(self) -> None:
        """Clear the gradients before a backward pass."""

    @abstractmethod
    def current(self) -> bool:
        """Whether this layout still backs the model (False once the parameters were cast,
        moved or frozen since it was made: then make a new one)."""

    @abstractmethod
    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """`optimizer.state_dict()` over `tensors`, in the layout of one entry per parameter."""

    @abstractmethod
    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a per-parameter `state` (from `optimizer_state` or a checkpoint) into `optimizer`."""


def parameter_layout(params: list[nn.Parameter], flat: bool = True) -> ParameterLayout:
    """A `FlatVector` when `flat` and the parameters can share one (all trainable, on one device,
    of one floating dtype, at most `FLAT_LIMIT` numbers together); otherwise `EachTensor`."""
    params = list(params)
    fits = (bool(params) and sum(p.numel() for p in params) <= FLAT_LIMIT and all(p.requires_grad for p in params)
            and len({(p.device, p.dtype) for p in params}) == 1 and params[0].is_floating_point())
    return FlatVector(params) if flat and fits else EachTensor(params)


class EachTensor(ParameterLayout):
    """The parameters as they are: the optimiser updates each tensor."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        self.tensors = self.params

    def grads(self) -> list[Tensor]:
        return [p.grad for p in self.params if p.grad is not None]

    def zero_grad(self) -> None:
        for p in self.params:  # as optimizer.zero_grad(set_to_none=True), without its per-call overhead
            p.grad = None

    def current(self) -> bool:
        return True

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)  # casts and moves the state to each parameter


class FlatVector(ParameterLayout):
    """The parameters (one device, one dtype) as views of the single leaf tensor `vector`, and
    their gradients as views of `vector.grad`, into which autograd accumulates in place.

    The model keeps its `nn.Parameter` objects (names, `state_dict`, hooks all unchanged); only
    their storage moves into `vector`. A cast or move of the model replaces that storage, and
    `current()` then says so. The optimiser's in-place update of the vector does not bump the
    parameters' version counters (flowcore's caches do not rely on them), and the gradient
    vector stays allocated between steps (the size of the parameters).
    """

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.vector = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in self.params]))
        self.tensors = [self.vector]
        for p, value in zip(self.params, self.vector.detach().split(self.numels), strict=True):
            p.data = value.view(p.shape)
        self._ptrs = [p.data_ptr() for p in self.params]
        self.zero_grad()

    def grads(self) -> list[Tensor]:
        return [self.vector.grad]

    def zero_grad(self) -> None:
        """Zero the gradient vector and point every `.grad` back at its view (in case one was
        reset, or the vector's own, by `zero_grad()` of the model or the optimiser)."""
        if self.vector.grad is None:
            self.vector.grad = torch.zeros_like(self.vector)
        grad = self.vector.grad
        grad.zero_()
        for p, view in zip(self.params, grad.split(self.numels), strict=True):
            if p.grad is None or p.grad.data_ptr() != view.data_ptr():
                p.grad = view.view(p.shape)

    def current(self) -> bool:
        """One pointer and one flag per parameter: cheap enough to ask every step."""
        return all(p.requires_grad and p.data_ptr() == ptr for p, ptr in zip(self.params, self._ptrs, strict=True))

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The state over `[vector]`, cut into one entry per parameter."""
        state = optimizer.state_dict()
        flat = state["state"].get(0, {})
        per = {}
        for i, (shape, start, n) in enumerate(self._slices()):
            per[i] = {k: (v.detach()[start:start + n].view(shape).clone()
                          if _elementwise(k, v, self.vector.shape) else
                          v.clone() if isinstance(v, Tensor) else v)
                      for k, v in flat.items()}
        groups = [{**g, "params": list(range(len(self.params)))} for g in state["param_groups"]]
        return {"state": per if flat else {}, "param_groups": groups}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """The per-parameter entries joined into one over `[vector]`; parameters without state
        (never updated) get zeros, as a fresh optimizer starts them."""
        groups = state["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(f"the optimizer state has {sum(len(g['params']) for g in groups)} parameters in "
                             f"{len(groups)} groups; this model has {len(self.params)} in one")
        entries = [state["state"].get(i, {}) for i in groups[0]["params"]]
        present = [e for e in entries if e]
        flat: dict[str, Any] = {}
        for key, sample in (present[0].items() if present else ()):
            if all(_elementwise(key, e[key], s) for e, s in zip(entries, self.shapes, strict=True) if e):
                flat[key] = torch.cat([(e[key] if e else torch.zeros(s)).reshape(-1).to(self.vector)
                                       for e, s in zip(entries, self.shapes, strict=True)])
            elif isinstance(sample, Tensor):  # the step count: the same for every parameter updated
                flat[key] = max((e[key] for e in present), key=float).clone()
            else:
                flat[key] = sample
        optimizer.load_state_dict({"state": {0: flat} if flat else {}, "param_groups": [{**groups[0], "params": [0]}]})

    def _slices(self) -> list[tuple[torch.Size, int, int]]:
        out, start = [], 0
        for shape, n in zip(self.shapes, self.numels, strict=True):
            out.append((shape, start, n))
            start += n
        return out


def _elementwise(key: str, value: Any, shape: torch.Size) -> bool:
    """Whether an optimiser state entry holds one number per parameter element (not the step count)."""
    return key != "step" and isinstance(value, Tensor) and value.shape == shape
