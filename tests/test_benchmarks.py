"""The benchmark script runs end to end in its quickest mode and writes its tables."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import images, peers, report, run
from tests.conftest import REPO


def test_tables_without_normflows_say_not_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "nf", None)
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nhand-written notes\n")
    text = run.main(["--quick", "--tiny", "--models", "glow", "--skip-memory", "--skip-2d", "--out", str(out)])
    assert "| Glow | normflows | not installed |" in text
    written = out.read_text()
    assert "hand-written notes" in written and report.BEGIN in written and report.END in written
    # a second run replaces the generated part and keeps the notes
    run.main(["--quick", "--tiny", "--models", "glow", "--skip-memory", "--skip-2d", "--out", str(out)])
    written = out.read_text()
    assert written.count(report.BEGIN) == 1 and "hand-written notes" in written


@pytest.mark.slow
def test_quick_run_against_normflows(tmp_path):
    pytest.importorskip("normflows", reason="the peer library is optional: pip install -r benchmarks/requirements.txt")
    out = tmp_path / "BENCHMARKS.md"
    text = run.main(["--quick", "--tiny", "--models", "glow", "--out", str(out)])
    for expected in ("| Glow | flowcore |", "| Glow | normflows |", "| Glow | flowcore / normflows |",
                     "Glow training throughput", "2-D RealNVP converges", "normflows 1.7"):
        assert expected in text
    assert out.read_text().count(report.BEGIN) == 1


@pytest.mark.parametrize("name", ["nice", "realnvp", "glow"])
def test_peer_models_match_the_benchmarked_architecture(name):
    pytest.importorskip("normflows", reason="the peer library is optional: pip install -r benchmarks/requirements.txt")
    overrides, batch = images.load_config(name)
    pixels, _ = images.images(2)
    ours = images.make_runner("flowcore", name, overrides, 2, pixels, torch.device("cpu"))
    peer = images.make_runner("normflows", name, overrides, 2, pixels, torch.device("cpu"))
    # same layers and widths: parameter counts within 25% (the differences are listed in peers.NOTES)
    assert abs(peer.parameters - ours.parameters) <= 0.25 * ours.parameters
    if name == "nice":  # the same layers exactly; the priors differ (logistic vs normflows' Gaussian)
        assert peer.parameters == ours.parameters
        return
    # both are densities of the same images: at initialisation their bits/dim are close, once
    # normflows' [0, 1] scale is moved to flowcore's [0, 256) (log 256 per pixel)
    with torch.no_grad():
        ours.eval_mode(), peer.eval_mode()
        lp_ours = ours._log_prob(ours.batches[0])
        lp_peer = peer._log_prob(peer.batches[0]) - 784 * torch.log(torch.tensor(256.0))
    assert torch.allclose(lp_ours, lp_peer, rtol=0.05)


def test_cpu_shares_divide_by_the_window_and_pick_the_busiest_thread():
    from benchmarks.dashboard_speed import cpu_shares
    before = {"wall": 10.0, "renderer": 1.0, "server": 5.0, "threads": {"1": 4.0, "2": 1.0}}
    after = {"wall": 12.0, "renderer": 2.8, "server": 6.6, "threads": {"1": 4.2, "2": 2.2, "3": 0.2}}
    assert cpu_shares(before, after) == pytest.approx({"renderer": 0.9, "server": 0.8, "busiest thread": 0.6})
    gone = {**after, "server": None, "renderer": None}
    assert cpu_shares(before, gone) == {}  # no reading: no share, rather than a wrong one


def test_compiled_rows_and_targets_when_compile_ran():
    lib = report.LibraryResult(parameters=10, train_ips=100.0, log_prob_ips=400.0, sample_s=0.05)
    peer = report.LibraryResult(parameters=10, train_ips=80.0, log_prob_ips=300.0, sample_s=0.08)
    compiled = report.CompiledResult(log_prob_ips=520.0, sample_s=0.035, compile_s={"log_prob": 41.0, "sample": 25.0},
                                     active=True, ratios={"log_prob": 1.73, "sample": 2.29})
    glow = report.ModelResult("glow", 64, lib, peer, {"train": 1.25, "log_prob": 1.33, "sample": 1.6}, compiled)
    targets = "\n".join(report.targets_table([glow], []))
    assert "| Glow `log_prob` throughput >= 1.5x normflows | 1.33x | no | 1.73x | yes |" in targets
    assert "| Glow sampling 64 images >= 2x normflows | 1.60x | no | 2.29x | yes |" in targets
    assert "training is not compiled" in targets
    rows = "\n".join(report.images_table([glow]))
    assert "| Glow | flowcore, `flow.compile()` | 10 | 64 | - | 520.0 | 35.0 | |" in rows
    assert "41 s (`log_prob`) + 25 s (sampling)" in report.compile_note([glow])
    glow.compiled = None  # without --compile: no extra column, row or note
    assert "flow.compile" not in "\n".join(report.targets_table([glow], []) + report.images_table([glow]))
    assert report.compile_note([glow]) == ""


def test_compile_option_reaches_the_flowcore_runner(monkeypatch):
    calls = []
    monkeypatch.setattr(peers, "nf", None)
    real = images.flowcore.Flow.compile
    monkeypatch.setattr(images.flowcore.Flow, "compile", lambda self, **kw: calls.append(kw) or self)
    text = run.main(["--quick", "--tiny", "--models", "glow", "--skip-memory", "--skip-2d", "--no-write",
                     "--compile", "reduce-overhead"])
    assert calls == [{"mode": "reduce-overhead"}] and real is not images.flowcore.Flow.compile
    assert "| Glow | flowcore, `flow.compile()` (compiling failed: eager) |" in text  # never really compiled
    assert "compiling failed (ran eagerly)" in text


def test_two_moons_results_are_medians_over_seeds_and_show_each_seed(monkeypatch):
    from benchmarks import toy
    long_runs = {0: 2.0, 1: 1.8, 2: 1.9}
    converge = {0: (None, None, 2.5), 1: (300, 2.0, 1.93), 2: (100, 0.5, 1.94)}
    seen_targets = []
    monkeypatch.setattr(toy, "long_run_nll", lambda name, train, held, steps, seed: long_runs[seed])
    monkeypatch.setattr(toy, "steps_per_second", lambda *a: (100.0, 120.0))

    def fake_converge(name, train, held, target, max_steps, seed):
        seen_targets.append(target)
        return converge[seed]

    monkeypatch.setattr(toy, "time_to_converge", fake_converge)
    result = toy.run("realnvp", seeds=3)
    assert result.long_run_nll == 1.9  # each seed is held to its own long run
    assert seen_targets == [pytest.approx(v + toy.TOLERANCE) for v in (2.0, 1.8, 1.9)]
    assert (result.steps_to_converge, result.seconds_to_converge, result.final_nll) == (300, 2.0, 1.93)
    row = report.toy_table([result], toy.TOLERANCE)[-1]
    assert "1.900 (2.000 / 1.800 / 1.900)" in row and "300 steps (- / 300 / 100)" in row
    converge[2] = (None, None, 2.4)  # two of three seeds never got there: the median did not either
    assert toy.run("realnvp", seeds=3).seconds_to_converge is None


@pytest.mark.parametrize("name", ["nice", "realnvp"])
def test_benchmarked_nice_and_realnvp_are_the_shipped_configs(name):
    """benchmarks/mnist_models.json says its NICE and RealNVP are the shipped configs' models."""
    shipped = json.loads((REPO / "configs" / f"{name}-mnist.json").read_text())
    assert images.model_spec(name)["model"] == {k: v for k, v in shipped["model"].items() if k != "name"}
    assert images.model_spec(name)["train"]["batch_size"] == shipped["train"]["batch_size"]
