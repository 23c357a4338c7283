"""Timing: warm-up, then repeats that alternate the contenders, medians of the repeats.

The contenders run in turn inside each repeat (the order flips every repeat), so a change
in machine load hits both alike; a ratio is the median of the per-repeat ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], None], calls: int, device: torch.device) -> float:
    """Wall seconds per call of `fn`, over `calls` back-to-back calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / calls


def alternate(fns: Sequence[Callable[[], None]], repeats: int, calls: int, warmup: int,
              device: torch.device) -> list[list[float]]:
    """Seconds per call of each of `fns`: one list of `repeats` measurements per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    out: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            out[i].append(seconds_per_call(fns[i], calls, device))
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_ratio(slow: Sequence[float], fast: Sequence[float]) -> float:
    """Median over repeats of `slow[r] / fast[r]` (how many times faster `fast` is)."""
    return median([s / f for s, f in zip(slow, fast, strict=True) if f > 0])
