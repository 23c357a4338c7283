"""Score: a visitor's digit (drawn, picked or uploaded) made MNIST-like, and what each model makes of it.

Images become 28x28 8-bit digits the way MNIST's were made (LeCun et al.): the ink's bounding box
is fitted into a 20x20 box keeping its aspect ratio (anti-aliased), and placed in 28x28 so that its
centre of mass is at the centre. Uploads are checked before they are decoded (size, pixel count,
format), photos of dark ink on light paper are inverted, and transparent pixels are background:
composited on white behind dark ink and on black behind light ink (the mean brightness of the
opaque pixels decides). Every refusal is one sentence (`ValueError`).

The scores come from `flowcore.breakdown` (bits/dim averaged over fixed noise draws, term by term);
the test-set scores they are compared with are shipped beside the checkpoints
(`pretrained/score_stats.npz`, written by `python -m scripts.score_stats`) and used only for the
weights they were computed with. Each session scores one digit at a time.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import services
import streamlit as st
import torch
from PIL import Image, ImageDraw

from flowcore.breakdown import SCORE_DRAWS, image_scores, score_noise  # noqa: F401 - SCORE_DRAWS: for the page
from scripts.score_stats import STATS_FILE, fingerprint, read_stats

CANVAS_PX = 280  # the drawing canvas, pixels square (fits a 390 px phone screen)
BRUSH_PX = 20  # brush width on the canvas: about 2 pixels of a 28x28 digit once fitted into 20x20
MAX_IMAGE_BYTES = 10_000_000  # one uploaded image
MAX_IMAGE_SIDE = 4000  # pixels, either side, read from the header before anything is decoded
FORMATS = ("PNG", "JPEG")
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20x20 box inside a 28x28 image
INK = 0.5  # grey level (of 255) above which a pixel counts as ink for the bounding box
BRIGHTEN = 8  # grey levels of the sensitivity map's perturbation
LOW, HIGH = 1.0, 99.0  # percentiles of the test set outside which a score is unusual


# --- MNIST-style conversion --------------------------------------------------------------


def mnist_style(grey: np.ndarray) -> np.ndarray:
    """A grey image `(H, W)` (light ink on black, values 0..255) -> an MNIST-like uint8 `(28, 28)`.

    Raises `ValueError` when there is no ink."""
    grey = np.asarray(grey, np.float32)
    rows, cols = np.nonzero(grey > INK)
    if len(rows) == 0:
        raise ValueError("empty")
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.LANCZOS, reducing_gap=3.0))
    fitted = np.clip(fitted, 0, 255)
    total = fitted.sum()
    ys, xs = np.indices(fitted.shape)
    cy, cx = (ys * fitted).sum() / total, (xs * fitted).sum() / total  # centre of mass, pixel indices
    # MNIST's digits have their centre of mass at pixel (14, 14) (measured on the test set: mean 13.99,
    # 14.00), half a pixel below and right of the image's centre
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - fitted.shape[0]))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - fitted.shape[1]))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return np.round(out).astype(np.uint8)


def _path_vertices(obj: dict[str, Any]) -> list[tuple[float, float]]:
    """The points a Fabric.js freedraw path passes through (end points of its commands), canvas pixels."""
    vertices = []
    for command in obj.get("path") or ():
        if isinstance(command, (list, tuple)) and len(command) >= 3:
            try:
                x, y = float(command[-2]), float(command[-1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(x) and math.isfinite(y):
                vertices.append((x, y))
    return vertices


def strokes_image(objects: list[dict[str, Any]] | None, size: int = CANVAS_PX) -> np.ndarray:
    """The canvas's brush strokes drawn white on black with round ends: uint8 `(size, size)`."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for obj in objects or ():
        if not isinstance(obj, dict) or str(obj.get("type", "")).lower() != "path":  # Fabric 6 says "Path"
            continue
        width = float(obj.get("strokeWidth") or BRUSH_PX)
        width = min(max(width, 1.0), size / 4)
        points = _path_vertices(obj)
        if points:
            draw.line(points, fill=255, width=round(width), joint="curve")
            for x, y in (points[0], points[-1]):
                draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(image)


