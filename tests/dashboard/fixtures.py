"""Small stand-ins for the pretrained MNIST models: untrained tiny flows plus a manifest.

`python tests/dashboard/fixtures.py DIR` writes them to DIR, for looking at the dashboard
before the real checkpoints exist (`FLOWCORE_PRETRAINED_DIR=DIR streamlit run dashboard/app.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flowcore.checkpoint import save  # noqa: E402
from flowcore.models import build  # noqa: E402

TINY = {
    "nice": dict(hidden=16, layers=1, couplings=2),
    "realnvp": dict(hidden=8, blocks=1, scales=2),
    "glow": dict(hidden=8, steps=1, levels=2),
}
MEASURED = {"nice": 4.4, "realnvp": 1.9, "glow": 1.6}
PUBLISHED = {"nice": (4.36, "NICE paper"), "realnvp": (1.06, "FFJORD paper, MNIST table"),
             "glow": (1.05, "FFJORD paper, MNIST table")}


# the shipped RealNVP and Glow learn their dequantisation noise: so do their stand-ins
LEARNED_NOISE = {"realnvp": dict(dequantizer="variational", dequantizer_couplings=1, dequantizer_hidden=4),
                 "glow": dict(dequantizer="variational", dequantizer_couplings=1, dequantizer_hidden=4)}


EXTRA = {  # model id -> (family, data set, variant, overrides)
    "glow-mnist-conditional": ("glow", "mnist", "conditional", dict(TINY["glow"], classes=10)),
    "glow-fashion": ("glow", "fashion-mnist", "", TINY["glow"]),
}


def make_pretrained(directory: str | Path, models: tuple[str, ...] = tuple(TINY), extras: bool = True) -> Path:
    """Write `<family>-mnist.safetensors` for the families in `models` (and, with `extras`, a tiny
    class-conditional Glow and a Fashion-MNIST Glow) and a manifest listing them all into `directory`,
    keyed by model id as the shipped manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i, (name, overrides) in enumerate(TINY.items()):
        torch.manual_seed(i)
        flow = build(name, (1, 28, 28), **overrides, **LEARNED_NOISE.get(name, {}))
        if name in models:
            save(flow, directory / f"{name}-mnist.safetensors", data="MNIST (untrained test stand-in)")
        bpd = MEASURED[name]
        entries[f"{name}-mnist"] = {
            "family": name, "dataset": "mnist", "variant": "",
            "file": f"{name}-mnist.safetensors", "title": {"nice": "NICE", "realnvp": "RealNVP", "glow": "Glow"}[name],
            "test_bits_per_dim": bpd, "test_bits_per_dim_std": 0.002, "n_test": 10000, "draws": 5,
            "params": flow.num_parameters(), "images_seen": 64000, "epochs": 1.07, "wall_time_s": 12.5,
            "hardware": "test stand-in", "data": "MNIST test set", "sample_time_64_s": 0.01 * (i + 1),
            "published": {"bits_per_dim": PUBLISHED[name][0], "source": PUBLISHED[name][1]},
            "command": f"python -m flowcore train --config configs/{name}-mnist.json",
            "curve": [{"step": s, "images_seen": 64 * s, "test_bits_per_dim": bpd + 3.0 / s ** 0.5}
                      for s in (100, 300, 1000)],
            "curve_split": "test", "curve_eval_size": 1000,
            "dequantizer": "variational" if name in LEARNED_NOISE else "uniform",
        }
    for i, (model_id, (family, dataset, variant, overrides)) in enumerate(EXTRA.items() if extras else ()):
        torch.manual_seed(10 + i)
        flow = build(family, (1, 28, 28), **overrides)
        save(flow, directory / f"{model_id}.safetensors", data=f"{dataset} (untrained test stand-in)")
        entries[model_id] = {
            "family": family, "dataset": dataset, "variant": variant, "file": f"{model_id}.safetensors",
            "title": "Glow (class-conditional)" if variant else "Glow (Fashion-MNIST)",
            "test_bits_per_dim": 1.7 if dataset == "mnist" else 3.3, "n_test": 10000, "draws": 5,
            "params": flow.num_parameters(), "images_seen": 64000, "wall_time_s": 12.5,
            "hardware": "test stand-in", "classes": overrides.get("classes", 0),
            "test_accuracy": 0.5 if variant else None,
        }
    (directory / "manifest.json").write_text(json.dumps({"models": entries}, indent=1))
    return directory


if __name__ == "__main__":
    print(make_pretrained(sys.argv[1] if len(sys.argv) > 1 else "/tmp/flows-pretrained"))
