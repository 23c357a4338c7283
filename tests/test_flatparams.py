"""Small models train on one parameter vector (`flowcore.params.FlatVector`): the same maths as one
tensor each (`EachTensor`), the same checkpoints, robust to casts, moves and frozen parameters."""

from __future__ import annotations

import pytest
import torch

import flowcore
import flowcore.params
from flowcore.checkpoint import read_checkpoint
from flowcore.params import EachTensor, FlatVector
from flowcore.train import TrainConfig, Trainer

CFG = dict(steps=40, batch_size=64, lr=3e-3, checkpoint_every=10)


pytestmark = pytest.mark.usefixtures("one_thread")


def trainer(flat: bool, monkeypatch, out_dir=None, **overrides) -> Trainer:
    monkeypatch.setattr(flowcore.params, "FLAT_LIMIT", 1 << 20 if flat else 0)
    torch.manual_seed(0)
    flow = flowcore.build("realnvp", (2,), hidden=16, couplings=3)
    made = Trainer(flow, flowcore.toy_data("moons", 500), TrainConfig(**{**CFG, **overrides}), out_dir=out_dir)
    assert isinstance(made.layout, FlatVector if flat else EachTensor)
    return made


def weights(t: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in t.flow.parameters()])


def inside(p: torch.Tensor, vector: torch.Tensor) -> bool:
    start = vector.data_ptr()
    return start <= p.data_ptr() < start + vector.numel() * vector.element_size()


def test_one_vector_gives_the_same_training_as_one_tensor_each(monkeypatch):
    flat, per_tensor = trainer(True, monkeypatch), trainer(False, monkeypatch)
    for _ in range(25):
        a, b = flat.step(), per_tensor.step()
        assert a.loss == pytest.approx(b.loss, rel=1e-5) and a.grad_norm == pytest.approx(b.grad_norm, rel=1e-4)
    torch.testing.assert_close(weights(flat), weights(per_tensor), rtol=1e-5, atol=1e-6)
    vector = flat.layout.vector
    assert all(inside(p, vector) and inside(p.grad, vector.grad) for p in flat.flow.parameters())
    assert not torch.equal(weights(flat), weights(trainer(True, monkeypatch)))  # it did train


@pytest.mark.parametrize("writer_flat, reader_flat", [(True, False), (False, True)])
def test_checkpoints_keep_the_per_parameter_layout_and_resume_across_both(monkeypatch, tmp_path,
                                                                           writer_flat, reader_flat):
    full = trainer(True, monkeypatch)
    list(full.run())
    writer = trainer(writer_flat, monkeypatch, out_dir=tmp_path)
    list(writer.run(20))
    saved = read_checkpoint(tmp_path / "last.safetensors")["optimizer"]
    params = list(writer.flow.parameters())
    assert saved["param_groups"][0]["params"] == list(range(len(params)))
    assert [saved["state"][i]["exp_avg"].shape for i in range(len(params))] == [p.shape for p in params]
    monkeypatch.setattr(flowcore.params, "FLAT_LIMIT", 1 << 20 if reader_flat else 0)
    resumed = Trainer.resume(tmp_path / "last.safetensors", flowcore.toy_data("moons", 500))
    assert isinstance(resumed.layout, FlatVector if reader_flat else EachTensor)
    list(resumed.run())
    torch.testing.assert_close(weights(resumed), weights(full), rtol=1e-5, atol=1e-6)


def test_adamax_state_round_trips_through_a_checkpoint_bit_for_bit(monkeypatch, tmp_path):
    full = trainer(True, monkeypatch, optimizer="adamax")
    list(full.run())
    list(trainer(True, monkeypatch, out_dir=tmp_path, optimizer="adamax").run(20))
    resumed = Trainer.resume(tmp_path / "last.safetensors", flowcore.toy_data("moons", 500))
    list(resumed.run())
    assert torch.equal(weights(resumed), weights(full))


def test_reset_gradients_and_in_place_loads_keep_training_the_model(monkeypatch):
    control, t = trainer(True, monkeypatch), trainer(True, monkeypatch)
    for _ in range(5):
        control.step(), t.step()
    t.flow.zero_grad(set_to_none=True)  # what a user's code may do between steps
    t.flow.load_state_dict(t.flow.state_dict())  # copies in place
    for _ in range(5):
        control.step(), t.step()
    assert torch.equal(weights(t), weights(control))


