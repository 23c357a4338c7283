"""A run's log: `log.jsonl` in its folder, one JSON object per logged step (the fields of
`StepRecord`, non-finite numbers as null, plus `images_seen`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from flowcore.schedule import StepRecord

LOG = "log.jsonl"


def append(out_dir: Path, record: StepRecord, examples_seen: int) -> None:
    """Add `record` as the last line of `out_dir/log.jsonl` (made if absent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    line = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(record).items()}
    with open(out_dir / LOG, "a") as f:
        f.write(json.dumps({**line, "images_seen": examples_seen}) + "\n")


def truncate(out_dir: Path, step: int) -> None:
    """Drop the lines of steps after `step` (and any that are not records), as a resumed run
    logs them again."""
    path = out_dir / LOG
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    os.replace(tmp, path)  # a crash mid-rewrite leaves the old log whole, never a cut one
