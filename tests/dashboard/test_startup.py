"""Start-up: importing the dashboard's modules changes no process-wide setting; `services.start()`
(which `dashboard/app.py` calls first) sets torch's thread count, before or after torch is loaded.

Each check runs in a fresh interpreter, so nothing this test session imported hides an effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import importlib, json, os, pkgutil, sys
import torch
before = (list(sys.path), torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"))
import dashboard.services as services
for module in pkgutil.iter_modules(services.__path__):
    importlib.import_module("dashboard.services." + module.name)
import dashboard.background, dashboard.charts, dashboard.score_charts
after = (list(sys.path), torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"))
services.start()
print(json.dumps({"unchanged": before == after, "started": torch.get_num_threads()}))
"""

START_FIRST = """
import json
import dashboard.services as services
services.start()
import torch
print(json.dumps({"started": torch.get_num_threads()}))
"""


def _run(code: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLOWCORE_TORCH_THREADS": str(threads)}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MKL_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_services_changes_nothing_and_start_sets_the_threads() -> None:
    result = _run(IMPORT_ALL, threads=3)
    assert result == {"unchanged": True, "started": 3}


def test_start_before_torch_is_loaded_sets_the_threads_torch_starts_with() -> None:
    # 1, the serving default: torch caps the count it reads from the environment at the cores there are
    assert _run(START_FIRST, threads=1) == {"started": 1}
