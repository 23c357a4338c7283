"""The command line: `python -m flowcore {train,eval,sample,convert} ...` (`--help` on each).

    python -m flowcore train --model glow --data moons --out runs/glow-moons --steps 2000
    python -m flowcore train --model glow --data mnist --data-dir ../shared/data/mnist \\
        --out runs/glow --config configs/glow-mnist.json            # later: add --resume
    python -m flowcore eval --checkpoint runs/glow/model.safetensors --draws 3
    python -m flowcore sample --checkpoint runs/glow/model.safetensors --n 64 --temperature 0.7 --out grid.png
    python -m flowcore convert old.pt new.safetensors               # a torch.save (pickle) checkpoint
    torchrun --nproc_per_node=4 -m flowcore train ...               # DistributedDataParallel

A run folder holds `last.safetensors` (full training state, rewritten atomically every
`checkpoint_every` steps and at the end), `model.safetensors` (final weights + metadata) and
`log.jsonl` (one JSON `StepRecord` per logged step). `--resume` continues from `last.safetensors`
bit-for-bit; without it an existing run is never overwritten.

Config files (`--config FILE`) are JSON with three optional sections; flags override them,
and on `--resume` they override the saved training settings:

    {"model": {"name": "glow", "hidden": 64, "steps": 4},      # name + fields of the model config
     "data":  {"name": "mnist", "data_dir": "../shared/data/mnist",
               "n_train": 20000, "n_eval": 5000, "seed": 0},   # n_*/seed: toy sets only
     "train": {"steps": 20000, "batch_size": 64, "lr": 1e-3}}  # fields of flowcore.train.TrainConfig

Toy sets: `n_train` points drawn with `seed`, `n_eval` held-out points with `seed + 1`.
MNIST: the 60k training images; evaluation on the test set (`train.eval_size` first images
during training, all of them in `model.safetensors`' metadata). Errors are one line on stderr
starting with `error: `, exit code 2. Debug aid: with `FLOWCORE_DUMP_PARAMS=DIR` every
process of `train` saves its final parameters to `DIR/rank<R>.safetensors`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from flowcore import distributed
from flowcore.checkpoint import CheckpointError, float32_state, load, read_checkpoint, save
from flowcore.convert import convert
from flowcore.core import Flow
from flowcore.data import IMAGE_SETS, TOY_SETS, DataNotFound, load_images, toy_data
from flowcore.metrics import nats_to_bits_per_dim
from flowcore.models import CONFIGS, build, make_config
from flowcore.train import EVAL_SEED, LAST, TrainConfig, Trainer, evaluate_nll

log = logging.getLogger("flowcore")
DATA_SETS = (*TOY_SETS, *IMAGE_SETS)
TOY_DEFAULTS = {"n_train": 20000, "n_eval": 5000, "seed": 0}
TRAIN_FLAGS = ("steps", "batch_size", "lr", "optimizer", "warmup_steps", "decay", "grad_clip",
               "weight_decay", "spike_guard", "eval_every", "eval_size", "checkpoint_every", "log_every", "seed",
               "class_loss")
MODEL = "model.safetensors"  # a finished run's weights and metadata, beside LAST (the training state)
PICKLE_NAMES = {LAST: "last.pt", MODEL: "model.pt"}  # the same files in the pickle format (`convert` reads it)


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one `error: ...` line (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _json_value(value)


def _read_config(path: str | None) -> dict[str, Any]:
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


# --- data ------------------------------------------------------------------------------------


def _data_spec(args: argparse.Namespace, file: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """The data set to train on: flags over the config file over the resumed run's settings."""
    name = args.data or file.get("name") or saved.get("name")
    if name is None:
        raise ValueError("no data set: pass --data or give data.name in the config file")
    if name not in DATA_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATA_SETS)}")
    if saved and saved.get("name") != name:
        raise CheckpointError(f"the run to resume was trained on {saved.get('name')}, not the requested {name}")
    allowed = {"name", "data_dir"} | ({*TOY_DEFAULTS, "eval_seed"} if name in TOY_SETS else {"validation"})
    unknown = set(file) - allowed
    if unknown:
        raise ValueError(f"unknown data option(s) for {name}: {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(sorted(allowed))}")
    spec = {k: v for k, v in saved.items() if k in allowed and v != ""}
    spec.update(file)
    spec["name"] = name
    if args.data_dir is not None:
        spec["data_dir"] = args.data_dir
    return {**TOY_DEFAULTS, **spec} if name in TOY_SETS else spec


