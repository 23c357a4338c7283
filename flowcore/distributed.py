"""Multi-process data parallelism: set-up from `torchrun` environment variables and small helpers.

`torchrun --nproc_per_node=N -m flowcore train ...` sets `RANK`, `WORLD_SIZE` and
`LOCAL_RANK`; `setup()` then joins the process group (NCCL on GPUs, gloo on CPUs). The
trainer reads `rank()` / `world_size()` and works unchanged in a single process.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowcore.device import default_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int  # global index of this process, 0 writes files
    world_size: int  # number of processes
    local_rank: int  # index on this machine, picks the GPU
    device: torch.device  # where this process computes


def launched() -> bool:
    """Whether this process was started by `torchrun` (or similar) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True in the process that writes checkpoints and logs (rank 0, or a single process)."""
    return rank() == 0


def setup() -> DistInfo:
    """Join the process group when launched by `torchrun`; otherwise describe a single process."""
    if not launched():
        return DistInfo(0, 1, 0, default_device())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = default_device()
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, device)


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: Tensor) -> Tensor:
    """The mean of `t` over processes (a copy; `t` itself when running alone)."""
    if not is_initialized():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` in DistributedDataParallel. Its buffers must already agree on every rank (they
    are built deterministically and ActNorm all-reduces its initialisation), so they are not
    re-broadcast on every forward pass."""
    ddp = nn.parallel.DistributedDataParallel
    params = inspect.signature(ddp.__init__).parameters
    quiet = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    ids = [device.index] if device.type == "cuda" else None
    return ddp(module, device_ids=ids, **quiet)
