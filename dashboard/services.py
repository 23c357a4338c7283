"""The only bridge between the pages and `flowcore`: caps, pretrained models, uploads.

Pages call these functions and lay out what they return; `charts.py` only draws. All
Streamlit caching and session state live here and in the other `services_*.py` files:

- `services_mnist.py`: sample grids, test digits and interpolations of the MNIST models;
- `services_toy.py`: 2-D flows, their densities, layers and latent paths (stateless);
- `services_train.py`: each session's live 2-D model and trainer (session state);
- `services_race.py`: the three-model race of the Compare page.

Per-session caps (documented for deployers) are the `MAX_*` constants below.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` from a checkout, without installing
    sys.path.insert(0, str(ROOT))

from flowcore.checkpoint import CheckpointError, load  # noqa: E402

# --- Per-session caps ------------------------------------------------------------------
MAX_POINTS = 5000  # points in one uploaded (or generated) 2-D data set
MIN_POINTS = 20  # fewer points than this cannot be trained on meaningfully
MAX_STEPS_UNATTENDED = 20_000  # optimisation steps a session trains after its last click (Play, Step, Reset, race)
MAX_STEPS_PER_SESSION = MAX_STEPS_UNATTENDED  # the name services_race.py reads
MAX_UPLOAD_BYTES = 1_000_000  # size of one uploaded CSV file (also .streamlit/config.toml)
MAX_TRAINING_LOOPS = 1  # training loops running at once per session (live page or race)
MAX_GRID_SIDE = 10  # sample grids are at most 10 x 10 images
MAX_INTERP_STEPS = 16  # images in one interpolation strip

# Tiny models and several sessions on a small CPU: one thread each avoids oversubscription.
TORCH_THREADS = int(os.environ.get("FLOWCORE_TORCH_THREADS", "1"))
torch.set_num_threads(TORCH_THREADS)

MODEL_NAMES = ("nice", "realnvp", "glow")  # the three families (live training, the race)
TITLES = {"nice": "NICE", "realnvp": "RealNVP", "glow": "Glow"}
# Pretrained models are keyed by model id, `<family>-<data set>[-<variant>]`, as in pretrained/manifest.json.
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
    entry = _catalogue_entry(name) if name not in TITLES else None
    return entry.title if entry is not None else TITLES.get(name.split("-")[0], name)


def keep_option(key: str, options: Any, page: str) -> None:
    """Before widget `key` of `page` is drawn: if the session remembers a value for it that is not
    one of `options` (another page's), put back the value this page last had, else forget it.

    Train live and Sample both have a "model" selectbox (so both links read ?model=...), and a session
    keeps one value per key across pages. Their ids differ ("nice" for Train live's family, "nice-mnist"
    for Sample's checkpoint) but their titles agree, and a selectbox accepts any value whose title is
    among its options: without this, Sample would look for a pretrained "nice" ("not in the manifest")
    and Train live, back from Sample, would start a new run for "nice-mnist". Pair with `remember`."""
    own = st.session_state.get(f"_{page}_{key}")
    if key in st.session_state and st.session_state[key] not in list(options):
        if own in list(options):
            st.session_state[key] = own
        else:
            del st.session_state[key]


def remember(key: str, value: Any, page: str) -> None:
    """Note `value` as widget `key`'s value on `page` (for `keep_option`)."""
    st.session_state[f"_{page}_{key}"] = value


def _catalogue_entry(model_id: str) -> PretrainedModel | None:
    return catalogue().models.get(model_id)


# --- Pretrained models -----------------------------------------------------------------


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
    curve_note: str = ""
    family: str = ""  # nice, realnvp or glow
    dataset: str = "mnist"  # mnist or fashion-mnist
    variant: str = ""  # e.g. "conditional"
    classes: int = 0  # class-conditional models: number of classes
    test_accuracy: float | None = None  # class-conditional models: test accuracy as a classifier
    samples_png: str = ""  # file name of the shipped 8x8 sample grid

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
        curve=curve, curve_note=str(raw.get("curve_note") or ""),
        family=str(raw.get("family") or name.split("-")[0]), dataset=str(raw.get("dataset") or "mnist"),
        variant=str(raw.get("variant") or ""), classes=as_int(raw.get("classes")) or 0,
        test_accuracy=_number(raw.get("test_accuracy")), samples_png=str(raw.get("samples_png") or ""),
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
    return _read_catalogue(str(pretrained_dir()), _version(manifest))


def _version(path: Path) -> tuple[int, int]:
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
        return _load_flow(str(entry.path), _version(entry.path)), None
    except CheckpointError as err:
        return None, f"{entry.title}: the checkpoint cannot be used ({err})."
    except Exception as err:  # noqa: BLE001 - never a traceback on the page
        return None, f"{entry.title}: loading the checkpoint failed ({type(err).__name__}: {err})."


def model_key(name: str) -> str:
    """Identifies a pretrained checkpoint's current file, for memoising what it generates."""
    entry = catalogue().models[name]
    return f"{entry.path}:{_version(entry.path)}"


# --- Latent paths ------------------------------------------------------------------------


PATHS = ("linear", "spherical")


def latent_path(z0: torch.Tensor, z1: torch.Tensor, steps: int, path: str) -> torch.Tensor:
    """`steps` latents from `z0` to `z1` `(D,)`: straight line, or great circle (slerp) scaled in norm."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    if path == "linear":
        return (1 - t) * z0 + t * z1
    if path != "spherical":
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(1e-12), z1 / n1.clamp_min(1e-12)
    omega = torch.arccos((u0 @ u1).clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:  # (nearly) parallel: the great circle is the straight line
        return (1 - t) * z0 + t * z1
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


# --- Uploaded 2-D points -----------------------------------------------------------------


def _csv_problem(message: str) -> str:
    """pandas' reason for refusing a CSV, in plain words."""
    ragged = re.search(r"Expected (\d+) fields? in line (\d+), saw (\d+)", message)
    if ragged:
        first, line, saw = ragged.groups()
        return (f"The file could not be read as CSV: line {line} has {saw} values; the first line has {first}. "
                "Every line needs the same two columns (x and y).")
    return "The file could not be read as CSV: its lines do not split into columns of values."


def parse_points_csv(data: bytes) -> torch.Tensor:
    """Uploaded CSV bytes -> float32 points `(N, 2)`; raises `ValueError` with a user-facing reason.

    Accepts exactly two numeric columns, with or without a header row.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:g} MB.")
    if not data.strip():
        raise ValueError("The file is empty.")
    try:
        text = data.decode("utf-8-sig")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
    except UnicodeDecodeError:
        raise ValueError("This is not a text CSV file (it contains binary data).") from None
    try:
        table = pd.read_csv(io.StringIO(text), header=None, dtype=str, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise ValueError(_csv_problem(str(err))) from None
    if table.shape[1] != 2:
        raise ValueError(f"The file has {table.shape[1]} column(s); it needs exactly two columns of "
                         "numbers (x and y).")
    numbers = table.apply(pd.to_numeric, errors="coerce")
    if numbers.iloc[0].isna().all() and table.iloc[0].notna().all():
        table, numbers = table.iloc[1:], numbers.iloc[1:]  # a header row
    bad = numbers.isna() & table.notna()
    if bad.any().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(f"Row {table.index[row] + 1}, column {col + 1} holds {table.iat[row, col]!r}, "
                         "which is not a number.")
    values = numbers.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise ValueError(f"Row {table.index[row] + 1} has a missing, NaN or infinite value; every point "
                         "needs two finite numbers.")
    if len(values) < MIN_POINTS:
        raise ValueError(f"The file has {len(values)} point(s); at least {MIN_POINTS} are needed.")
    if len(values) > MAX_POINTS:
        raise ValueError(f"The file has {len(values):,} points; the limit is {MAX_POINTS:,} per session.")
    if np.abs(values).max() > 1e6:
        raise ValueError("Some values are larger than a million; please rescale the data.")
    return torch.from_numpy(values.astype(np.float32))


# --- Comparison ----------------------------------------------------------------------------


def time_sampling(name: str, n: int = 64, seed: int = 0) -> float | None:
    """Seconds this server takes to draw `n` samples now (not cached: a fresh measurement)."""
    flow, _ = pretrained_flow(name)
    if flow is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        flow.sample(n, generator=generator)
    return time.perf_counter() - start


def next_number(key: str) -> None:
    """Widget callback: add one to a number input."""
    st.session_state[key] = int(st.session_state.get(key, 0)) + 1
