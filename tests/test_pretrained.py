"""The shipped checkpoints load, and a slice of each test set agrees with the manifest."""

from __future__ import annotations

import json
import math

import pytest
import torch

import flowcore
from flowcore.checkpoint import read_checkpoint
from flowcore.cli import main as cli_main
from tests.conftest import REPO

PRETRAINED = REPO / "pretrained"
MANIFEST = json.loads((PRETRAINED / "manifest.json").read_text()) if (PRETRAINED / "manifest.json").exists() else None
MODELS = sorted(MANIFEST["models"]) if MANIFEST else []


def test_manifest_lists_every_shipped_model_by_id():
    assert MANIFEST is not None, "pretrained/manifest.json is missing: run scripts/release_pretrained.py"
    assert set(MANIFEST["models"]) == {"nice-mnist", "realnvp-mnist", "glow-mnist", "glow-mnist-conditional",
                                       "glow-fashion"}
    for model_id, entry in MANIFEST["models"].items():
        variant = f"-{entry['variant']}" if entry["variant"] else ""
        data = {"mnist": "mnist", "fashion-mnist": "fashion"}[entry["dataset"]]
        assert model_id == f"{entry['family']}-{data}{variant}"
        assert (REPO / entry["config"]).is_file()


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_is_small_and_loads(name):
    entry = MANIFEST["models"][name]
    path = PRETRAINED / entry["file"]
    assert path.stat().st_size <= 20 * 2**20
    flow = flowcore.load(path)
    assert flow.shape == (1, 28, 28)
    assert flow.num_parameters() == entry["params"]
    x = flow.sample(4, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", MODELS)
def test_slice_of_test_set_agrees_with_manifest(name, mnist_dir, capsys):
    entry = MANIFEST["models"][name]
    check = entry["check"]
    where = ["--data-dir", str(mnist_dir)] if entry["dataset"] == "mnist" else []  # Fashion: Debian's files
    code = cli_main(["eval", "--checkpoint", str(PRETRAINED / entry["file"]), *where,
                     "--limit", str(check["n"]), "--draws", "1", "--seed", str(check["seed"])])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == check["n"] and result["data"] == entry["dataset"]
    assert result["bits_per_dim"] == pytest.approx(check["bits_per_dim"], abs=1e-3)
    if "accuracy" in check:
        assert result["accuracy"] == pytest.approx(check["accuracy"], abs=0.005)


@pytest.mark.parametrize("name", MODELS)
def test_manifest_numbers_are_consistent(name):
    entry = MANIFEST["models"][name]
    assert entry["n_test"] == 10000 and entry["draws"] >= 3
    assert math.isfinite(entry["test_bits_per_dim"])
    # the full-test-set number and the slice cannot be far apart for a sane model
    assert abs(entry["test_bits_per_dim"] - entry["check"]["bits_per_dim"]) < 0.15


def test_training_states_are_complete_and_match_their_logs():
    states = sorted((PRETRAINED / "resume").glob("*-last.safetensors"))
    assert states, "no training states in pretrained/resume"
    for path in states:
        payload = read_checkpoint(path)
        assert payload["optimizer"]["state"] and payload["trainer"]["generator"].dtype == torch.uint8
        log = (path.parent / path.name.replace("-last.safetensors", "-log.jsonl")).read_text().splitlines()
        assert payload["trainer"]["step"] == json.loads(log[-1])["step"] == payload["metadata"]["step"]


def test_the_readme_results_table_is_generated_from_the_manifest():
    from scripts.results_table import table

    manifest = json.loads((REPO / "pretrained" / "manifest.json").read_text())
    readme = (REPO / "README.md").read_text()
    assert table(manifest) in readme, "rewrite it with python -m scripts.results_table --write"
    assert all(f"| `{model_id}` |" in table(manifest) for model_id in manifest["models"])


def test_retime_times_every_listed_model_alike(tmp_path):
    from scripts.release_pretrained import SAMPLE_TIME_HOW, retime

    torch.manual_seed(0)
    for name in ("a", "b"):
        flowcore.save(flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1), tmp_path / f"{name}.safetensors")
    manifest = {"models": {name: {"file": f"{name}.safetensors", "sample_time_64_s": -1.0,
                                  "sample_time_hardware": "elsewhere"} for name in ("a", "b")}}
    retime(manifest, tmp_path)
    for entry in manifest["models"].values():
        assert 0 < entry["sample_time_64_s"] < 60
        assert entry["sample_time_hardware"].startswith("CPU (") and SAMPLE_TIME_HOW in entry["sample_time_hardware"]


@pytest.mark.parametrize("name", MODELS)
def test_training_curves_place_each_point_at_the_images_seen_by_then(name):
    """Compare plots bits/dim against images seen: every point of a run trained in phases with
    different batch sizes must sit where those phases put it, and the last at most at the total."""
    entry = MANIFEST["models"][name]
    curve = entry["curve"]
    assert curve and all(a["step"] < b["step"] and a["images_seen"] < b["images_seen"]
                         for a, b in zip(curve, curve[1:], strict=False))
    assert curve[-1]["images_seen"] <= entry["images_seen"]
    phases = [(*(int(s) for s in str(p["steps"]).split("-")), p["batch_size"]) for p in entry.get("training", [])]
    phases = phases or [(1, entry["steps"], entry["batch_size"])]
    for point in curve:
        seen = sum((min(point["step"], last) - first + 1) * batch
                   for first, last, batch in phases if point["step"] >= first)
        assert point["images_seen"] == seen, (point, phases)


@pytest.mark.parametrize("name", MODELS)
def test_curve_fields_name_the_images_the_checkpoint_was_evaluated_on(name):
    """Compare reads `curve_split` and `curve_eval_size`: they must be what the run recorded."""
    from scripts.release_pretrained import _curve_where

    entry = MANIFEST["models"][name]
    metadata = read_checkpoint(PRETRAINED / entry["file"])["metadata"]
    assert {k: entry[k] for k in ("curve_split", "curve_eval_size", "curve_note")} == _curve_where(metadata)
    assert entry["curve_split"] == metadata["data"]["eval_split"]


@pytest.mark.parametrize("name", MODELS)
def test_training_phases_add_up_to_the_checkpoint_and_survive_a_release(name):
    """A model trained in parts keeps its phases through `release_pretrained.py`: they end at the
    checkpoint's step, add up to its images, and give the manifest's command."""
    from scripts.release_pretrained import phases

    entry = MANIFEST["models"][name]
    metadata = read_checkpoint(PRETRAINED / entry["file"])["metadata"]
    kept = phases(entry, metadata)
    assert bool(kept) == ("training" in entry)
    if kept:
        assert kept == {"training": entry["training"], "hardware": entry["hardware"], "command": entry["command"]}
        with pytest.raises(SystemExit, match="add the new phase"):
            phases(entry, {**metadata, "step": metadata["step"] + 1000})  # trained on, the phase not written
