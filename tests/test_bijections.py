"""Every bijection: inverse(forward(x)) == x and log-det == log|det| of the autograd Jacobian."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from flowcore.core import Compose
from flowcore.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    AlternatingMask,
    CheckerboardMask,
    HalfMask,
)
from flowcore.dequantization import VariationalDequantizer
from flowcore.fusion import ActNormLinear
from flowcore.linear import InvertibleLinear, LUInvertibleLinear, Reverse, Shuffle
from flowcore.nets import MLP, GlowNet, ResNet, ZeroConv
from flowcore.normalization import ActNorm, DiagonalScaling
from flowcore.preprocess import Logit, Rescale
from flowcore.priors import LearnedPrior, Split
from flowcore.reshape import Flatten, Squeeze
from tests.helpers import jacobian_log_det, randomize

mlp = partial(MLP, hidden=16, layers=2)
conv = partial(GlowNet, hidden=8)
resnet = partial(ResNet, hidden=8, blocks=1)


def _vec(d):
    return lambda g: torch.randn(3, d, generator=g, dtype=torch.float64)


def _img(*shape):
    return lambda g: torch.randn(2, *shape, generator=g, dtype=torch.float64)


def _cells(*shape):
    """Pixel values inside their cells, away from the edges: `x + v`, v in [0.05, 0.95]."""
    return lambda g: (torch.randint(0, 256, (2, *shape), generator=g).double()
                      + 0.05 + 0.9 * torch.rand(2, *shape, generator=g, dtype=torch.float64))


def _pixels(*shape):
    return lambda g: torch.rand(2, *shape, generator=g, dtype=torch.float64) * 255.0 + 0.5


# name -> (factory, input maker)
CASES = {
    "additive-half": (lambda: AdditiveCoupling(HalfMask(2), mlp), _vec(2)),
    "additive-alternating-odd-d": (lambda: AdditiveCoupling(AlternatingMask(5, 1), mlp), _vec(5)),
    "affine-half-swap": (lambda: AffineCoupling(HalfMask(3, swap=True), mlp), _vec(3)),
    "affine-alternating": (lambda: AffineCoupling(AlternatingMask(4, 0), mlp), _vec(4)),
    "affine-checkerboard-1x4x4": (lambda: AffineCoupling(CheckerboardMask((1, 4, 4), 1), resnet), _img(1, 4, 4)),
    "affine-channel-2x8x8": (lambda: AffineCoupling(HalfMask(2, swap=True), conv), _img(2, 8, 8)),
    "additive-checkerboard-2x4x4": (lambda: AdditiveCoupling(CheckerboardMask((2, 4, 4), 0), conv), _img(2, 4, 4)),
    "reverse": (lambda: Reverse(4), _vec(4)),
    "shuffle-channels": (lambda: Shuffle(3, seed=1), _img(3, 2, 2)),
    "linear-2d": (lambda: InvertibleLinear(2, seed=3), _vec(2)),
    "lu-linear-2d": (lambda: LUInvertibleLinear(2, seed=3), _vec(2)),
    "conv1x1-2x4x4": (lambda: InvertibleLinear(2, seed=1), _img(2, 4, 4)),
    "lu-conv1x1-4x2x2": (lambda: LUInvertibleLinear(4, seed=1), _img(4, 2, 2)),
    "actnorm-vec": (lambda: ActNorm(3), _vec(3)),
    "actnorm-img": (lambda: ActNorm(2), _img(2, 4, 4)),
    "actnorm-lu-fused-vec": (lambda: Compose([ActNorm(3), LUInvertibleLinear(3, seed=2)]), _vec(3)),
    "actnorm-conv1x1-fused-img": (lambda: Compose([ActNorm(4), InvertibleLinear(4, seed=2)]), _img(4, 2, 2)),
    "diagonal-scaling": (lambda: DiagonalScaling(4), _vec(4)),
    "squeeze": (lambda: Squeeze(), _img(1, 4, 4)),
    "flatten": (lambda: Flatten((2, 2, 2)), _img(2, 2, 2)),
    "logit": (lambda: Logit(0.05), _pixels(1, 4, 4)),
    "logit-tiny-alpha": (lambda: Logit(1e-6), _pixels(4)),
    "rescale": (lambda: Rescale(), _pixels(1, 4, 4)),
    "variational-dequantizer-1x4x4": (lambda: VariationalDequantizer((1, 4, 4), 2, 8), _cells(1, 4, 4)),
    "variational-dequantizer-3x2x4": (lambda: VariationalDequantizer((3, 2, 4), 1, 4), _cells(3, 2, 4)),
    "learned-prior": (lambda: LearnedPrior((6,)), _vec(6)),
    "split-learned-prior-2x8x8": (
        lambda: Split((2, 8, 8), Compose([Squeeze(), Flatten((4, 4, 4))]), prior=ZeroConv(1, 2)),
        _img(2, 8, 8),
    ),
    "split-standard-3x4x4": (lambda: Split((3, 4, 4), Flatten((2, 4, 4))), _img(3, 4, 4)),
}


def _make(name):
    factory, inputs = CASES[name]
    g = torch.Generator().manual_seed(0)
    layer = factory().double()
    x = inputs(g)
    randomize(layer, scale=0.2)
    if any(isinstance(m, ActNorm) for m in layer.modules()):  # data-dependent init, then move off it
        layer.train()
        layer(x)
        randomize(layer, scale=0.2, seed=1)
    return layer, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip(name):
    layer, x = _make(name)
    z, ld = layer(x)
    x_back, ld_inv = layer.inverse(z)
    assert ld.shape == (x.shape[0],)
    assert torch.allclose(x_back, x, atol=1e-9, rtol=1e-9)
    assert torch.allclose(ld_inv, -ld, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_det_matches_autograd_jacobian(name):
    layer, x = _make(name)
    layer.eval()
    _, ld = layer(x)
    expected = jacobian_log_det(lambda v: layer(v)[0], x)
    assert torch.allclose(ld, expected, atol=1e-6, rtol=1e-6), (ld, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_log_det_matches_autograd_jacobian(name):
    layer, x = _make(name)
    layer.eval()
    z, _ = layer(x)
    _, ld_inv = layer.inverse(z)
    expected = jacobian_log_det(lambda v: layer.inverse(v)[0], z)
    assert torch.allclose(ld_inv, expected, atol=1e-6, rtol=1e-6)


def test_couplings_start_as_identity():
    x = torch.randn(4, 2, 4, 4)
    for layer in (AffineCoupling(HalfMask(2), conv), AdditiveCoupling(CheckerboardMask((2, 4, 4)), resnet)):
        z, ld = layer(x)
        assert torch.equal(z, x) and torch.equal(ld, torch.zeros(4))


def test_affine_scale_is_bounded():
    layer = AffineCoupling(HalfMask(2), mlp, clamp=2.0)
    with torch.no_grad():
        layer.net[-1].bias.fill_(1e4)  # huge raw log-scale
    z, ld = layer(torch.randn(5, 2))
    assert torch.isfinite(z).all() and (ld.abs() <= 2.0 + 1e-5).all()


def test_checkerboard_mask_changes_only_its_half():
    layer = randomize(AffineCoupling(CheckerboardMask((1, 4, 4), 0), resnet), 0.3)
    x = torch.randn(2, 1, 4, 4)
    z, _ = layer(x)
    m = layer.mask.mask.bool()
    assert torch.equal(z[:, m], x[:, m])
    assert not torch.allclose(z[:, ~m], x[:, ~m])


@pytest.mark.parametrize("features", [2, 3, 6, 7])
@pytest.mark.parametrize("parity", [0, 1])
def test_alternating_mask_conditions_on_one_parity_and_keeps_it(features, parity):
    layer = randomize(AdditiveCoupling(AlternatingMask(features, parity), mlp), 0.3)
    x = torch.randn(5, features)
    z, _ = layer(x)
    kept = [i for i in range(features) if i % 2 == parity]
    moved = [i for i in range(features) if i % 2 != parity]
    assert torch.equal(z[:, kept], x[:, kept])  # the conditioning indices pass through
    torch.testing.assert_close(z[:, moved], x[:, moved] + layer.net(x[:, kept]))  # the others get + t(x_kept)
    assert set(layer.state_dict()) >= {"mask.idx_a", "mask.idx_b", "mask.inv"}  # checkpoint keys kept


def test_actnorm_data_init_normalises_and_survives_save_load():
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 7
    layer = ActNorm(3).train()
    z, _ = layer(x)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    copy = ActNorm(3)
    copy.load_state_dict(layer.state_dict())
    assert bool(copy.initialized)
    copy.train()
    assert torch.allclose(copy(x)[0], z)  # a loaded layer does not re-initialise


def test_lu_inverse_is_exact_and_trains():
    layer = LUInvertibleLinear(4)
    z = torch.randn(3, 4, 2, 2)
    with torch.no_grad():
        layer.log_s.add_(0.1)
        x, _ = layer.inverse(z)
    assert torch.allclose(layer(x)[0], z, atol=1e-5)
    layer.inverse(z)[0].sum().backward()  # gradients reach the parameters through W^-1
    assert layer.log_s.grad is not None and layer.log_s.grad.abs().sum() > 0


@pytest.mark.parametrize("linear", [LUInvertibleLinear, InvertibleLinear])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4)])
def test_actnorm_then_linear_runs_fused_as_the_two_layers(linear, shape):
    torch.manual_seed(0)
    norm, mix = ActNorm(3), linear(3, seed=1)
    fused = Compose([norm, mix])
    assert isinstance(fused.steps()[0], ActNormLinear) and len(fused.steps()) == 1
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    fused.double().train()
    z, ld = fused(x)  # first training batch: the ActNorm initialises itself from it
    assert bool(norm.initialized)
    per_channel = norm(x)[0].transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    randomize(fused, 0.3, seed=2)
    for grad, training in ((True, True), (False, True), (False, False)):
        fused.train(training)
        with torch.set_grad_enabled(grad):
            a, ld_a = norm(x)
            expected, ld_b = mix(a)
            z, ld = fused(x)
            assert torch.allclose(z, expected, atol=1e-10) and torch.allclose(ld, ld_a + ld_b, atol=1e-10)
            back, ld_inv = fused.inverse(z)
            assert torch.allclose(back, x, atol=1e-9) and torch.allclose(ld_inv, -ld, atol=1e-9)
    fused.train()
    fused(x)[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [norm.bias, norm.log_scale])


def test_folded_steps_follow_replaced_parameters_and_inference_tensors():
    x = torch.randn(2, 4, 3, 3)
    flow = randomize(Compose([ActNorm(4), LUInvertibleLinear(4, seed=1)]), 0.3).eval()
    other = randomize(Compose([ActNorm(4), LUInvertibleLinear(4, seed=1)]), 0.3, seed=5).eval()
    with torch.no_grad():
        flow(x)
        flow.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects
        assert torch.allclose(flow(x)[0], other(x)[0], atol=1e-6)
        params = {k: v + 1 for k, v in flow.named_parameters()}
        expected = torch.func.functional_call(other, params, (x,))[0]
        assert torch.allclose(torch.func.functional_call(flow, params, (x,))[0], expected, atol=1e-6)
    with torch.inference_mode():  # a model made here has inference tensors
        made_here = randomize(Compose([ActNorm(4), LUInvertibleLinear(4, seed=1)]), 0.3).eval()
        z, _ = made_here(x)
        assert torch.allclose(made_here.inverse(z)[0], x, atol=1e-5)


def test_evaluation_follows_a_fused_optimiser_step():
    """Fused Adam updates parameters in place without bumping their versions: evaluation after
    a step uses the new weights, in both directions."""
    flow = randomize(Compose([ActNorm(4), LUInvertibleLinear(4, seed=1)]), 0.3)
    flow.layers[0].initialized.fill_(True)
    x = torch.randn(8, 4, 3, 3)
    flow.eval()
    with torch.no_grad():
        stale_z, stale_x = flow(x)[0], flow.inverse(x)[0]
    optimizer = torch.optim.Adam(flow.parameters(), lr=0.1, fused=True)
    flow.train()
    flow(x)[0].pow(2).mean().backward()
    optimizer.step()
    flow.eval()
    with torch.no_grad():
        z, back = flow(x)[0], flow.inverse(x)[0]
        expected_z = flow.layers[1](flow.layers[0](x)[0])[0]
        expected_x = flow.layers[0].inverse(flow.layers[1].inverse(x)[0])[0]
    assert not torch.allclose(z, stale_z) and not torch.allclose(back, stale_x)
    assert torch.allclose(z, expected_z, atol=1e-5) and torch.allclose(back, expected_x, atol=1e-5)


def test_the_steps_follow_changes_to_the_layers():
    flow = Compose([ActNorm(2), LUInvertibleLinear(2)])
    assert len(flow.steps()) == 1
    flow.layers.insert(1, Reverse(2))  # ActNorm, Reverse, linear: nothing to fold any more
    assert flow.steps() == list(flow.layers)
    x = torch.randn(3, 2)
    expected = flow.layers[2](flow.layers[1](flow.layers[0](x)[0])[0])[0]
    assert torch.allclose(flow(x)[0], expected)


def test_squeeze_layout():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    z, _ = Squeeze()(x)
    assert z.shape == (1, 4, 2, 2)
    assert z[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # one 2x2 block becomes 4 channels
