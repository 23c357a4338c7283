"""`python -m flowcore train`: settings from flags, config file and the resumed run, then the
trainer with a progress bar, then the final weights with the full held-out set evaluated.

Settings are layered: flags over the config file (`--config`) over, on `--resume`, the run's
saved settings; a resumed run must ask for the model and data it was trained with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from flowcore import distributed
from flowcore.checkpoint import CheckpointError, float32_state, read_checkpoint, save
from flowcore.cli_data import data_spec, load_data, preprocessing
from flowcore.growth import DEQUANTIZER_SIZE, add_dequantizer, adds_dequantizer
from flowcore.metrics import nats_to_bits_per_dim
from flowcore.models import CONFIGS, build, make_config
from flowcore.train import EVAL_SEED, LAST, TrainConfig, Trainer, evaluate_nll
from flowcore.validate import check_number

log = logging.getLogger("flowcore")
TRAIN_FLAGS = ("steps", "batch_size", "lr", "optimizer", "warmup_steps", "decay", "grad_clip",
               "weight_decay", "spike_guard", "eval_every", "eval_size", "checkpoint_every", "log_every", "seed",
               "class_loss", "rewarm_steps", "ema_decay")  # TrainConfig fields that are also flags
MODEL = "model.safetensors"  # a finished run's weights and metadata, beside LAST (the training state)
PICKLE_NAMES = {LAST: "last.pt", MODEL: "model.pt"}  # the same files in the pickle format (`convert` reads it)
BUDGET_PROBE_STEPS = 40  # steps timed to fit a run to --time-budget (the first 10 are warm-up)


def read_config(path: str | None) -> dict[str, Any]:
    """The JSON config file's sections (`model`, `data`, `train`; `comment` is ignored), or {}."""
    if path is None:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except ValueError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or set(config) - {"model", "data", "train", "comment"}:
        raise ValueError(f"config file {path} must be a JSON object with 'model', 'data' and 'train' sections")
    if not all(isinstance(config.get(k, {}), dict) for k in ("model", "data", "train")):
        raise ValueError(f"config file {path}: 'model', 'data' and 'train' must be JSON objects")
    return config


def _model_request(args: argparse.Namespace, file: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The model family asked for (None: not given) and the config fields to override."""
    spec = dict(file)
    name = args.model or spec.pop("name", None)
    spec.pop("name", None)
    spec.update(dict(args.set or []))
    if getattr(args, "classes", None) is not None:
        spec["classes"] = args.classes
    if getattr(args, "dequantizer", None) is not None:
        spec["dequantizer"] = args.dequantizer
    return name, spec


def _train_config(args: argparse.Namespace, file: dict[str, Any], saved: dict[str, Any]) -> TrainConfig:
    """Training settings: flags over the config file over the resumed run's saved settings."""
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in valid}
    values.update(file)
    values.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    return TrainConfig.from_dict(values)


