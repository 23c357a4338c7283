"""Variational dequantisation: the learned q(u | x) as the flow's first layer, its bound, and
adding one to a trained run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

import flowcore
from flowcore.breakdown import DEQUANTISATION, bits_breakdown
from flowcore.checkpoint import read_checkpoint, write_checkpoint
from flowcore.cli import main
from flowcore.core import Flow, StandardNormal
from flowcore.dequantization import VariationalDequantizer
from flowcore.growth import add_dequantizer
from flowcore.metrics import bits_per_dim
from flowcore.models import build, config_dict
from flowcore.preprocess import Logit
from flowcore.schedule import TrainConfig
from flowcore.train import Trainer
from tests.helpers import randomize

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"hidden": 8, "blocks": 1, "scales": 2, "logit_alpha": 1e-6}


def _images(n: int, shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)


def test_a_new_dequantizer_is_uniform_noise_and_keeps_every_cell():
    torch.manual_seed(0)
    plain = build("realnvp", (1, 8, 8), **SMALL)
    torch.manual_seed(0)
    learned = build("realnvp", (1, 8, 8), dequantizer="variational", **SMALL)
    assert set(learned.state_dict()) - set(plain.state_dict()) == {k for k in learned.state_dict()
                                                                     if k.startswith("dequantizer.")}
    assert all(torch.equal(v, learned.state_dict()[k]) for k, v in plain.state_dict().items())
    x = _images(6).float() + torch.rand(6, 1, 8, 8)
    plain.eval(), learned.eval()
    assert torch.allclose(learned.log_prob(x), plain.log_prob(x), atol=1e-4, rtol=0)
    randomize(learned.dequantizer, scale=0.1)
    moved, log_det = learned.dequantizer(x)
    assert torch.equal(torch.floor(moved), torch.floor(x))  # each pixel stays in its cell
    assert not torch.allclose(moved, x) and log_det.abs().min() > 0


def test_the_flow_round_trip_and_density_include_the_dequantizer():
    flow = build("glow", (1, 8, 8), hidden=8, steps=1, dequantizer="variational").double().eval()
    randomize(flow, scale=0.05)
    x = _images(3).double() + 0.05 + 0.9 * torch.rand(3, 1, 8, 8, dtype=torch.float64)
    z, log_det = flow.encode(x)
    assert torch.allclose(flow.decode(z), x, atol=1e-8)
    _, log_det_cells = flow.dequantizer(x)
    _, log_det_rest = flow.transform(flow.dequantizer(x)[0])
    assert torch.allclose(log_det, log_det_cells + log_det_rest)


def _factorised_flow(pixels: int) -> Flow:
    """Logit then a standard normal: every pixel independent, so P(x) has a closed form."""
    shape = (1, 1, pixels)
    return Flow(Logit(1e-3), StandardNormal(pixels), shape, name="factorised",
                dequantizer=VariationalDequantizer(shape, couplings=1, hidden=8)).double()


def _exact_nll(flow: Flow, images: torch.Tensor) -> torch.Tensor:
    """-log P(x) in nats: each pixel's mass is the normal's mass between its cell's two logits."""
    logit = flow.transform
    lo, _ = logit(images.double())
    hi, _ = logit(images.double() + 1)
    n = Normal(0.0, 1.0)
    per_dim = torch.log(n.cdf(hi.reshape(len(images), -1)) - n.cdf(lo.reshape(len(images), -1)))
    return -per_dim.sum(1)


def test_learning_q_tightens_the_bound_and_never_crosses_the_exact_nll():
    """On a model whose discrete likelihood is exact, training q alone moves the bits/dim from the
    uniform bound toward -log P(x) and stays above it (Jensen: the bound is a bound)."""
    torch.manual_seed(0)
    flow = _factorised_flow(6)
    images = torch.tensor([[0, 0, 3, 128, 252, 255], [0, 1, 40, 200, 255, 255]],
                          dtype=torch.uint8).reshape(2, 1, 1, 6)
    exact = _exact_nll(flow, images)
    g = torch.Generator().manual_seed(1)

    def bound(draws: int = 4000) -> torch.Tensor:
        x = images.double().repeat(draws, 1, 1, 1) + torch.rand((2 * draws, 1, 1, 6), generator=g,
                                                                  dtype=torch.float64)
        return -flow.log_prob(x).reshape(draws, 2).mean(0)

    with torch.no_grad():
        uniform = bound()
    assert (uniform > exact + 0.5).all()  # the logit's steep ends: uniform noise is a loose fit
    opt = torch.optim.Adam(flow.dequantizer.parameters(), lr=1e-2)
    for _ in range(300):
        loss = bound(64).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = bound()
    assert (learned < uniform - 0.5).all()
    assert (learned > exact - 0.05).all()  # within Monte Carlo error of the exact value, never below


def test_breakdown_counts_the_dequantizer_as_log_q():
    flow = build("realnvp", (1, 8, 8), dequantizer="variational", **SMALL).eval()
    randomize(flow.dequantizer, scale=0.1)
    x = _images(4).float() + torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        terms = bits_breakdown(flow, x)
        total = -flow.log_prob(x) / (64 * math.log(2))
        _, log_det = flow.dequantizer(x)
    assert next(iter(terms)) == DEQUANTISATION
    assert torch.allclose(terms[DEQUANTISATION], -log_det / (64 * math.log(2)), atol=1e-6)
    assert torch.allclose(sum(terms.values()), total, atol=1e-4)


