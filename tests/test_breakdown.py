"""`flowcore.bits_breakdown`: the terms of every family sum to the flow's own bits/dim."""

from __future__ import annotations

import math

import pytest
import torch

import flowcore
from flowcore.breakdown import PRE, image_scores
from tests.helpers import randomize

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "nice": dict(hidden=16, layers=1, couplings=3),
    "realnvp": dict(hidden=8, blocks=1, scales=3),
    "glow": dict(hidden=8, steps=2, levels=3),
    "glow-conditional": dict(hidden=8, steps=1, levels=2, classes=4),
}
SHAPE = (1, 8, 8)


def random_flow(name: str, seed: int = 0) -> flowcore.Flow:
    """A small image flow with every parameter perturbed (no layer is the identity), in float64."""
    torch.manual_seed(seed)
    flow = flowcore.build(name.split("-")[0], SHAPE, **SMALL[name])
    randomize(flow, scale=0.2, seed=seed)
    with torch.no_grad():  # ActNorm's data-dependent start, on data unlike the test inputs
        flow.log_prob(torch.rand(16, *SHAPE) * 256)
    return flow.double().eval()


def pixels(n: int, seed: int) -> torch.Tensor:
    """Random inputs on the [0, 256) scale, black and white pixels (the logit's extremes) included."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g, dtype=torch.float64) * 256
    x[0] = torch.rand(SHAPE, generator=g, dtype=torch.float64) * 1e-3  # nearly black
    x[1, :, ::2] = 255.999
    return x


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("seed", [0, 1])
def test_terms_sum_to_the_bits_per_dim(name: str, seed: int) -> None:
    flow = random_flow(name, seed)
    x = pixels(5, seed)
    terms = flowcore.bits_breakdown(flow, x)
    total = sum(terms.values())
    with torch.no_grad():
        if flow.classes:  # log p(x | y) for the most likely class
            expected = -flow.log_prob(x, flow.classify(x)) / (flow.event_dim * math.log(2))
        else:
            expected = -flow.log_prob(x) / (flow.event_dim * math.log(2))
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=1e-9)
    assert all(t.shape == (5,) for t in terms.values())


@pytest.mark.parametrize("name", ["realnvp", "glow"])
def test_multi_scale_terms_are_one_per_level(name: str) -> None:
    """Three levels: the pre-processing, each level's log-det, two factored-out latents, the final
    latent, in that order, and the latent sizes add up to D."""
    flow = random_flow(name)
    names = list(flowcore.bits_breakdown(flow, pixels(3, 0)))
    assert names[0] == PRE
    assert [n for n in names if n.endswith("log-det")] == ["level 1 log-det", "level 2 log-det", "level 3 log-det"]
    factored = [n for n in names if "factored-out" in n]
    assert factored == ["level 1 factored-out latent (32 dims)", "level 2 factored-out latent (16 dims)"]
    assert names[-1] == "final latent (16 dims)"
    assert 32 + 16 + 16 == flow.event_dim


def test_nice_has_one_scale() -> None:
    flow = random_flow("nice")
    assert list(flowcore.bits_breakdown(flow, pixels(2, 0))) == [PRE, "level 1 log-det", "final latent (64 dims)"]


def test_a_black_pixel_costs_negative_bits_in_the_pre_processing() -> None:
    """With a tiny logit margin, the logit stretches the black end: its log-det is large, so the
    pre-processing term of a black image is negative (it gives bits back)."""
    flow = flowcore.build("glow", SHAPE, logit_alpha=1e-6, **SMALL["glow"]).double().eval()
    black = torch.full((1, *SHAPE), 0.5, dtype=torch.float64)
    assert flowcore.bits_breakdown(flow, black)[PRE].item() < 0


def test_conditional_breakdown_for_a_given_class() -> None:
    flow = random_flow("glow-conditional")
    x = pixels(4, 3)
    y = torch.tensor([0, 1, 2, 3])
    total = sum(flowcore.bits_breakdown(flow, x, y).values())
    with torch.no_grad():
        expected = -flow.log_prob(x, y) / (flow.event_dim * math.log(2))
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=1e-9)


def test_image_scores_average_fixed_draws() -> None:
    """The score of an 8-bit image is the mean over the fixed noise draws, the same every time,
    and the same for an image alone or in a batch."""
    flow = random_flow("realnvp")
    images = (pixels(3, 5).floor()).to(torch.uint8)
    scores = image_scores(flow, images, draws=3)
    alone = image_scores(flow, images[1:2], draws=3)
    total = sum(scores.values())
    torch.testing.assert_close(sum(alone.values()), total[1:2])
    noise = flowcore.breakdown.score_noise(SHAPE, 3)
    with torch.no_grad():
        by_hand = torch.stack([-flow.log_prob(images.double() + u) for u in noise]).mean(0)
    torch.testing.assert_close(total, by_hand / (flow.event_dim * math.log(2)), rtol=1e-12, atol=1e-9)
