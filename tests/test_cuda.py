"""The same flows on a CUDA device: exact there, equal to the CPU, trainable, and portable back.

Skipped where torch sees no CUDA device (CI's machines have none); test_models.py and
test_train.py run the same checks on the CPU. Run these on a GPU machine with
`python -m pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowcore
import flowcore.params
from flowcore.guard import all_finite, grad_norm
from flowcore.params import FlatVector
from flowcore.train import evaluate_nll
from tests.helpers import jacobian_log_det, randomize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device; the CPU runs the same checks in test_models.py")
CUDA = torch.device("cuda")
MODELS = ["nice", "realnvp", "glow"]
SMALL = {"nice": {"hidden": 16, "layers": 1}, "realnvp": {"hidden": 8, "blocks": 1}, "glow": {"hidden": 8, "steps": 2}}


def _pixels(n, shape, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, *shape, generator=g, dtype=dtype) * 250 + 2).to(device)


def _trained_like(flow, x):
    flow.train()
    flow.log_prob(x)  # ActNorm data init
    randomize(flow, scale=0.05)
    return flow.eval()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(2,), (1, 4, 4)])
def test_log_det_matches_autograd_jacobian_on_cuda(name, shape):
    overrides = {"hidden": 16} if len(shape) == 1 else SMALL[name]
    flow = flowcore.build(name, shape, **overrides).double().to(CUDA)
    x = (torch.randn(3, 2, dtype=torch.float64) if len(shape) == 1 else _pixels(2, shape, torch.float64)).to(CUDA)
    _trained_like(flow, x)
    z, log_det = flow.encode(x)
    assert z.device.type == "cuda" and log_det.device.type == "cuda"
    expected = jacobian_log_det(lambda v: flow.encode(v)[0], x)
    assert torch.allclose(log_det, expected, atol=1e-6, rtol=1e-6)
    assert torch.allclose(flow.decode(z), x, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", MODELS)
def test_cuda_and_cpu_give_the_same_density(name):
    shape = (1, 28, 28)
    cpu = _trained_like(flowcore.build(name, shape).double(), _pixels(8, shape, torch.float64))
    gpu = flowcore.build(name, shape).double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(CUDA).eval()
    x = _pixels(4, shape, torch.float64)
    with torch.no_grad():
        expected = cpu.log_prob(x)
        got = gpu.log_prob(x.to(CUDA)).cpu()
        z = torch.randn(3, 784, dtype=torch.float64)
        assert torch.allclose(gpu.decode(z.to(CUDA)).cpu(), cpu.decode(z), atol=1e-8, rtol=1e-8)
    assert torch.allclose(got, expected, atol=1e-8, rtol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_sampling_on_cuda_decodes_the_base_draw(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convolutions, as on the CPU
    flow = _trained_like(flowcore.build(name, (1, 28, 28)).to(CUDA), _pixels(8, (1, 28, 28), device=CUDA))
    g = torch.Generator(device=CUDA).manual_seed(0)
    x = flow.sample(16, temperature=0.7, generator=g)
    assert x.device.type == "cuda" and x.shape == (16, 1, 28, 28) and torch.isfinite(x).all()
    g.manual_seed(0)
    z = flow.base.sample(16, temperature=0.7, generator=g, device=CUDA)
    spread = z.std().item() if name != "nice" else z.std().item() / (torch.pi / 3 ** 0.5)  # logistic: std pi/sqrt(3)
    assert abs(spread - 0.7) < 0.02  # the temperature scales the base draw
    with torch.no_grad():
        assert torch.equal(flow.decode(z), x)  # a sample is the decoded, temperature-scaled base draw
        on_cpu = flowcore.build(name, (1, 28, 28))
        on_cpu.load_state_dict({k: v.cpu() for k, v in flow.state_dict().items()})
        assert torch.allclose(on_cpu.eval().decode(z.cpu()), x.cpu(), rtol=1e-4, atol=1e-2)  # same maths as the CPU
    g.manual_seed(0)
    assert torch.equal(flow.sample(16, temperature=0.7, generator=g), x)  # same generator state, same samples


@pytest.mark.parametrize("name", MODELS)
def test_trainer_learns_on_cuda_and_the_checkpoint_loads_on_cpu(name, tmp_path):
    torch.manual_seed(0)
    flow = flowcore.build(name, (2,), hidden=32)
    train = flowcore.toy_data("moons", 4000, 0)
    held = flowcore.toy_data("moons", 1000, 1)
    config = flowcore.TrainConfig(steps=300, batch_size=256, lr=5e-3, decay="none", eval_every=300)
    trainer = flowcore.Trainer(flow, train, config, eval_data=held, device="cuda")
    assert next(trainer.flow.parameters()).device.type == "cuda"
    before = evaluate_nll(trainer.flow, held)
    records = list(trainer.run())
    assert len(records) == 300 and all(math.isfinite(r.loss) for r in records)
    after = evaluate_nll(trainer.flow, held)
    assert after < before - 0.5, (before, after)
    path = flowcore.save(trainer.flow, tmp_path / "moons.safetensors")
    back = flowcore.load(path)  # map_location defaults to the CPU
    assert next(back.parameters()).device.type == "cpu"
    with torch.no_grad():
        on_gpu = trainer.flow.eval().log_prob(held[:200].to(CUDA)).cpu()
        on_cpu = back.log_prob(held[:200])
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4, rtol=1e-5)


def test_image_training_on_cuda_keeps_bytes_on_the_device_and_feeds_dequantised_batches():
    torch.manual_seed(0)
    flow = flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    config = flowcore.TrainConfig(steps=20, batch_size=16, lr=1e-3, decay="none")
    trainer = flowcore.Trainer(flow, images, config, device=CUDA)
    assert trainer.train_data.device.type == "cuda" and trainer.train_data.dtype == torch.uint8
    x, _ = trainer._next_batch()
    assert x.device.type == "cuda" and x.dtype == torch.float32 and x.shape == (16, 1, 8, 8)
    assert 0 <= x.min().item() and x.max().item() < 256 and (x - x.floor()).abs().sum().item() > 0  # bytes + U[0, 1)
    losses = [trainer.step().loss for _ in range(20)]
    assert all(math.isfinite(v) for v in losses)
    bpd = flowcore.bits_per_dim(trainer.flow.eval(), images[:32].to(CUDA))
    assert 0 < bpd < 16


def test_gradient_norm_and_finiteness_check_on_cuda():
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shape, generator=g).to(CUDA) for shape in [(5, 3), (7,), (2, 2, 2)]]
    expected = torch.nn.utils.get_total_norm(tensors).item()
    assert grad_norm(tensors).item() == pytest.approx(expected, rel=1e-6)
    flat = [torch.cat([t.reshape(-1) for t in tensors])]  # as the flat parameter vector
    assert grad_norm(flat).item() == pytest.approx(expected, rel=1e-6)
    assert all_finite(tensors) and all_finite(flat)
    tensors[1][3] = flat[0][20] = math.nan
    assert not all_finite(tensors) and not all_finite(flat)


def test_non_finite_parameters_on_cuda_are_rolled_back():
    torch.manual_seed(0)
    trainer = flowcore.Trainer(flowcore.build("glow", (2,), hidden=16, steps=3), flowcore.toy_data("moons", 1000, 0),
                               flowcore.TrainConfig(steps=10, batch_size=64, lr=1e-3), device=CUDA)
    trainer.step()
    before = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    real_step = trainer.optimizer.step

    def poisoned_step(*args, **kwargs):
        real_step(*args, **kwargs)
        next(trainer.flow.parameters()).data.fill_(math.nan)

    trainer.optimizer.step = poisoned_step
    assert trainer.step().diverged and trainer.lr_multiplier == 0.5
    assert all(torch.equal(before[k], v) for k, v in trainer.flow.state_dict().items())
    trainer.optimizer.step = real_step
    assert not trainer.step().diverged


def test_small_models_train_on_one_vector_on_cuda_and_resume_on_the_cpu(tmp_path, monkeypatch):
    def trainer(flat: bool, device: torch.device | str = CUDA, out_dir=None) -> flowcore.Trainer:
        monkeypatch.setattr(flowcore.params, "FLAT_LIMIT", 1 << 20 if flat else 0)
        torch.manual_seed(0)
        made = flowcore.Trainer(flowcore.build("realnvp", (2,), hidden=16), flowcore.toy_data("moons", 1000, 0),
                                flowcore.TrainConfig(steps=40, batch_size=64, lr=3e-3, checkpoint_every=20),
                                out_dir=out_dir, device=device)
        assert isinstance(made.layout, FlatVector) == flat
        return made

    def weights(t: flowcore.Trainer) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).cpu() for p in t.flow.parameters()])

    flat, per_tensor = trainer(True), trainer(False)
    assert flat.layout.vector.device.type == "cuda" and flat.layout.vector.grad.device.type == "cuda"
    list(flat.run()), list(per_tensor.run())
    torch.testing.assert_close(weights(flat), weights(per_tensor), rtol=1e-5, atol=1e-6)
    list(trainer(True, out_dir=tmp_path).run(20))
    resumed = flowcore.Trainer.resume(tmp_path / "last.safetensors", flowcore.toy_data("moons", 1000, 0), device="cpu")
    assert isinstance(resumed.layout, FlatVector) and resumed.layout.vector.device.type == "cpu"
    list(resumed.run())
    torch.testing.assert_close(weights(resumed), weights(flat), rtol=1e-4, atol=1e-5)
