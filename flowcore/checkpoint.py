"""One checkpoint format for every model: a safetensors file, tensors in its body, the rest as JSON in its header.

    tensors  "model/<key>"                  flow.state_dict(), float32
             "optimizer/state/<i>/<name>"   training checkpoints: Adam's moments, step counts, ...
             "trainer/generator", "trainer/perm", "trainer/history/<column>"
    header   {"format": "pt", "flowcore": <one JSON string>}, the string holding
             {"format": "flowcore-checkpoint", "version": 2,
              "model": config_dict(flow),          # rebuilds the architecture (`build_from_dict`)
              "state_dict": {key: {"$tensor": "model/<key>"}, ...},
              "optimizer": {...} | null,           # training checkpoints only
              "trainer": {...} | null,             # step, RNG states, lr multiplier, spike-guard statistics
              "metadata": {...}}                   # data set, preprocessing, wall time, hardware, metrics

Every tensor in the JSON is a reference `{"$tensor": name}` to the body; a dict with keys that are
not all strings (the optimizer's parameter indices) is `{"$items": [[key, value], ...]}`, so the
payload comes back exactly as it was written. safetensors (https://github.com/huggingface/safetensors)
holds raw tensor bytes and JSON, nothing that can run code: loading never executes anything from the
file, memory-maps it, and checks that the header's tensors cover the file exactly before reading any
(a header that claims more than the file holds is refused without allocating it). Tensors that share
storage, such as the trainer's views of one flat parameter vector, are written as separate copies.

Files are written atomically (temporary file in the same folder, fsync, `os.replace`), so a crash
mid-write never damages the previous checkpoint. A pickle file (`torch.save`'s format) is refused
with the command that converts it (`python -m flowcore convert OLD NEW`, `flowcore.convert`); so
are truncated, corrupted, foreign and mismatching files, each with one line of `CheckpointError`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from flowcore.core import Flow
from flowcore.models import build_from_dict, config_dict

FORMAT = "flowcore-checkpoint"
VERSION = 2  # 1: the `torch.save` payload of the same keys, which `flowcore.convert` reads
HEADER_KEY = "flowcore"  # the safetensors metadata entry holding the JSON payload
_REQUIRED = ("model", "state_dict")
_TENSOR, _ITEMS = "$tensor", "$items"
_SECTIONS = ("model", "state_dict", "optimizer", "trainer", "metadata")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says which file and why, in one line."""


def float32_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A model state dict on the CPU with floating tensors in float32 (small, portable files)."""
    return {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
            for k, v in state.items()}


def plain(obj: Any) -> Any:
    """`obj` as plain types (dict, list, str, int, float, bool, None) and CPU tensors."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, int) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None:
        return None
    for kind in (bool, int, float, str):  # exact types: subclasses (TorchVersion) are not plain
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint; use plain types and tensors")


# --- the JSON payload and its tensors ----------------------------------------------------------


