"""The command line: train/eval/sample end to end, exact resume, and one clear line for every bad input."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import flowcore
from flowcore.checkpoint import read_checkpoint
from flowcore.cli import main
from flowcore.train import EVAL_SEED

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "model": {"name": "glow", "hidden": 16, "steps": 2},
    "data": {"name": "moons", "n_train": 2000, "n_eval": 500, "seed": 3},
    "train": {"steps": 60, "batch_size": 64, "lr": 5e-3, "warmup_steps": 5, "decay": "none",
              "eval_every": 20, "checkpoint_every": 10, "log_every": 5},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def trained_run(tiny_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "glow"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(["train", "--config", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    torch.set_num_threads(threads)
    return out


def test_train_writes_a_run_and_eval_reproduces_its_held_out_number(trained_run, capsys):
    assert sorted(p.name for p in trained_run.iterdir()) == ["last.safetensors", "log.jsonl", "model.safetensors"]
    records = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if r["eval_loss"] is not None]
    assert [r["step"] for r in records if r["eval_loss"] is not None] == [20, 40, 60]
    assert evals[-1] < evals[0]
    meta = flowcore.load_metadata(trained_run / "model.safetensors")
    assert meta["data"] == {"name": "moons", "n_train": 2000, "n_eval": 500, "seed": 3, "eval_seed": 4}
    assert meta["metrics"]["eval_loss"] == evals[-1]
    code, out, _ = cli(capsys, "eval", "--checkpoint", trained_run / "model.safetensors")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["n"] == 500 and result["split"] == "heldout"
    assert result["nll"] == pytest.approx(meta["metrics"]["eval_loss"], rel=1e-6)


def test_resume_through_the_cli_is_bit_identical(tiny_config, tmp_path, capsys):
    split, whole = tmp_path / "split", tmp_path / "whole"
    assert cli(capsys, "train", "--config", tiny_config, "--out", split, "--steps", 40, "--quiet")[0] == 0
    assert cli(capsys, "train", "--config", tiny_config, "--out", split, "--steps", 80, "--resume")[0] == 0
    assert cli(capsys, "train", "--config", tiny_config, "--out", whole, "--steps", 80, "--quiet")[0] == 0
    a = read_checkpoint(split / "model.safetensors")["state_dict"]
    b = read_checkpoint(whole / "model.safetensors")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    log_a = [json.loads(line) for line in (split / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    drop = ("examples_per_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in log_a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in log_b]
    assert flowcore.load_metadata(split / "model.safetensors")["wall_time_s"] > 0


def test_an_existing_run_is_never_overwritten(trained_run, tiny_config, capsys):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir()}
    code, _, err = cli(capsys, "train", "--config", tiny_config, "--out", trained_run)
    assert_error(code, err, "already holds a run; pass --resume")
    for args, fragment in [
        (["--model", "realnvp"], "holds a glow model, not the requested realnvp"),
        (["--set", "hidden=32"], "trained with hidden=16, not the requested hidden=32"),
        (["--data", "circles"], "trained on moons, not the requested circles"),
    ]:
        code, _, err = cli(capsys, "train", "--out", trained_run, "--resume", "--steps", 100, *args)
        assert_error(code, err, fragment)
    assert {p.name: p.read_bytes() for p in trained_run.iterdir()} == before


def test_resume_without_a_run_is_refused(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "--model", "glow", "--data", "moons", "--out", tmp_path, "--resume")
    assert_error(code, err, "nothing to resume")


@pytest.mark.parametrize("args, fragment", [
    (["--model", "flowz", "--data", "moons"], "argument --model: invalid choice: 'flowz'"),
    (["--model", "glow", "--data", "spiral"], "argument --data: invalid choice: 'spiral'"),
    (["--model", "glow", "--data", "moons", "--lr", "-1"], "lr must be a positive number"),
    (["--model", "glow", "--data", "moons", "--steps", "0"], "steps must be a positive integer"),
    (["--model", "glow", "--data", "moons", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["--model", "realnvp", "--data", "moons", "--set", "layers=0"], "layers must be a positive integer"),
    (["--model", "nice", "--data", "moons", "--set", "widht=3"], "unknown option(s) for nice: widht"),
    (["--model", "nice", "--data", "moons", "--set", "hidden"], "expected KEY=VALUE"),
    (["--model", "glow", "--data", "mnist", "--data-dir", "/nonexistent/mnist"], "MNIST train files not found"),
    (["--model", "glow", "--data", "moons", "--config", "/nonexistent/c.json"], "config file"),
    (["--data", "moons"], "no model: pass --model"),
    (["--model", "glow", "--data", "moons", "--time-budget", "-5"], "--time-budget must be a positive number"),
    (["--model", "glow", "--data", "moons", "--time-budget", "0"], "--time-budget must be a positive number"),
])
def test_bad_training_input_is_one_error_line(tmp_path, capsys, args, fragment):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--out", out, "--steps", 5, "--batch-size", 8, *args)
    assert_error(code, err, fragment)
    assert not (out / "last.safetensors").exists() and not (out / "model.safetensors").exists()


def test_bad_config_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "c.json").write_text("{not json")
    code, _, err = cli(capsys, "train", "--out", tmp_path / "r", "--config", tmp_path / "c.json")
    assert_error(code, err, "is not valid JSON")
    (tmp_path / "c.json").write_text(json.dumps({"model": {"name": "glow"}, "data": {"name": "moons", "n": 5}}))
    code, _, err = cli(capsys, "train", "--out", tmp_path / "r", "--config", tmp_path / "c.json")
    assert_error(code, err, "unknown data option(s) for moons: n")


def test_shape_a_model_cannot_take_is_one_error_line(tmp_path, capsys, mnist_dir):
    code, _, err = cli(capsys, "train", "--model", "glow", "--data", "mnist", "--data-dir", mnist_dir,
                       "--out", tmp_path, "--set", "levels=3")
    assert_error(code, err, "must be divisible by 8; got 28x28")


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    source = f"import os\nclass E:\n    def __reduce__(self):\n        return (open, ({str(marker)!r}, 'w'))\n"
    namespace: dict = {}
    exec(source, namespace)  # a class whose unpickling would create `marker`
    path = tmp_path / "evil.safetensors"  # a pickle, whatever its name says
    torch.save({"format": "flowcore-checkpoint", "version": 1, "model": {}, "state_dict": {},
                "x": namespace["E"]()}, path)
    return path, marker


def test_bad_checkpoints_are_one_error_line(trained_run, tmp_path, capsys):
    good = (trained_run / "model.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.safetensors").write_bytes(random.Random(1958).randbytes(3000))
    evil, marker = _evil_checkpoint(tmp_path)
    cases = [("half.safetensors", "is truncated or corrupted"), ("noise.safetensors", "is truncated or corrupted"),
             ("missing.safetensors", "does not exist"),
             (evil.name, "it is a PyTorch pickle checkpoint (torch.save zip archive), and unpickling can run code; "
                         "convert it once with `python -m flowcore convert ")]
    for name, fragment in cases:
        for command in (["eval"], ["sample", "--out", tmp_path / "s.png"]):
            code, _, err = cli(capsys, *command, "--checkpoint", tmp_path / name)
            assert_error(code, err, fragment)
    assert not marker.exists() and not (tmp_path / "s.png").exists()


def test_subprocess_refuses_a_pickle_checkpoint(tmp_path):
    evil, marker = _evil_checkpoint(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "flowcore", "eval", "--checkpoint", str(evil)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith("error: refusing to load") and "python -m flowcore convert" in proc.stderr
    assert not marker.exists()
    proc = subprocess.run([sys.executable, "-m", "flowcore", "train", "--model", "glow", "--data", "moons",
                           "--out", str(tmp_path / "r"), "--lr", "-1"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "error: lr must be a positive number, got -1.0\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["sample"], ["convert"]])
def test_help(capsys, command):
    code, out, _ = cli(capsys, *command, "--help")
    assert code == 0 and "usage:" in out


def _image_checkpoint(tmp_path: Path, **metadata) -> tuple[Path, flowcore.Flow]:
    torch.manual_seed(0)
    flow = flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1)
    return flowcore.save(flow, tmp_path / "img.safetensors", **metadata), flow


def test_sample_writes_an_image_grid(tmp_path, capsys):
    path, _ = _image_checkpoint(tmp_path)
    code, out, _ = cli(capsys, "sample", "--checkpoint", path, "--n", 10, "--nrow", 5, "--out", tmp_path / "g.png")
    assert code == 0 and json.loads(out)["n"] == 10
    with Image.open(tmp_path / "g.png") as img:
        assert img.format == "PNG" and img.size == (5 * 10 + 2, 2 * 10 + 2)
    cli(capsys, "sample", "--checkpoint", path, "--n", 10, "--nrow", 5, "--out", tmp_path / "h.png")
    cli(capsys, "sample", "--checkpoint", path, "--n", 10, "--nrow", 5, "--seed", 1, "--out", tmp_path / "i.png")
    assert (tmp_path / "g.png").read_bytes() == (tmp_path / "h.png").read_bytes()
    assert (tmp_path / "g.png").read_bytes() != (tmp_path / "i.png").read_bytes()


def test_sample_of_a_2d_model_writes_points_or_a_scatter_image(trained_run, tmp_path, capsys):
    ckpt = trained_run / "model.safetensors"
    assert cli(capsys, "sample", "--checkpoint", ckpt, "--n", 7, "--out", tmp_path / "p.csv")[0] == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "x,y" and len(lines) == 8 and all(len(x.split(",")) == 2 for x in lines[1:])
    assert cli(capsys, "sample", "--checkpoint", ckpt, "--n", 500, "--out", tmp_path / "p.png")[0] == 0
    with Image.open(tmp_path / "p.png") as img:
        assert img.size == (512, 512)


def test_eval_of_an_image_checkpoint_reports_bits_per_dim_over_draws(tmp_path, capsys, mnist_dir):
    test_images, _ = flowcore.load_mnist("test", mnist_dir, download=False)
    torch.manual_seed(0)
    flow = flowcore.build("realnvp", (1, 28, 28), hidden=4, scales=1, blocks=1)
    path = flowcore.save(flow, tmp_path / "m.safetensors", data={"name": "mnist"})
    code, out, _ = cli(capsys, "eval", "--checkpoint", path, "--data-dir", mnist_dir, "--limit", 20,
                       "--draws", 2)
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and result["n"] == 20 and result["split"] == "test" and result["draws"] == 2
    first = flowcore.bits_per_dim(flow.eval(), test_images[:20],
                                  generator=torch.Generator().manual_seed(EVAL_SEED))
    assert result["bits_per_dim_draws"][0] == pytest.approx(first, rel=1e-9)
    assert result["bits_per_dim_std"] > 0
    assert result["bits_per_dim"] == pytest.approx(sum(result["bits_per_dim_draws"]) / 2)


@pytest.mark.parametrize("args, fragment", [
    (["eval", "--draws", "0"], "--draws must be a positive integer, got 0"),
    (["eval", "--limit", "0"], "--limit must be a positive integer, got 0"),
    (["eval", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["sample", "--nrow", "0"], "--nrow must be a positive integer, got 0"),
    (["sample", "--n", "0"], "--n must be a positive integer, got 0"),
    (["sample", "--temperature", "-1"], "--temperature must be a non-negative number, got -1.0"),
    (["sample", "--temperature", "nan"], "--temperature must be a non-negative number, got nan"),
    (["sample", "--digit", "3"], "--digit must be an integer in [0, 2], got 3"),
    (["sample", "--digit", "-1"], "--digit must be an integer in [0, 2], got -1"),
])
def test_bad_eval_and_sample_flags_are_one_error_line_naming_the_flag(tmp_path, capsys, args, fragment):
    torch.manual_seed(0)
    path = flowcore.save(flowcore.build("glow", (1, 8, 8), hidden=8, steps=1, levels=1, classes=3),
                         tmp_path / "cond.safetensors")
    out = ["--out", tmp_path / "s.png"] if args[0] == "sample" else []
    code, stdout, err = cli(capsys, *args, "--checkpoint", path, *out)
    assert_error(code, err, fragment)
    assert stdout == "" and not (tmp_path / "s.png").exists()


def test_the_final_line_reports_the_full_held_out_evaluation(tiny_config, tmp_path, caplog):
    """With evaluations on a subset during training, the line naming the finished model gives the
    NLL over the whole held-out set (what its metadata records), not the last subset's."""
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(["train", "--config", str(tiny_config), "--out", str(out), "--steps", "20",
                     "--eval-size", "100", "--quiet"]) == 0
    m = flowcore.load_metadata(out / "model.safetensors")["metrics"]
    assert m["eval_size"] == 100 and m["heldout_size"] == 500 and m["heldout_loss"] != m["eval_loss"]
    final = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote "))
    assert f"all 500 held-out examples: NLL {m['heldout_loss']:.6g} nats" in final
