"""Score: a visitor's digit (drawn, picked or uploaded) and what each model makes of it.

Drawings and uploads become MNIST-like digits in `digits.py`. The scores come from
`flowcore.breakdown` (bits/dim averaged over fixed noise draws, term by term); the test-set scores
they are compared with are shipped beside the checkpoints (`pretrained/score_stats.npz`, written by
`python -m scripts.score_stats`) and used only for the weights they were computed with. Each
session scores one digit at a time.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from dashboard.services import catalogue, mnist, sources
from dashboard.services.digits import BRUSH_PX, CANVAS_PX, SIDE, drawing_digit, read_upload, strokes_image
from flowcore.breakdown import SCORE_DRAWS, image_scores, score_noise  # noqa: F401 - SCORE_DRAWS: for the page
from scripts.score_stats import STATS_FILE, fingerprint, read_stats

BRIGHTEN = 8  # grey levels of the sensitivity map's perturbation
MAP_BATCH = 64  # at most this many of the map's 785 images per forward pass: their activations stay in cache
LOW, HIGH = 1.0, 99.0  # percentiles of the test set outside which a score is unusual


# --- The test set and the shipped gallery ----------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=4)
def _stats(path: str, version: tuple[int, int]) -> dict[str, dict]:  # version: cache key only
    return read_stats(Path(path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _fingerprint(_flow: Any, key: str) -> str:
    return fingerprint(_flow)


def test_set_scores(model_id: str) -> tuple[np.ndarray | None, str | None]:
    """The 10,000 MNIST test digits' bits/dim under this model (sorted), or `(None, reason)`."""
    flow, problem = catalogue.pretrained_flow(model_id)
    if flow is None:
        return None, problem
    path = catalogue.pretrained_dir() / STATS_FILE
    stat = path.stat() if path.is_file() else None
    stats = _stats(str(path), (stat.st_mtime_ns, stat.st_size) if stat else (0, 0))
    if not stats:
        return None, (f"The test-set scores (`{STATS_FILE}`) are not in `{catalogue.pretrained_dir()}`: run "
                      "`python -m scripts.score_stats`.")
    entry = stats.get(_fingerprint(flow, catalogue.model_key(model_id)))
    if entry is None:
        return None, (f"The shipped test-set scores are for other weights than this {catalogue.title(model_id)}: "
                      "run `python -m scripts.score_stats` after changing a checkpoint.")
    return np.sort(entry["bits"]), None


def percentile(bits: float, test_bits: np.ndarray) -> float:
    """Percent of the test digits that score lower (are more likely) than `bits`, ties counted half."""
    below = np.searchsorted(test_bits, bits, side="left")
    at = np.searchsorted(test_bits, bits, side="right") - below
    return float(100 * (below + at / 2) / len(test_bits))


def verdict(bits: float, test_bits: np.ndarray) -> tuple[str, str]:
    """(verdict, the rule with its thresholds) against the test set's 1st-99th percentile."""
    low, high = np.percentile(test_bits, [LOW, HIGH])
    rule = (f"typical means between the test set's {LOW:g}st and {HIGH:g}th percentiles, "
            f"{low:.3f}-{high:.3f} bits/dim")
    if bits < low:
        return "unusually likely", rule
    if bits > high:
        return "unusually unlikely", rule
    return "typical", rule


# --- Scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One model's score of one digit."""

    bits: float  # bits/dim, mean over the fixed noise draws
    terms: dict[str, float]  # the breakdown, bits/dim, summing to `bits`
    label: int | None = None  # class-conditional models: the class the breakdown is for
    probabilities: tuple[float, ...] = ()  # class-conditional models: p(y | x), y = 0..9