def _encode(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    """`obj` as JSON values, each tensor moved into `tensors` under a name from its path."""
    if isinstance(obj, Tensor):
        while name in tensors:  # keys containing "/" can spell another entry's path
            name += "'"
        tensors[name] = obj
        return {_TENSOR: name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if len(obj) == 1 and next(iter(obj)) in (_TENSOR, _ITEMS):
                raise TypeError(f"cannot store a dict whose only key is {next(iter(obj))!r}: it marks references")
            return {k: _encode(v, f"{name}/{k}", tensors) for k, v in obj.items()}
        return {_ITEMS: [[k, _encode(v, f"{name}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{name}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint; use plain types and tensors")


def _decode(obj: Any, tensor: Callable[[str], Tensor]) -> Any:
    """The inverse of `_encode`, reading each referenced tensor with `tensor(name)`."""
    if isinstance(obj, dict):
        if len(obj) == 1 and _TENSOR in obj:
            return tensor(obj[_TENSOR])
        if len(obj) == 1 and _ITEMS in obj:
            return {k: _decode(v, tensor) for k, v in obj[_ITEMS]}
        return {k: _decode(v, tensor) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensor) for v in obj]
    return obj


def _separate(t: Tensor) -> Tensor:
    """A contiguous CPU copy with storage of its own (safetensors refuses views of shared storage)."""
    return t.detach().cpu().clone(memory_format=torch.contiguous_format)


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `payload` (the keys of the module docstring) to `path` atomically; creates the folder."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    header = {"format": FORMAT, "version": VERSION}
    for key, value in payload.items():
        header[key] = _encode(value, "model" if key == "state_dict" else key, tensors)
    data = safetensors.torch.save({k: _separate(v) for k, v in tensors.items()},
                                  metadata={"format": "pt", HEADER_KEY: json.dumps(header)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # usual permissions (umask)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


# --- reading ----------------------------------------------------------------------------------


def pickle_kind(head: bytes) -> str | None:
    """Which pickle-based format a file starting with `head` (its first 512 bytes) is in, if any."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch.save zip archive"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode: what torch.save writes
        return f"pickle protocol {head[1]}"
    if head[257:262] == b"ustar":
        return "legacy torch.save .tar archive"
    return None


def _corrupted(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is truncated or corrupted (not a readable safetensors checkpoint)")


def read_head(path: Path) -> tuple[bytes, int]:
    """The first 512 bytes of `path` and its size; a missing or unreadable file is a `CheckpointError`."""
    try:
        with open(path, "rb") as f:
            return f.read(512), os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {path} is a folder, not a file") from None
    except PermissionError:
        raise CheckpointError(f"cannot read {path}: permission denied") from None


def _check_file(path: Path) -> None:
    """Refuse a missing or unreadable file, and one that is not safetensors, with what it is."""
    head, size = read_head(path)
    header_size = int.from_bytes(head[:8], "little")
    if len(head) > 8 and head[8:9] == b"{" and 8 + header_size <= size:
        return
    kind = pickle_kind(head)
    if kind is not None:
        new = path.with_suffix(".safetensors")
        new = new if new != path else path.with_name(f"{path.stem}-converted.safetensors")
        raise CheckpointError(
            f"refusing to load {path}: it is a PyTorch pickle checkpoint ({kind}), and unpickling can run code; "
            f"convert it once with `python -m flowcore convert {path} {new}`")
    raise _corrupted(path)


def _read(path: Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """The header payload of `path` with `sections` decoded (their tensors read, on the CPU)."""
    _check_file(path)
    try:
        with safetensors.torch.safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if HEADER_KEY not in meta:
                raise CheckpointError(f"{path} is not a flowcore checkpoint (a safetensors file without a "
                                      f"'{HEADER_KEY}' header entry)")
            payload = json.loads(meta[HEADER_KEY])
            if not isinstance(payload, dict):
                raise ValueError("the header entry is not a JSON object")
            return {k: _decode(v, f.get_tensor) if k in sections else v for k, v in payload.items()}
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - any failure to parse (SafetensorError, JSON, references): unreadable
        raise _corrupted(path) from None


def _checked(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a flowcore checkpoint (no 'format': '{FORMAT}' entry)")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this flowcore reads up to {VERSION}")
    missing = [k for k in _REQUIRED if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path} is missing {', '.join(missing)}")
    if not isinstance(payload.get("metadata"), dict):
        payload["metadata"] = {}
    return payload


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checked payload of a checkpoint file (see the module docstring for its keys), on the CPU."""
    path = Path(path)
    payload = _checked(path, _read(path, _SECTIONS))
    if not all(isinstance(v, Tensor) for v in payload["state_dict"].values()):
        raise CheckpointError(f"{path} has a state_dict entry that is not a tensor")
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


def flow_from_payload(payload: dict[str, Any], where: str = "checkpoint", into: Flow | None = None) -> Flow:
    """The flow of a payload with its weights and metadata (training mode): rebuilt from its
    description, or `into` (a flow of the same structure, e.g. one composed by hand) loaded."""
    model = payload["model"]
    if into is None and isinstance(model, dict) and model.get("hand_built"):
        raise CheckpointError(f"{where} holds a hand-built flow ({model.get('model')!r}), whose architecture is "
                              "code: build the same flow and load the weights into it with "
                              "flowcore.load(path, into=flow)")
    if into is not None:
        flow = into
    else:
        try:
            flow = build_from_dict(model)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{where} describes a model that cannot be built: {err}") from None
    check_state_dict(flow, payload["state_dict"], where)
    flow.load_state_dict(payload["state_dict"])
    flow.metadata = dict(payload.get("metadata") or {})
    return flow


def save(flow: Flow, path: str | os.PathLike, **metadata: Any) -> Path:
    """Save weights (float32), architecture and metadata of `flow` to `path`; returns the path.

    The metadata is `flow.metadata` updated with the keyword arguments."""
    payload = {"model": config_dict(flow), "state_dict": float32_state(flow.state_dict()),
               "optimizer": None, "trainer": None, "metadata": plain({**flow.metadata, **metadata})}
    return write_checkpoint(payload, path)


def load(path: str | os.PathLike, map_location: Any = "cpu", into: Flow | None = None) -> Flow:
    """The flow saved in `path`, in eval mode, with its metadata as `flow.metadata`.

    With `into`, the weights go into that flow (same layers and shapes, checked) instead of a
    rebuilt one: the way to load a flow composed by hand from flowcore's layers."""
    flow = flow_from_payload(read_checkpoint(path), str(path), into)
    if isinstance(map_location, (str, torch.device)):
        flow = flow.to(map_location)
    return flow.eval()


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Only the metadata of a checkpoint (the header is checked against the file; no weights are read)."""
    path = Path(path)
    return dict(_checked(path, _read(path, ("metadata",)))["metadata"])
