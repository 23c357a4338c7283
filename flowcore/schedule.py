"""What a training run is told and what each step reports: `TrainConfig`, the optimiser it
names, the learning-rate schedule, and `StepRecord` (with the columns checkpoints keep it in)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from flowcore.validate import check_ints, check_number, reject_unknown

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
DECAYS = ("cosine", "none")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; checkpoints store them, so a run can be resumed as it was."""

    steps: int = 2000  # total optimisation steps; the learning-rate schedule spans them
    batch_size: int = 256  # examples per step (split across processes under torchrun)
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adam"  # "adam" or "adamax"
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps to lr over this many steps
    decay: str = "cosine"  # after warmup: "cosine" (down to min_lr_ratio * lr at `steps`) or "none"
    min_lr_ratio: float = 0.01  # floor of the cosine decay, as a fraction of lr
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    weight_decay: float = 0.0  # L2 penalty of the optimizer
    eval_every: int = 0  # evaluate on held-out data every this many steps (and at the last); 0 = last only
    eval_size: int = 0  # held-out examples used by evaluation (the first ones); 0 = all
    eval_batch_size: int = 500  # examples per forward pass during evaluation
    checkpoint_every: int = 0  # write out_dir/last.safetensors every this many steps (and at the end); 0 = end only
    log_every: int = 1  # append a record to out_dir/log.jsonl every this many steps (eval/diverged: always)
    rollback_every: int = 1  # copy model + optimizer before every this-many-th step, restored on divergence
    spike_guard: float = 0.0  # > 0: a loss this many running std devs above its running mean counts as divergence
    seed: int = 0  # seeds batch order and dequantisation noise: the run is a function of it
    class_loss: float = 0.0  # class-conditional flows: weight of the cross-entropy of p(y | x) (nats per example)
    rewarm_steps: int = 0  # after a resume that changes the schedule (a warm restart): linear ramp over this many steps
    ema_decay: float = 0.0  # > 0: Polyak averaging of the weights (`flowcore.averaging`), used to evaluate and save

    def __post_init__(self) -> None:
        check_ints(self, ("steps", "batch_size", "eval_batch_size", "log_every", "rollback_every"))
        check_ints(self, ("warmup_steps", "rewarm_steps", "eval_every", "eval_size", "checkpoint_every", "seed"),
                   minimum=0)
        check_number("lr", self.lr, strict=True)
        for name in ("grad_clip", "weight_decay", "spike_guard", "class_loss"):
            check_number(name, getattr(self, name))
        if check_number("ema_decay", self.ema_decay) >= 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if check_number("min_lr_ratio", self.min_lr_ratio) > 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.decay not in DECAYS:
            raise ValueError(f"unknown decay {self.decay!r}; choose one of {', '.join(DECAYS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with one clear line."""
        reject_unknown(d, (f.name for f in fields(cls)), "training option(s)")
        return cls(**d)


def lr_at(config: TrainConfig, step: int) -> float:
    """Scheduled learning rate of the step with 0-based index `step` (before any back-off)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.decay == "none":
        return config.lr
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


SCHEDULE_FIELDS = ("steps", "lr", "warmup_steps", "decay", "min_lr_ratio")  # what `lr_at` reads


def rewarm_factor(config: TrainConfig, step: int, restart_step: int | None) -> float:
    """Factor on the learning rate of 0-based step `step` of a run whose schedule changed at
    `restart_step` (None: never): `(step - restart_step + 1) / rewarm_steps` until it reaches 1.

    Resuming with a larger `steps` (or another `lr`) stretches the cosine, so the learning rate
    jumps from near its floor to the stretched schedule's value; the ramp spreads the jump over
    `rewarm_steps` steps instead of one."""
    if restart_step is None or config.rewarm_steps == 0 or step < restart_step:
        return 1.0
    return min(1.0, (step - restart_step + 1) / config.rewarm_steps)


def make_optimizer(config: TrainConfig, tensors: list[Tensor]) -> torch.optim.Optimizer:
    """The optimizer `config` names over `tensors`: Adam as one fused kernel, Adamax as foreach
    kernels (CPU and CUDA; PyTorch's defaults elsewhere).

    For the small 2-D flows the per-parameter loop of the default implementation is a large share
    of a step (BENCHMARKS.md). A checkpoint keeps these flags in its optimizer state, so a run
    resumes with the implementation it started with.
    """
    common = all(t.device.type in ("cpu", "cuda") and t.is_floating_point() for t in tensors)
    kind = ({"fused": True} if config.optimizer == "adam" else {"foreach": True}) if common else {}
    return OPTIMIZERS[config.optimizer](tensors, lr=config.lr, weight_decay=config.weight_decay, **kind)


@dataclass
class StepRecord:
    """What one optimisation step did."""

    step: int  # completed steps so far, 1-based
    loss: float  # mean negative log-likelihood of the batch, nats per example
    bits_per_dim: float | None  # images: loss / (D ln 2); None for vector data
    grad_norm: float  # global gradient norm before clipping
    lr: float  # learning rate used by this step
    examples_per_s: float  # throughput of this step
    diverged: bool = False  # non-finite loss/gradient/parameters or a loss spike: not applied, state rolled back
    eval_loss: float | None = None  # held-out NLL in nats per example, on evaluation steps
    eval_bits_per_dim: float | None = None  # held-out bits/dim (images), on evaluation steps


def history_columns(history: list[StepRecord]) -> dict[str, Tensor]:
    """`history` as one float64 column per field plus a bool column `<field>_none` (checkpoints
    hold tensors, not lists of records)."""
    cols: dict[str, Tensor] = {}
    for f in fields(StepRecord):
        values = [getattr(r, f.name) for r in history]
        cols[f.name] = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
        cols[f.name + "_none"] = torch.tensor([v is None for v in values], dtype=torch.bool)
    return cols


def history_records(cols: dict[str, Tensor]) -> list[StepRecord]:
    """The inverse of `history_columns`."""
    casts = {"step": int, "diverged": bool}
    names = [f.name for f in fields(StepRecord)]
    lists = {k: cols[k].tolist() for k in names}
    nones = {k: cols[k + "_none"].tolist() for k in names}
    return [StepRecord(**{k: None if nones[k][i] else casts.get(k, float)(lists[k][i]) for k in names})
            for i in range(len(cols["step"]))]