def drawing_digit(objects: list[dict[str, Any]] | None) -> np.ndarray:
    """The canvas's strokes as an MNIST-like digit; `ValueError` (one sentence) for an empty drawing."""
    try:
        return mnist_style(strokes_image(objects))
    except ValueError:
        raise ValueError("The drawing is empty: draw a digit on the black square (the previous digit "
                         "stays scored).") from None


def _photo_grey(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Any decoded image -> light ink on black, 0..255 float `(H, W)`, and what was done to it."""
    notes = []
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), np.float32)
        alpha = rgba[..., 3:] / 255
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        opaque = alpha[..., 0] > 0.5
        dark_ink = opaque.any() and luminance[opaque].mean() < 128
        background = 255.0 if dark_ink else 0.0
        grey = luminance * alpha[..., 0] + background * (1 - alpha[..., 0])
        if (alpha < 1).any():
            notes.append("Its transparent pixels were taken as background (white behind dark ink, black "
                         "behind light ink).")
    elif image.mode.startswith("I"):  # 16-bit grey (PNG): 0..65535
        grey = np.asarray(image, np.float32) / 257
    else:
        grey = np.asarray(image.convert("L"), np.float32)
    edge = max(1, min(grey.shape) // 20)
    border = np.concatenate([grey[:edge].ravel(), grey[-edge:].ravel(), grey[:, :edge].ravel(),
                             grey[:, -edge:].ravel()])
    paper = float(np.median(border))
    if paper > 127:
        grey, paper = 255 - grey, 255 - paper
        notes.append("It looks like dark ink on light paper, so it was inverted.")
    ink = float(np.percentile(grey, 99.9))
    if ink - paper < 32:
        raise Refused("The image has no visible digit: it is (nearly) one flat colour.")
    grey = np.clip((grey - paper) / (ink - paper), 0, 1) * 255  # paper black, the ink's bright end white
    grey[grey < 0.2 * 255] = 0  # paper texture and noise are not ink
    return grey, notes


class Refused(ValueError):
    """An upload that cannot be used, with the one sentence that says why."""


def read_upload(data: bytes) -> tuple[np.ndarray, list[str]]:
    """An uploaded PNG or JPEG -> an MNIST-like uint8 `(28, 28)` and notes on what was done.

    Refusals (`ValueError`, one sentence each): over `MAX_IMAGE_BYTES`, not an image, another
    format, over `MAX_IMAGE_SIDE` pixels a side (read from the header, before decoding: no
    decompression bomb is ever decoded), truncated or corrupt, no visible digit. An animated image
    is scored by its first frame, and the notes say so."""
    if len(data) > MAX_IMAGE_BYTES:
        raise Refused(f"The file is {len(data) / 1e6:.1f} MB; images may be at most "
                      f"{MAX_IMAGE_BYTES / 1e6:g} MB.")
    if not data:
        raise Refused("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
            fmt, (w, h) = image.format, image.size
            if fmt not in FORMATS:
                raise Refused(f"This is a {fmt} image; please upload a PNG or a JPEG.")
            if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
                raise Refused(f"The image is {w:,} x {h:,} pixels; at most {MAX_IMAGE_SIDE:,} x "
                              f"{MAX_IMAGE_SIDE:,} are accepted.")
            notes = []
            if getattr(image, "is_animated", False):
                image.seek(0)
                notes.append(f"It is an animated image of {image.n_frames} frames: the first frame is scored.")
            image.load()
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own check, at open
        raise Refused(f"The image has too many pixels; at most {MAX_IMAGE_SIDE:,} x {MAX_IMAGE_SIDE:,} "
                      "are accepted.") from None
    except Image.UnidentifiedImageError:
        raise Refused("This file is not an image that can be read: please upload a PNG or a JPEG.") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error):
        raise Refused("The image is truncated or corrupt, so it cannot be read.") from None
    if max(image.size) > 4 * CANVAS_PX:  # the digit ends up 20 pixels tall: a smaller copy loses nothing
        image.thumbnail((4 * CANVAS_PX, 4 * CANVAS_PX), Image.BOX)
    grey, more = _photo_grey(image)
    try:
        return mnist_style(grey), notes + more
    except ValueError:
        raise Refused("The image has no visible digit: it is (nearly) one flat colour.") from None


# --- The test set and the shipped gallery ----------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=4)
def _stats(path: str, version: tuple[int, int]) -> dict[str, dict]:  # version: cache key only
    return read_stats(Path(path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _fingerprint(_flow: Any, key: str) -> str:
    return fingerprint(_flow)


def test_set_scores(model_id: str) -> tuple[np.ndarray | None, str | None]:
    """The 10,000 MNIST test digits' bits/dim under this model (sorted), or `(None, reason)`."""
    flow, problem = services.pretrained_flow(model_id)
    if flow is None:
        return None, problem
    path = services.pretrained_dir() / STATS_FILE
    stat = path.stat() if path.is_file() else None
    stats = _stats(str(path), (stat.st_mtime_ns, stat.st_size) if stat else (0, 0))
    if not stats:
        return None, (f"The test-set scores (`{STATS_FILE}`) are not in `{services.pretrained_dir()}`: run "
                      "`python -m scripts.score_stats`.")
    entry = stats.get(_fingerprint(flow, services.model_key(model_id)))
    if entry is None:
        return None, (f"The shipped test-set scores are for other weights than this {services.title(model_id)}: "
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


def _session_lock() -> threading.Lock:
    """One scoring at a time per session (a rerun during a scoring waits for it)."""
    return st.session_state.setdefault("_score_lock", threading.Lock())


def _run(compute: Any, model_id: str, digit: np.ndarray, *args: Any) -> tuple[Any, str | None]:
    """`compute(flow, key, digit bytes, *args)` (memoised) with the pretrained model, one at a time
    per session; or `(None, reason)` when the model is missing."""
    flow, problem = services.pretrained_flow(model_id)
    if flow is None:
        return None, problem
    with _session_lock():
        return compute(flow, services.model_key(model_id), np.ascontiguousarray(digit, np.uint8).tobytes(), *args), None


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


@st.cache_data(show_spinner=False, max_entries=64)
def _sensitivity(_flow: Any, key: str, digit: bytes) -> np.ndarray:
    x = torch.frombuffer(bytearray(digit), dtype=torch.uint8).reshape(SIDE * SIDE).float()
    step = torch.where(x + BRIGHTEN <= 255, float(BRIGHTEN), -float(BRIGHTEN))  # white pixels: darkened
    copies = x.repeat(SIDE * SIDE + 1, 1)  # (785, 784): the digit, then one copy per pixel changed
    copies[1:] += torch.diag(step)
    noise = score_noise((SIDE * SIDE,), draws=1)[0]  # the same noise for every copy
    with torch.inference_mode():
        bits = -_flow.log_prob((copies + noise).reshape(-1, 1, SIDE, SIDE)).double() / math.log(2)
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

_DIGIT, _NOTE, _SEEN, _CANVAS = "score_digit", "score_note", "score_seen_drawing", "score_canvas_version"


@dataclass(frozen=True)
class Digit:
    image: np.ndarray  # uint8 (28, 28)
    source: str  # a few words: "your drawing", "MNIST test digit 7 (a 2)", "photo.png"
    drawn: np.ndarray | None = None  # the drawing itself, uint8 (CANVAS_PX, CANVAS_PX)
    notes: tuple[str, ...] = ()


def current() -> Digit | None:
    return st.session_state.get(_DIGIT)


def note() -> str | None:
    """Why the last input was not used, in one sentence (the previous digit stays)."""
    return st.session_state.get(_NOTE)


def _use(digit: Digit) -> None:
    st.session_state[_DIGIT] = digit
    st.session_state[_NOTE] = None


def use_drawing(objects: list[dict[str, Any]] | None) -> None:
    """The canvas's objects after a stroke; an unchanged drawing (a rerun) does nothing."""
    objects = [o for o in objects or [] if isinstance(o, dict)]
    if objects == st.session_state.get(_SEEN, []):
        return
    st.session_state[_SEEN] = objects
    try:
        image = drawing_digit(objects)
    except ValueError as err:
        st.session_state[_NOTE] = str(err)
        return
    _use(Digit(image, "your drawing", strokes_image(objects)))


def canvas_key() -> str:
    return f"score_canvas_{st.session_state.get(_CANVAS, 0)}"


def clear_drawing() -> None:
    """Button callback: an empty canvas (remounted); the digit scored stays until a new stroke."""
    st.session_state[_CANVAS] = st.session_state.get(_CANVAS, 0) + 1
    st.session_state[_SEEN] = []
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
    import services_mnist as mnist

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
