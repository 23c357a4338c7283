"""A small statistics file for the Out of distribution page, from the tiny stand-in models.

`make_ood_stats(DIR)` scores random images (30 per set) with the stand-ins that
`tests/dashboard/fixtures.py` wrote to DIR and saves `DIR/ood_stats.npz`, as `python -m scripts.ood`
does for the shipped models; `fashion=False` leaves Fashion-MNIST out, as on a host without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowcore import ood
from flowcore.checkpoint import load
from scripts import ood as script


def make_ood_stats(directory: str | Path, fashion: bool = True, n: int = 30) -> Path:
    directory = Path(directory)
    listed = json.loads((directory / "manifest.json").read_text())["models"]
    models = {m: script.Model(load(directory / listed[m]["file"]), listed[m].get("dataset", "mnist"))
              for m in script.MODELS if m in listed}
    g = torch.Generator().manual_seed(0)
    images = lambda k: torch.randint(0, 256, (k, 1, 28, 28), generator=g, dtype=torch.uint8)  # noqa: E731
    data = {name: {"test": images(n), "train": images(n)} for name in ("mnist", "fashion-mnist")}
    missing = []
    if not fashion:
        del data["fashion-mnist"]
        missing.append("Fashion-MNIST: not installed (test stand-in)")
    arrays, meta = script.compute(models, data, n, missing, command="tests/dashboard/ood_stats.py")
    return ood.save_statistics(directory / "ood_stats.npz", arrays, meta)
