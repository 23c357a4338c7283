"""Turn finished runs into the shipped checkpoints, sample grids and manifest.

    python scripts/release_pretrained.py --data-dir ../shared/data/mnist [--models glow-mnist glow-fashion ...]

Models are named by id, `<family>-<data set>[-<variant>]` (MODELS below). For each it copies
`runs/<id>/model.safetensors` (weights + metadata, no optimiser; `--run ID=FOLDER` for another folder) to
`pretrained/<id>.safetensors`, measures test bits/dim with the very command a user runs
(`python -m flowcore eval ... --draws 5`; class-conditional models also report test accuracy),
times drawing 64 samples on the CPU, writes an 8x8 grid at temperature 0.7 with
`python -m flowcore sample`, records all of it in `pretrained/manifest.json` under the id, and
rewrites the README's results table from the manifest (`scripts/results_table.py`). Statistics
computed from the shipped models are separate scripts, to run when their models change:
`python -m scripts.score_stats` (unconditional MNIST models) and `python -m scripts.ood` (then
`python -m scripts.ood_table --write` for the README's AUROC table).
Training itself is `python -m flowcore train --config configs/<id>.json`; nothing here trains.
`--retime` only times sampling again for every shipped model, one after another on an idle
machine, so the manifest's sampling times compare like with like.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import flowcore  # noqa: E402
from scripts.results_table import write as write_results_table  # noqa: E402

OUT = REPO / "pretrained"
MODELS = {  # id -> (family, data set, variant, title)
    "nice-mnist": ("nice", "mnist", "", "NICE"),
    "realnvp-mnist": ("realnvp", "mnist", "", "RealNVP"),
    "glow-mnist": ("glow", "mnist", "", "Glow"),
    "glow-mnist-conditional": ("glow", "mnist", "conditional", "Glow (class-conditional)"),
    "glow-fashion": ("glow", "fashion-mnist", "", "Glow (Fashion-MNIST)"),
}
DATA_NOTES = {
    "mnist": "MNIST: 60,000 training images from the offline IDX copy (2.8% of training pixels one grey "
             "level off the original); test numbers on the byte-exact 10,000-image test set",
    "fashion-mnist": "Fashion-MNIST: 60,000 training images and the 10,000-image test set, from Debian's "
                     "dataset-fashion-mnist package (the original IDX files)",
}
PUBLISHED = {  # test bits/dim on MNIST reported in the literature (unconditional models)
    "nice": {"bits_per_dim": 4.36, "source": "NICE paper (Dinh et al. 2014): 1980.5 nats, converted"},
    "realnvp": {"bits_per_dim": 1.06, "source": "FFJORD paper (Grathwohl et al. 2018), MNIST table"},
    "glow": {"bits_per_dim": 1.05, "source": "FFJORD paper (Grathwohl et al. 2018), MNIST table"},
}
DRAWS = 5


def _run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "flowcore", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"flowcore {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


SAMPLE_TIME_HOW = "1 torch thread (as the dashboard), median of 5 after warm-up"


def _sample_time(flow: flowcore.Flow, repeats: int = 5) -> float:
    """Seconds to draw 64 samples on one torch thread, so every model is timed alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flow.sample(64, 0.7, torch.Generator().manual_seed(0))  # warm-up
        times = []
        for k in range(repeats):
            start = time.perf_counter()
            flow.sample(64, 0.7, torch.Generator().manual_seed(k))
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def retime(manifest: dict, folder: Path = OUT) -> None:
    """Time drawing 64 samples again for every model of `manifest` (in place, checkpoints in
    `folder`), one after another."""
    hardware = f"CPU ({flowcore.device.hardware_name()}), {SAMPLE_TIME_HOW}"
    for name, entry in manifest["models"].items():
        entry["sample_time_64_s"] = round(_sample_time(flowcore.load(folder / entry["file"])), 4)
        entry["sample_time_hardware"] = hardware
        print(f"{name}: 64 samples in {entry['sample_time_64_s']} s", flush=True)


