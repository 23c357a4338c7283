"""The trainer: maximum likelihood for any `Flow`, one step at a time; knows nothing of any UI.

`Trainer.run()` yields a `StepRecord` per step; callbacks see each record (minGPT-style
events). Batches come from a seeded permutation per epoch and image batches are dequantised
with noise from the same seeded generator, so a run is a function of its seed, and the
generator state is part of `state_dict()`: a resumed run is bit-identical to an
uninterrupted one. Divergence is never silent: a non-finite loss, gradient norm or
parameter restores the last good state, halves the learning rate and sets `diverged`; with
`spike_guard`, so does a finite loss far above its running mean (a step that wrecked the model:
the state from before the previous update is restored).
Under `torchrun`, the flow is wrapped in DistributedDataParallel and each process takes a
shard of every batch; only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowcore import distributed
from flowcore.checkpoint import (
    CheckpointError,
    check_state_dict,
    float32_state,
    flow_from_payload,
    plain,
    read_checkpoint,
    write_checkpoint,
)
from flowcore.conditional import check_labels
from flowcore.core import Flow
from flowcore.device import hardware_name
from flowcore.flatparams import FlatParameters
from flowcore.metrics import nats_to_bits_per_dim, nll_per_image
from flowcore.models import config_dict

log = logging.getLogger(__name__)

EVAL_SEED = 0  # noise seed of held-out evaluation on images, so eval numbers repeat exactly
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
DECAYS = ("cosine", "none")
SPIKE_WARMUP = 100  # steps of loss statistics before the spike guard acts
SPIKE_WINDOW = 50  # the running mean/variance of the loss follow about this many steps
LAST = "last.safetensors"  # the full training state in a run folder (`flowcore.checkpoint`)


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

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "eval_batch_size", "log_every", "rollback_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_every", "eval_size", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("grad_clip", "weight_decay", "spike_guard", "class_loss"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.decay not in DECAYS:
            raise ValueError(f"unknown decay {self.decay!r}; choose one of {', '.join(DECAYS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with one clear line."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}; "
                             f"valid: {', '.join(sorted(names))}")
        return cls(**d)


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


def lr_at(config: TrainConfig, step: int) -> float:
    """Scheduled learning rate of the step with 0-based index `step` (before any back-off)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.decay == "none":
        return config.lr
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.inference_mode()
def evaluate_nll(flow: Flow, data: Tensor, batch_size: int = 500, noise_seed: int = EVAL_SEED) -> float:
    """Mean NLL in nats per example of `data` (uint8 images get seeded uniform noise), eval mode."""
    was_training = flow.training
    flow.eval()
    try:
        if data.dtype == torch.uint8:
            gen = torch.Generator().manual_seed(noise_seed)
            nll = nll_per_image(flow, data, batch_size, gen)
        else:
            parts = [-flow.log_prob(data[i : i + batch_size].to(flow.device)).double().cpu()
                     for i in range(0, len(data), batch_size)]
            nll = torch.cat(parts)
    finally:
        flow.train(was_training)
    return float(nll.mean())


def _check_data(data: Tensor, flow: Flow, what: str) -> Tensor:
    if not isinstance(data, Tensor) or tuple(data.shape[1:]) != tuple(flow.shape) or len(data) == 0:
        got = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, flow.shape))}), got {got}")
    if data.dtype != torch.uint8 and not data.is_floating_point():
        raise ValueError(f"{what} must be float vectors or uint8 images, got {data.dtype}")
    return data


class _Objective(nn.Module):
    """`x -> -log p(x)` per example (`-log p(x | y)` with labels): the module DistributedDataParallel wraps.

    With `class_loss > 0` a class-conditional flow also pays `class_loss` times the cross-entropy
    of `p(y | x)` (Bayes' rule over its classes), a small discriminative term as in Glow's
    class-conditional model."""

    def __init__(self, flow: Flow, class_loss: float = 0.0) -> None:
        super().__init__()
        self.flow = flow
        self.class_loss = class_loss

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            return -self.flow.log_prob(x)
        per_class = self.flow.class_log_probs(x)  # (B, K)
        loss = -per_class.gather(1, y[:, None])[:, 0]
        if self.class_loss:
            loss = loss + self.class_loss * nn.functional.cross_entropy(per_class, y, reduction="none")
        return loss


