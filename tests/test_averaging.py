"""Polyak averaging of the weights: the average is the stated recurrence over the accepted updates,
evaluation and the written model use it, the trained weights are untouched, and resume keeps it."""

from __future__ import annotations

import json

import pytest
import torch

import flowcore
from flowcore.averaging import WeightAverage, decay_at
from flowcore.checkpoint import read_checkpoint
from flowcore.cli import main
from flowcore.train import EVAL_SEED, TrainConfig, Trainer, evaluate_nll
from tests.helpers import moons, tiny_glow

pytestmark = pytest.mark.usefixtures("one_thread")


def floats(flow: flowcore.Flow) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in flow.state_dict().items() if v.is_floating_point()}


def test_decay_ramps_up_to_its_value():
    assert decay_at(0.999, 0) == pytest.approx(0.1)
    assert decay_at(0.999, 10) == pytest.approx(11 / 20)
    assert decay_at(0.9, 1000) == 0.9
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(1.0)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="ema_decay must be a non-negative number"):
        TrainConfig(ema_decay=-0.5)


def test_the_average_follows_the_recurrence_over_the_weights_after_each_step():
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=12, batch_size=64, lr=5e-3, ema_decay=0.8))
    expected = None
    for n in range(12):
        trainer.step()
        now = {k: v.double() for k, v in floats(trainer.flow).items()}
        if expected is None:
            expected = now
        else:
            d = decay_at(0.8, n)
            expected = {k: d * expected[k] + (1 - d) * now[k] for k in now}
    assert trainer.average.updates == 12
    got = trainer.average.weights
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k].double(), expected[k], rtol=1e-5, atol=1e-6)
    final = floats(trainer.flow)
    assert any(not torch.equal(got[k], final[k]) for k in final)  # an average, not the last weights


def test_evaluation_uses_the_average_and_leaves_the_trained_weights_alone():
    held_out = moons(300, seed=1)
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=30, batch_size=64, lr=5e-3, ema_decay=0.9),
                      eval_data=held_out)
    list(trainer.run())
    trained = floats(trainer.flow)
    nll, _ = trainer.evaluate()
    assert all(torch.equal(v, trained[k]) for k, v in floats(trainer.flow).items())
    averaged = tiny_glow()
    averaged.load_state_dict({**averaged.state_dict(), **trainer.average.weights})
    assert nll == evaluate_nll(averaged, held_out, noise_seed=EVAL_SEED)
    assert nll != evaluate_nll(trainer.flow, held_out, noise_seed=EVAL_SEED)
    with pytest.raises(RuntimeError, match="boom"), trainer.averaged():
        raise RuntimeError("boom")
    assert all(torch.equal(v, trained[k]) for k, v in floats(trainer.flow).items())


def test_without_a_decay_there_is_no_average():
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=3, batch_size=64))
    list(trainer.run())
    assert trainer.average is None and "average" not in trainer.state_dict()["trainer"]
    with trainer.averaged() as flow:
        assert flow is trainer.flow


def test_resume_keeps_the_average_bit_for_bit(tmp_path):
    cfg = TrainConfig(steps=20, batch_size=64, lr=5e-3, ema_decay=0.9, checkpoint_every=5)
    whole = Trainer(tiny_glow(), moons(), cfg)
    list(whole.run())
    first = Trainer(tiny_glow(), moons(), cfg, out_dir=tmp_path)
    list(first.run(steps=10))
    resumed = Trainer.resume(tmp_path / "last.safetensors", moons())
    assert resumed.average.updates == 10
    list(resumed.run())
    assert resumed.average.updates == whole.average.updates == 20
    assert all(torch.equal(resumed.average.weights[k], whole.average.weights[k]) for k in whole.average.weights)


def test_a_state_without_an_average_starts_one_on_resume(tmp_path):
    first = Trainer(tiny_glow(), moons(), TrainConfig(steps=10, batch_size=64, lr=5e-3), out_dir=tmp_path)
    list(first.run(steps=4))
    resumed = Trainer.resume(tmp_path / "last.safetensors", moons(),
                             config=TrainConfig(steps=10, batch_size=64, lr=5e-3, ema_decay=0.99))
    assert resumed.average.weights is None
    resumed.step()
    assert resumed.average.updates == 1
    assert all(torch.equal(v, floats(resumed.flow)[k]) for k, v in resumed.average.weights.items())


def test_the_cli_writes_the_averaged_weights_and_evaluates_them(tmp_path, capsys):
    config = {"model": {"name": "glow", "hidden": 16, "steps": 2},
              "data": {"name": "moons", "n_train": 2000, "n_eval": 500, "seed": 3},
              "train": {"steps": 40, "batch_size": 64, "lr": 5e-3, "eval_every": 20, "eval_size": 200}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--ema-decay", "0.95", "--quiet"]) == 0
    state = read_checkpoint(out / "last.safetensors")
    model = read_checkpoint(out / "model.safetensors")
    average = state["trainer"]["average"]["weights"]
    assert state["trainer"]["config"]["ema_decay"] == 0.95
    assert all(torch.equal(model["state_dict"][k], average[k]) for k in average)
    assert any(not torch.equal(state["state_dict"][k], average[k]) for k in average)
    meta = flowcore.load_metadata(out / "model.safetensors")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "model.safetensors")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["nll"] == pytest.approx(meta["metrics"]["heldout_loss"], rel=1e-6)
