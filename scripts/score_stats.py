"""The test-set scores the Score page compares a visitor's digit with: `python -m scripts.score_stats`.

For every unconditional MNIST model in `pretrained/manifest.json` it scores the 10,000 MNIST test digits the way
the page scores a digit (`flowcore.breakdown.image_scores`: bits/dim averaged over the same fixed
dequantisation draws) and writes them to `pretrained/score_stats.npz`, rounded to 1e-4 bits/dim,
with a fingerprint of the model's weights. The page uses an entry only when the fingerprint is
that of the model it serves, so a changed checkpoint is never compared with an old model's
scores; a model whose weights did not change is not scored again. Run it whenever a checkpoint
changes (`scripts/release_pretrained.py` does).

    python -m scripts.score_stats --data-dir ../shared/data/mnist [--pretrained DIR] [--gallery]

`--gallery` also writes the few hundred test digits the dashboard ships for hosts without the
MNIST files (`dashboard/assets/mnist-gallery.npz`: 30 of each class, the first in test-set order).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

import flowcore
from flowcore.breakdown import SCORE_DRAWS, SCORE_SEED, image_scores

REPO = Path(__file__).resolve().parents[1]

STATS_FILE = "score_stats.npz"
GALLERY = REPO / "dashboard" / "assets" / "mnist-gallery.npz"
PER_CLASS = 30
ROUND = 1e-4


def fingerprint(flow: flowcore.Flow) -> str:
    """SHA-256 of the weights as float32 (names, shapes, values): the same for a checkpoint in any
    file format, different as soon as one weight changes."""
    digest = hashlib.sha256()
    for name, value in sorted(flow.state_dict().items()):
        digest.update(f"{name}:{tuple(value.shape)}:".encode())
        if value.is_floating_point():
            value = value.float()
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_stats(path: Path) -> dict[str, dict]:
    """fingerprint -> {"model": id, "bits": float32 (N,), "draws", "seed"}; empty if there is no file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            return {fp: {**m, "bits": npz[f"bits_{fp[:16]}"]} for fp, m in meta.items()}
    except (OSError, KeyError, ValueError):
        return {}


def write_stats(path: Path, stats: dict[str, dict]) -> None:
    meta = {fp: {k: v for k, v in s.items() if k != "bits"} for fp, s in stats.items()}
    arrays = {f"bits_{fp[:16]}": np.asarray(s["bits"], np.float32) for fp, s in stats.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta, indent=1)), **arrays)
    tmp.replace(path)


def score_test_set(flow: flowcore.Flow, images: torch.Tensor) -> np.ndarray:
    """Bits/dim of every image as the page scores one, rounded to `ROUND`: float32 `(N,)`."""
    flow.eval()
    total = sum(image_scores(flow, images).values())
    return (np.round(total.numpy() / ROUND) * ROUND).astype(np.float32)


def write_gallery(images: torch.Tensor, labels: torch.Tensor, path: Path = GALLERY) -> Path:
    picked = np.concatenate([np.flatnonzero(labels.numpy() == c)[:PER_CLASS] for c in range(10)])
    picked.sort()
    np.savez_compressed(path, images=images[picked, 0].numpy().astype(np.uint8),
                        labels=labels[picked].numpy().astype(np.uint8), test_index=picked.astype(np.int32))
    return path


def score_models(directory: Path, images: torch.Tensor) -> Path:
    """Score `images` under every MNIST model of `directory`'s manifest into `directory/score_stats.npz`
    (models whose weights are unchanged keep their scores); returns the file."""
    models = json.loads((directory / "manifest.json").read_text())["models"]
    out = directory / STATS_FILE
    old, new = read_stats(out), {}
    for model_id, entry in models.items():
        if str(entry.get("dataset") or "mnist") != "mnist":
            continue  # the test set is MNIST's: Fashion-MNIST models are not scored here
        path = directory / str(entry.get("file") or "")
        if not path.is_file():
            print(f"{model_id}: no checkpoint at {path}, skipped")
            continue
        flow = flowcore.load(path)
        if flow.classes:  # Score shows its p(y | x) and the terms of log p(x | y), not a percentile
            print(f"{model_id}: class-conditional, skipped")
            continue
        fp = fingerprint(flow)
        kept = old.get(fp, {})
        if kept.get("draws") == SCORE_DRAWS and kept.get("seed") == SCORE_SEED and kept.get("n") == len(images):
            new[fp] = {**kept, "model": model_id}
            print(f"{model_id}: unchanged, kept")
            continue
        start = time.perf_counter()
        bits = score_test_set(flow, images)
        new[fp] = {"model": model_id, "bits": bits, "draws": SCORE_DRAWS, "seed": SCORE_SEED, "n": len(bits)}
        print(f"{model_id}: {len(bits)} test digits, mean {bits.mean():.4f} bits/dim, "
              f"1st-99th percentile {np.percentile(bits, 1):.3f}-{np.percentile(bits, 99):.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    write_stats(out, new)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, default=REPO / "pretrained")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: $FLOWCORE_DATA_DIR)")
    parser.add_argument("--gallery", action="store_true", help=f"also write {GALLERY.relative_to(REPO)}")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, labels = flowcore.load_mnist("test", args.data_dir, download=False)
    if args.gallery:
        print(f"wrote {write_gallery(images, labels)}")
    print(f"wrote {score_models(args.pretrained, images)}")


if __name__ == "__main__":
    main()
