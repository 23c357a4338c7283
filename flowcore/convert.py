"""Turn a pickle checkpoint (`torch.save`, version 1 of the format) into a safetensors one.

    python -m flowcore convert runs/glow/model.pt runs/glow/model.safetensors

This is the only place flowcore unpickles anything, and it does so with `torch.load(weights_only=True)`,
PyTorch's restricted unpickler, which builds plain types and tensors only: a file that asks for any
other Python object is refused, and the message names the object. The payload (model, state_dict,
optimizer, trainer, metadata: the keys of `flowcore.checkpoint`) must rebuild its model before
anything is written; the new file is written atomically and never over an existing one.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from flowcore.checkpoint import (
    FORMAT,
    CheckpointError,
    flow_from_payload,
    pickle_kind,
    read_checkpoint,
    read_head,
    write_checkpoint,
)

PICKLE_VERSION = 1  # the version number of the torch.save format


def _unpickle(path: Path) -> Any:
    """`torch.load(path, weights_only=True)`, every failure one line of `CheckpointError`."""
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before refusing them
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to unpickle: refused or unreadable
        asked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if asked:
            raise CheckpointError(
                f"refusing to convert {path}: it asks for the Python object {asked.group(1)}, and arbitrary "
                "Python objects (pickle) could run code; only flowcore checkpoints of plain types and tensors "
                "are converted") from None
        if "legacy .tar format" in str(err):
            raise CheckpointError(f"refusing to convert {path}: PyTorch's legacy .tar format cannot be read "
                                  "without running code from it") from None
    raise CheckpointError(f"{path} is truncated or corrupted (not a readable torch.save checkpoint)")


def convert(old: str | os.PathLike, new: str | os.PathLike) -> dict[str, Any]:
    """Write the pickle checkpoint `old` to `new` in the safetensors format; what was converted."""
    old, new = Path(old), Path(new)
    if new.exists() or new.is_symlink():
        raise CheckpointError(f"{new} already exists; give a new file name (nothing was written)")
    head, _ = read_head(old)  # a missing or unreadable file is refused here
    if pickle_kind(head) is None and head[8:9] == b"{":
        read_checkpoint(old)  # a readable safetensors checkpoint needs no conversion; a broken one says why
        raise CheckpointError(f"{old} is already a safetensors checkpoint; nothing to convert")
    payload = _unpickle(old)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{old} is not a flowcore checkpoint (no 'format': '{FORMAT}' entry)")
    if payload.get("version") != PICKLE_VERSION:
        raise CheckpointError(f"{old} has checkpoint version {payload.get('version')!r}; torch.save "
                              f"checkpoints are version {PICKLE_VERSION}")
    missing = [k for k in ("model", "state_dict") if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{old} is missing {', '.join(missing)}")
    flow_from_payload(payload, str(old))  # the model builds and every weight fits it
    training = isinstance(payload.get("trainer"), dict) and isinstance(payload.get("optimizer"), dict)
    sections = {"model": payload["model"], "state_dict": payload["state_dict"],
                "optimizer": payload.get("optimizer") if training else None,
                "trainer": payload.get("trainer") if training else None,
                "metadata": payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}}
    try:
        write_checkpoint(sections, new)
    except TypeError as err:
        raise CheckpointError(f"{old} holds something the safetensors format cannot store: {err}") from None
    return {"converted": str(old), "to": str(new), "training_state": training,
            "weights": len(payload["state_dict"])}