def load_data(spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], torch.Tensor | None]:
    """Training data, held-out data, their description for the metadata, and the training labels
    (image sets; None for toy data).

    Image sets hold out the test set, or with `validation: N` the last N training images (for
    choosing settings without looking at the test set)."""
    if spec["name"] in IMAGE_SETS:
        train, labels = load_images(spec["name"], "train", spec.get("data_dir"), download=False)
        validation = spec.get("validation", 0)
        if not isinstance(validation, int) or isinstance(validation, bool) or not 0 <= validation < len(train):
            raise ValueError(f"data option validation must be an integer in [0, {len(train) - 1}], "
                             f"got {validation!r}")
        if validation:
            train, heldout, labels = train[:-validation], train[-validation:], labels[:-validation]
        else:
            heldout, _ = load_images(spec["name"], "test", spec.get("data_dir"), download=False)
        desc = {"name": spec["name"], "eval_split": "validation" if validation else "test",
                "n_train": len(train), "n_eval": len(heldout), "validation": validation,
                "data_dir": str(spec.get("data_dir") or "")}
        return train, heldout, desc, labels
    for key in TOY_DEFAULTS:
        value = spec[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise ValueError(f"data option {key} must be a {'non-negative' if key == 'seed' else 'positive'} "
                             f"integer, got {value!r}")
    eval_seed = spec.get("eval_seed", spec["seed"] + 1)
    desc = {"name": spec["name"], "n_train": spec["n_train"], "n_eval": spec["n_eval"],
            "seed": spec["seed"], "eval_seed": eval_seed}
    return (toy_data(spec["name"], spec["n_train"], spec["seed"]),
            toy_data(spec["name"], spec["n_eval"], eval_seed), desc, None)


def _preprocessing(name: str) -> str:
    if name in IMAGE_SETS:
        return ("8-bit pixels + uniform noise U[0,1) per pixel (dequantisation) -> [0, 256); the flow's "
                "own layers (logit) do the rest and are counted in its log-det")
    return "none: 2-D float32 points as generated"


def heldout_data(meta: dict[str, Any], split: str | None,
                 data_dir: str | None) -> tuple[torch.Tensor, str, torch.Tensor | None]:
    """The held-out (or training) data a checkpoint was trained against, from its metadata, with
    labels for image sets (None for toy data)."""
    data = meta.get("data") or {}
    name = data.get("name")
    if name in IMAGE_SETS:
        split = split or "test"
        if split not in ("test", "train", "validation"):
            raise ValueError(f"image sets have splits 'test', 'train' and 'validation', got {split!r}")
        folder = data_dir or data.get("data_dir") or None
        images, labels = load_images(name, "test" if split == "test" else "train", folder, download=False)
        n_val = int(data.get("validation") or 0)
        if split == "validation":
            if not n_val:
                raise ValueError("this model was trained on the whole training set: it has no validation split")
            images, labels = images[-n_val:], labels[-n_val:]
        elif split == "train" and n_val:
            images, labels = images[:-n_val], labels[:-n_val]
        return images, split, labels
    if name in TOY_SETS:
        split = split or "heldout"
        if split not in ("heldout", "train"):
            raise ValueError(f"toy data has splits 'heldout' and 'train', got {split!r}")
        n, seed = (data["n_eval"], data["eval_seed"]) if split == "heldout" else (data["n_train"], data["seed"])
        return toy_data(name, n, seed), split, None
    raise ValueError("the checkpoint's metadata names no known data set, so there is nothing to evaluate on")


# --- train -----------------------------------------------------------------------------------


def _model_request(args: argparse.Namespace, file: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    spec = dict(file)
    name = args.model or spec.pop("name", None)
    spec.pop("name", None)
    spec.update(dict(args.set or []))
    if getattr(args, "classes", None) is not None:
        spec["classes"] = args.classes
    return name, spec


def _train_config(args: argparse.Namespace, file: dict[str, Any], saved: dict[str, Any]) -> TrainConfig:
    valid = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in valid}
    values.update(file)
    values.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    return TrainConfig.from_dict(values)


def _check_same_model(saved: dict[str, Any], name: str | None, overrides: dict[str, Any], path: Path) -> None:
    if name is not None and name != saved.get("model"):
        raise CheckpointError(f"{path} holds a {saved.get('model')} model, not the requested {name}; "
                              "use another --out to start a new run")
    wanted = make_config(saved["model"], saved["shape"], **overrides)
    for key in overrides:
        if getattr(wanted, key) != saved.get(key):
            raise CheckpointError(f"{path} was trained with {key}={saved.get(key)!r}, not the requested "
                                  f"{key}={getattr(wanted, key)!r}; use another --out to start a new run")


def cmd_train(args: argparse.Namespace) -> int:
    info = distributed.setup()
    try:
        return _train(args, info)
    finally:
        distributed.cleanup()


def _train(args: argparse.Namespace, info: distributed.DistInfo) -> int:
    file = _read_config(args.config)
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
    spec = _data_spec(args, file.get("data", {}), meta.get("data", {}) if args.resume else {})
    saved_train = payload.get("trainer", {}).get("config", {})
    config = _train_config(args, file.get("train", {}), saved_train)
    train, heldout, desc, labels = load_data(spec)
    shape = tuple(train.shape[1:])
    device = torch.device(args.device) if args.device else info.device
    metadata = {"data": desc, "preprocessing": _preprocessing(spec["name"])}
    distributed.barrier()  # every process has checked the folder before rank 0 writes to it
    if args.resume:
        _check_same_model(payload["model"], name, overrides, last)
        trainer = Trainer.resume(last, train, heldout, config, out, device, metadata, train_labels=labels)
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


BUDGET_PROBE_STEPS = 40  # steps timed to fit a run to --time-budget (the first 10 are warm-up)


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
    """Write `MODEL`: final weights plus metadata, with the full held-out set evaluated."""
    meta = trainer.run_metadata()
    if trainer.eval_data is not None and len(trainer.eval_data) < len(heldout):
        log.info("evaluating on all %d held-out examples for %s ...", len(heldout), MODEL)
        nll = evaluate_nll(trainer.flow, heldout, trainer.config.eval_batch_size, EVAL_SEED)
        meta["metrics"]["heldout_loss"] = nll
        meta["metrics"]["heldout_bits_per_dim"] = nats_to_bits_per_dim(nll, trainer.flow.event_dim)
        meta["metrics"]["heldout_size"] = len(heldout)
    save(trainer.flow, out / MODEL, **meta)
    m = meta["metrics"]
    log.info("wrote %s (step %d, eval NLL %s)", out / MODEL, trainer.steps_done, m["eval_loss"])


# --- eval and sample -------------------------------------------------------------------------


def _compiled(flow: Flow, compile: bool) -> Flow:
    return flow.compile() if compile else flow


def cmd_eval(args: argparse.Namespace) -> int:
    if args.draws < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--draws and --limit must be positive")
    flow = _compiled(load(args.checkpoint, map_location=args.device or "cpu"), args.compile)
    meta = flow.metadata
    data, split, labels = heldout_data(meta, args.split, args.data_dir)
    data = data[: args.limit] if args.limit else data
    if tuple(data.shape[1:]) != tuple(flow.shape):
        raise ValueError(f"the data has shape {tuple(data.shape[1:])}, the model expects {tuple(flow.shape)}")
    batch = args.batch_size or meta.get("train_config", {}).get("eval_batch_size", 500)
    image = data.dtype == torch.uint8
    draws = [evaluate_nll(flow, data, batch, args.seed + k) for k in range(args.draws if image else 1)]
    nll = sum(draws) / len(draws)
    bpd = [nats_to_bits_per_dim(d, flow.event_dim) for d in draws] if image else None
    result = {"checkpoint": str(args.checkpoint), "data": meta["data"]["name"], "split": split, "n": len(data),
              "nll": nll, "bits_per_dim": sum(bpd) / len(bpd) if bpd else None,
              "draws": len(draws), "seed": args.seed}
    if bpd and len(bpd) > 1:
        mean = result["bits_per_dim"]
        result["bits_per_dim_std"] = math.sqrt(sum((b - mean) ** 2 for b in bpd) / (len(bpd) - 1))
        result["bits_per_dim_draws"] = bpd
    if flow.classes and labels is not None:
        labels = labels[: len(data)]
        result["accuracy"] = classification_accuracy(flow, data, labels, batch, args.seed)
    print(json.dumps(result))
    return 0


@torch.inference_mode()
def classification_accuracy(flow: Flow, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                            noise_seed: int) -> float:
    """Share of `images` whose most likely class under `flow` (Bayes' rule) is their label."""
    flow.eval()
    gen = torch.Generator().manual_seed(noise_seed)
    hits = 0
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].float() + torch.rand(images[i : i + batch_size].shape, generator=gen)
        hits += int((flow.classify(x.to(flow.device)).cpu() == labels[i : i + batch_size]).sum())
    return hits / len(images)


