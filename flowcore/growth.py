"""Adding a variational dequantiser to a saved training state, so a trained flow goes on training
with a learned `q(u | x)` instead of starting over.

The new dequantiser starts as the identity (uniform dequantisation, `flowcore.dequantization`),
so the grown flow has the same bits/dim as the saved one at its first step. Its parameters come
after the model's in `parameters()` order: the saved optimizer entries keep their indices, and
the new ones start without state, as a fresh optimizer starts them. A saved weight average gets
the new parameters at their initial values. Their random initialisation is seeded by the saved
step, so adding a dequantiser to the same state twice gives the same run.
"""

from __future__ import annotations

from typing import Any

import torch

from flowcore.checkpoint import CheckpointError, float32_state, flow_from_payload
from flowcore.models import build_from_dict, config_dict

DEQUANTIZER_SIZE = ("dequantizer_couplings", "dequantizer_hidden")  # the options of `add_dequantizer`


def adds_dequantizer(saved_model: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether `overrides` turn a saved uniform-dequantisation model into a variational one."""
    return (saved_model.get("dequantizer", "uniform") == "uniform"
            and overrides.get("dequantizer") == "variational")


def add_dequantizer(payload: dict[str, Any], where: str, **options: Any) -> dict[str, Any]:
    """The training state `payload` (`read_checkpoint`'s output) with a variational dequantiser
    of `options` (`dequantizer_couplings`, `dequantizer_hidden`) added to its model."""
    unknown = set(options) - set(DEQUANTIZER_SIZE)
    if unknown:
        raise ValueError(f"unknown dequantizer option(s): {', '.join(sorted(unknown))}")
    if payload["model"].get("dequantizer", "uniform") != "uniform":
        raise CheckpointError(f"{where} already has a {payload['model']['dequantizer']} dequantizer")
    old = flow_from_payload(payload, where)
    step = int((payload.get("trainer") or {}).get("step", 0))
    with torch.random.fork_rng(devices=[]):  # the new layers' initialisation: a function of the state
        torch.manual_seed(step)
        flow = build_from_dict({**payload["model"], "dequantizer": "variational", **options})
    flow.load_state_dict(old.state_dict(), strict=False)
    state = float32_state(flow.state_dict())
    added = [k for k in state if k not in payload["state_dict"]]
    if any(not k.startswith("dequantizer.") for k in added):  # cannot happen: the rest is the saved model
        raise CheckpointError(f"{where}: adding a dequantizer changed the model's own keys")
    grown = {**payload, "model": config_dict(flow), "state_dict": state}
    optimizer = payload.get("optimizer")
    if optimizer is not None:
        groups = optimizer["param_groups"]
        if len(groups) != 1:
            raise CheckpointError(f"{where}: the optimizer state has {len(groups)} parameter groups, expected one")
        count = len(list(flow.parameters()))
        grown["optimizer"] = {**optimizer, "param_groups": [{**groups[0], "params": list(range(count))}]}
    trainer = payload.get("trainer")
    if isinstance(trainer, dict) and (trainer.get("average") or {}).get("weights"):
        average = trainer["average"]
        weights = {**average["weights"], **{k: state[k] for k in added if state[k].is_floating_point()}}
        grown["trainer"] = {**trainer, "average": {**average, "weights": weights}}
    return grown
