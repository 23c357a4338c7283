"""`Flow.compile()`: the same numbers as the eager code, and a working flow where compiling fails."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

import flowcore
from flowcore.cli import main
from tests.helpers import randomize

SHAPE = (1, 8, 8)


def _glow() -> flowcore.Flow:
    torch.manual_seed(0)
    flow = flowcore.build("glow", SHAPE, levels=2, steps=1, hidden=8)
    flow.train()
    with torch.no_grad():  # ActNorm's data-dependent initialisation, then off the identity
        flow.log_prob(torch.rand(16, *SHAPE) * 256)
    return randomize(flow, 0.05).eval()


def _failing_compile(*_args, **_kwargs):
    def compiled(*_a, **_k):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
    return compiled


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler and none is installed")
def test_compiled_flow_gives_the_eager_numbers():
    eager, flow = _glow(), _glow()
    flow.compile()
    x = torch.rand(6, *SHAPE) * 256
    z = torch.randn(4, flow.event_dim)
    with torch.no_grad():
        assert torch.allclose(flow.log_prob(x), eager.log_prob(x), rtol=1e-5, atol=1e-3)
        assert torch.allclose(flow.decode(z), eager.decode(z), atol=1e-3)
    assert flow.compiled  # no fallback happened
    flow.train()  # with gradients the eager code runs: training is unchanged
    loss = -flow.log_prob(x).mean()
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_a_failing_compiler_warns_once_and_the_flow_runs_eagerly(monkeypatch):
    eager, flow = _glow(), _glow()
    monkeypatch.setattr(torch, "compile", _failing_compile)
    flow.compile()
    x = torch.rand(3, *SHAPE) * 256
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match="torch.compile failed .*InvalidCxxCompiler"):
            out = flow.log_prob(x)
        assert torch.equal(out, eager.log_prob(x))
        assert not flow.compiled
        z = torch.randn(2, flow.event_dim)
        assert torch.equal(flow.decode(z), eager.decode(z))  # no second warning: it is off now


def test_bad_input_to_a_compiled_flow_gives_the_usual_error(monkeypatch):
    flow = _glow()
    monkeypatch.setattr(torch, "compile", _failing_compile)
    flow.compile()
    with torch.no_grad(), pytest.raises(RuntimeError) as caught:
        flow.log_prob(torch.rand(2, 3, 8, 8))  # three channels where the model takes one
    assert "InvalidCxxCompiler" not in str(caught.value)


def test_gradients_never_go_through_compiled_code(monkeypatch):
    flow = _glow()
    monkeypatch.setattr(torch, "compile", _failing_compile)
    flow.compile()
    loss = -flow.log_prob(torch.rand(2, *SHAPE) * 256).mean()
    loss.backward()
    assert flow.compiled and all(p.grad is not None for p in flow.parameters())


def test_cli_sample_with_compile_falls_back_and_writes_the_image(tmp_path, monkeypatch, capsys):
    flow = _glow()
    flowcore.save(flow, tmp_path / "model.safetensors")
    monkeypatch.setattr(torch, "compile", _failing_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        code = main(["sample", "--checkpoint", str(tmp_path / "model.safetensors"), "--n", "4", "--compile",
                     "--out", str(tmp_path / "s.png")])
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0


def test_a_copy_of_a_compiled_flow_runs_its_own_weights(monkeypatch):
    flow = _glow()
    monkeypatch.setattr(torch, "compile", lambda fn, **_: fn)  # "compiled" = the bound eager method
    flow.compile()
    twin = copy.deepcopy(flow)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.1)
        x = torch.rand(2, *SHAPE) * 256
        assert not twin.compiled  # compiled code belongs to the original; the copy starts without it
        assert not torch.allclose(twin.log_prob(x), flow.log_prob(x))


def test_compile_refused_when_wrapping_warns_and_the_flow_runs_eagerly(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")
    flow, eager = _glow(), _glow()
    monkeypatch.setattr(torch, "compile", refuse)
    with pytest.warns(RuntimeWarning, match="not supported on this Python"):
        assert flow.compile() is flow
    assert not flow.compiled
    x = torch.rand(2, *SHAPE) * 256
    with torch.no_grad():
        assert torch.equal(flow.log_prob(x), eager.log_prob(x))


def test_compiled_outputs_belong_to_the_caller(monkeypatch):
    """CUDA graphs reuse their output buffers on the next call; the flow hands back copies."""
    buffer = {}

    def reusing(fn, **_kwargs):
        def run(arg):
            out = fn(arg)
            outs = out if isinstance(out, tuple) else (out,)
            kept = buffer.setdefault(fn.__name__, [torch.empty_like(t) for t in outs])
            for k, t in zip(kept, outs, strict=True):
                k.copy_(t)
            return tuple(kept) if isinstance(out, tuple) else kept[0]
        return run
    flow = _glow()
    monkeypatch.setattr(torch, "compile", reusing)
    flow.compile()
    with torch.no_grad():
        first = flow.decode(torch.randn(3, flow.event_dim))
        kept = first.clone()
        flow.decode(torch.randn(3, flow.event_dim))
        z, _ = flow.encode(torch.rand(3, *SHAPE) * 256)
        z_kept = z.clone()
        flow.encode(torch.rand(3, *SHAPE) * 256)
    assert torch.equal(first, kept) and torch.equal(z, z_kept)
