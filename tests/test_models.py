"""NICE, RealNVP and Glow as whole models: exact inverse, exact log-det, normalised density."""

from __future__ import annotations

import math

import pytest
import torch

import flowcore
from flowcore.data import load_mnist, toy_data
from flowcore.reshape import Flatten
from tests.helpers import jacobian_log_det, randomize

MODELS = ["nice", "realnvp", "glow"]
SMALL = {  # small image models for the float64 Jacobian tests
    "nice": {"hidden": 16, "layers": 1},
    "realnvp": {"hidden": 8, "blocks": 1},
    "glow": {"hidden": 8, "steps": 2},
}


def _trained_like(flow, x, scale=0.05):
    """Initialise ActNorm from data, then perturb every parameter (no layer is the identity)."""
    flow.train()
    flow.log_prob(x)
    randomize(flow, scale=scale)
    return flow.eval()


def _pixels(n, shape, dtype=torch.float32):
    return torch.rand(n, *shape, dtype=dtype) * 250 + 2


@pytest.mark.parametrize("name", [*MODELS, "realnvp-half-res", "realnvp-actnorm", "glow-net-actnorm"])
@pytest.mark.parametrize("shape", [(2,), (1, 4, 4), (2, 8, 8)])
def test_log_det_matches_autograd_jacobian(name, shape):
    overrides, scale = {"hidden": 16}, 0.05
    if name == "realnvp-half-res":
        name, overrides = "realnvp", {"hidden": 8, "blocks": 1, "half_res": True}
    elif name == "realnvp-actnorm":  # ActNorm after couplings and inside the conditioners (images)
        # unit-variance hidden units make a perturbed last layer saturate every log-scale at 0.05,
        # which leaves float64 only ~1e-5 of round-trip accuracy; 0.02 keeps the layers non-trivial
        name, overrides, scale = "realnvp", {"hidden": 8, "blocks": 1, "actnorm": True, "net_actnorm": True}, 0.02
    elif name == "glow-net-actnorm":  # ActNorm inside the conditioners (images; ignored by vectors)
        name, overrides = "glow", {**SMALL["glow"], "net_actnorm": True}
    elif len(shape) == 3:
        overrides = SMALL[name]
    flow = flowcore.build(name, shape, **overrides).double()
    x = torch.randn(3, 2, dtype=torch.float64) if len(shape) == 1 else _pixels(2, shape, torch.float64)
    _trained_like(flow, x, scale)
    z, log_det = flow.encode(x)
    assert z.shape == (x.shape[0], math.prod(shape)) and log_det.shape == (x.shape[0],)
    expected = jacobian_log_det(lambda v: flow.encode(v)[0], x)
    assert torch.allclose(log_det, expected, atol=1e-6, rtol=1e-6)
    assert torch.allclose(flow.decode(z), x, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(2,), (1, 28, 28), (3, 8, 8)])
def test_round_trip_float32(name, shape):
    flow = flowcore.build(name, shape)
    x = torch.randn(16, 2) * 2 if len(shape) == 1 else _pixels(4, shape)
    _trained_like(flow, x)
    with torch.no_grad():
        z, _ = flow.encode(x)
        x_back = flow.decode(z)
        x_again, _ = flow.transform.inverse(flow.transform(x)[0])
    assert torch.allclose(x_back, x, rtol=1e-4, atol=1e-4 * x.abs().max().item())
    assert torch.allclose(x_again.reshape(x.shape), x, rtol=1e-4, atol=1e-4 * x.abs().max().item())


def _train_briefly(flow, data, steps=300):
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    flow.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (256,), generator=g)]
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flow.eval()


