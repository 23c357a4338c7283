"""A model's parameters as views of one vector, and their gradients as views of another.

The trainer's per-step work besides forward and backward (the optimiser update, the gradient
norm, the finiteness check) then runs once on one vector instead of once per tensor: for the
small 2-D flows of the dashboard, whose steps are a few milliseconds, that work done tensor by
tensor is about a sixth of a step (the A/B is in BENCHMARKS.md). DistributedDataParallel's
`gradient_as_bucket_view` uses the same idea.

The model keeps its `nn.Parameter` objects (names, `state_dict`, hooks all unchanged); only
their storage moves into `vector`, and each `.grad` is a view of `vector.grad`, into which
autograd accumulates in place. If the parameters' storage is later replaced (`flow.double()`,
`.to(device)`), `relink` copies their current values into a new vector and moves the optimiser
state with it. New `Parameter` objects (`load_state_dict(assign=True)`) need a new trainer, with
or without the vector. The optimiser's in-place update of the vector does not bump the
parameters' version counters (flowcore's caches do not rely on them), and the gradient vector
stays allocated between steps (the size of the parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class FlatParameters:
    """`params` (all on one device, one dtype) backed by the single leaf tensor `vector`."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.vector = nn.Parameter(torch.empty(0))
        self._link(params)

    @staticmethod
    def fits(params: list[nn.Parameter], limit: int) -> bool:
        """Whether `params` can share one vector (one device, one floating dtype) of at most `limit` numbers."""
        return (bool(params) and sum(p.numel() for p in params) <= limit and all(p.requires_grad for p in params)
                and len({(p.device, p.dtype) for p in params}) == 1 and params[0].is_floating_point())

    def _link(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        with torch.no_grad():
            self.vector.data = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.vector.grad = torch.zeros_like(self.vector)
        for p, value in zip(self.params, self.vector.detach().split(self.numels), strict=True):
            p.data = value.view(p.shape)
        self._ptrs = [p.data_ptr() for p in self.params]
        self.zero_grad()

    def linked(self) -> bool:
        """Whether the parameters still live in this vector (checked every step: one pointer each)."""
        return all(p.data_ptr() == ptr for p, ptr in zip(self.params, self._ptrs, strict=True))

    def relink(self, optimizer_state: dict[str, Any]) -> None:
        """Back the parameters (moved or cast since) by a new vector; move `optimizer_state` along."""
        self._link(self.params)
        for key, value in optimizer_state.items():
            if isinstance(value, Tensor):
                elementwise = _elementwise(key, value, self.vector.shape)
                optimizer_state[key] = value.to(self.vector) if elementwise else value.to(self.vector.device)

    def zero_grad(self) -> None:
        """Zero the gradient vector and point every `.grad` back at its view (in case one was reset,
        or the vector's own, by `optimizer.zero_grad()`)."""
        if self.vector.grad is None:
            self.vector.grad = torch.zeros_like(self.vector)
        grad = self.vector.grad
        grad.zero_()
        for p, view in zip(self.params, grad.split(self.numels), strict=True):
            if p.grad is None or p.grad.data_ptr() != view.data_ptr():
                p.grad = view.view(p.shape)

    # --- optimiser state in the per-parameter layout of checkpoints ------------------------------

    def per_parameter(self, state: dict[str, Any]) -> dict[str, Any]:
        """An optimizer `state_dict()` over `[vector]` rewritten as if it were over `params`."""
        flat = state["state"].get(0, {})
        per = {}
        for i, (shape, start, n) in enumerate(self._slices()):
            per[i] = {k: (v.detach()[start:start + n].view(shape).clone()
                          if _elementwise(k, v, self.vector.shape) else
                          v.clone() if isinstance(v, Tensor) else v)
                      for k, v in flat.items()}
        groups = [{**g, "params": list(range(len(self.params)))} for g in state["param_groups"]]
        return {"state": per if flat else {}, "param_groups": groups}

    def flattened(self, state: dict[str, Any]) -> dict[str, Any]:
        """The inverse of `per_parameter`: a per-parameter optimizer state for `[vector]`.

        Parameters without state (never updated) get zeros, as a fresh optimizer starts them."""
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
        return {"state": {0: flat} if flat else {}, "param_groups": [{**groups[0], "params": [0]}]}

    def _slices(self) -> list[tuple[torch.Size, int, int]]:
        out, start = [], 0
        for shape, n in zip(self.shapes, self.numels, strict=True):
            out.append((shape, start, n))
            start += n
        return out


def _elementwise(key: str, value: Any, shape: torch.Size) -> bool:
    """Whether an optimiser state entry holds one number per parameter element (not the step count)."""
    return key != "step" and isinstance(value, Tensor) and value.shape == shape