def _scatter_image(points: torch.Tensor, size: int = 512, extent: float = 4.0) -> torch.Tensor:
    """2-D points -> grey image `(1, size, size)`: darker where more points fall, in [-extent, extent]^2."""
    ij = ((points + extent) / (2 * extent) * size).floor().long()
    keep = ((ij >= 0) & (ij < size)).all(dim=1)
    ij = ij[keep]
    counts = torch.zeros(size * size)
    counts.index_add_(0, (size - 1 - ij[:, 1]) * size + ij[:, 0], torch.ones(len(ij)))
    density = torch.log1p(counts) / max(math.log1p(float(counts.max())), 1e-9)
    return (1 - density).view(1, size, size)


def cmd_sample(args: argparse.Namespace) -> int:
    if args.n < 1 or args.temperature < 0:
        raise ValueError("--n must be positive and --temperature non-negative")
    from torchvision.utils import make_grid, save_image

    flow = _compiled(load(args.checkpoint, map_location=args.device or "cpu"), args.compile)
    gen = torch.Generator().manual_seed(args.seed)
    labels = None
    if args.digit is not None:
        if not flow.classes:
            raise ValueError(f"{args.checkpoint} is not class-conditional: --digit needs a model trained "
                             "with --classes")
        if not 0 <= args.digit < flow.classes:
            raise ValueError(f"--digit must be in [0, {flow.classes - 1}], got {args.digit}")
        labels = torch.full((args.n,), args.digit)
    x = flow.sample(args.n, args.temperature, gen, y=labels).cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(flow.shape) == 3:
        pixels = x.clamp(0, 255.999).floor() / 255  # [0, 256) -> 8-bit levels, shown as [0, 1]
        nrow = args.nrow or max(1, int(math.ceil(math.sqrt(args.n))))
        save_image(make_grid(pixels, nrow=nrow, padding=2), out)
    elif out.suffix.lower() == ".csv":
        out.write_text("x,y\n" + "".join(f"{a:.6g},{b:.6g}\n" for a, b in x.tolist()))
    else:
        save_image(_scatter_image(x), out)
    print(json.dumps({"out": str(out), "n": args.n, "temperature": args.temperature, "seed": args.seed}))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    print(json.dumps(convert(args.old, args.new)))
    return 0


