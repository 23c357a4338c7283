"""Peak memory of one operation of one model, measured in a fresh process.

`tracemalloc` does not see torch's allocations, so on the CPU this reads the resident set:
the process builds the model and its batches, resets the kernel's peak-RSS counter
(`/proc/self/clear_refs`; where that is not allowed, the `ru_maxrss` high-water mark is used),
runs the operation three times and reports the peak minus the resident set before it. On
CUDA it reports `torch.cuda.max_memory_allocated` above the memory in use before.

Run as `python -m benchmarks.memory LIBRARY MODEL TASK [--tiny] [--device D]`; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

TASKS = ("train", "log_prob", "sample")
ROOT = Path(__file__).resolve().parent.parent


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(library: str, name: str, task: str, tiny: bool, device: torch.device,
            models_file: str, threads: int | None) -> dict:
    from benchmarks import images

    if threads:
        torch.set_num_threads(threads)
    overrides, batch = images.load_config(name, models_file, tiny)
    pixels, _ = images.images(images.N_BATCHES * batch)
    runner = images.make_runner(library, name, overrides, batch, pixels, device)
    op = {"train": runner.train_step, "log_prob": runner.log_prob, "sample": runner.sample}[task]
    (runner.train_mode if task == "train" else runner.eval_mode)()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3):
            op()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mib": (peak - before) / 2**20, "method": "torch.cuda.max_memory_allocated"}
    rss = _status_kib("VmRSS")
    if rss is not None and _reset_peak():
        for _ in range(3):
            op()
        peak = _status_kib("VmHWM")
        return {"peak_mib": (peak - rss) / 1024, "method": "VmHWM after clear_refs"}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        op()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": (peak - before) / 1024, "method": "ru_maxrss delta (a lower bound)"}


def in_subprocess(library: str, name: str, task: str, tiny: bool, device: str, models_file: str,
                  threads: int | None, timeout: float = 600) -> float | None:
    """Peak MiB of `task` measured in a fresh Python process; None if that process failed."""
    cmd = [sys.executable, "-m", "benchmarks.memory", library, name, task, "--device", device,
           "--models-file", models_file]
    if tiny:
        cmd.append("--tiny")
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=True)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("library")
    p.add_argument("model")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--models-file", default=str(Path(__file__).with_name("mnist_models.json")))
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    print(json.dumps(measure(a.library, a.model, a.task, a.tiny, torch.device(a.device), a.models_file, a.threads)))


if __name__ == "__main__":
    main()
