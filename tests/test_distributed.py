"""Data-parallel training under torchrun (gloo on CPU): ranks stay identical, only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.distributed as dist

import flowcore
from flowcore import distributed
from flowcore.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_a_plain_process_is_rank_zero_of_one(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLOWCORE_DEVICE", "cpu")
    info = distributed.setup()
    assert (info.rank, info.world_size, info.device) == (0, 1, torch.device("cpu"))
    assert not distributed.launched() and distributed.is_main()
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(t) is t


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_processes_train_identical_replicas_and_write_once(tmp_path):
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "FLOWCORE_DEVICE": "cpu",
           "FLOWCORE_DUMP_PARAMS": str(dump)}
    args = ["train", "--model", "glow", "--data", "moons", "--set", "hidden=16", "--set", "steps=2",
            "--steps", "12", "--batch-size", "64", "--eval-every", "6", "--checkpoint-every", "4", "--quiet"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "flowcore", *args, "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [safetensors.torch.load_file(dump / f"rank{r}.safetensors") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert sorted(p.name for p in out.iterdir()) == ["last.safetensors", "log.jsonl", "model.safetensors"]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # written by one process only
    flow = flowcore.load(out / "model.safetensors")
    assert all(torch.equal(v, ranks[0][k]) for k, v in flow.state_dict().items())
    assert flow.metadata["world_size"] == 2 and flow.metadata["examples_seen"] == 12 * 64
    actnorm_scale = next(v for k, v in ranks[0].items() if k.endswith("log_scale"))
    assert not torch.equal(actnorm_scale, torch.zeros_like(actnorm_scale))  # initialised from data
    # Two shards of 32 with averaged gradients are one process with batches of 64: same first loss
    # (ActNorm initialised on the whole batch) and same gradient norm. Later steps agree only
    # roughly, since Adam turns rounding noise in near-zero gradients into steps of size lr.
    assert main([*args, "--out", str(tmp_path / "single"), "--device", "cpu"]) == 0
    single = [json.loads(line) for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    multi = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert multi[0]["loss"] == pytest.approx(single[0]["loss"], rel=1e-6)
    assert multi[0]["grad_norm"] == pytest.approx(single[0]["grad_norm"], rel=1e-5)
    assert [r["loss"] for r in multi] == pytest.approx([r["loss"] for r in single], rel=1e-3)
