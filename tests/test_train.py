"""The trainer: it learns, it is deterministic and resumable bit for bit, divergence is never silent."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

import flowcore
import flowcore.params
from flowcore.guard import LossStats, all_finite, grad_norm
from flowcore.train import EVAL_SEED, StepRecord, TrainConfig, Trainer, lr_at
from tests.helpers import moons, tiny_glow

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_image_glow() -> flowcore.Flow:
    torch.manual_seed(0)
    return flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1)


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)


def same_weights(a: flowcore.Flow, b: flowcore.Flow) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("bad, message", [
    ({"lr": -1e-3}, "lr must be a positive number"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": math.nan}, "lr must be a positive number"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"decay": "linear"}, "unknown decay"),
    ({"grad_clip": -1.0}, "grad_clip must be a non-negative number"),
    ({"eval_every": -5}, "eval_every must be a non-negative integer"),
])
def test_config_rejects_invalid_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown training option.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.01)
    assert [lr_at(cfg, s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 60) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the cosine
    assert lr_at(cfg, 110) == pytest.approx(0.01)
    flat = TrainConfig(steps=100, lr=0.5, decay="none")
    assert {lr_at(flat, s) for s in (0, 50, 99)} == {0.5}


def test_short_run_lowers_held_out_loss():
    trainer = Trainer(tiny_glow(), moons(2000), TrainConfig(steps=120, batch_size=128, lr=5e-3, seed=1),
                      eval_data=moons(1000, seed=1))
    before, _ = trainer.evaluate()
    records = list(trainer.run())
    assert len(records) == 120 and [r.step for r in records] == list(range(1, 121))
    assert records[-1].eval_loss is not None  # the last step is always evaluated
    assert records[-1].eval_loss < before - 0.3
    assert not any(r.diverged for r in records)
    assert trainer.history == records


def _run(flow, data, cfg, eval_data=None, out_dir=None, steps=None):
    trainer = Trainer(flow, data, cfg, eval_data=eval_data, out_dir=out_dir)
    list(trainer.run(steps))
    return trainer


def test_same_seed_same_run_other_seed_other_run():
    cfg = TrainConfig(steps=10, batch_size=64, lr=3e-3)
    a, b = _run(tiny_glow(), moons(), cfg), _run(tiny_glow(), moons(), cfg)
    c = _run(tiny_glow(), moons(), TrainConfig(steps=10, batch_size=64, lr=3e-3, seed=1))
    assert same_weights(a.flow, b.flow)
    assert not same_weights(a.flow, c.flow)


@pytest.fixture(params=["one vector", "one tensor each"])
def layout(request, monkeypatch):
    """Small models train on one parameter vector; large ones (and DDP) on one tensor each."""
    monkeypatch.setattr(flowcore.params, "FLAT_LIMIT", 1 << 20 if request.param == "one vector" else 0)
    return request.param


def test_kill_and_resume_is_bit_identical(tmp_path, layout):
    # batch 96 does not divide 1000: the resumed run must also pick up mid-epoch correctly
    cfg = TrainConfig(steps=30, batch_size=96, lr=3e-3, warmup_steps=5, eval_every=10, checkpoint_every=7)
    full = _run(tiny_glow(), moons(), cfg, eval_data=moons(300, 1))
    first = _run(tiny_glow(), moons(), cfg, eval_data=moons(300, 1), out_dir=tmp_path, steps=15)
    assert first.steps_done == 15
    resumed = Trainer.resume(tmp_path / "last.safetensors", moons(), eval_data=moons(300, 1), out_dir=tmp_path)
    assert resumed.steps_done == 15 and resumed.config == cfg
    list(resumed.run())
    assert same_weights(full.flow, resumed.flow)
    assert [r.loss for r in resumed.history] == [r.loss for r in full.history]
    assert resumed.optimizer.state_dict()["state"][0]["exp_avg"].equal(
        full.optimizer.state_dict()["state"][0]["exp_avg"])
    logged = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 31))  # no step logged twice


def test_resume_of_image_run_is_bit_identical(tmp_path):
    cfg = TrainConfig(steps=8, batch_size=16, lr=1e-3, eval_every=4)
    full = _run(tiny_image_glow(), images(), cfg, eval_data=images(32, 1))
    _run(tiny_image_glow(), images(), cfg, eval_data=images(32, 1), out_dir=tmp_path, steps=3)
    resumed = Trainer.resume(tmp_path / "last.safetensors", images(), eval_data=images(32, 1))
    list(resumed.run())
    assert same_weights(full.flow, resumed.flow)
    assert resumed.history[-1].eval_bits_per_dim == full.history[-1].eval_bits_per_dim


def test_image_records_report_bits_per_dim_and_eval_repeats():
    flow = tiny_image_glow()
    held_out = images(40, 1)
    trainer = Trainer(flow, images(), TrainConfig(steps=2, batch_size=16), eval_data=held_out)
    record = trainer.step()
    assert record.bits_per_dim == pytest.approx(record.loss / (64 * math.log(2)), rel=1e-12)
    nll, bpd = trainer.evaluate()
    assert trainer.evaluate() == (nll, bpd)  # fixed noise seed
    reference = flowcore.bits_per_dim(flow, held_out, generator=torch.Generator().manual_seed(EVAL_SEED))
    assert bpd == pytest.approx(reference, rel=1e-9)
    assert flow.training  # evaluation restores training mode


def test_absurd_learning_rate_diverges_loudly_and_recovers(caplog):
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=50, batch_size=64, lr=1e6, decay="none"))
    with caplog.at_level(logging.WARNING, logger="flowcore.train"):
        records = list(trainer.run())
    assert any(r.diverged for r in records)
    assert "diverged" in caplog.text and "halved the learning rate" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.flow.parameters())
    assert math.isfinite(records[-1].loss) and not records[-1].diverged
    assert trainer.lr_multiplier == 0.5 ** sum(r.diverged for r in records)
    assert records[-1].lr == pytest.approx(1e6 * trainer.lr_multiplier)


def test_non_finite_parameters_after_the_optimizer_step_are_rolled_back(layout):
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=10, batch_size=64, lr=1e-3))
    trainer.step()
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    adam_before = trainer.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    real_step = trainer.optimizer.step

    def poisoned_step(*args, **kwargs):
        real_step(*args, **kwargs)
        next(trainer.flow.parameters()).data.fill_(math.nan)

    trainer.optimizer.step = poisoned_step
    record = trainer.step()
    assert record.diverged and trainer.lr_multiplier == 0.5
    assert all(torch.equal(before[k], v) for k, v in trainer.flow.state_dict().items())
    assert trainer.optimizer.state_dict()["state"][0]["exp_avg"].equal(adam_before)
    trainer.optimizer.step = real_step
    assert not trainer.step().diverged


def _wrecking_update(trainer: Trainer) -> dict:
    """Run one step whose update wrecks the model (as a collapse does); return the state before it."""
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    real_step = trainer.optimizer.step

    def wrecking_step(*args, **kwargs):
        real_step(*args, **kwargs)
        with torch.no_grad():
            for p in trainer.flow.parameters():
                p.add_(torch.randn_like(p) * 3)  # finite, but the loss jumps far above anything seen

    trainer.optimizer.step = wrecking_step
    assert not trainer.step().diverged  # the damage shows only in the next step's loss
    trainer.optimizer.step = real_step
    return before


def test_spike_guard_rolls_back_the_update_that_wrecked_the_model(caplog):
    config = TrainConfig(steps=400, batch_size=64, lr=3e-3, decay="none", spike_guard=10.0)
    trainer = Trainer(tiny_glow(), moons(), config)
    records = list(trainer.run(steps=200))
    assert not any(r.diverged for r in records)  # a healthy run never trips the guard
    before = _wrecking_update(trainer)
    with caplog.at_level(logging.WARNING, logger="flowcore.train"):
        record = trainer.step()
    assert record.diverged and trainer.lr_multiplier == 0.5
    assert "running standard deviations above its running mean" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in trainer.flow.state_dict().items())
    assert not any(r.diverged for r in trainer.run(steps=20))


def test_without_the_spike_guard_a_wrecked_model_trains_on():
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=400, batch_size=64, lr=3e-3, decay="none"))
    list(trainer.run(steps=200))
    _wrecking_update(trainer)
    assert not trainer.step().diverged and trainer.lr_multiplier == 1.0


def test_spike_guard_statistics_survive_a_checkpoint(tmp_path):
    config = TrainConfig(steps=150, batch_size=64, decay="none", spike_guard=10.0)
    trainer = Trainer(tiny_glow(), moons(), config)
    list(trainer.run(steps=120))
    restored = Trainer(tiny_glow(), moons(), config)
    restored.load_state_dict(trainer.state_dict())
    assert restored.guard.stats == trainer.guard.stats and trainer.guard.stats.count == 120


def test_each_epoch_visits_every_example_once():
    data = torch.arange(12, dtype=torch.float32).repeat_interleave(2).view(12, 2)
    trainer = Trainer(tiny_glow(), data, TrainConfig(steps=6, batch_size=4))
    seen = [trainer._next_batch()[0][:, 0] for _ in range(6)]
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(12))
    assert sorted(torch.cat(seen[3:]).tolist()) == list(range(12))
    assert torch.cat(seen[:3]).tolist() != torch.cat(seen[3:]).tolist()  # reshuffled
    assert trainer.batches.epoch == 1


def test_callbacks_see_every_record_and_log_file_is_json_lines(tmp_path):
    seen: list[StepRecord] = []
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=6, batch_size=64, log_every=2, eval_every=3),
                      eval_data=moons(200, 1), out_dir=tmp_path)
    trainer.callbacks.append(seen.append)
    list(trainer.run())
    assert seen == trainer.history and len(seen) == 6
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 3, 4, 6]  # every 2nd step plus evaluation steps
    assert lines[1]["eval_loss"] == pytest.approx(seen[2].eval_loss)
    meta = flowcore.load_metadata(tmp_path / "last.safetensors")
    assert meta["step"] == 6 and meta["examples_seen"] == 6 * 64 and meta["epochs"] == pytest.approx(0.384)
    assert meta["metrics"]["eval_loss"] == seen[-1].eval_loss and meta["torch"] == torch.__version__


def test_trainer_rejects_mismatched_data():
    with pytest.raises(ValueError, match=r"train_data must have shape \(N, 2\)"):
        Trainer(tiny_glow(), torch.zeros(10, 3), TrainConfig(steps=1, batch_size=2))
    with pytest.raises(ValueError, match="larger than the training set"):
        Trainer(tiny_glow(), moons(10), TrainConfig(steps=1, batch_size=64))


def test_spike_guard_needs_a_spread_before_it_judges():
    trainer = Trainer(tiny_glow(), moons(), TrainConfig(steps=10, batch_size=64, spike_guard=10.0))
    trainer.guard.stats = LossStats(500, 1.0, 0.0)  # a perfectly constant loss so far: no scale to measure a jump by
    assert trainer.guard.check(5.0) is None
    trainer.guard.stats = LossStats(500, 1.0, 0.01)
    assert "running standard deviations" in trainer.guard.check(5.0)


@pytest.mark.parametrize("joined", [True, False])  # one flat vector, or one tensor each
def test_gradient_norm_and_finiteness_check_agree_with_torch(joined):
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shape, generator=g) for shape in [(5, 3), (7,), (2, 2, 2), (1,)]]
    expected = torch.nn.utils.get_total_norm(tensors).item()
    if joined:
        tensors = [torch.cat([t.reshape(-1) for t in tensors])]
    assert grad_norm(tensors).item() == pytest.approx(expected, rel=1e-6)
    assert grad_norm([]).item() == 0.0
    assert all_finite([])
    assert all_finite(tensors)
    for bad in (math.nan, math.inf, -math.inf):
        tensors[-1][0] = bad
        assert not all_finite(tensors)


def test_sampling_between_training_steps_uses_the_current_weights():
    """The 1x1 convolutions cache their inverse for sampling; the trainer's fused Adam updates
    weights without bumping version counters, so an old cache would decode with old weights."""
    torch.manual_seed(0)
    flow = flowcore.build("glow", (2,), hidden=16, steps=4)
    trainer = Trainer(flow, flowcore.toy_data("moons", 512), TrainConfig(steps=60, batch_size=128, lr=3e-3))
    z = flow.base.sample(5, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        trainer.step()
    flow.eval()
    with torch.no_grad():
        before = flow.decode(z)
    for _ in range(30):
        trainer.step()
    flow.eval()
    with torch.no_grad():
        after = flow.decode(z)
        assert not torch.allclose(after, before)
        assert torch.allclose(flow.encode(after)[0], z, atol=1e-4)


def test_a_warm_restart_ramps_the_learning_rate_and_resuming_mid_ramp_keeps_it(tmp_path):
    """Resuming with a longer schedule and `rewarm_steps` spreads the jump in the learning rate
    over that many steps; a run stopped mid-ramp and resumed as it was goes on bit for bit."""
    base, split = tmp_path / "base", tmp_path / "split"
    list(Trainer(tiny_glow(), moons(), TrainConfig(steps=10, batch_size=64, lr=5e-3), out_dir=base).run())
    longer = TrainConfig(steps=30, batch_size=64, lr=5e-3, checkpoint_every=1, rewarm_steps=4)
    whole = Trainer.resume(base / "last.safetensors", moons(), config=longer)
    assert whole.restart_step == 10
    lrs = [r.lr for r in whole.run()]
    assert lrs == pytest.approx([lr_at(longer, s) * min(1.0, (s - 9) / 4) for s in range(10, 30)], rel=1e-12)
    assert lrs[0] == pytest.approx(lr_at(longer, 10) / 4) and lrs[3] == pytest.approx(lr_at(longer, 13))

    split.mkdir()
    (split / "last.safetensors").write_bytes((base / "last.safetensors").read_bytes())
    list(Trainer.resume(split / "last.safetensors", moons(), config=longer, out_dir=split).run(steps=2))
    again = Trainer.resume(split / "last.safetensors", moons(), out_dir=split)  # its saved config: same schedule
    assert again.restart_step == 10 and again.steps_done == 12
    assert [r.lr for r in again.run()] == lrs[2:]
    assert same_weights(again.flow, whole.flow)

    plain = Trainer.resume(split / "last.safetensors", moons(), config=TrainConfig(steps=40, batch_size=64, lr=5e-3))
    assert plain.restart_step == 30 and plain.step().lr == lr_at(plain.config, 30)  # rewarm_steps 0: no ramp