@pytest.mark.parametrize("name", MODELS)
def test_2d_density_integrates_to_one_after_training(name):
    data = toy_data("moons", 4000, seed=0)
    flow = _train_briefly(flowcore.build(name, (2,), hidden=32), data)
    lo, hi, n = -7.0, 7.0, 351
    axis = torch.linspace(lo, hi, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
        on_data = flow.log_prob(data).mean()
    cell = ((hi - lo) / (n - 1)) ** 2
    assert abs(density.sum().item() * cell - 1.0) < 0.02
    cov = torch.cov(data.T)  # the best Gaussian fit, for comparison
    gaussian = -0.5 * (2 * math.log(2 * math.pi) + torch.logdet(cov).item() + 2)
    assert on_data > gaussian + 0.5, (on_data, gaussian)


def test_bits_per_dim_matches_hand_computation():
    """An identity flow with a standard normal base on the [0, 256) scale: closed form."""
    flow = flowcore.Flow(flowcore.Compose([Flatten((1, 2, 2))]),
                         flowcore.StandardNormal(4), (1, 2, 2))
    images = torch.tensor([[[[0, 1], [2, 3]]], [[[1, 0], [0, 2]]]], dtype=torch.uint8)
    bpd = flowcore.bits_per_dim(flow, images, generator=torch.Generator().manual_seed(5))
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    x = (images.double() + noise.double()).reshape(2, 4)
    nll = 0.5 * (x**2).sum(1) + 2 * math.log(2 * math.pi)  # -log N(x; 0, I), D = 4
    expected = nll.mean().item() / (4 * math.log(2))
    assert bpd == pytest.approx(expected, rel=1e-6)


def test_bits_per_dim_counts_the_rescaling():
    """Rescaling by 1/256 inside the flow must not change the density on the pixel scale."""
    from flowcore.preprocess import Rescale

    flow = flowcore.Flow(flowcore.Compose([Rescale(), Flatten((1, 1, 2))]),
                         flowcore.StandardNormal(2), (1, 1, 2))
    images = torch.tensor([[[[10, 200]]]], dtype=torch.uint8)
    bpd = flowcore.bits_per_dim(flow, images, generator=torch.Generator().manual_seed(1))
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(1)).double().flatten()
    y = (torch.tensor([10.0, 200.0], dtype=torch.float64) + u) / 256 - 0.5
    nll = 0.5 * (y**2).sum() + math.log(2 * math.pi) + 2 * math.log(256)
    assert bpd == pytest.approx(nll.item() / (2 * math.log(2)), rel=1e-6)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_sampling_shape_dtype_and_temperature_zero_is_the_mode(name, shape):
    flow = flowcore.build(name, shape)
    x = torch.randn(32, 2) if len(shape) == 1 else _pixels(8, shape)
    _trained_like(flow, x)
    samples = flow.sample(10, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (10, *shape) and samples.dtype == torch.float32
    assert torch.isfinite(samples).all()
    mode = flow.sample(3, temperature=0.0)
    expected = flow.decode(torch.zeros(1, math.prod(shape)))
    assert torch.allclose(mode, expected.expand_as(mode), atol=1e-5)
    again = flow.sample(10, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_temperature_scales_the_latent_spread():
    flow = flowcore.build("realnvp", (2,))
    z = flow.base.sample(20000, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert z.std().item() == pytest.approx(0.5, rel=0.03)
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(2, temperature=-1)


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_finite_at_init_on_real_mnist(name, mnist_dir):
    images, _ = load_mnist("test", mnist_dir, download=False)
    flow = flowcore.build(name, (1, 28, 28))
    flow.train()  # the first training batch initialises ActNorm
    batch = images[:64].float() + torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        lp_train = flow.log_prob(batch)
        flow.eval()
        lp = flow.log_prob(images[64:192].float() + torch.rand(128, 1, 28, 28))
    assert torch.isfinite(lp_train).all() and torch.isfinite(lp).all()
    bpd = flowcore.bits_per_dim(flow, images[:200])
    assert math.isfinite(bpd) and 0 < bpd < 16


@pytest.mark.parametrize(
    "args, message",
    [
        (("vae", (2,)), "unknown model"),
        (("glow", (1, 2)), "shape must be"),
        (("glow", (1,)), "at least 2"),
        (("glow", (1, 28, 28), {"levels": 3}), "divisible by 8"),
        (("realnvp", (1, 6, 6), {"scales": 3}), "divisible by 4"),
        (("nice", (2,), {"couplings": 0}), "couplings must be a positive integer"),
        (("glow", (2,), {"depth": 3}),
         r"unknown option\(s\) for glow: depth; valid: clamp, classes, dequantizer, dequantizer_couplings, "
         r"dequantizer_hidden, hidden"),
        (("realnvp", (1, 8, 8), {"blocks": -1}), "blocks must be a non-negative integer, got -1"),
        (("glow", (2,), {"hidden": True}), "hidden must be a positive integer, got True"),
        (("glow", (2,), {"steps": 2.0}), "steps must be a positive integer, got 2.0"),
        (("glow", (1, 8, 8), {"classes": 1}), "classes must be an integer >= 2, got 1"),
        (("realnvp", (2,), {"clamp": -1.0}), "clamp must be positive"),
        (("nice", (2,), {"prior": "cauchy"}), "prior must be one of"),
    ],
)
def test_bad_configurations_give_clear_errors(args, message):
    name, shape, *rest = args
    with pytest.raises(ValueError, match=message):
        flowcore.build(name, shape, **(rest[0] if rest else {}))


def test_config_round_trips_through_a_dict():
    flow = flowcore.build("glow", (1, 8, 8), hidden=16, steps=2)
    again = flowcore.build_from_dict(flowcore.config_dict(flow))
    assert again.config == flow.config
    assert [p.shape for p in again.parameters()] == [p.shape for p in flow.parameters()]
