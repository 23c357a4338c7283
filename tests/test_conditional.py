"""Class-conditional Glow: exact log p(x | y), the marginal, Bayes' rule, sampling, training, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

import flowcore
from flowcore.cli import main
from flowcore.conditional import ClassConditionalNormal
from tests.helpers import jacobian_log_det, randomize

SMALL = {"hidden": 8, "steps": 2, "levels": 2}


def _conditional(shape=(1, 8, 8), classes=3, dtype=torch.float64):
    torch.manual_seed(0)
    flow = flowcore.build("glow", shape, classes=classes, **SMALL).to(dtype)
    x = torch.rand(4, *shape, dtype=dtype) * 250 + 2
    flow.train()
    flow.log_prob(x)  # ActNorm's data initialisation
    randomize(flow, scale=0.05)
    return flow.eval(), x


def _gaussian_log_prob(z, mean, log_scale):
    eps = (z - mean) * torch.exp(-log_scale)
    return (-0.5 * eps**2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_log_prob_given_class_is_change_of_variables_with_the_autograd_jacobian():
    flow, x = _conditional()
    z, _ = flow.encode(x)
    log_det = jacobian_log_det(lambda v: flow.encode(v)[0], x)
    base = flow.base
    log_scale = 5.0 * torch.tanh(base.log_scale / 5.0)
    for y in range(flow.classes):
        labels = torch.full((len(x),), y)
        expected = _gaussian_log_prob(z, base.mean[y], log_scale[y]) + log_det
        assert torch.allclose(flow.log_prob(x, labels), expected, atol=1e-6, rtol=1e-8)
    assert torch.allclose(flow.decode(z), x, atol=1e-8, rtol=1e-8)


def test_marginal_is_the_log_mean_exp_over_classes_and_classify_is_bayes_rule():
    flow, x = _conditional()
    per_class = torch.stack([flow.log_prob(x, torch.full((len(x),), y)) for y in range(flow.classes)], 1)
    assert torch.allclose(flow.class_log_probs(x), per_class, atol=1e-8)
    marginal = torch.logsumexp(per_class, 1) - math.log(flow.classes)
    assert torch.allclose(flow.log_prob(x), marginal, atol=1e-8)
    assert torch.equal(flow.classify(x), per_class.argmax(1))


def test_marginal_density_of_a_2d_conditional_flow_integrates_to_one():
    torch.manual_seed(0)
    flow = flowcore.build("glow", (2,), classes=2, steps=2, hidden=8).double().eval()
    randomize(flow, scale=0.1)
    with torch.no_grad():
        flow.base.mean[1] += torch.tensor([1.5, -1.0], dtype=torch.float64)
    side = torch.linspace(-9, 9, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    cell = (side[1] - side[0]) ** 2
    with torch.no_grad():
        total = flow.log_prob(grid).exp().sum() * cell
        per_class = [flow.log_prob(grid, torch.full((len(grid),), y)).exp().sum() * cell for y in range(2)]
    assert abs(float(total) - 1) < 1e-3
    assert all(abs(float(p) - 1) < 1e-3 for p in per_class)


def test_sampling_given_a_class_follows_its_gaussian_and_temperature_zero_is_its_mean():
    flow, _ = _conditional(dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    x = flow.sample(3, temperature=0.0, generator=gen, y=[2, 2, 2])
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.float32
    z, _ = flow.encode(x)
    assert torch.allclose(z, flow.base.mean[2].expand(3, -1), atol=2e-3)
    anything = flow.sample(5, temperature=0.7, generator=gen)
    assert anything.shape == (5, 1, 8, 8) and torch.isfinite(anything).all()


def test_float64_flows_sample_in_float64():
    for name, shape in [("realnvp", (2,)), ("glow", (2,)), ("realnvp", (1, 8, 8)), ("nice", (4,))]:
        flow = flowcore.build(name, shape).double()
        assert flow.sample(4).dtype == torch.float64
    flow, _ = _conditional()
    assert flow.sample(2, y=[0, 1]).dtype == torch.float64


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 5, 0], r"\[0, 2\]"),
    ([0.0, 1.0, 0.0, 1.0], "integers"),
    ([0, 1], "4 integers"),
])
def test_bad_labels_give_one_clear_error(labels, message):
    flow, x = _conditional()
    with pytest.raises(ValueError, match=message):
        flow.log_prob(x, torch.tensor(labels))


def test_unconditional_flows_refuse_labels_and_conditional_ones_need_two_classes():
    flow = flowcore.build("glow", (2,))
    with pytest.raises(ValueError, match="not class-conditional"):
        flow.log_prob(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="not class-conditional"):
        flow.classify(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="at least 2"):
        ClassConditionalNormal(4, 1)
    with pytest.raises(ValueError, match="classes must be"):
        flowcore.build("glow", (2,), classes=1)


def test_training_on_labels_separates_the_classes():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (2000,), generator=g)
    x = torch.randn(2000, 2, generator=g) * 0.3 + torch.tensor([[-1.5, 0.0], [1.5, 0.0]])[y]
    torch.manual_seed(0)
    flow = flowcore.build("glow", (2,), classes=2, steps=2, hidden=16)
    config = flowcore.TrainConfig(steps=300, batch_size=128, lr=5e-3, class_loss=1.0)
    with pytest.raises(ValueError, match="train_labels"):
        flowcore.Trainer(flow, x, config)
    trainer = flowcore.Trainer(flow, x, config, train_labels=y)
    for _ in trainer.run():
        pass
    accuracy = (flow.eval().classify(x) == y).float().mean().item()
    assert accuracy > 0.97


def test_command_line_trains_a_conditional_glow_reports_accuracy_and_samples_a_digit(tmp_path, mnist_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "glow", "--data", "mnist", "--data-dir", str(mnist_dir), "--classes", "10",
                 "--set", "hidden=4", "--set", "steps=1", "--steps", "3", "--batch-size", "16",
                 "--eval-size", "32", "--out", str(out), "--quiet"]) == 0
    flow = flowcore.load(out / "model.safetensors")
    assert flow.classes == 10
    capsys.readouterr()
    model = str(out / "model.safetensors")
    assert main(["eval", "--checkpoint", model, "--data-dir", str(mnist_dir), "--limit", "40"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= result["accuracy"] <= 1 and math.isfinite(result["bits_per_dim"])
    assert main(["sample", "--checkpoint", str(out / "model.safetensors"), "--digit", "3", "--n", "4",
                 "--out", str(tmp_path / "threes.png")]) == 0
    assert (tmp_path / "threes.png").stat().st_size > 0
    assert main(["sample", "--checkpoint", str(out / "model.safetensors"), "--digit", "10", "--n", "4",
                 "--out", str(tmp_path / "bad.png")]) == 2