def _history_columns(history: list[StepRecord]) -> dict[str, Tensor]:
    cols: dict[str, Tensor] = {}
    for f in fields(StepRecord):
        values = [getattr(r, f.name) for r in history]
        cols[f.name] = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
        cols[f.name + "_none"] = torch.tensor([v is None for v in values], dtype=torch.bool)
    return cols


def _history_records(cols: dict[str, Tensor]) -> list[StepRecord]:
    casts = {"step": int, "diverged": bool}
    names = [f.name for f in fields(StepRecord)]
    n = len(cols["step"])
    lists = {k: cols[k].tolist() for k in names}
    nones = {k: cols[k + "_none"].tolist() for k in names}
    return [StepRecord(**{k: None if nones[k][i] else casts.get(k, float)(lists[k][i]) for k in names})
            for i in range(n)]


def _optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam as one fused kernel for all parameters, Adamax as foreach kernels (CPU and CUDA;
    PyTorch's defaults elsewhere).

    For the small 2-D flows the per-parameter loop of the default implementation is a large share
    of a step (BENCHMARKS.md). A checkpoint keeps these flags in its optimizer state, so a run
    resumes with the implementation it started with.
    """
    common = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    kind = ({"fused": True} if config.optimizer == "adam" else {"foreach": True}) if common else {}
    return OPTIMIZERS[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay, **kind)


FLAT_LIMIT = 1 << 20  # elements: below this, one copy into a flat vector beats a reduction per tensor


def _flat(tensors: list[Tensor]) -> Tensor | None:
    """All of `tensors` in one vector when they are small together and on one device (else None).

    A small model's parameters come in a few dozen tensors of a few hundred numbers; one
    concatenation and one reduction cost less than a dispatched reduction per tensor (figures in
    BENCHMARKS.md). Large models keep the per-tensor reductions, with no copy."""
    if not tensors or sum(t.numel() for t in tensors) > FLAT_LIMIT or len({t.device for t in tensors}) > 1:
        return None
    if len(tensors) == 1:  # the trainer's flat vector: no copy
        return tensors[0].detach().reshape(-1)
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _all_finite(tensors: list[Tensor]) -> bool:
    """Whether every element of `tensors` is finite (True for none), with one sync: `isfinite` of
    the flat vector for small models, else their largest absolute value (it cannot overflow, and it
    is NaN or inf exactly when some element is)."""
    flat = _flat(tensors)
    if flat is not None:
        return bool(flat.isfinite().all())
    return bool(nn.utils.get_total_norm(tensors, math.inf).isfinite())


def _grad_norm(grads: list[Tensor]) -> Tensor:
    """The global L2 norm of `grads`, what `clip_grad_norm_` computes (0 when there are none)."""
    flat = _flat(grads)
    if flat is not None:
        return torch.linalg.vector_norm(flat)
    return nn.utils.get_total_norm(grads)


def _json_safe(record: StepRecord) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(record).items()}


class Trainer:
    """Trains `flow` on `train_data`: float vectors `(N, D)` or uint8 images `(N, C, H, W)`.

    `step()` does one optimisation step plus whatever is due (evaluation, log line,
    checkpoint, callbacks); `run()` repeats it. `callbacks` are called with each record.
    """

    def __init__(self, flow: Flow, train_data: Tensor, config: TrainConfig,
                 eval_data: Tensor | None = None, out_dir: str | Path | None = None,
                 device: torch.device | str | None = None, metadata: dict[str, Any] | None = None,
                 train_labels: Tensor | None = None) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else flow.device
        self.flow = flow.to(self.device).train()
        self.train_data = _check_data(train_data, flow, "train_data").to(self.device)
        self.eval_data = None
        if eval_data is not None:
            eval_data = _check_data(eval_data, flow, "eval_data")
            self.eval_data = eval_data[: config.eval_size] if config.eval_size else eval_data
        self.is_image = train_data.dtype == torch.uint8
        self.train_labels = None
        if flow.classes:
            if train_labels is None:
                raise ValueError(f"a class-conditional flow ({flow.classes} classes) trains on labelled "
                                 "data: pass train_labels")
            self.train_labels = check_labels(train_labels, flow.classes, len(train_data)).to(self.device)
        if config.batch_size > len(train_data):
            raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(train_data)})")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
        self.history: list[StepRecord] = []
        self.callbacks: list[Callable[[StepRecord], None]] = []
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self._params = list(self.flow.parameters())  # fixed for the trainer's life
        # one vector for small models in one process (DDP keeps its own gradient buckets)
        self._flat = (FlatParameters(self._params) if self.world_size == 1
                      and FlatParameters.fits(self._params, FLAT_LIMIT) else None)
        self.optimizer = _optimizer(config, [self._flat.vector] if self._flat else self._params)
        self.steps_done = 0  # completed steps
        self.lr_multiplier = 1.0  # halved on every divergence, never restored
        self.examples_seen = 0
        self.wall_time_s = 0.0  # accumulated over resumes
        self.epoch = 0  # index of the current permutation of the training set
        self.generator = torch.Generator().manual_seed(config.seed)
        self._perm: Tensor | None = None
        self._pos = 0
        self._objective = _Objective(self.flow, config.class_loss)
        self._model: nn.Module | None = None  # the objective, DDP-wrapped when distributed
        self._snapshot: dict[str, Any] | None = None
        self.loss_stats = [0.0, 0.0, 0.0]  # accepted steps, running mean and variance of the loss

    # --- data ------------------------------------------------------------------------------

    def _next_batch(self) -> tuple[Tensor, Tensor | None]:
        """This process's shard of the next global batch, on the device, dequantised if images,
        with its labels (None unless the flow is class-conditional)."""
        n, b = len(self.train_data), self.config.batch_size
        if self._perm is None or self._pos + b > n:
            if self._perm is not None:
                self.epoch += 1
            self._perm = torch.randperm(n, generator=self.generator)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + b]
        self._pos += b
        rows = slice(None) if self.world_size == 1 else torch.arange(b).tensor_split(self.world_size)[self.rank]
        picked = idx[rows].to(self.device)
        x = self.train_data[picked]
        if self.is_image:  # uniform dequantisation: 8-bit values -> [0, 256)
            noise = torch.rand((b, *self.flow.shape), generator=self.generator)
            x = x.float() + noise[rows].to(self.device)
        return x, None if self.train_labels is None else self.train_labels[picked]

    def _rng_state(self) -> tuple[Tensor, Tensor | None, int, int]:
        perm = None if self._perm is None else self._perm.clone()
        return self.generator.get_state(), perm, self._pos, self.epoch

    def _set_rng_state(self, state: tuple[Tensor, Tensor | None, int, int]) -> None:
        self.generator.set_state(state[0])
        self._perm, self._pos, self.epoch = state[1], state[2], state[3]

    # --- optimisation ----------------------------------------------------------------------

    def _prepare(self) -> None:
        """Data-dependent initialisation on the first batch (identical on every rank), then DDP."""
        if self._model is not None:
            return
        if any(name.endswith("initialized") and not bool(b.all()) for name, b in self.flow.named_buffers()):
            state = self._rng_state()
            with torch.no_grad():
                self._objective(*self._next_batch())  # ActNorm initialises itself (all-reduced)
            self._set_rng_state(state)  # the first step sees the same batch
        self._model = self._objective
        if self.world_size > 1:
            self._model = distributed.wrap(self._objective, self.device)

    def _snapshot_items(self) -> tuple[list[tuple], list[Tensor]]:
        keys, tensors = [], []
        for k, v in self.flow.state_dict().items():
            keys.append(("model", k))
            tensors.append(v)
        for i, p in enumerate(self._optimized()):
            for k, v in self.optimizer.state.get(p, {}).items():
                if isinstance(v, Tensor):
                    keys.append(("optimizer", i, k))
                    tensors.append(v)
        return keys, tensors

    def _take_snapshot(self) -> None:
        """Copy model and optimizer state into buffers reused from step to step (cheap)."""
        keys, tensors = self._snapshot_items()
        if self._snapshot is not None and self._snapshot["keys"] == keys:
            torch._foreach_copy_(self._snapshot["tensors"], [t.detach() for t in tensors])
        else:
            self._snapshot = {"keys": keys, "tensors": [t.detach().clone() for t in tensors]}

    def _rollback(self, why: str) -> None:
        if self._snapshot is not None:
            params = self._optimized()
            model = self.flow.state_dict()
            self.optimizer.state.clear()
            with torch.no_grad():
                for key, saved in zip(self._snapshot["keys"], self._snapshot["tensors"], strict=True):
                    if key[0] == "model":
                        model[key[1]].copy_(saved)
                    else:
                        self.optimizer.state[params[key[1]]][key[2]] = saved.clone()
        self.lr_multiplier *= 0.5
        log.warning("step %d diverged (%s); restored the last good state and halved the learning "
                    "rate (now x%g of the schedule)", self.steps_done + 1, why, self.lr_multiplier)

    def _spike(self, loss: float) -> str | None:
        """Why `loss` counts as a spike (see `TrainConfig.spike_guard`), or None; updates the running stats.

        Mean and variance are exponential moving averages over about 50 steps (plain averages over
        the first 50); the guard acts from step `SPIKE_WARMUP` on.
        """
        n, mean, var = self.loss_stats
        k, std = self.config.spike_guard, math.sqrt(var)
        if k > 0 and n >= SPIKE_WARMUP and std > 0 and loss > mean + k * std:  # std 0: a constant loss, no scale
            return (f"loss {loss:.6g} is {(loss - mean) / std:.0f} running standard deviations "
                    f"above its running mean {mean:.6g}")
        a = max(1 / (n + 1), 1 / SPIKE_WINDOW)
        delta = loss - mean
        self.loss_stats = [n + 1, mean + a * delta, (1 - a) * (var + a * delta * delta)]
        return None

    def _optimized(self) -> list[Tensor]:
        """The tensors the optimizer updates: the flat vector, or the parameters themselves."""
        return self.optimizer.param_groups[0]["params"]

    def _clear_grads(self) -> None:
        if self._flat is not None:
            self._flat.zero_grad()
            return
        for p in self._params:  # as optimizer.zero_grad(set_to_none=True), without its per-call overhead
            p.grad = None

    def _check_flat(self) -> None:
        """Follow changes to the parameters since the last step: moved or cast, re-back the flat
        vector; some frozen (`requires_grad=False`) or no longer on one device and dtype, go on
        with one tensor each (frozen ones are then skipped by the optimizer, as without the vector)."""
        flat = self._flat
        trainable = flat is not None and all(p.requires_grad for p in self._params)
        if flat is None or (trainable and flat.linked()):
            return
        if trainable and FlatParameters.fits(self._params, FLAT_LIMIT):
            flat.relink(self.optimizer.state.get(flat.vector, {}))
        else:
            state = self._optimizer_state()
            self._flat = None
            self.optimizer = _optimizer(self.config, self._params)
            self.optimizer.load_state_dict(state)  # casts and moves the state to each parameter
            self._clear_grads()
        self._snapshot = None  # its buffers have the old layout, dtype or device

    def step(self) -> StepRecord:
        """One optimisation step, then the evaluation, log line and checkpoint that are due."""
        start = time.perf_counter()
        self._prepare()
        cfg, params = self.config, self._params
        lr = lr_at(cfg, self.steps_done) * self.lr_multiplier
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not self.flow.training:
            self.flow.train()
        self._check_flat()
        x, y = self._next_batch()
        self._clear_grads()
        loss = self._model(x, y).mean()
        loss.backward()
        grads = ([self._flat.vector.grad] if self._flat is not None
                 else [p.grad for p in params if p.grad is not None])
        grad_norm = _grad_norm(grads)  # what clip_grad_norm_ computes and returns
        if cfg.grad_clip > 0:  # (without clipping, no multiply-by-one of every gradient)
            nn.utils.clip_grads_with_norm_(grads, cfg.grad_clip, grad_norm)
        loss_v, norm_v = torch.stack([distributed.all_reduce_mean(loss.detach()), grad_norm]).tolist()
        why = None if math.isfinite(loss_v) and math.isfinite(norm_v) else f"loss {loss_v}, grad norm {norm_v}"
        if why is None:
            why = self._spike(loss_v)  # the snapshot still holds the state from before the previous update
        if why is None:
            if self.steps_done % cfg.rollback_every == 0 or self._snapshot is None:
                self._take_snapshot()  # the state before this step gave a finite loss: it is good
            self.optimizer.step()
            if not _all_finite(self._optimized()):
                why = "the optimizer step made parameters non-finite"
        if why is not None:
            self._rollback(why)
        if self._flat is None:  # free the gradients (the flat vector's are zeroed before the next backward)
            self._clear_grads()
        self.steps_done += 1
        self.examples_seen += cfg.batch_size
        elapsed = time.perf_counter() - start
        bpd = float(nats_to_bits_per_dim(loss_v, self.flow.event_dim)) if self.is_image else None
        record = StepRecord(self.steps_done, loss_v, bpd, norm_v, lr, cfg.batch_size / max(elapsed, 1e-9),
                            diverged=why is not None)
        last = self.steps_done == cfg.steps
        if self.eval_data is not None and self.rank == 0 and (
                last or (cfg.eval_every and self.steps_done % cfg.eval_every == 0)):
            record.eval_loss, record.eval_bits_per_dim = self.evaluate()
        self.history.append(record)
        self._write_log(record)
        self.wall_time_s += time.perf_counter() - start
        if self.out_dir is not None and (last or (cfg.checkpoint_every and
                                                  self.steps_done % cfg.checkpoint_every == 0)):
            self.save_checkpoint(self.out_dir / LAST)
        for callback in self.callbacks:
            callback(record)
        return record

    def run(self, steps: int | None = None) -> Iterator[StepRecord]:
        """Yield one record per step until `config.steps` (or `steps` more steps, if given)."""
        end = self.config.steps if steps is None else min(self.config.steps, self.steps_done + steps)
        while self.steps_done < end:
            record = self.step()
            yield record
        if self.out_dir is not None and end < self.config.steps and (
                not self.config.checkpoint_every or end % self.config.checkpoint_every):
            self.save_checkpoint(self.out_dir / LAST)  # stopped early: make it resumable

    def evaluate(self) -> tuple[float, float | None]:
        """Held-out NLL (nats per example) and bits/dim (images; else None), repeatable."""
        if self.eval_data is None:
            raise ValueError("no held-out data: pass eval_data to the Trainer")
        nll = evaluate_nll(self.flow, self.eval_data, self.config.eval_batch_size, EVAL_SEED)
        return nll, (float(nats_to_bits_per_dim(nll, self.flow.event_dim)) if self.is_image else None)

    # --- files -----------------------------------------------------------------------------

    def _write_log(self, record: StepRecord) -> None:
        due = (record.step % self.config.log_every == 0 or record.diverged or record.eval_loss is not None
               or record.step == self.config.steps)
        if self.out_dir is None or self.rank != 0 or not due:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({**_json_safe(record), "images_seen": self.examples_seen}) + "\n")

    def run_metadata(self) -> dict[str, Any]:
        """The caller's metadata plus how this run went (saved with every checkpoint)."""
        evals = [r for r in self.history if r.eval_loss is not None]
        n = len(self.train_data)
        return {
            **self.metadata,
            "train_config": asdict(self.config),
            "step": self.steps_done,
            "examples_seen": self.examples_seen,
            "epochs": self.examples_seen / n,
            "wall_time_s": self.wall_time_s,
            "hardware": hardware_name(self.device),
            "world_size": self.world_size,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "metrics": {
                "train_loss": self.history[-1].loss if self.history else None,
                "eval_loss": evals[-1].eval_loss if evals else None,
                "eval_bits_per_dim": evals[-1].eval_bits_per_dim if evals else None,
                "eval_step": evals[-1].step if evals else None,
                "eval_size": len(self.eval_data) if self.eval_data is not None else 0,
                "diverged_steps": sum(r.diverged for r in self.history),
            },
        }

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer and trainer state (step, RNG, lr multiplier, history): plain types."""
        perm = self._perm
        return {
            "state_dict": float32_state(self.flow.state_dict()),
            "optimizer": plain(self._optimizer_state()),
            "trainer": {
                "step": self.steps_done, "lr_multiplier": self.lr_multiplier,
                "examples_seen": self.examples_seen, "wall_time_s": self.wall_time_s,
                "epoch": self.epoch, "pos": self._pos, "generator": self.generator.get_state(),
                "perm": perm.clone() if perm is not None else None,
                "config": asdict(self.config), "history": _history_columns(self.history),
                "loss_stats": list(self.loss_stats),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (the config is not changed)."""
        check_state_dict(self.flow, state["state_dict"], "training state")
        self.flow.load_state_dict(state["state_dict"])
        optimizer = state["optimizer"]
        self.optimizer.load_state_dict(self._flat.flattened(optimizer) if self._flat is not None else optimizer)
        t = state["trainer"]
        self.steps_done, self.lr_multiplier = int(t["step"]), float(t["lr_multiplier"])
        self.examples_seen, self.wall_time_s = int(t["examples_seen"]), float(t["wall_time_s"])
        self.generator.set_state(t["generator"].cpu())
        self._perm, self._pos, self.epoch = t["perm"], int(t["pos"]), int(t["epoch"])
        self.history = _history_records(t["history"])
        self.loss_stats = [float(v) for v in t.get("loss_stats", (0.0, 0.0, 0.0))]  # absent before the guard
        self._snapshot = None

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state, per parameter (checkpoints keep that layout whether or not it runs flat)."""
        state = self.optimizer.state_dict()
        return self._flat.per_parameter(state) if self._flat is not None else state

    def save_checkpoint(self, path: str | Path) -> Path | None:
        """Write the full training state to `path` atomically (rank 0 only; others return None)."""
        if self.rank != 0:
            return None
        payload = {"model": config_dict(self.flow), **self.state_dict(),
                   "metadata": plain(self.run_metadata())}
        return write_checkpoint(payload, path)

    @classmethod
    def resume(cls, path: str | Path, train_data: Tensor, eval_data: Tensor | None = None,
               config: TrainConfig | None = None, out_dir: str | Path | None = None,
               device: torch.device | str | None = None,
               metadata: dict[str, Any] | None = None, train_labels: Tensor | None = None) -> Trainer:
        """A trainer that continues the run saved in `path` exactly where it stopped.

        `config` defaults to the saved one (pass one with more `steps` to extend a run).
        Records in `out_dir/log.jsonl` after the saved step are dropped.
        """
        payload = read_checkpoint(path)
        if not isinstance(payload.get("trainer"), dict) or not isinstance(payload.get("optimizer"), dict):
            raise CheckpointError(f"{path} holds weights only, not a training state; it cannot be resumed")
        flow = flow_from_payload(payload, str(path))
        saved = payload["trainer"]["config"]
        config = config or TrainConfig.from_dict({k: v for k, v in saved.items()
                                                  if k in {f.name for f in fields(TrainConfig)}})
        meta = {**payload["metadata"], **(metadata or {})}
        trainer = cls(flow, train_data, config, eval_data, out_dir, device, meta, train_labels)
        trainer.load_state_dict(payload)
        if trainer.out_dir is not None and trainer.rank == 0:
            trainer._truncate_log()
        return trainer

    def _truncate_log(self) -> None:
        path = self.out_dir / "log.jsonl"
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.steps_done:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(k + "\n" for k in keep))
        os.replace(tmp, path)  # a crash mid-rewrite leaves the old log whole, never a cut one
