"""Batch sources: every kind trains, fresh batches are fresh, labels reach the class-conditional
objective, and a run (resumed or not) is a function of its seed."""

from __future__ import annotations

import pytest
import torch

import flowcore
from flowcore.batches import Fresh, Images, Points, fresh_toy
from flowcore.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def glow(classes: int = 0) -> flowcore.Flow:
    torch.manual_seed(0)
    flow = flowcore.build("glow", (2,), hidden=16, steps=2, classes=classes)
    if classes:  # classes apart from the start (they all start as N(0, I)), so labels change the loss
        with torch.no_grad():
            flow.base.mean.copy_(torch.randn(flow.base.mean.shape, generator=torch.Generator().manual_seed(1)))
    return flow


def image_glow() -> flowcore.Flow:
    torch.manual_seed(0)
    return flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1)


def images(n: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def moons_with_labels(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Two moons labelled by which side of the vertical axis a point lies (a learnable label)."""
    x = flowcore.toy_data("moons", n, 0)
    return x, (x[:, 0] > 0).long()


class Recording:
    """A `Fresh` draw function that keeps every batch it hands out."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        x = torch.randn(n, 2, generator=generator)
        self.batches.append(x.clone())
        return x


@pytest.mark.parametrize("source", ["points", "images", "fresh", "fresh_toy"])
def test_every_kind_of_source_trains(source):
    cfg = TrainConfig(steps=60, batch_size=32, lr=1e-2, decay="none")
    flow, data = (image_glow(), Images(images())) if source == "images" else (glow(), {
        "points": Points(flowcore.toy_data("moons", 300, 0)),
        "fresh": Fresh(Recording()),
        "fresh_toy": fresh_toy("moons"),
    }[source])
    trainer = Trainer(flow, data, cfg)
    records = list(trainer.run())
    assert len(records) == 60 and not any(r.diverged for r in records)
    assert sum(r.loss for r in records[-10:]) < sum(r.loss for r in records[:10])  # it learns
    assert (records[0].bits_per_dim is not None) == (source == "images")


def test_a_tensor_passed_as_train_data_becomes_the_matching_source():
    assert isinstance(Trainer(glow(), flowcore.toy_data("moons", 100), TrainConfig(batch_size=16)).batches, Points)
    trainer = Trainer(image_glow(), images(), TrainConfig(batch_size=16))
    assert isinstance(trainer.batches, Images) and torch.equal(trainer.train_data, images())


def test_fresh_batches_differ_from_step_to_step_and_follow_the_seed():
    draws = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        draws[name] = Recording()
        list(Trainer(glow(), Fresh(draws[name]), TrainConfig(steps=4, batch_size=16, seed=seed)).run())
    a = draws["a"].batches[-4:]  # before them: the shape check and ActNorm's initialisation
    assert all(not torch.equal(a[i], a[i + 1]) for i in range(3))
    assert all(torch.equal(x, y) for x, y in zip(a, draws["b"].batches[-4:], strict=True))
    assert not torch.equal(a[0], draws["c"].batches[-4])
    toy = fresh_toy("moons")
    g = torch.Generator().manual_seed(0)
    first, second = toy.batch(64, g)[0], toy.batch(64, g)[0]
    assert first.shape == (64, 2) and not torch.equal(first, second)


def test_labels_reach_the_class_conditional_objective():
    x, y = moons_with_labels()
    cfg = TrainConfig(steps=1, batch_size=64, seed=2)
    record = Trainer(glow(classes=2), x, cfg, train_labels=y).step()
    bx, by = Points(x, y).batch(64, torch.Generator().manual_seed(2))  # the trainer's first batch
    twin = glow(classes=2).train()
    with torch.no_grad():
        twin.log_prob(bx)  # ActNorm initialises itself on that batch, as in the trainer
        expected = -twin.class_log_probs(bx).gather(1, by[:, None]).mean()
        wrong = -twin.class_log_probs(bx).gather(1, 1 - by[:, None]).mean()
    assert record.loss == pytest.approx(expected.item(), rel=1e-6)
    assert record.loss != pytest.approx(wrong.item(), rel=1e-3)  # the labels, not the other class


def test_class_conditional_training_learns_the_labels():
    x, y = moons_with_labels()
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    accuracy = {}
    for name, labels in (("true", y), ("shuffled", shuffled)):
        flow = glow(classes=2)
        list(Trainer(flow, Points(x, labels), TrainConfig(steps=200, batch_size=100, lr=5e-3)).run())
        with torch.no_grad():
            accuracy[name] = (flow.eval().classify(x) == y).float().mean().item()
    assert accuracy["true"] > 0.75 and accuracy["shuffled"] < 0.6


@pytest.mark.parametrize("kind", ["points", "images with labels", "fresh"])
def test_a_resumed_run_continues_identically(tmp_path, kind):
    def make(out_dir=None, steps=None):
        cfg = TrainConfig(steps=12, batch_size=48, lr=2e-3, checkpoint_every=5)
        if kind == "points":  # 48 does not divide 200: resumes land mid-epoch
            trainer = Trainer(glow(), flowcore.toy_data("moons", 200, 1), cfg, out_dir=out_dir)
        elif kind == "fresh":
            trainer = Trainer(glow(), fresh_toy("circles"), cfg, out_dir=out_dir)
        else:
            torch.manual_seed(0)
            flow = flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1, classes=3)
            labels = torch.arange(100) % 3
            trainer = Trainer(flow, images(100), cfg, out_dir=out_dir, train_labels=labels)
        list(trainer.run(steps))
        return trainer

    whole = make()
    make(tmp_path, steps=7)  # a checkpoint at step 5, and one at 7 when it stops
    if kind == "points":
        data, labels = flowcore.toy_data("moons", 200, 1), None
    elif kind == "fresh":
        data, labels = fresh_toy("circles"), None
    else:
        data, labels = images(100), torch.arange(100) % 3
    resumed = Trainer.resume(tmp_path / "last.safetensors", data, train_labels=labels)
    assert resumed.steps_done == 7
    list(resumed.run())
    assert [r.loss for r in resumed.history] == [r.loss for r in whole.history]
    assert all(torch.equal(a, b) for a, b in zip(resumed.flow.state_dict().values(),
                                                 whole.flow.state_dict().values(), strict=True))


def test_sources_refuse_what_the_flow_cannot_train_on():
    x, y = moons_with_labels(100)
    cfg = TrainConfig(steps=1, batch_size=16)
    with pytest.raises(ValueError, match="trains on labelled data: pass train_labels"):
        Trainer(glow(classes=2), x, cfg)
    with pytest.raises(ValueError, match="fresh batches are unlabelled"):
        Trainer(glow(classes=2), fresh_toy("moons"), cfg)
    with pytest.raises(ValueError, match="not class-conditional"):
        Trainer(glow(), Points(x, y), cfg)
    with pytest.raises(ValueError, match="give the labels to the batch source"):
        Trainer(glow(classes=2), Points(x, y), cfg, train_labels=y)
    with pytest.raises(ValueError, match=r"a fresh batch must have shape \(N, 2\)"):
        Trainer(glow(), Fresh(lambda n, generator: torch.zeros(n, 3)), cfg)
    with pytest.raises(ValueError, match="Points takes float examples"):
        Trainer(image_glow(), Points(images()), cfg)
    with pytest.raises(ValueError, match="unknown data set"):
        fresh_toy("spirals")
    assert Trainer(glow(), x, cfg, train_labels=y).batches.labels is None  # an unconditional flow ignores labels
