"""The pretrained MNIST models: what `pretrained/manifest.json` says of each, loaded once per process.

Models are keyed by model id, `<family>-<data set>[-<variant>]`, as in the manifest. The folder is
`$FLOWCORE_PRETRAINED_DIR`, else `pretrained/` of the checkout. A missing or unreadable manifest or
checkpoint becomes a sentence (`Catalogue.problems`, or the reason `pretrained_flow` returns), never
a traceback. Checkpoints are loaded once per process and shared read-only by every session
(`st.cache_resource`), and re-read when their file changes (`file_version`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from flowcore.checkpoint import CheckpointError, load

ROOT = Path(__file__).resolve().parents[2]  # the checkout

MODEL_NAMES = ("nice", "realnvp", "glow")  # the three families (live training, the race)
TITLES = {"nice": "NICE", "realnvp": "RealNVP", "glow": "Glow"}
COMPARED = ("nice-mnist", "realnvp-mnist", "glow-mnist")  # one unconditional MNIST model per family
CONDITIONAL = "glow-mnist-conditional"  # Glow with a class-conditional prior (10 digit classes)
FASHION = "glow-fashion"  # the Glow of glow-mnist, trained on Fashion-MNIST
MODEL_IDS = (*COMPARED, CONDITIONAL, FASHION)
PRETRAINED_ENV = "FLOWCORE_PRETRAINED_DIR"
HOW_TO_GET_MODELS = (
    "Train them with `python -m flowcore train --config configs/<model>-mnist.json` (see the README), "
    f"or set `{PRETRAINED_ENV}` to a folder holding `manifest.json` and the checkpoints it names."
)


def title(name: str) -> str:
    """Display name of a family (`glow`) or of a pretrained model id (`glow-mnist` -> Glow)."""
    entry = catalogue().models.get(name) if name not in TITLES else None
    return entry.title if entry is not None else TITLES.get(name.split("-")[0], name)


@dataclass(frozen=True)
class PretrainedModel:
    """One entry of `pretrained/manifest.json`: where the checkpoint is and what it measured."""

    name: str  # the model id, e.g. "glow-mnist"
    title: str
    path: Path
    test_bits_per_dim: float | None
    test_bits_per_dim_std: float | None
    n_test: int | None
    draws: int | None
    params: int | None
    images_seen: int | None
    epochs: float | None
    wall_time_s: float | None
    hardware: str
    data: str
    sample_time_64_s: float | None
    sample_time_hardware: str
    published_bits_per_dim: float | None
    published_source: str
    command: str
    curve: tuple[dict[str, float], ...] = ()
    curve_split: str = "test"  # the images the curve was measured on: "test" or "validation" (held out)
    curve_eval_size: int | None = None  # how many of that split's first images
    family: str = ""  # nice, realnvp or glow
    dataset: str = "mnist"  # mnist or fashion-mnist
    variant: str = ""  # e.g. "conditional"
    classes: int = 0  # class-conditional models: number of classes
    test_accuracy: float | None = None  # class-conditional models: test accuracy as a classifier
    samples_png: str = ""  # file name of the shipped 8x8 sample grid
    dequantizer: str = "uniform"  # "variational": bits/dim are the bound under its learned noise q(u | x)

    @property
    def available(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class Catalogue:
    """What the pretrained folder holds; `problems` are sentences to show the user."""

    directory: Path
    models: dict[str, PretrainedModel] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def available(self, ids: tuple[str, ...] = COMPARED) -> list[str]:
        """Those of `ids` (default: the three compared MNIST models) whose checkpoint is there."""
        return [n for n in ids if n in self.models and self.models[n].available]


def pretrained_dir() -> Path:
    return Path(os.environ.get(PRETRAINED_ENV) or ROOT / "pretrained")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _entry(name: str, raw: dict[str, Any], directory: Path) -> PretrainedModel:
    published = raw.get("published") if isinstance(raw.get("published"), dict) else {}
    curve = tuple(p for p in raw.get("curve") or () if isinstance(p, dict))
    as_int = lambda v: int(v) if _number(v) is not None else None  # noqa: E731
    return PretrainedModel(
        name=name, title=str(raw.get("title") or TITLES.get(name.split("-")[0], name)),
        path=directory / str(raw.get("file") or f"{name}.safetensors"),
        test_bits_per_dim=_number(raw.get("test_bits_per_dim")),
        test_bits_per_dim_std=_number(raw.get("test_bits_per_dim_std")),
        n_test=as_int(raw.get("n_test")), draws=as_int(raw.get("draws")), params=as_int(raw.get("params")),
        images_seen=as_int(raw.get("images_seen")), epochs=_number(raw.get("epochs")),
        wall_time_s=_number(raw.get("wall_time_s")), hardware=str(raw.get("hardware") or "unknown hardware"),
        data=str(raw.get("data") or "MNIST"), sample_time_64_s=_number(raw.get("sample_time_64_s")),
        sample_time_hardware=str(raw.get("sample_time_hardware") or raw.get("hardware") or "unknown hardware"),
        published_bits_per_dim=_number(published.get("bits_per_dim")),
        published_source=str(published.get("source") or ""), command=str(raw.get("command") or ""),
        curve=curve, curve_split="validation" if raw.get("curve_split") == "validation" else "test",
        curve_eval_size=as_int(raw.get("curve_eval_size")),
        family=str(raw.get("family") or name.split("-")[0]), dataset=str(raw.get("dataset") or "mnist"),
        variant=str(raw.get("variant") or ""), classes=as_int(raw.get("classes")) or 0,
        test_accuracy=_number(raw.get("test_accuracy")), samples_png=str(raw.get("samples_png") or ""),
        dequantizer="variational" if raw.get("dequantizer") == "variational" else "uniform",
    )


@st.cache_data(show_spinner=False, max_entries=8)
def _read_catalogue(directory: str, version: tuple[int, int]) -> Catalogue:  # version: cache key only
    folder = Path(directory)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return Catalogue(folder, problems=(f"No pretrained MNIST models: `{manifest}` does not exist. "
                                           + HOW_TO_GET_MODELS,))
    try:
        raw = json.loads(manifest.read_text())
        models_raw = raw["models"]
        if not isinstance(models_raw, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        return Catalogue(folder, problems=(f"`{manifest}` is not a valid manifest (expected JSON with a "
                                           "`models` object). " + HOW_TO_GET_MODELS,))
    models = {n: _entry(n, raw_entry, folder) for n, raw_entry in models_raw.items() if isinstance(raw_entry, dict)}
    problems = [f"{TITLES[n.split('-')[0]]} ({n}) is not listed in `{manifest}`." for n in COMPARED if n not in models]
    problems += [f"{m.title}: checkpoint `{m.path}` is missing. " + HOW_TO_GET_MODELS
                 for m in models.values() if not m.available]
    return Catalogue(folder, models, tuple(problems))


def catalogue() -> Catalogue:
    """The manifest of the pretrained folder (re-read when the file changes)."""
    manifest = pretrained_dir() / "manifest.json"
    return _read_catalogue(str(pretrained_dir()), file_version(manifest))


def file_version(path: Path) -> tuple[int, int]:
    """Changes whenever the file does (modification time in ns, size); (0, 0) if absent."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