@cache
def _map_threads() -> int:
    """One per core, fewer where torch runs several threads per call (`FLOWCORE_TORCH_THREADS`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // torch.get_num_threads())


@cache
def _map_pool() -> ThreadPoolExecutor:
    """The threads that run the sensitivity maps' forward passes, shared by every session: a map
    takes the machine's cores for a moment, and all visitors' maps together never more than it has."""
    return ThreadPoolExecutor(_map_threads(), thread_name_prefix="score-map")


def _session_lock() -> threading.Lock:
    """One scoring at a time per session (a rerun during a scoring waits for it)."""
    return st.session_state.setdefault("_score_lock", threading.Lock())


def _run(compute: Any, model_id: str, digit: np.ndarray, *args: Any) -> tuple[Any, str | None]:
    """`compute(flow, key, digit bytes, *args)` (memoised) with the pretrained model, one at a time
    per session; or `(None, reason)` when the model is missing."""
    flow, problem = catalogue.pretrained_flow(model_id)
    if flow is None:
        return None, problem
    digit_bytes = np.ascontiguousarray(digit, np.uint8).tobytes()
    with _session_lock():
        return compute(flow, catalogue.model_key(model_id), digit_bytes, *args), None


@st.cache_data(show_spinner=False, max_entries=256)
def _score(_flow: Any, key: str, digit: bytes) -> Score:
    x = torch.frombuffer(bytearray(digit), dtype=torch.uint8).reshape(1, 1, SIDE, SIDE)
    terms = {name: float(v[0]) for name, v in image_scores(_flow, x).items()}
    if not _flow.classes:
        return Score(sum(terms.values()), terms)
    with torch.inference_mode():
        noisy = x.float() + score_noise((1, SIDE, SIDE)).to(x.device)
        log_py = _flow.class_log_probs(noisy).double().mean(0)  # (K,), mean over the draws
    probabilities = torch.softmax(log_py, 0)
    marginal = -(torch.logsumexp(log_py, 0) - math.log(_flow.classes)) / (_flow.event_dim * math.log(2))
    return Score(float(marginal), terms, int(log_py.argmax()), tuple(float(p) for p in probabilities))


def score(model_id: str, digit: np.ndarray) -> tuple[Score | None, str | None]:
    """The model's bits/dim of the uint8 `(28, 28)` digit with its breakdown (for a class-conditional
    model: `bits` is the marginal and the breakdown that of `log p(x | y)`, most likely `y`)."""
    return _run(_score, model_id, digit)


def _log_probs(flow: Any, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # per thread: a pool thread does not inherit the caller's mode
        return flow.log_prob(images)


@st.cache_data(show_spinner=False, max_entries=64)
def _sensitivity(_flow: Any, key: str, digit: bytes) -> np.ndarray:
    x = torch.frombuffer(bytearray(digit), dtype=torch.uint8).reshape(SIDE * SIDE).float()
    step = torch.where(x + BRIGHTEN <= 255, float(BRIGHTEN), -float(BRIGHTEN))  # white pixels: darkened
    copies = x.repeat(SIDE * SIDE + 1, 1)  # (785, 784): the digit, then one copy per pixel changed
    copies[1:] += torch.diag(step)
    noise = score_noise((SIDE * SIDE,), draws=1)[0]  # the same noise for every copy
    images = (copies + noise).reshape(-1, 1, SIDE, SIDE)  # (785, 784) -> (785, 1, 28, 28)
    threads = _map_threads()
    pieces = threads * math.ceil(len(images) / (MAP_BATCH * threads))  # as many pieces for every thread
    log_p = torch.cat(list(_map_pool().map(partial(_log_probs, _flow), images.tensor_split(pieces))))
    bits = -log_p.double() / math.log(2)
    change = (bits[1:] - bits[0]) * BRIGHTEN / step.double()  # per BRIGHTEN grey levels brighter
    return change.reshape(SIDE, SIDE).numpy()


def sensitivity(model_id: str, digit: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Change of the digit's total bits when each pixel alone is `BRIGHTEN` grey levels brighter
    `(28, 28)` (pixels within `BRIGHTEN` of white are darkened instead, and the sign turned)."""
    return _run(_sensitivity, model_id, digit)


