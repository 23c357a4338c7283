"""Where computation runs: chosen in one place."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """CUDA when available (and not disabled with `FLOWCORE_DEVICE=cpu`), else CPU."""
    wanted = os.environ.get("FLOWCORE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
