"""One checkpoint format for every model: a single `torch.save` file of plain types and tensors.

    {"format": "flowcore-checkpoint", "version": 1,
     "model": config_dict(flow),        # rebuilds the architecture (`build_from_dict`)
     "state_dict": flow.state_dict(),   # float32, on the CPU
     "optimizer": ... | None,           # training checkpoints only
     "trainer": {...} | None,           # step, RNG states, lr multiplier, history (see `flowcore.train`)
     "metadata": {...}}                 # data set, preprocessing, wall time, hardware, versions, metrics

Files are written atomically (temporary file in the same folder, fsync, `os.replace`), so a
crash mid-write never damages the previous checkpoint. They are read with
`torch.load(..., weights_only=True)`: a file that needs arbitrary Python objects (pickle
globals, which could run code when loaded) is refused with `CheckpointError`, as are
truncated, corrupted, foreign or mismatching files.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowcore.core import Flow
from flowcore.models import build_from_dict, config_dict
from flowcore.pickle_check import refused_import

FORMAT = "flowcore-checkpoint"
VERSION = 1
_REQUIRED = ("model", "state_dict")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says which file and why, in one line."""


def float32_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A model state dict on the CPU with floating tensors in float32 (small, portable files)."""
    return {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
            for k, v in state.items()}


def plain(obj: Any) -> Any:
    """`obj` as plain types + CPU tensors, safe for `torch.load(weights_only=True)`."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, int) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None:
        return None
    for kind in (bool, int, float, str):  # exact types: subclasses (TorchVersion) need pickle globals
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint; use plain types and tensors")


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `payload` (plus format and version) to `path` atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # usual permissions (umask)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _torch_load(path: Path, map_location: Any) -> Any:
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before refusing them
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {path} is a folder, not a file") from None
    except PermissionError:
        raise CheckpointError(f"cannot read {path}: permission denied") from None
    except MemoryError:
        raise
    except RuntimeError as err:
        if "legacy .tar format" in str(err):
            raise CheckpointError(f"{path} is in PyTorch's legacy .tar format, which cannot be read without "
                                  "running code from it; only flowcore checkpoints are accepted") from None
        _refuse_imports(path, str(err))
    except Exception as err:  # noqa: BLE001 - any other failure to parse: the file is not readable
        _refuse_imports(path, str(err))
    raise CheckpointError(f"{path} is truncated or corrupted (not a readable checkpoint)")


def _refuse_imports(path: Path, message: str) -> None:
    """Raise the refusal that names the Python object the file asks for, if it asks for one."""
    name = refused_import(path, message)
    if name is not None:
        raise CheckpointError(
            f"refusing to load {path}: it asks for the Python object {name}, and arbitrary Python objects "
            "(pickle) could run code; only flowcore checkpoints of plain types and tensors are accepted"
        ) from None


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The checked payload of a checkpoint file (see the module docstring for its keys)."""
    path = Path(path)
    payload = _torch_load(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a flowcore checkpoint (no 'format': '{FORMAT}' entry)")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this flowcore reads up to "
                              f"{VERSION}")
    missing = [k for k in _REQUIRED if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path} is missing {', '.join(missing)}")
    payload.setdefault("metadata", {})
    return payload


def check_state_dict(flow: Flow, state: dict[str, Tensor], where: str) -> None:
    """Raise `CheckpointError` naming missing/unexpected keys or shape mismatches."""
    own = flow.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    for k, v in state.items():
        if k in own and (not isinstance(v, Tensor) or v.shape != own[k].shape):
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            problems.append(f"{k} has shape {got}, the model expects {tuple(own[k].shape)}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{where} does not match its model: {'; '.join(problems[:3])}{more}")


def flow_from_payload(payload: dict[str, Any], where: str = "checkpoint") -> Flow:
    """Rebuild the flow described by a payload and load its weights (training mode)."""
    try:
        flow = build_from_dict(payload["model"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{where} describes a model that cannot be built: {err}") from None
    check_state_dict(flow, payload["state_dict"], where)
    flow.load_state_dict(payload["state_dict"])
    flow.metadata = dict(payload.get("metadata") or {})
    return flow


def save(flow: Flow, path: str | os.PathLike, **metadata: Any) -> Path:
    """Save weights (float32), config and `metadata` of `flow` to `path`; returns the path."""
    payload = {"model": config_dict(flow), "state_dict": float32_state(flow.state_dict()),
               "optimizer": None, "trainer": None, "metadata": plain(metadata)}
    return write_checkpoint(payload, path)


def load(path: str | os.PathLike, map_location: Any = "cpu") -> Flow:
    """The flow saved in `path`, in eval mode, with its metadata as `flow.metadata`."""
    flow = flow_from_payload(read_checkpoint(path, map_location), str(path))
    if isinstance(map_location, (str, torch.device)):
        flow = flow.to(map_location)
    return flow.eval()


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata of a checkpoint (the file is still fully checked)."""
    return dict(read_checkpoint(path)["metadata"])
