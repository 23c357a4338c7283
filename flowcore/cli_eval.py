"""`python -m flowcore eval` and `sample`: what a finished checkpoint measures on its held-out
data, and what it draws."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from flowcore.checkpoint import load
from flowcore.cli_data import heldout_data
from flowcore.core import Flow, evaluating
from flowcore.metrics import nats_to_bits_per_dim
from flowcore.train import evaluate_nll
from flowcore.validate import check_int, check_number


def _load(args: argparse.Namespace) -> Flow:
    """The checkpoint's flow on `--device` (default cpu), compiled with `--compile`."""
    flow = load(args.checkpoint, map_location=args.device or "cpu")
    return flow.compile() if args.compile else flow


def cmd_eval(args: argparse.Namespace) -> int:
    """Print one JSON object: NLL (nats) and, for images, bits/dim averaged over noise draws."""
    check_int("--draws", args.draws)
    for flag, value in (("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None:
            check_int(flag, value)
    flow = _load(args)
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
    gen = torch.Generator().manual_seed(noise_seed)
    hits = 0
    with evaluating(flow):
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
    """Write samples (an image grid, a 2-D scatter image or a CSV of points); print one JSON object."""
    check_int("--n", args.n)
    check_number("--temperature", args.temperature)
    if args.nrow is not None:
        check_int("--nrow", args.nrow)
    from torchvision.utils import make_grid, save_image

    flow = _load(args)
    gen = torch.Generator().manual_seed(args.seed)
    labels = None
    if args.digit is not None:
        if not flow.classes:
            raise ValueError(f"{args.checkpoint} is not class-conditional: --digit needs a model trained "
                             "with --classes")
        check_int("--digit", args.digit, 0, flow.classes - 1)
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
