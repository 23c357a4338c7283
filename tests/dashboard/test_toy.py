"""2-D services: the shipped default flow, densities, layer stages, latent paths."""

from __future__ import annotations

import math

import torch

from dashboard.services import layers, toy
from flowcore.checkpoint import load


def test_shipped_default_flow_loads_and_says_how_it_was_made() -> None:
    flow = load(toy.DEFAULT_ASSET)
    text = toy.describe(flow)
    assert "RealNVP" in text and "3,000 steps" in text and "two moons" in text
    assert "negative log-likelihood of points it never trained on" in text  # NLL said in words where it is shown
    held_out = toy.split("moons", 0)[1]
    untrained = toy.build_flow("realnvp", 6, 64)  # zero-initialised couplings: a standard normal
    with toy.evaluating(flow), toy.evaluating(untrained):
        nll = -flow.log_prob(held_out).mean().item()
        baseline = -untrained.log_prob(held_out).mean().item()
    assert nll < baseline - 0.5
    assert abs(nll - flow.metadata["held_out_nll"]) < 1e-3


def test_fallback_training_records_its_settings() -> None:
    flow = toy.train_default_flow("circles", steps=5)
    assert flow.metadata["steps"] == 5 and flow.metadata["data"] == "circles"
    assert math.isfinite(flow.metadata["held_out_nll"])
    assert "circles" in toy.describe(flow)


def test_density_grid_integrates_to_about_one() -> None:
    flow = load(toy.DEFAULT_ASSET)
    b = toy.Bounds(-6.0, 6.0, -6.0, 6.0)
    frame = toy.density_frame(flow, b, side=120)
    cell = (b.x1 - b.x0) * (b.y1 - b.y0) / len(frame)
    assert abs(frame["density"].sum() * cell - 1.0) < 0.05


def test_layer_stages_run_from_data_to_latent() -> None:
    flow = toy.build_flow("glow", 2, 16, seed=1)
    data = toy.split("moons", 0)[0]
    stages = layers.layer_stages(flow, data, toy.bounds_of(data), seed=0)
    assert [s.name for s in stages] == ["data"] + ["ActNorm", "LUInvertibleLinear", "AffineCoupling"] * 2
    first = stages[0].points[stages[0].points["kind"] == "data pushed forward"][["x", "y"]].to_numpy()
    assert torch.allclose(torch.tensor(first), data[: len(first)])
    # the last stage holds the latent codes: encoding the data gives the same points
    last = stages[-1].points[stages[-1].points["kind"] == "data pushed forward"][["x", "y"]].to_numpy()
    with toy.evaluating(flow):
        z, _ = flow.encode(data[: len(last)])
    assert torch.allclose(torch.tensor(last), z, atol=1e-5)
    assert "moves coordinate" in stages[3].description


def test_toy_path_ends_at_the_two_data_points() -> None:
    flow = load(toy.DEFAULT_ASSET)
    points = toy.split("moons", 0)[0]
    frames, windows = toy.path_frames(flow, points, pair_seed=3, steps=9, path="spherical")
    ends = frames["data_path"].iloc[[0, -1]][["x", "y"]].to_numpy()
    i, j = torch.randperm(len(points), generator=torch.Generator().manual_seed(3))[:2].tolist()
    assert torch.allclose(torch.tensor(ends).float(), points[[i, j]], atol=1e-4)
    assert windows["data"].x1 - windows["data"].x0 == windows["data"].y1 - windows["data"].y0


def test_maths_check_logdets_agree_with_the_autograd_jacobian() -> None:
    flow = load(toy.DEFAULT_ASSET)
    points = torch.tensor([[0.5, -0.3], [-1.0, 0.8], [2.0, 0.1]])
    table = toy.logdet_check(flow, points)
    assert list(table.columns) == ["x1", "x2", "autograd", "flow", "difference"]
    assert (table["autograd"].abs() > 0.01).all()  # a trained flow changes areas: the check is not 0 == 0
    assert (table["difference"].abs() < 1e-4).all(), table
    with toy.evaluating(flow):
        assert torch.allclose(torch.tensor(table["flow"].to_numpy()).float(), flow.encode(points)[1], atol=1e-6)


def test_maths_check_catches_a_wrong_logdet(monkeypatch) -> None:
    flow = toy.build_flow("realnvp", 2, 16, seed=0)
    layer = flow.transform.layers[0]
    original = type(layer).forward

    def off_by_one(self, x):  # a layer that reports its log-det 1 nat too high
        z, ld = original(self, x)
        return z, ld + 1.0

    monkeypatch.setattr(type(layer), "forward", off_by_one)
    table = toy.logdet_check(flow, torch.zeros(3, 2))
    assert ((table["difference"] - 2.0).abs() < 1e-4).all()  # two RealNVP couplings, each off by one


def test_density_integral_over_the_plotted_square() -> None:
    flow = load(toy.DEFAULT_ASSET)
    wide, narrow = toy.Bounds(-6.0, 6.0, -6.0, 6.0), toy.Bounds(-1.0, 1.0, -1.0, 1.0)
    assert abs(toy.density_integral(flow, wide) - 1.0) < 0.02
    assert toy.mass_inside(flow, wide) > 0.99
    part = toy.density_integral(flow, narrow)  # a square that holds only part of the mass
    assert 0.05 < part < 0.9 and abs(part - toy.mass_inside(flow, narrow)) < 0.03