@st.cache_resource(show_spinner="Loading a pretrained model ...", max_entries=6)
def _load_flow(path: str, version: tuple[int, int]) -> torch.nn.Module:  # version: cache key only
    """Loaded once per process and shared by every session (read-only, eval mode)."""
    flow = load(path)
    flow.requires_grad_(False)
    return flow


def pretrained_flow(name: str) -> tuple[Any, str | None]:
    """`(flow, None)`, or `(None, reason)` when the model is missing or unreadable."""
    entry = catalogue().models.get(name)
    if entry is None:
        return None, f"{title(name)} is not in the manifest at `{pretrained_dir()}`. " + HOW_TO_GET_MODELS
    if not entry.available:
        return None, f"{entry.title}: checkpoint `{entry.path}` is missing. " + HOW_TO_GET_MODELS
    try:
        return _load_flow(str(entry.path), file_version(entry.path)), None
    except CheckpointError as err:
        return None, f"{entry.title}: the checkpoint cannot be used ({err})."
    except Exception as err:  # noqa: BLE001 - never a traceback on the page
        return None, f"{entry.title}: loading the checkpoint failed ({type(err).__name__}: {err})."


def model_key(name: str) -> str:
    """Identifies a pretrained checkpoint's current file, for memoising what it generates."""
    entry = catalogue().models[name]
    return f"{entry.path}:{file_version(entry.path)}"
