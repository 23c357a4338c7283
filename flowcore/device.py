"""Where computation runs: chosen in one place."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def default_device() -> torch.device:
    """CUDA when available (and not disabled with `FLOWCORE_DEVICE=cpu`), else CPU."""
    wanted = os.environ.get("FLOWCORE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hardware_name(device: torch.device | str = "cpu") -> str:
    """A readable name of the processor (CPU model from /proc/cpuinfo, or the CUDA device name)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