@st.cache_data(show_spinner=False, max_entries=256)
def _model_version(_flow: Any, key: str, digit: bytes, temperature: float) -> tuple[np.ndarray, float]:
    x = torch.frombuffer(bytearray(digit), dtype=torch.uint8).reshape(1, 1, SIDE, SIDE).float() + 0.5
    with torch.inference_mode():
        z, _ = _flow.encode(x)  # the centre of each pixel's dequantisation bin
        back = _flow.decode(z * temperature)
    image = back.clamp(0, 255.999).floor().to(torch.uint8)[0, 0].numpy()
    return image, float((back - x).abs().max())


def model_version(model_id: str, digit: np.ndarray, temperature: float) -> tuple[tuple[np.ndarray, float] | None,
                                                                                  str | None]:
    """The digit encoded, its latent times `temperature`, decoded: (uint8 `(28, 28)`, the largest
    difference from the input on the [0, 256) scale, meaningful at temperature 1)."""
    return _run(_model_version, model_id, digit, round(float(temperature), 3))


# --- The session's digit -------------------------------------------------------------------

_DIGIT, _NOTE, _DRAWING = "score_digit", "score_note", "score_drawing"
_MAPS = "score_maps_shown"  # the digit (uint8 bytes) whose sensitivity maps the page shows


@dataclass(frozen=True)
class Digit:
    image: np.ndarray  # uint8 (28, 28)
    source: str  # a few words: "your drawing", "MNIST test digit 7 (a 2)", "photo.png"
    drawn: np.ndarray | None = None  # the drawing itself, uint8 (digits.CANVAS_PX, digits.CANVAS_PX)
    notes: tuple[str, ...] = ()


def current() -> Digit | None:
    return st.session_state.get(_DIGIT)


def maps_shown(digit: np.ndarray) -> bool:
    """Whether the page this session sees already shows this digit's sensitivity maps (a rerun for
    another control), so that they can stay in place while they are drawn again."""
    return st.session_state.get(_MAPS) == np.ascontiguousarray(digit, np.uint8).tobytes()


def set_maps_shown(digit: np.ndarray) -> None:
    """The page now shows this digit's sensitivity maps."""
    st.session_state[_MAPS] = np.ascontiguousarray(digit, np.uint8).tobytes()


def note() -> str | None:
    """Why the last input was not used, in one sentence (the previous digit stays)."""
    return st.session_state.get(_NOTE)


def _use(digit: Digit) -> None:
    st.session_state[_DIGIT] = digit
    st.session_state[_NOTE] = None


def _drawing() -> sources.Drawing:
    return st.session_state.setdefault(_DRAWING, sources.Drawing())


def drawing_canvas() -> list[dict[str, Any]] | None:
    """The canvas, white on black as MNIST, showing the drawing kept in the session (also when the
    visitor comes back from another page); returns its objects."""
    return sources.kept_canvas(_drawing(), "score_canvas", stroke_width=BRUSH_PX, stroke_color="#FFFFFF",
                               background_color="#000000", height=CANVAS_PX, width=CANVAS_PX,
                               drawing_mode="freedraw")


def use_drawing(objects: list[dict[str, Any]] | None) -> None:
    """The canvas's objects after a stroke; None (the canvas sent nothing) or an unchanged drawing
    (a rerun) does nothing."""
    if objects is None or objects == _drawing().objects:
        return
    _drawing().objects = objects
    try:
        image = drawing_digit(objects)
    except ValueError as err:
        st.session_state[_NOTE] = str(err)
        return
    _use(Digit(image, "your drawing", strokes_image(objects)))


def clear_drawing() -> None:
    """Button callback: an empty canvas (remounted); the digit scored stays until a new stroke."""
    _drawing().version += 1
    _drawing().objects = []
    st.session_state[_NOTE] = None


def use_upload(key: str) -> None:
    """File uploader callback: the uploaded image becomes the digit, or one sentence says why not."""
    upload = st.session_state.get(key)
    if upload is None:
        return
    try:
        image, notes = read_upload(upload.getvalue())
    except ValueError as err:
        st.session_state[_NOTE] = f"{upload.name}: {err}"
        return
    except Exception:  # noqa: BLE001 - a hostile file never shows a traceback
        st.session_state[_NOTE] = f"{upload.name}: the image cannot be read."
        return
    _use(Digit(image, upload.name, notes=tuple(notes)))