def test_a_variational_checkpoint_loads_as_it_was_saved(tmp_path):
    flow = build("glow", (1, 8, 8), hidden=8, steps=1, dequantizer="variational", dequantizer_couplings=1,
                 dequantizer_hidden=4)
    randomize(flow, scale=0.05)
    path = flowcore.save(flow, tmp_path / "v.safetensors")
    back = flowcore.load(path)
    assert config_dict(back)["dequantizer"] == "variational" and config_dict(back)["dequantizer_hidden"] == 4
    x = _images(3).float() + torch.rand(3, 1, 8, 8)
    assert torch.equal(back.eval().log_prob(x), flow.eval().log_prob(x))


def test_a_model_saved_before_the_option_loads_with_uniform_noise(tmp_path):
    flow = build("realnvp", (1, 8, 8), **SMALL)
    payload = read_checkpoint(flowcore.save(flow, tmp_path / "old.safetensors"))
    for key in ("dequantizer", "dequantizer_couplings", "dequantizer_hidden"):
        del payload["model"][key]
    write_checkpoint(payload, tmp_path / "old.safetensors")
    assert flowcore.load(tmp_path / "old.safetensors").dequantizer is None


@pytest.mark.parametrize("options, fragment", [
    ({"dequantizer": "learned"}, "dequantizer must be one of uniform, variational"),
    ({"dequantizer": "variational", "dequantizer_hidden": 0}, "dequantizer_hidden"),
])
def test_bad_dequantizer_options_are_one_clear_error(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        build("glow", (1, 8, 8), **options)
    with pytest.raises(ValueError, match="for images"):
        build("glow", (2,), dequantizer="variational")


def test_a_dequantizer_added_to_a_training_state_starts_where_the_run_stopped(tmp_path):
    images = _images(256, seed=2)
    config = TrainConfig(steps=6, batch_size=32, lr=1e-3, ema_decay=0.9, checkpoint_every=6)
    torch.manual_seed(0)
    trainer = Trainer(build("realnvp", (1, 8, 8), **SMALL), images, config, out_dir=tmp_path)
    list(trainer.run())
    payload = read_checkpoint(tmp_path / "last.safetensors")
    grown = add_dequantizer(payload, "state", dequantizer_couplings=1, dequantizer_hidden=4)
    torch.manual_seed(123)  # another global generator state: the new layers' initialisation is the same
    again = add_dequantizer(payload, "state", dequantizer_couplings=1, dequantizer_hidden=4)
    assert all(torch.equal(again["state_dict"][k], v) for k, v in grown["state_dict"].items())
    assert grown["model"]["dequantizer"] == "variational" and grown["model"]["dequantizer_hidden"] == 4
    longer = TrainConfig(**{**config.__dict__, "steps": 9})
    resumed = Trainer.resume(tmp_path / "last.safetensors", images, config=longer, payload=grown)
    assert resumed.steps_done == 6 and resumed.flow.dequantizer is not None
    saved = payload["optimizer"]["state"]
    now = resumed.layout.optimizer_state(resumed.optimizer)["state"]
    assert all(torch.equal(now[i]["exp_avg"], saved[i]["exp_avg"]) for i in saved)  # kept, same indices
    new = range(len(saved), len(list(resumed.flow.parameters())))
    assert len(new) > 0 and all(not now[i]["exp_avg"].any() for i in new)  # fresh moments
    assert set(resumed.average.weights) == {k for k, v in resumed.flow.state_dict().items() if v.is_floating_point()}
    before = bits_per_dim(trainer.flow, images[:64], generator=torch.Generator().manual_seed(5))
    after = bits_per_dim(resumed.flow, images[:64], generator=torch.Generator().manual_seed(5))
    assert after == pytest.approx(before, abs=1e-4)  # identity at first: the same bits/dim
    list(resumed.run())
    resumed.save_checkpoint(tmp_path / "grown.safetensors")
    again = Trainer.resume(tmp_path / "grown.safetensors", images)  # the grown state is an ordinary one
    assert again.steps_done == 9 and again.flow.dequantizer is not None
    with pytest.raises(ValueError, match="already has a variational dequantizer"):
        add_dequantizer(read_checkpoint(tmp_path / "grown.safetensors"), "grown")


def test_the_command_line_adds_a_dequantizer_on_resume_and_refuses_to_remove_it(tmp_path, mnist_dir, capsys):
    out = tmp_path / "run"
    base = ["train", "--data-dir", str(mnist_dir), "--out", str(out), "--quiet"]
    assert main([*base, "--model", "glow", "--data", "mnist", "--set", "hidden=4", "--set", "steps=1",
                 "--steps", "2", "--batch-size", "8", "--eval-size", "16"]) == 0
    assert main([*base, "--resume", "--steps", "4", "--dequantizer", "variational",
                 "--set", "dequantizer_hidden=4"]) == 0
    flow = flowcore.load(out / "model.safetensors")
    assert flow.dequantizer is not None and config_dict(flow)["dequantizer_hidden"] == 4
    meta = flowcore.load_metadata(out / "model.safetensors")
    assert meta["step"] == 4 and "variational dequantiser" in meta["preprocessing"]
    capsys.readouterr()
    assert main([*base, "--resume", "--steps", "5", "--dequantizer", "uniform"]) == 2
    assert "trained with dequantizer='variational'" in capsys.readouterr().err