# --- parser ----------------------------------------------------------------------------------


COMPILE_HELP = ("run the model through torch.compile (compiling takes tens of seconds first; "
                "falls back to plain PyTorch with a warning where compiling fails)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m flowcore", description="Train, evaluate and sample normalizing flows.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a flow (resumable; torchrun for several processes)",
                       description="Train NICE/RealNVP/Glow on a 2-D toy set, MNIST or Fashion-MNIST. "
                       f"Writes OUT/{LAST}, "
                       f"OUT/{MODEL} and OUT/log.jsonl. JSON config format: see the cli module docstring.")
    t.add_argument("--model", choices=list(CONFIGS), help="model family")
    t.add_argument("--data", choices=DATA_SETS, help="data set")
    t.add_argument("--data-dir", help="folder holding the MNIST IDX files, and Fashion-MNIST's in a fashion-mnist/ "
                   "subfolder (else $FLOWCORE_DATA_DIR)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--config", help="JSON file with model/data/train sections; flags override it")
    t.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="model config field, e.g. --set hidden=128 --set steps=8 (repeatable)")
    t.add_argument("--classes", type=int, help="Glow: condition the prior on this many classes (labels)")
    t.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="new runs: time the first steps, then train as many steps as fit in SECONDS")
    t.add_argument("--resume", action="store_true", help=f"continue OUT/{LAST} exactly where it stopped")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or info lines")
    for name in TRAIN_FLAGS:
        kind = {"optimizer": str, "decay": str, "lr": float, "grad_clip": float, "weight_decay": float,
                "spike_guard": float, "class_loss": float}.get(name, int)
        choices = {"optimizer": ["adam", "adamax"], "decay": ["cosine", "none"]}.get(name)
        t.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices, default=None,
                       help=f"TrainConfig.{name} (default {getattr(TrainConfig(), name)!r})")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="held-out NLL / bits per dim of a checkpoint",
                       description="Evaluate a checkpoint on the data it was trained against. Images: "
                       "bits/dim on MNIST (--split test) with seeded dequantisation noise, K draws. Toy "
                       "sets: NLL in nats on the regenerated held-out set. Last line: one JSON object.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data-dir", help="folder holding the MNIST IDX files")
    e.add_argument("--split", help="test/train/validation (images) or heldout/train (toy); default test/heldout")
    e.add_argument("--limit", type=int, help="evaluate only the first N examples")
    e.add_argument("--draws", type=int, default=1, help="dequantisation noise draws (images)")
    e.add_argument("--seed", type=int, default=EVAL_SEED, help="noise seed of the first draw")
    e.add_argument("--batch-size", type=int, help="examples per forward pass")
    e.add_argument("--device", help="cpu, cuda ... (default cpu)")
    e.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sample", help="draw samples from a checkpoint",
                       description="Image models: a PNG grid of samples (8-bit). 2-D models: a CSV of "
                       "points if --out ends in .csv, else a PNG density/scatter image of [-4, 4]^2.")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--n", type=int, default=64, help="number of samples")
    s.add_argument("--temperature", type=float, default=0.7, help="scale of the base distribution")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--digit", type=int, help="class-conditional models: draw this class (default: any)")
    s.add_argument("--nrow", type=int, help="images per grid row (default: square)")
    s.add_argument("--out", required=True, help="output .png (or .csv for 2-D models)")
    s.add_argument("--device", help="cpu, cuda ... (default cpu)")
    s.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("convert", help="rewrite a torch.save (pickle) checkpoint as safetensors",
                       description="Read a flowcore checkpoint written with torch.save (.pt: a model or a "
                       "training state) with PyTorch's weights-only unpickler, which refuses anything but plain "
                       "types and tensors, and write it to NEW in the safetensors format. Last line: one JSON "
                       "object.")
    c.add_argument("old", help="the .pt file")
    c.add_argument("new", help="the .safetensors file to write (never overwritten)")
    c.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 with one `error:` line on bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return args.func(args)
    except (ValueError, DataNotFound, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume from the last checkpoint", file=sys.stderr)
        return 130