def use_test_digit(key: str) -> None:
    """Number input callback: test digit number `st.session_state[key]` becomes the digit."""
    index = int(st.session_state.get(key) or 0)
    images, labels, indices, where = test_digits()
    i = int(np.clip(index, 0, len(images) - 1))
    _use(Digit(images[i], f"MNIST test digit {int(indices[i]):,} (a {int(labels[i])}, {where})"))


def random_test_digit(key: str) -> None:
    images, _, _, _ = test_digits()
    st.session_state[key] = int(np.random.default_rng().integers(len(images)))
    use_test_digit(key)


def test_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(images uint8 `(N, 28, 28)`, labels, test-set indices, where from): the MNIST test set where
    the host has the files, else the gallery shipped with the app."""
    images, labels, _ = mnist.mnist_test()
    if images is not None:
        return images[:, 0].numpy(), labels.numpy(), np.arange(len(images)), "from the MNIST files"
    images, labels, indices = mnist.gallery_digits()
    return images[:, 0].numpy(), labels.numpy(), indices.numpy(), "from the gallery shipped with the app"


def upscale(image: np.ndarray, factor: int = 8) -> np.ndarray:
    """A small uint8 image made `factor` times larger with square pixels (for `st.image`)."""
    return np.kron(image, np.ones((factor, factor), np.uint8))


# --- Tables for the charts ---------------------------------------------------------------


def ordinal(value: float) -> str:
    """12.3 -> "12th", 1 -> "1st", 0.2 -> "0th" (percentiles, rounded down as quantiles read)."""
    n = int(math.floor(value))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def standing(bits: float, test_bits: np.ndarray) -> str:
    """Where `bits` falls among the sorted test-set scores (markdown): "**37th percentile** of ...",
    and in words outside the 1st-99th percentiles (where a rounded percentile would read "0th",
    "99th" or "100th" beside a verdict of unusual): below the 1st or above the 99th percentile, or
    fewer (more) bits/dim than every test digit."""
    n = len(test_bits)
    lower = int(np.searchsorted(test_bits, bits, side="left"))  # test digits with fewer bits/dim
    higher = n - int(np.searchsorted(test_bits, bits, side="right"))  # ... with more
    if lower == 0 and higher == n:
        return f"**Fewer bits/dim than every one** of the {n:,} test digits"
    if higher == 0 and lower == n:
        return f"**More bits/dim than every one** of the {n:,} test digits"
    pct = percentile(bits, test_bits)
    if pct < LOW:
        fewer = "none has" if lower == 0 else f"{lower:,} {'has' if lower == 1 else 'have'}"
        return f"**Below the {ordinal(LOW)} percentile** of the {n:,} test digits ({fewer} fewer bits/dim)"
    if pct > HIGH:
        more = "none has" if higher == 0 else f"{higher:,} {'has' if higher == 1 else 'have'}"
        return f"**Above the {ordinal(HIGH)} percentile** of the {n:,} test digits ({more} more bits/dim)"
    return f"**{ordinal(pct)} percentile** of the {n:,} test digits"


def histogram_frame(test_bits: np.ndarray, bins: int = 50) -> pd.DataFrame:
    """The test set's scores binned here (a few rows to send, not 10,000): start, end, count."""
    counts, edges = np.histogram(test_bits, bins=bins)
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})


def terms_frame(s: Score) -> pd.DataFrame:
    return pd.DataFrame({"term": list(s.terms), "bits": list(s.terms.values())})


def pixels_frame(values: np.ndarray, digit: np.ndarray) -> pd.DataFrame:
    """A `(28, 28)` map as one row per pixel: row, col, change, ink (the digit's pixel is over half white)."""
    rows, cols = np.indices(values.shape)
    return pd.DataFrame({"row": rows.ravel(), "col": cols.ravel(), "change": values.ravel(),
                         "ink": digit.ravel() > 127})


def probabilities_frame(s: Score) -> pd.DataFrame:
    return pd.DataFrame({"digit": list(range(len(s.probabilities))), "probability": list(s.probabilities)})