def _curve(run: Path, batch_size: int) -> list[dict]:
    """Held-out bits/dim during training against the images seen so far (logged with each record;
    logs without it come from runs of one batch size)."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "images_seen": r.get("images_seen", r["step"] * batch_size),
             "test_bits_per_dim": r["eval_bits_per_dim"]}
            for r in rows if r.get("eval_bits_per_dim") is not None]


def phases(previous: dict, meta: dict) -> dict:
    """The fields a run trained in several parts keeps across releases: the manifest's hand-written
    `training` phases (steps, batch size, images, time, hardware, command, note), the commands
    joined, and the hardware summary. A run of one part has none. The phases must add up to the
    checkpoint: the last ends at its step and their images are the images it has seen, so a new
    part is written into the manifest before the release that ships it."""
    parts = previous.get("training")
    if not parts:
        return {}
    last = int(str(parts[-1]["steps"]).split("-")[-1])
    images = sum(p["images"] for p in parts)
    if last != meta["step"] or images != meta["examples_seen"]:
        raise SystemExit(f"the manifest's training phases end at step {last:,} after {images:,} images, the "
                         f"checkpoint at step {meta['step']:,} after {meta['examples_seen']:,}: add the new phase "
                         "(steps, batch_size, images, wall_time_s, hardware, command, note) to the manifest first")
    return {"training": parts, "hardware": previous["hardware"],
            "command": " ; then ".join(p["command"] for p in parts)}


def release(model_id: str, data_dir: str, run: Path, previous: dict | None = None) -> dict:
    """The manifest entry of `model_id` from its run folder; `previous` is its entry so far."""
    family, dataset, variant, title = MODELS[model_id]
    flow = flowcore.load(run / "model.safetensors")
    meta = dict(flow.metadata)
    kept = phases(previous or {}, meta)  # before the measurements: a missing phase stops the release here
    data_dir = data_dir if dataset == "mnist" else ""  # Fashion-MNIST: Debian's path or $FLOWCORE_DATA_DIR
    meta["data"] = {**meta.get("data", {}), "data_dir": data_dir}
    target = OUT / f"{model_id}.safetensors"
    flowcore.save(flow, target, **meta)
    rel = target.relative_to(REPO)
    where = ["--data-dir", data_dir] if data_dir else []
    result = json.loads(_run(["eval", "--checkpoint", str(rel), *where,
                              "--draws", str(DRAWS), "--seed", "0"]).strip().splitlines()[-1])
    check = json.loads(_run(["eval", "--checkpoint", str(rel), *where, "--limit", "500",
                             "--draws", "1", "--seed", "0"]).strip().splitlines()[-1])
    grid = OUT / f"{model_id}-samples.png"
    _run(["sample", "--checkpoint", str(rel), "--n", "64", "--temperature", "0.7", "--seed", "0",
          "--out", str(grid.relative_to(REPO))])
    cfg = meta["train_config"]
    return {
        "family": family,
        "dataset": dataset,
        "variant": variant,
        "file": target.name,
        "title": title,
        "samples_png": grid.name,
        "test_bits_per_dim": round(result["bits_per_dim"], 4),
        "test_bits_per_dim_std": round(result["bits_per_dim_std"], 4),
        "n_test": result["n"],
        "draws": result["draws"],
        "check": {"n": check["n"], "draws": 1, "seed": 0, "bits_per_dim": check["bits_per_dim"],
                  **({"accuracy": check["accuracy"]} if "accuracy" in check else {}),
                  "note": "first 500 test images, one noise draw: what tests/test_pretrained.py recomputes"},
        "params": flow.num_parameters(),
        "size_mb": round(target.stat().st_size / 2**20, 2),
        "images_seen": meta["examples_seen"],
        "epochs": round(meta["epochs"], 2),
        "steps": meta["step"],
        "batch_size": cfg["batch_size"],
        "wall_time_s": round(meta["wall_time_s"]),
        "hardware": meta["hardware"],
        "data": DATA_NOTES[dataset],
        "preprocessing": meta.get("preprocessing"),
        "dequantizer": "variational" if flow.dequantizer is not None else "uniform",
        "sample_time_64_s": round(_sample_time(flow), 4),
        "sample_time_hardware": f"CPU ({flowcore.device.hardware_name()}), {SAMPLE_TIME_HOW}",
        **({"published": PUBLISHED[family]} if dataset == "mnist" and not variant else {}),
        **({"classes": flow.classes, "test_accuracy": result["accuracy"]} if flow.classes else {}),
        "config": f"configs/{model_id}.json",
        "command": f"python -m flowcore train --config configs/{model_id}.json {' '.join(where)} "
                   f"--out runs/{model_id}".replace("  ", " "),
        "eval_command": f"python -m flowcore eval --checkpoint pretrained/{target.name} {' '.join(where)} "
                        f"--draws {DRAWS} --seed 0".replace("  ", " "),
        "curve": _curve(run, cfg["batch_size"]),
        **_curve_where(meta),
        "torch": meta.get("torch"),
        **kept,
    }


def _curve_where(meta: dict) -> dict:
    """Which images the training curve was measured on: the split and how many of its first images,
    as fields for the dashboard and as a sentence for a reader of the manifest."""
    data = meta.get("data", {})
    split = "validation" if data.get("eval_split") == "validation" else "test"
    size = int(meta.get("train_config", {}).get("eval_size") or data.get("n_eval"))
    held = " (held out from training)" if split == "validation" else ""
    return {"curve_split": split, "curve_eval_size": size,
            "curve_note": f"bits/dim on the first {size:,} {split} images{held} during training (one fixed noise draw)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--run", action="append", default=[], metavar="ID=FOLDER",
                        help="the run folder of a model (default runs/<id>)")
    parser.add_argument("--retime", action="store_true",
                        help="only time sampling again, for every shipped model in one process (run it on an "
                             "idle machine, so that the column compares like with like), and rewrite those fields")
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.run)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    if args.retime:
        retime(manifest)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        return
    manifest["bits_per_dim_definition"] = ("E_u[-log p(x + u)] / (D ln 2): 8-bit pixels plus uniform noise "
                                           "u in [0, 1), density on the [0, 256) scale")
    for name in args.models:
        entry = release(name, args.data_dir, Path(runs.get(name, REPO / "runs" / name)),
                        manifest["models"].get(name))
        assert math.isfinite(entry["test_bits_per_dim"])
        # re-read: another release may have written the manifest since this one started
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else manifest
        manifest["models"][name] = entry
        print(f"{name}: {entry['test_bits_per_dim']:.4f} +- {entry['test_bits_per_dim_std']:.4f} bits/dim, "
              f"{entry['params']:,} params, {entry['size_mb']} MB", flush=True)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        write_results_table(REPO / "README.md", manifest)


if __name__ == "__main__":
    main()