def _check_same_model(saved: dict[str, Any], name: str | None, overrides: dict[str, Any], path: Path) -> None:
    """Refuse to resume `path` with another model family or another value of a config field."""
    if name is not None and name != saved.get("model"):
        raise CheckpointError(f"{path} holds a {saved.get('model')} model, not the requested {name}; "
                              "use another --out to start a new run")
    wanted = make_config(saved["model"], saved["shape"], **overrides)
    defaults = make_config(saved["model"], saved["shape"])  # for fields newer than the saved run
    for key in overrides:
        had = saved.get(key, getattr(defaults, key))
        if getattr(wanted, key) != had:
            raise CheckpointError(f"{path} was trained with {key}={had!r}, not the requested "
                                  f"{key}={getattr(wanted, key)!r}; use another --out to start a new run")


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) the run in `args.out`; under torchrun, every process runs this."""
    info = distributed.setup()
    try:
        return _train(args, info)
    finally:
        distributed.cleanup()


def _train(args: argparse.Namespace, info: distributed.DistInfo) -> int:
    """Check the run folder and the settings, build or resume the trainer, train, write `MODEL`."""
    if args.time_budget is not None:
        check_number("--time-budget", args.time_budget, strict=True)
    file = read_config(args.config)
    out = Path(args.out)
    last = out / LAST
    payload: dict[str, Any] = {}
    if args.resume:
        if not last.is_file() and (out / PICKLE_NAMES[LAST]).is_file():
            raise CheckpointError(f"{out / PICKLE_NAMES[LAST]} is a PyTorch pickle checkpoint; convert it with "
                                  f"`python -m flowcore convert {out / PICKLE_NAMES[LAST]} {last}`, then resume")
        if not last.is_file():
            raise ValueError(f"nothing to resume: {last} does not exist")
        payload = read_checkpoint(last)
        if not isinstance(payload.get("trainer"), dict):
            raise CheckpointError(f"{last} holds weights only, not a training state; it cannot be resumed")
    elif any((out / name).exists() for name in (*PICKLE_NAMES, *PICKLE_NAMES.values())):
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    meta = payload.get("metadata", {})
    name, overrides = _model_request(args, file.get("model", {}))
    spec = data_spec(args, file.get("data", {}), meta.get("data", {}) if args.resume else {})
    saved_train = payload.get("trainer", {}).get("config", {})
    config = _train_config(args, file.get("train", {}), saved_train)
    train, heldout, desc, labels = load_data(spec)
    shape = tuple(train.shape[1:])
    device = torch.device(args.device) if args.device else info.device
    dequantizer = overrides.get("dequantizer", payload.get("model", {}).get("dequantizer", "uniform"))
    metadata = {"data": desc, "preprocessing": preprocessing(spec["name"], dequantizer)}
    distributed.barrier()  # every process has checked the folder before rank 0 writes to it
    if args.resume:
        if adds_dequantizer(payload["model"], overrides):  # the one change a resumed model may take
            overrides.pop("dequantizer")
            size = {k: overrides.pop(k) for k in DEQUANTIZER_SIZE if k in overrides}
            payload = add_dequantizer(payload, str(last), **size)
            log.info("added a variational dequantizer (%d couplings, %d channels); it starts as uniform noise",
                     payload["model"]["dequantizer_couplings"], payload["model"]["dequantizer_hidden"])
        _check_same_model(payload["model"], name, overrides, last)
        trainer = Trainer.resume(last, train, heldout, config, out, device, metadata, train_labels=labels,
                                 payload=payload)
    else:
        if name is None:
            raise ValueError("no model: pass --model or give model.name in the config file")
        if name not in CONFIGS:
            raise ValueError(f"unknown model {name!r}; choose one of {', '.join(CONFIGS)}")
        torch.manual_seed(config.seed)
        flow = build(name, shape, **overrides)
        if flow.classes and labels is None:
            raise ValueError(f"a class-conditional model needs labelled data; {spec['name']} has no labels")
        trainer = Trainer(flow, train, config, heldout, out, device, metadata,
                          train_labels=labels if flow.classes else None)
    if trainer.steps_done >= config.steps:
        print(f"{out}: the run is already complete at step {trainer.steps_done}; pass a larger --steps "
              "to continue it", file=sys.stderr)
        if info.rank == 0 and not (out / MODEL).exists():  # stopped after LAST was written, before MODEL
            _finish(trainer, out, heldout)
        return 0
    if args.time_budget is not None:
        if args.resume:
            raise ValueError("--time-budget sets the length of a new run; a resumed run keeps its steps")
        fit_to_time_budget(trainer, args.time_budget)
    _loop(trainer, quiet=args.quiet)
    if info.rank == 0:
        _finish(trainer, out, heldout)
    dump = os.environ.get("FLOWCORE_DUMP_PARAMS")
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        state = {k: v.clone() for k, v in float32_state(trainer.flow.state_dict()).items()}  # no shared storage
        safetensors.torch.save_file(state, Path(dump) / f"rank{info.rank}.safetensors")
    return 0


def fit_to_time_budget(trainer: Trainer, seconds: float) -> None:
    """Time the first steps, then set `steps` so the whole run takes about `seconds`.

    The probe steps lie inside the learning-rate warmup, whose schedule does not depend on
    `steps`: the run is exactly the run that would have been asked for with the final `steps`."""
    probe = BUDGET_PROBE_STEPS
    if trainer.steps_done or trainer.config.warmup_steps < probe:
        raise ValueError(f"--time-budget needs a new run with warmup_steps >= {probe}")
    start = time.perf_counter()
    marks = []
    for _ in trainer.run(steps=probe):
        marks.append(time.perf_counter())
    per_step = (marks[-1] - marks[9]) / (probe - 10)
    left = seconds - (time.perf_counter() - start)
    steps = max(probe + 1, probe + int(left / per_step))
    trainer.config = dataclasses.replace(trainer.config, steps=steps)
    log.info("time budget %.0f s: %.1f ms per step, so %d steps", seconds, per_step * 1000, steps)


def _loop(trainer: Trainer, quiet: bool) -> None:
    """Run the trainer with a progress bar (loss, bits/dim, last eval) on an interactive stderr."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(total=trainer.config.steps, initial=trainer.steps_done, file=sys.stderr, dynamic_ncols=True,
               disable=quiet or trainer.rank != 0 or not sys.stderr.isatty())
    with bar, logging_redirect_tqdm():  # log lines print above the bar, not through it
        post: dict[str, str] = {}
        for r in trainer.run():
            post["loss"] = f"{r.loss:.4g}"
            if r.bits_per_dim is not None:
                post["bpd"] = f"{r.bits_per_dim:.4f}"
            if r.eval_loss is not None:
                post["eval"] = f"{r.eval_loss:.4g}" if r.eval_bits_per_dim is None else f"{r.eval_bits_per_dim:.4f}"
                log.info("step %d: eval NLL %.6g nats%s", r.step, r.eval_loss, "" if r.eval_bits_per_dim is None
                         else f", {r.eval_bits_per_dim:.4f} bits/dim")
            bar.set_postfix(post, refresh=False)
            bar.update(1)


def _finish(trainer: Trainer, out: Path, heldout: torch.Tensor) -> None:
    """Write `MODEL`: final weights (the averaged ones with `ema_decay`) plus metadata, with the
    full held-out set evaluated."""
    meta = trainer.run_metadata()
    with trainer.averaged() as flow:
        if trainer.eval_data is not None and len(trainer.eval_data) < len(heldout):
            log.info("evaluating on all %d held-out examples for %s ...", len(heldout), MODEL)
            nll = evaluate_nll(flow, heldout, trainer.config.eval_batch_size, EVAL_SEED)
            meta["metrics"]["heldout_loss"] = nll
            meta["metrics"]["heldout_bits_per_dim"] = nats_to_bits_per_dim(nll, flow.event_dim)
            meta["metrics"]["heldout_size"] = len(heldout)
        save(flow, out / MODEL, **meta)
    m = meta["metrics"]
    if "heldout_loss" in m:
        log.info("wrote %s (step %d; all %d held-out examples: NLL %.6g nats, %.4f bits/dim)", out / MODEL,
                 trainer.steps_done, m["heldout_size"], m["heldout_loss"], m["heldout_bits_per_dim"])
    else:
        log.info("wrote %s (step %d, eval NLL %s)", out / MODEL, trainer.steps_done, m["eval_loss"])
