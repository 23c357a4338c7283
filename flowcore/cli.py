"""The command line: `python -m flowcore {train,eval,sample,convert} ...` (`--help` on each).

This module parses the arguments and dispatches; the commands live in `cli_train` (train),
`cli_eval` (eval, sample) and `cli_data` (the data a run trains on and is evaluated on).

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

Toy sets: `n_train` points drawn with `seed`, `n_eval` held-out points with `eval_seed` (default `seed + 1`).
MNIST: the 60k training images; evaluation on the test set (`train.eval_size` first images
during training, all of them in `model.safetensors`' metadata). Errors are one line on stderr
starting with `error: `, exit code 2. Debug aid: with `FLOWCORE_DUMP_PARAMS=DIR` every
process of `train` saves its final parameters to `DIR/rank<R>.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from flowcore.cli_data import DATA_SETS
from flowcore.cli_eval import cmd_eval, cmd_sample
from flowcore.cli_train import MODEL, TRAIN_FLAGS, cmd_train
from flowcore.convert import convert
from flowcore.data import DataNotFound
from flowcore.models import CONFIGS, DEQUANTIZERS
from flowcore.train import EVAL_SEED, LAST, TrainConfig


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
    """`--set KEY=VALUE`: VALUE is read as JSON where it parses (numbers, true, lists), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _json_value(value)


def cmd_convert(args: argparse.Namespace) -> int:
    """Rewrite a pickle checkpoint as safetensors (`flowcore.convert`); print one JSON object."""
    print(json.dumps(convert(args.old, args.new)))
    return 0


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
    t.add_argument("--dequantizer", choices=list(DEQUANTIZERS),
                   help="images: uniform noise (default) or a learned variational q(u|x); "
                   "--resume with variational adds one to a trained model")
    t.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="new runs: time the first steps, then train as many steps as fit in SECONDS")
    t.add_argument("--resume", action="store_true", help=f"continue OUT/{LAST} exactly where it stopped")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or info lines")
    for name in TRAIN_FLAGS:
        kind = {"optimizer": str, "decay": str, "lr": float, "grad_clip": float, "weight_decay": float,
                "spike_guard": float, "class_loss": float, "ema_decay": float}.get(name, int)
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


