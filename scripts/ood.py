"""The statistics behind the dashboard's Out of distribution page, computed once into `pretrained/`.

    python -m scripts.ood --data-dir ../shared/data/mnist [--n 1000] [--checkpoint ID=PATH ...]

For every shipped model (`MODELS`), every image of every set (`SETS`: the MNIST and Fashion-MNIST
test sets, constant images, uniform noise, inverted and shifted digits, and a reference sample of
the images the model was trained on, or of its validation split) gets its bits/dim (one
dequantisation draw from the image's own seed) and, for multi-scale models, the bits/dim of the
coarsest level; each set image also gets its PNG length. Everything goes into one small
`pretrained/ood_stats.npz` (arrays only, read without pickle), with a JSON description of how it
was made: sets, seeds, which checkpoint (a fingerprint of its weights) and the command.
`tests/test_ood.py` rebuilds the sets, recomputes a sample of them with the shipped models and
checks every number against the file. `python -m scripts.ood_table --write` then rewrites the
README's AUROC table from the new file.

Fashion-MNIST comes from `apt-get install dataset-fashion-mnist` (or a `fashion-mnist/` folder in
the data directory); without it the Fashion sets and the Fashion-trained model are left out and
the file says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flowcore import ood  # noqa: E402
from flowcore.checkpoint import load, load_metadata  # noqa: E402
from flowcore.data import IMAGE_SETS, DataNotFound, load_images  # noqa: E402
from scripts.score_stats import fingerprint  # noqa: E402  (the Score page's: weights, any file format)

OUT = REPO / "pretrained" / "ood_stats.npz"
MODELS = ("nice-mnist", "realnvp-mnist", "glow-mnist", "glow-fashion")
DATASETS = {"mnist": "MNIST test", "fashion-mnist": "Fashion-MNIST test"}  # data set -> its test set's key
# Set key -> title; the order of the page's legends and tables.
SETS = {
    "MNIST test": "MNIST test images",
    "Fashion-MNIST test": "Fashion-MNIST test images",
    "constant": "constant images (one per grey level)",
    "uniform noise": "uniform noise",
    "inverted digits": "inverted digits (255 - x)",
    "shifted digits": "digits shifted by 4 pixels",
}
SHIFT = 4  # pixels
SEED = 0
EXAMPLES = 8  # images of each set kept in the file (evenly spaced through it), for the page to show


@dataclass(frozen=True)
class Model:
    """A model to score with, and what it was trained on (from its checkpoint's metadata)."""

    flow: torch.nn.Module
    dataset: str  # "mnist" or "fashion-mnist"
    validation: int = 0  # the last `validation` training images were held out from training
    checkpoint: str = ""  # where it came from, as written in the statistics file


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # (N, 1, 28, 28) uint8
    seeds: np.ndarray  # (N,) one dequantisation seed per image
    source: np.ndarray  # (N,) index of each image in the file it came from (-1: generated)


def _seeds(key: str, n: int) -> np.ndarray:
    """Per-image dequantisation seeds, different for every set, the same for every model."""
    base = int.from_bytes(hashlib.sha256(key.encode()).digest()[:3], "big") * 1_000_000
    return base + np.arange(n, dtype=np.int64)


def _subset(n_total: int, n: int, key: str) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{SEED}:{key}".encode()).digest()[:4], "big"))
    return np.sort(rng.choice(n_total, size=min(n, n_total), replace=False))


def build_sets(mnist_test: torch.Tensor, fashion_test: torch.Tensor | None, n: int) -> dict[str, ImageSet]:
    """The scored sets, from the two test sets: `n` images each (256 constant images); Fashion-MNIST
    test is left out when `fashion_test` is None. The same inputs always give the same images."""
    sets: dict[str, ImageSet] = {}

    def add(key: str, images: torch.Tensor, source: np.ndarray) -> None:
        sets[key] = ImageSet(images.contiguous(), _seeds(key, len(images)), source)

    digits = _subset(len(mnist_test), n, "MNIST test")
    add("MNIST test", mnist_test[digits], digits)
    if fashion_test is not None:
        clothes = _subset(len(fashion_test), n, "Fashion-MNIST test")
        add("Fashion-MNIST test", fashion_test[clothes], clothes)
    add("constant", ood.constant_images(), np.full(256, -1))
    add("uniform noise", ood.uniform_noise(n, SEED), np.full(n, -1))
    add("inverted digits", ood.inverted(mnist_test[digits]), digits)
    add("shifted digits", ood.shifted(mnist_test[digits], SHIFT, SEED), digits)
    return sets


def reference_set(train: torch.Tensor, validation: int, n: int, model_id: str) -> tuple[ImageSet, str]:
    """`n` images the model's typical value is estimated on: from its validation split (the last
    `validation` training images, never trained on) if it has one, else from its training images."""
    if validation:
        pool = np.arange(len(train) - validation, len(train))
        what = f"its validation split ({validation:,} training images held out from training)"
    else:
        pool = np.arange(len(train))
        what = f"its {len(train):,} training images"
    picked = pool[_subset(len(pool), n, f"{ood.REFERENCE}:{model_id}")]
    return ImageSet(train[picked].contiguous(), _seeds(f"{ood.REFERENCE}:{model_id}", len(picked)), picked), \
        f"{len(picked):,} images drawn from {what}"


def load_data(data_dir: str | None) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """`{"mnist": {"test": ..., "train": ...}, "fashion-mnist": {...}}` offline, and what is missing."""
    data, missing = {}, []
    for name in DATASETS:
        try:
            data[name] = {split: load_images(name, split, data_dir, download=False)[0] for split in ("test", "train")}
        except DataNotFound as err:
            if name == "mnist":
                raise
            missing.append(f"{IMAGE_SETS[name].title}: {err}")
    return data, missing


def compute(models: dict[str, Model], data: dict[str, dict[str, torch.Tensor]], n: int,
            missing: list[str] = (), command: str = "", log: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Score every set under every model: the arrays and the description `save` writes.

    `data`: `{"mnist": {"test": images, "train": images}, "fashion-mnist": {...}}` (Fashion optional)."""
    sets = build_sets(data["mnist"]["test"], data.get("fashion-mnist", {}).get("test"), n)
    arrays: dict[str, np.ndarray] = {}
    meta = {"version": 1, "n": n, "seed": SEED, "shift": SHIFT, "created": time.strftime("%Y-%m-%d %H:%M UTC",
            time.gmtime()), "command": command, "missing": list(missing), "sets": {}, "models": {}}
    for key, s in sets.items():
        meta["sets"][key] = {"title": SETS[key], "n": len(s.images)}
        arrays[ood.stat_key(key, "seeds")], arrays[ood.stat_key(key, "source")] = s.seeds, s.source
        spread = np.linspace(0, len(s.images) - 1, EXAMPLES).astype(int)
        arrays[ood.stat_key(key, "examples")] = s.images[spread, 0].numpy()
        arrays[ood.stat_key(key, ood.PNG)] = ood.png_bits_per_dim(s.images).astype(np.float32)
    for model_id, model in models.items():
        flow, dataset = model.flow, model.dataset
        if dataset not in data:
            continue
        flow.eval()
        ref, ref_what = reference_set(data[dataset]["train"], model.validation, n, model_id)
        start = time.perf_counter()
        for key, s in [*sets.items(), (ood.REFERENCE, ref)]:
            scores = ood.score_images(flow, s.images, s.seeds)
            for term, values in scores.items():
                arrays[ood.stat_key(model_id, key, term)] = values.astype(np.float32)
        arrays[ood.stat_key(model_id, ood.REFERENCE, "seeds")] = ref.seeds
        arrays[ood.stat_key(model_id, ood.REFERENCE, "source")] = ref.source
        own = DATASETS[dataset]
        terms = [t for t in scores if t != ood.TOTAL]
        meta["models"][model_id] = {
            "dataset": dataset, "own": own, "other": next((k for k in DATASETS.values() if k != own), None),
            "reference": ref_what, "terms": terms, "last_scale_terms": ood.coarsest_level_terms(terms),
            "typical_bits_per_dim": float(scores[ood.TOTAL].mean()),
            "fingerprint": fingerprint(flow), "checkpoint": model.checkpoint,
        }
        if log:
            print(f"{model_id}: {sum(len(s.images) for s in sets.values()) + len(ref.images):,} images in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    return arrays, meta


def checkpoint_paths(pretrained: Path, overrides: dict[str, str]) -> dict[str, Path]:
    """Model id -> checkpoint file: `--checkpoint ID=PATH`, else the manifest's `file`, else
    `<id>.safetensors` in the folder (a checkpoint released before its manifest entry)."""
    try:
        listed = json.loads((pretrained / "manifest.json").read_text())["models"]
    except (OSError, ValueError, KeyError):
        listed = {}
    paths = {m: pretrained / listed[m]["file"] for m in MODELS if isinstance(listed.get(m), dict)
             and listed[m].get("file")}
    paths.update({m: pretrained / f"{m}.safetensors" for m in MODELS
                  if m not in paths and (pretrained / f"{m}.safetensors").is_file()})
    paths.update({m: Path(p) for m, p in overrides.items()})
    return paths


def load_model(path: Path) -> Model:
    """A checkpoint through `flowcore.load`, with the data set and validation split it was trained on."""
    flow = load(path)
    flow.requires_grad_(False)
    data = load_metadata(path).get("data")
    data = data if isinstance(data, dict) else {}
    shown = str(path.relative_to(REPO)) if path.is_absolute() and path.is_relative_to(REPO) else str(path)
    return Model(flow, str(data.get("name", "mnist")), int(data.get("validation") or 0), shown)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (default: $FLOWCORE_DATA_DIR, ./data)")
    parser.add_argument("--pretrained", default=str(REPO / "pretrained"), help="folder with manifest.json")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="ID=PATH",
                        help="use this checkpoint for a model instead of the manifest's")
    parser.add_argument("--n", type=int, default=1000, help="images per set (constant images: always 256)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.checkpoint)
    paths = checkpoint_paths(Path(args.pretrained), overrides)
    data, missing = load_data(args.data_dir)
    models = {}
    for model_id in MODELS:
        if model_id not in paths or not paths[model_id].is_file():
            missing.append(f"{model_id}: no checkpoint (not in the manifest, or the file is missing)")
            continue
        models[model_id] = load_model(paths[model_id].resolve())
    command = "python -m scripts.ood " + " ".join(argv if argv is not None else sys.argv[1:])
    arrays, meta = compute(models, data, args.n, missing, command.strip(), log=True)
    path = ood.save_statistics(Path(args.out), arrays, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    for problem in missing:
        print("missing:", problem)


if __name__ == "__main__":
    main()
