"""Crashes: a real `python -m flowcore train` killed with SIGKILL at random moments, again and again.

After every kill `OUT/last.safetensors` must load (as a model and as a training state) and `--resume`
must carry on from it; the run that was killed `KILLS` times then ends with exactly the
parameters and the log of a run of the same seed that was never interrupted. The moments
are seeded: a random step to reach (so every kill lands in training, however fast the
machine), then a random delay of up to 50 ms, so a kill can land anywhere in a step,
checkpoint writes included.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

import flowcore
from flowcore.checkpoint import read_checkpoint
from flowcore.cli import main
from flowcore.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
KILLS = 5  # each costs a process start (importing torch: 3 to 10 s on a loaded 2-core machine)
SEED = 7  # seeds the kill moments
CHECKPOINT_EVERY = 5
CONFIG = {  # batch 96 does not divide 1000 points: resumes land mid-epoch
    "model": {"name": "glow", "hidden": 16, "steps": 2},
    "data": {"name": "moons", "n_train": 1000, "n_eval": 200, "seed": 5},
    "train": {"steps": 200, "batch_size": 96, "lr": 3e-3, "warmup_steps": 10, "eval_every": 50,
              "checkpoint_every": CHECKPOINT_EVERY, "log_every": 1, "seed": 1},
}
STEPS = CONFIG["train"]["steps"]
TIMEOUT_S = 180  # per process, for a loaded machine; a failure, never a hang


def start(config: Path, out: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "flowcore", "train", "--config", str(config), "--out", str(out), "--quiet"]
    stderr = tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f"{out.name}-", suffix=".stderr",
                                         delete=False)  # one per process, closed by finish()
    proc = subprocess.Popen(command + (["--resume"] if resume else []), cwd=out.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    proc.stderr_file = stderr
    return proc


def finish(proc: subprocess.Popen) -> str:
    """Wait for `proc`; its stderr so far."""
    try:
        proc.wait(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr_file.close()
    return Path(proc.stderr_file.name).read_text()


def logged(out: Path) -> list[dict]:
    """The records of `out/log.jsonl`; a last line torn by a kill is left out."""
    path = out / "log.jsonl"
    if not path.exists():
        return []
    records = []
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            assert i >= len(lines) - 2, f"line {i + 1} of {path} is not JSON: {line!r}"  # only the last
    return records


def wait_for_step(proc: subprocess.Popen, out: Path, target: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the training process exited with {proc.returncode} before step {target}: "
                        f"{finish(proc)[-2000:]}")
        records = logged(out)
        if records and records[-1]["step"] >= target:
            return
        time.sleep(0.005)
    pytest.fail(f"no step {target} in {TIMEOUT_S} s")


def check_training_state(last: Path) -> int:
    """`last` loads as a model and holds a complete training state; its step."""
    flow = flowcore.load(last)
    assert all(torch.isfinite(p).all() for p in flow.parameters())
    payload = read_checkpoint(last)
    state = payload["trainer"]
    assert payload["optimizer"]["state"], "the optimizer state is missing"
    assert state["generator"].dtype == torch.uint8 and state["perm"] is not None
    assert len(state["history"]["step"]) == state["step"] == flow.metadata["step"]
    return int(state["step"])


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "examples_per_s"} for r in records]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 gives the subprocesses
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, one_thread: None) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    rng = random.Random(SEED)
    codes = []  # the uninterrupted run, in this process while the first subprocess imports torch
    reference = threading.Thread(target=lambda: codes.append(main(["train", "--config", str(config), "--out",
                                                                   str(whole), "--quiet"])))
    reference.start()
    saved, kills, torn, procs = 0, [], set(), []
    try:
        for k in range(KILLS):
            proc = start(config, killed, resume=k > 0)
            procs.append(proc)
            reached = logged(killed)[-1]["step"] if k > 0 else 0
            # a step the killed process never reached, and past the next checkpoint after it
            target = reached + rng.randint(CHECKPOINT_EVERY + 1, 30)
            assert target < STEPS, "the run is too short for this many kills"
            wait_for_step(proc, killed, target)
            time.sleep(rng.uniform(0, 0.05))
            proc.send_signal(signal.SIGKILL)
            finish(proc)
            assert proc.returncode == -signal.SIGKILL, f"the process was not killed but exited {proc.returncode}"
            torn |= set(killed.glob(".last.safetensors.*.tmp"))  # left by a kill during a checkpoint write
            reference.join()  # before this process builds a model from the global RNG (flowcore.load)
            step = check_training_state(killed / "last.safetensors")
            assert step > saved, f"kill {k + 1}: the resumed run did not get past step {saved} (saved: {step})"
            assert step % CHECKPOINT_EVERY == 0 and step <= logged(killed)[-1]["step"]
            steps = [r["step"] for r in logged(killed)]
            assert steps == list(range(1, len(steps) + 1)), "the log has gaps or repeated steps"
            kills.append((target, steps[-1], step))
            saved = step
        proc = start(config, killed, resume=True)
        procs.append(proc)
        assert finish(proc) == "" and proc.returncode == 0
    finally:
        for proc in procs:  # after a failure: none left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reference.join()
    assert codes == [0]
    print(f"\n{KILLS} SIGKILLs (target step, last logged step, step of last.safetensors): {kills}; "
          f"{len(torn)} of them during a checkpoint write (a temporary file left, last.safetensors intact)")
    a = read_checkpoint(killed / "model.safetensors")
    b = read_checkpoint(whole / "model.safetensors")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in b["state_dict"])
    assert a["metadata"]["step"] == b["metadata"]["step"] == STEPS
    assert a["metadata"]["metrics"] == b["metadata"]["metrics"]
    assert without_timing(logged(killed)) == without_timing(logged(whole))
    optimizer_a = read_checkpoint(killed / "last.safetensors")["optimizer"]["state"]
    optimizer_b = read_checkpoint(whole / "last.safetensors")["optimizer"]["state"]
    assert all(torch.equal(optimizer_a[i][name], optimizer_b[i][name])
               for i in optimizer_b for name in ("exp_avg", "exp_avg_sq"))


def test_a_crash_while_resume_rewrites_the_log_leaves_the_old_log(tmp_path: Path, monkeypatch, one_thread) -> None:
    """`--resume` drops log lines past the checkpoint; dying meanwhile must not cut the log short."""
    data = flowcore.toy_data("moons", 200, 0)
    torch.manual_seed(0)
    trainer = Trainer(flowcore.build("glow", (2,), hidden=8, steps=1), data,
                      TrainConfig(steps=20, batch_size=50, checkpoint_every=5), out_dir=tmp_path)
    for _ in range(8):  # last.safetensors at step 5, the log up to step 8: as after a crash at step 8
        trainer.step()
    log = (tmp_path / "log.jsonl").read_text()

    def killed(*args, **kwargs):  # stands in for the process dying before the rewrite is complete
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        Trainer.resume(tmp_path / "last.safetensors", data, out_dir=tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "log.jsonl").read_text() == log
    resumed = Trainer.resume(tmp_path / "last.safetensors", data, out_dir=tmp_path)
    assert resumed.steps_done == 5 and [r["step"] for r in logged(tmp_path)] == [1, 2, 3, 4, 5]
