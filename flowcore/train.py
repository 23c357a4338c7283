"""The trainer: maximum likelihood for any `Flow`, one step at a time; knows nothing of any UI.

`Trainer.run()` yields a `StepRecord` per step; callbacks see each record (minGPT-style events).
Batches come from a `flowcore.batches.BatchSource` (a tensor of examples in seeded, shuffled
epochs, or a fresh draw every step) that takes its randomness from the trainer's seeded
generator, and the generator state is part of `state_dict()`: a run is a function of its seed
and a resumed run is bit-identical to an uninterrupted one. Divergence is never silent
(`flowcore.guard`): a non-finite loss, gradient norm or parameter, or with `spike_guard` a loss
far above its running mean, restores the last good state, halves the learning rate and sets
`diverged`. The optimiser sees the parameters through a `flowcore.params.ParameterLayout`.
With `ema_decay`, a moving average of the weights (`flowcore.averaging`) follows every accepted
update; evaluation and `averaged()` use it, and the training state keeps it.
Under `torchrun`, the flow is wrapped in DistributedDataParallel and each process takes a
shard of every batch; only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowcore import distributed, runlog
from flowcore.averaging import WeightAverage
from flowcore.batches import BatchSource, as_source, check_examples
from flowcore.checkpoint import (
    CheckpointError,
    check_state_dict,
    float32_state,
    flow_from_payload,
    plain,
    read_checkpoint,
    write_checkpoint,
)
from flowcore.core import Flow, evaluating
from flowcore.device import hardware_name
from flowcore.guard import LossStats, Snapshot, SpikeGuard, all_finite, grad_norm
from flowcore.metrics import nats_to_bits_per_dim, nll_per_image
from flowcore.models import config_dict
from flowcore.normalization import ActNorm
from flowcore.params import parameter_layout
from flowcore.schedule import (
    SCHEDULE_FIELDS,
    StepRecord,
    TrainConfig,
    history_columns,
    history_records,
    lr_at,
    make_optimizer,
    rewarm_factor,
)

__all__ = ["EVAL_SEED", "LAST", "StepRecord", "TrainConfig", "Trainer", "evaluate_nll", "lr_at"]

log = logging.getLogger(__name__)

EVAL_SEED = 0  # noise seed of held-out evaluation on images, so eval numbers repeat exactly
LAST = "last.safetensors"  # the full training state in a run folder (`flowcore.checkpoint`)


@torch.inference_mode()
def evaluate_nll(flow: Flow, data: Tensor, batch_size: int = 500, noise_seed: int = EVAL_SEED) -> float:
    """Mean NLL in nats per example of `data` (uint8 images get seeded uniform noise), eval mode."""
    with evaluating(flow):
        if data.dtype == torch.uint8:
            nll = nll_per_image(flow, data, batch_size, torch.Generator().manual_seed(noise_seed))
        else:
            nll = torch.cat([-flow.log_prob(data[i : i + batch_size].to(flow.device)).double().cpu()
                             for i in range(0, len(data), batch_size)])
    return float(nll.mean())


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


class Trainer:
    """Trains `flow` on `train_data`: float vectors `(N, D)`, uint8 images `(N, C, H, W)` (with
    `train_labels` for a class-conditional flow), or any `flowcore.batches.BatchSource`.

    `step()` does one optimisation step plus whatever is due (evaluation, log line,
    checkpoint, callbacks); `run()` repeats it. `callbacks` are called with each record.
    """

    def __init__(self, flow: Flow, train_data: Tensor | BatchSource, config: TrainConfig,
                 eval_data: Tensor | None = None, out_dir: str | Path | None = None,
                 device: torch.device | str | None = None, metadata: dict[str, Any] | None = None,
                 train_labels: Tensor | None = None) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else flow.device
        self.flow = flow.to(self.device).train()
        self.batches = as_source(train_data, train_labels, flow.shape, flow.classes)
        self.batches.check(flow.shape, flow.classes, config.batch_size)
        self.batches.to(self.device)
        self.eval_data = None
        if eval_data is not None:
            eval_data = check_examples(eval_data, flow.shape, "eval_data")
            self.eval_data = eval_data[: config.eval_size] if config.eval_size else eval_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
        self.history: list[StepRecord] = []
        self.callbacks: list[Callable[[StepRecord], None]] = []
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        # one flat vector for small models in one process (DDP keeps its own gradient buckets)
        self.layout = parameter_layout(list(self.flow.parameters()), flat=self.world_size == 1)
        self.optimizer = make_optimizer(config, self.layout.tensors)
        self.guard = SpikeGuard(config.spike_guard)
        self.snapshot = Snapshot()
        self.steps_done = 0  # completed steps
        self.lr_multiplier = 1.0  # halved on every divergence, never restored
        self.restart_step: int | None = None  # completed steps when a resume changed the schedule
        self.examples_seen = 0
        self.wall_time_s = 0.0  # accumulated over resumes
        self.generator = torch.Generator().manual_seed(config.seed)
        self.average = WeightAverage(config.ema_decay) if config.ema_decay else None
        self._objective = _Objective(self.flow, config.class_loss)
        self._model: nn.Module | None = None  # the objective, DDP-wrapped when distributed

    @property
    def train_data(self) -> Tensor | None:
        """The training examples, when the batch source holds them as one tensor."""
        return self.batches.data

    @property
    def loss_stats(self) -> list[float]:
        """The spike guard's statistics as checkpoints store them: `[count, mean, var]`."""
        return self.guard.stats.as_list()

    # --- one step ----------------------------------------------------------------------------

    def step(self) -> StepRecord:
        """One optimisation step, then the evaluation, log line and checkpoint that are due."""
        start = time.perf_counter()
        self._prepare()
        cfg = self.config
        lr = lr_at(cfg, self.steps_done) * self.lr_multiplier * rewarm_factor(cfg, self.steps_done, self.restart_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self._next_batch()
        self.layout.zero_grad()
        loss = self._model(x, y).mean()
        loss.backward()
        grads = self.layout.grads()
        norm = grad_norm(grads)  # what clip_grad_norm_ computes and returns
        if cfg.grad_clip > 0:  # (without clipping, no multiply-by-one of every gradient)
            nn.utils.clip_grads_with_norm_(grads, cfg.grad_clip, norm)
        loss_v, norm_v = torch.stack([distributed.all_reduce_mean(loss.detach()), norm]).tolist()
        why = self._update(loss_v, norm_v)
        if why is not None:
            self._rollback(why)
        elif self.average is not None:
            self.average.update(self.flow)
        self.steps_done += 1
        self.examples_seen += cfg.batch_size
        bpd = float(nats_to_bits_per_dim(loss_v, self.flow.event_dim)) if self.batches.is_image else None
        record = StepRecord(self.steps_done, loss_v, bpd, norm_v, lr,
                            cfg.batch_size / max(time.perf_counter() - start, 1e-9), diverged=why is not None)
        if self.eval_data is not None and self.rank == 0 and self._due(cfg.eval_every):
            record.eval_loss, record.eval_bits_per_dim = self.evaluate()
        self.history.append(record)
        self._write_log(record)
        self.wall_time_s += time.perf_counter() - start
        if self.out_dir is not None and self._due(cfg.checkpoint_every):
            self.save_checkpoint(self.out_dir / LAST)
        for callback in self.callbacks:
            callback(record)
        return record

    def _due(self, every: int) -> bool:
        """Whether the step just done is the last or (with `every` > 0) a multiple of `every`."""
        return self.steps_done == self.config.steps or (every > 0 and self.steps_done % every == 0)

    def _update(self, loss: float, norm: float) -> str | None:
        """Apply the optimizer step unless the step diverges; why it diverged, or None."""
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return f"loss {loss}, grad norm {norm}"
        why = self.guard.check(loss)  # the snapshot still holds the state from before the previous update
        if why is not None:
            return why
        if self.steps_done % self.config.rollback_every == 0 or not self.snapshot.taken:
            self.snapshot.take(self.flow, self.optimizer)  # the state before this step gave a finite loss: good
        self.optimizer.step()
        return None if all_finite(self.layout.tensors) else "the optimizer step made parameters non-finite"

    def _rollback(self, why: str) -> None:
        self.snapshot.restore(self.flow, self.optimizer)
        self.lr_multiplier *= 0.5
        log.warning("step %d diverged (%s); restored the last good state and halved the learning "
                    "rate (now x%g of the schedule)", self.steps_done + 1, why, self.lr_multiplier)

    def _next_batch(self) -> tuple[Tensor, Tensor | None]:
        """This process's shard of the next global batch, on the device, with its labels (or None)."""
        x, y = self.batches.batch(self.config.batch_size, self.generator)
        if self.world_size > 1:  # this process's rows
            x = x.tensor_split(self.world_size)[self.rank]
            y = None if y is None else y.tensor_split(self.world_size)[self.rank]
        return x.to(self.device), y if y is None else y.to(self.device)

    def _prepare(self) -> None:
        """Training mode; a new parameter layout (and optimizer, same state) if the model was cast,
        moved or frozen since the last step; once: ActNorm's data-dependent initialisation on the
        first batch (identical on every rank), then the DDP wrapper."""
        if not self.flow.training:
            self.flow.train()
        if not self.layout.current():
            state = self.layout.optimizer_state(self.optimizer)
            self.layout = parameter_layout(self.layout.params, flat=self.world_size == 1)
            self.optimizer = make_optimizer(self.config, self.layout.tensors)
            self.layout.load_optimizer_state(self.optimizer, state)  # cast and moved to the parameters
            self.snapshot.clear()  # its buffers have the old layout, dtype or device
        if self._model is not None:
            return
        if any(isinstance(m, ActNorm) and not bool(m.initialized) for m in self.flow.modules()):
            rng, position = self.generator.get_state(), self.batches.state_dict()
            with torch.no_grad():
                self._objective(*self._next_batch())  # ActNorm initialises itself (all-reduced)
            self.generator.set_state(rng)  # the first step sees the same batch
            self.batches.load_state_dict(position)
        self._model = self._objective
        if self.world_size > 1:
            self._model = distributed.wrap(self._objective, self.device)

    def run(self, steps: int | None = None) -> Iterator[StepRecord]:
        """Yield one record per step until `config.steps` (or `steps` more steps, if given)."""
        end = self.config.steps if steps is None else min(self.config.steps, self.steps_done + steps)
        while self.steps_done < end:
            yield self.step()
        if self.out_dir is not None and end < self.config.steps and (
                not self.config.checkpoint_every or end % self.config.checkpoint_every):
            self.save_checkpoint(self.out_dir / LAST)  # stopped early: make it resumable

    def averaged(self) -> AbstractContextManager[Flow]:
        """The flow with the averaged weights inside the block (with `ema_decay`; else as it is),
        the trained weights again after it."""
        return nullcontext(self.flow) if self.average is None else self.average.applied(self.flow)

    def evaluate(self) -> tuple[float, float | None]:
        """Held-out NLL (nats per example) and bits/dim (images; else None) of the averaged
        weights when there are any, repeatable."""
        if self.eval_data is None:
            raise ValueError("no held-out data: pass eval_data to the Trainer")
        with self.averaged() as flow:
            nll = evaluate_nll(flow, self.eval_data, self.config.eval_batch_size, EVAL_SEED)
        return nll, (float(nats_to_bits_per_dim(nll, self.flow.event_dim)) if self.batches.is_image else None)

    # --- files -------------------------------------------------------------------------------

    def _write_log(self, record: StepRecord) -> None:
        due = self._due(self.config.log_every) or record.diverged or record.eval_loss is not None
        if self.out_dir is not None and self.rank == 0 and due:
            runlog.append(self.out_dir, record, self.examples_seen)

    def run_metadata(self) -> dict[str, Any]:
        """The caller's metadata plus how this run went (saved with every checkpoint)."""
        evals = [r for r in self.history if r.eval_loss is not None]
        return {
            **self.metadata,
            "train_config": asdict(self.config),
            "step": self.steps_done,
            "examples_seen": self.examples_seen,
            "epochs": self.examples_seen / self.batches.size if self.batches.size else None,
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
        """Model, optimizer (one entry per parameter) and trainer state (step, RNG, position in
        the data, lr multiplier, loss statistics, history): plain types and tensors."""
        return {
            "state_dict": float32_state(self.flow.state_dict()),
            "optimizer": plain(self.layout.optimizer_state(self.optimizer)),
            "trainer": {
                "step": self.steps_done, "lr_multiplier": self.lr_multiplier, "restart_step": self.restart_step,
                "examples_seen": self.examples_seen, "wall_time_s": self.wall_time_s,
                "generator": self.generator.get_state(), **self.batches.state_dict(),
                "config": asdict(self.config), "history": history_columns(self.history),
                "loss_stats": self.loss_stats,
                **({"average": self.average.state_dict()} if self.average is not None else {}),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (the config is not changed)."""
        check_state_dict(self.flow, state["state_dict"], "training state")
        self.flow.load_state_dict(state["state_dict"])
        self.layout.load_optimizer_state(self.optimizer, state["optimizer"])
        t = state["trainer"]
        self.steps_done, self.lr_multiplier = int(t["step"]), float(t["lr_multiplier"])
        self.restart_step = t.get("restart_step")  # absent in states saved before warm restarts were ramped
        self.examples_seen, self.wall_time_s = int(t["examples_seen"]), float(t["wall_time_s"])
        self.generator.set_state(t["generator"].cpu())
        self.batches.load_state_dict(t)
        self.history = history_records(t["history"])
        self.guard.stats = LossStats.from_list(t.get("loss_stats", (0.0, 0.0, 0.0)))  # absent before the guard
        if self.average is not None:  # a state saved without an average starts one at the next update
            self.average.load_state_dict(t.get("average", {}), self.flow)
        self.snapshot.clear()

    def save_checkpoint(self, path: str | Path) -> Path | None:
        """Write the full training state to `path` atomically (rank 0 only; others return None)."""
        if self.rank != 0:
            return None
        payload = {"model": config_dict(self.flow), **self.state_dict(), "metadata": plain(self.run_metadata())}
        return write_checkpoint(payload, path)

    @classmethod
    def resume(cls, path: str | Path, train_data: Tensor | BatchSource, eval_data: Tensor | None = None,
               config: TrainConfig | None = None, out_dir: str | Path | None = None,
               device: torch.device | str | None = None,
               metadata: dict[str, Any] | None = None, train_labels: Tensor | None = None,
               payload: dict[str, Any] | None = None) -> Trainer:
        """A trainer that continues the run saved in `path` exactly where it stopped.

        `config` defaults to the saved one (pass one with more `steps` to extend a run). A config
        whose schedule differs from the saved one starts a warm restart at the saved step (ramped
        over `config.rewarm_steps`). Records in `out_dir/log.jsonl` after the saved step are dropped.
        `payload`: the file's contents, already read (and perhaps grown, `flowcore.growth`).
        """
        payload = read_checkpoint(path) if payload is None else payload
        if not isinstance(payload.get("trainer"), dict) or not isinstance(payload.get("optimizer"), dict):
            raise CheckpointError(f"{path} holds weights only, not a training state; it cannot be resumed")
        flow = flow_from_payload(payload, str(path))
        saved = payload["trainer"]["config"]
        config = config or TrainConfig.from_dict({k: v for k, v in saved.items()
                                                  if k in {f.name for f in fields(TrainConfig)}})
        meta = {**payload["metadata"], **(metadata or {})}
        trainer = cls(flow, train_data, config, eval_data, out_dir, device, meta, train_labels)
        trainer.load_state_dict(payload)
        if any(saved.get(k) != getattr(config, k) for k in SCHEDULE_FIELDS):
            trainer.restart_step = trainer.steps_done
        if trainer.out_dir is not None and trainer.rank == 0:
            runlog.truncate(trainer.out_dir, trainer.steps_done)
        return trainer
