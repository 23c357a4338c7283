"""`python -m flowcore convert OLD NEW`: pickle checkpoints (`torch.save`) into the safetensors format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import flowcore
from flowcore.checkpoint import CheckpointError, float32_state, plain, read_checkpoint
from flowcore.cli import main
from flowcore.convert import convert
from flowcore.models import config_dict
from flowcore.train import TrainConfig, Trainer
from tests.helpers import MarkerPickle, randomize

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def old_save(payload: dict, path: Path) -> Path:
    """A checkpoint as flowcore wrote them with `torch.save` (format version 1)."""
    torch.save({"format": "flowcore-checkpoint", "version": 1, **payload}, path)
    return path


def old_model(flow: flowcore.Flow, path: Path, **metadata) -> Path:
    return old_save({"model": config_dict(flow), "state_dict": float32_state(flow.state_dict()),
                     "optimizer": None, "trainer": None, "metadata": plain(metadata)}, path)


def old_training_state(trainer: Trainer, path: Path) -> Path:
    return old_save({"model": config_dict(trainer.flow), **trainer.state_dict(),
                     "metadata": plain(trainer.run_metadata())}, path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_model_converts_to_the_same_density_and_metadata(tmp_path, capsys):
    torch.manual_seed(0)
    flow = randomize(flowcore.build("glow", (1, 8, 8), hidden=8, steps=2, levels=2))
    x = torch.rand(6, 1, 8, 8) * 256
    flow.train()
    flow.log_prob(x)  # ActNorm initialises from data
    meta = {"data": {"name": "mnist", "n_eval": 10000}, "metrics": {"eval_loss": None, "diverged_steps": 0},
            "curve": [1.5, 2.25], "wall_time_s": 0.1 + 0.2}
    old = old_model(flow, tmp_path / "model.pt", **meta)
    code, out, err = run(capsys, "convert", old, tmp_path / "model.safetensors")
    assert code == 0, err
    assert json.loads(out) == {"converted": str(old), "to": str(tmp_path / "model.safetensors"),
                               "training_state": False, "weights": len(flow.state_dict())}
    loaded = flowcore.load(tmp_path / "model.safetensors")
    assert loaded.metadata == meta
    assert torch.equal(loaded.log_prob(x), flow.eval().log_prob(x))
    assert (tmp_path / "model.safetensors").read_bytes()[8:9] == b"{"  # a safetensors header, no pickle
    with pytest.raises(CheckpointError, match=r"PyTorch pickle checkpoint .*python -m flowcore convert"):
        flowcore.load(old)


def test_a_training_state_converts_and_resumes_exactly(tmp_path):
    data = flowcore.toy_data("moons", 300, 0)
    config = TrainConfig(steps=12, batch_size=64, lr=3e-3, spike_guard=5.0)
    torch.manual_seed(0)
    whole = Trainer(flowcore.build("realnvp", (2,), hidden=16), data, config)
    list(whole.run())
    torch.manual_seed(0)
    stopped = Trainer(flowcore.build("realnvp", (2,), hidden=16), data, config)
    list(stopped.run(5))
    old = old_training_state(stopped, tmp_path / "last.pt")
    assert convert(old, tmp_path / "last.safetensors")["training_state"]
    payload = read_checkpoint(tmp_path / "last.safetensors")
    assert payload["trainer"]["step"] == 5 and payload["trainer"]["loss_stats"] == stopped.loss_stats
    resumed = Trainer.resume(tmp_path / "last.safetensors", data)
    list(resumed.run())
    for a, b in zip(resumed.flow.parameters(), whole.flow.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r.loss for r in resumed.history] == [r.loss for r in whole.history]


def test_a_hostile_pickle_is_refused_naming_what_it_asks_for(tmp_path, capsys):
    marker = tmp_path / "pwned"
    old = old_save({"model": {}, "state_dict": {}, "x": MarkerPickle(marker)}, tmp_path / "evil.pt")
    code, out, err = run(capsys, "convert", old, tmp_path / "evil.safetensors")
    assert code == 2 and out == ""
    assert re.fullmatch(r"error: refusing to convert .*evil\.pt: it asks for the Python object "
                        r"(io|builtins)\.open, .*\n", err)
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "truncated or corrupted"),
    (b"\x80\x02J\x01", "truncated or corrupted"),
    (None, "not a flowcore checkpoint"),
    ("future", "version 7"),
    ("partial", "missing state_dict"),
    ("mismatch", "does not match its model"),
])
def test_bad_old_files_are_one_line_and_write_nothing(tmp_path, capsys, content, message):
    old = tmp_path / "old.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, old)
    elif content == "future":
        torch.save({"format": "flowcore-checkpoint", "version": 7, "model": {}, "state_dict": {}}, old)
    elif content == "partial":
        old_save({"model": {}}, old)
    elif content == "mismatch":
        old_save({"model": config_dict(flowcore.build("nice", (2,), hidden=8)), "state_dict": {"w": torch.ones(2)}},
                 old)
    else:
        old.write_bytes(content)
    code, _, err = run(capsys, "convert", old, tmp_path / "new.safetensors")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"]


def test_convert_never_overwrites_and_says_when_there_is_nothing_to_do(tmp_path, capsys):
    flow = flowcore.build("nice", (2,), hidden=8)
    new = flowcore.save(flow, tmp_path / "m.safetensors")
    before = new.read_bytes()
    old = old_model(flow, tmp_path / "m.pt")
    code, _, err = run(capsys, "convert", old, new)
    assert code == 2 and "already exists" in err and new.read_bytes() == before
    code, _, err = run(capsys, "convert", new, tmp_path / "again.safetensors")
    assert code == 2 and "already a safetensors checkpoint" in err
    code, _, err = run(capsys, "convert", tmp_path / "nope.pt", tmp_path / "x.safetensors")
    assert code == 2 and "does not exist" in err


def test_only_the_converter_unpickles():
    """No module of the package but `flowcore/convert.py` calls `torch.load` or imports pickle."""
    users = sorted(p.name for p in (REPO / "flowcore").glob("*.py")
                   if re.search(r"torch\.load\(|^import pickle|^from pickle", p.read_text(), re.M))
    assert users == ["convert.py"]