def test_a_model_cast_or_moved_mid_run_keeps_training_with_its_optimizer_state(monkeypatch):
    control, t = trainer(True, monkeypatch), trainer(True, monkeypatch)
    for _ in range(10):
        control.step(), t.step()
    t.flow.double().float()  # replaces every parameter's storage twice (exactly: float32 -> float64 -> float32)
    old = t.layout.vector
    assert not any(inside(p, old) for p in t.flow.parameters())
    for _ in range(10):
        control.step(), t.step()
    assert t.layout.vector is not old and all(inside(p, t.layout.vector) for p in t.flow.parameters())
    assert torch.equal(weights(t), weights(control))  # the model trained on, with its Adam moments


def test_the_optimizers_own_zero_grad_does_not_break_the_next_step(monkeypatch):
    control, t = trainer(True, monkeypatch), trainer(True, monkeypatch)
    for _ in range(3):
        control.step(), t.step()
    t.optimizer.zero_grad()  # sets the vector's gradient to None
    for _ in range(3):
        control.step(), t.step()
    assert torch.equal(weights(t), weights(control))


def test_a_parameter_frozen_mid_run_stays_put_as_without_the_vector(monkeypatch):
    runs = {}
    for flat in (True, False):
        t = trainer(flat, monkeypatch, weight_decay=1e-2)
        for _ in range(3):
            t.step()
        frozen = next(t.flow.parameters())
        frozen.requires_grad_(False)
        before = frozen.detach().clone()
        for _ in range(3):
            t.step()
        assert torch.equal(frozen.detach(), before)  # no momentum, no weight decay
        runs[flat] = weights(t)
    torch.testing.assert_close(runs[True], runs[False], rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(flowcore.params, "FLAT_LIMIT", 1 << 20)
    flow = flowcore.build("realnvp", (2,), hidden=16)
    next(flow.parameters()).requires_grad_(False)
    made = Trainer(flow, flowcore.toy_data("moons", 500), TrainConfig(**CFG))
    assert isinstance(made.layout, EachTensor)  # frozen from the start


def test_a_rollback_after_a_cast_restores_state_in_the_new_dtype(monkeypatch):
    t = trainer(True, monkeypatch, rollback_every=2)
    for _ in range(3):
        t.step()
    t.flow.double()
    t.batches.data = t.batches.data.double()
    for _ in range(3):
        t.step()
    real_step = t.optimizer.step

    def poisoned_step(*args, **kwargs):
        real_step(*args, **kwargs)
        t.layout.vector.data.fill_(float("nan"))

    t.optimizer.step = poisoned_step
    assert t.step().diverged
    t.optimizer.step = real_step
    records = [t.step() for _ in range(3)]
    assert not any(r.diverged for r in records)
    assert {v.dtype for v in t.optimizer.state[t.layout.vector].values() if v.dim() > 0} == {torch.float64}


def test_parameters_split_over_two_dtypes_go_on_one_tensor_each(monkeypatch):
    t = trainer(True, monkeypatch)
    for _ in range(3):
        t.step()
    t.flow.transform.layers[0].double()  # one coupling only: the vector cannot hold both dtypes
    t.flow.transform.layers[0].register_forward_pre_hook(lambda m, args: (args[0].double(),))
    t.flow.transform.layers[0].register_forward_hook(lambda m, args, out: (out[0].float(), out[1].float()))
    before = weights(t)
    for _ in range(3):
        assert not t.step().diverged
    assert isinstance(t.layout, EachTensor) and not torch.equal(weights(t), before)
    assert {p.dtype for p in t.flow.parameters()} == {torch.float32, torch.float64}


@pytest.mark.slow
def test_the_ab_benchmark_runs_and_puts_both_layouts_in_its_table():
    from benchmarks import flatparams_ab

    text = flatparams_ab.main(["--quick"])
    assert "`python -m benchmarks.flatparams_ab --quick`" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2-D") or line.startswith("| MNIST")]
    assert len(rows) == 4 and all(line.count("|") == 7 for line in rows)
    assert flowcore.params.FLAT_LIMIT == 1 << 20  # restored after the one-tensor-each trainers
