"""Generated MNIST images for the pages: sample grids, test digits, latent interpolations.

Pretrained flows come from `catalogue.pretrained_flow` (loaded once per process); every
generation here is memoised with `st.cache_data`, the flow passed as an unhashed `_flow`
argument and identified by the checkpoint's path and version instead.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from dashboard.services import catalogue, latent_paths, limits
from flowcore.data import DataNotFound, load_mnist

IMAGE_SCALE = 2  # grids are shown and downloaded at 2 screen pixels per MNIST pixel
DATA_ENV = "FLOWCORE_DATA_DIR"


# --- Images ------------------------------------------------------------------------------


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Decoded images `(B, 1, H, W)` on the [0, 256) scale -> uint8 `(B, H, W)`."""
    return x.clamp(0, 255.999).floor().to(torch.uint8)[:, 0].cpu().numpy()


def tile(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """`(B, H, W)` uint8 -> one grayscale image, `columns` per row, upscaled by `IMAGE_SCALE`."""
    b, h, w = images.shape
    rows = math.ceil(b / columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), 40, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return np.kron(out, np.ones((IMAGE_SCALE, IMAGE_SCALE), np.uint8))


@st.cache_data(show_spinner=False, max_entries=64)
def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Generated:
    """An image made by a model, and how long making it took on this server (first time)."""

    image: np.ndarray
    seconds: float


@st.cache_data(show_spinner=False, max_entries=512)
def _sample_grid(_flow: Any, key: str, temperature: float, seed: int, side: int,
                 digit: int | None = None) -> Generated:
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    labels = None if digit is None else [digit] * (side * side)
    with torch.inference_mode():
        x = _flow.sample(side * side, temperature=temperature, generator=generator, y=labels)
    return Generated(tile(to_uint8(x), side), time.perf_counter() - start)


def sample_grid(name: str, temperature: float, seed: int, side: int,
                digit: int | None = None) -> tuple[Generated | None, str | None]:
    """A `side x side` grid of samples at `temperature` (of one `digit`, for a class-conditional
    model); memoised per (model, T, seed, side, digit)."""
    flow, problem = catalogue.pretrained_flow(name)
    if flow is None:
        return None, problem
    side = max(1, min(int(side), limits.MAX_GRID_SIDE))
    return _sample_grid(flow, catalogue.model_key(name), round(float(temperature), 3), int(seed), side, digit), None


@st.cache_data(show_spinner=False, max_entries=128)
def _row(_flow: Any, key: str, temperatures: tuple[float, ...], seed: int, labels: tuple[int, ...] | None) -> Generated:
    start = time.perf_counter()
    images = []
    with torch.inference_mode():
        for i, temperature in enumerate(temperatures):
            generator = torch.Generator().manual_seed(seed)  # the same noise for every image
            y = None if labels is None else [labels[i]]
            images.append(_flow.sample(1, temperature=temperature, generator=generator, y=y))
    return Generated(tile(to_uint8(torch.cat(images)), len(images)), time.perf_counter() - start)


def temperature_row(name: str, seed: int, temperatures: tuple[float, ...],
                    digit: int | None = None) -> tuple[Generated | None, str | None]:
    """One image per temperature, all decoded from the same latent noise (the first of the grid
    with this `seed`): only the temperature changes along the row."""
    flow, problem = catalogue.pretrained_flow(name)
    if flow is None:
        return None, problem
    labels = None if digit is None else (int(digit),) * len(temperatures)
    return _row(flow, catalogue.model_key(name), tuple(float(t) for t in temperatures), int(seed), labels), None


def digit_row(name: str, temperature: float, seed: int) -> tuple[Generated | None, str | None]:
    """A class-conditional model's digits 0 to 9, one each, at `temperature` from the same noise."""
    flow, problem = catalogue.pretrained_flow(name)
    if flow is None:
        return None, problem
    if not getattr(flow, "classes", 0):
        return None, f"{catalogue.title(name)} is not class-conditional, so it cannot draw a chosen digit."
    labels = tuple(range(flow.classes))
    return _row(flow, catalogue.model_key(name), (round(float(temperature), 3),) * len(labels), int(seed), labels), None


# --- MNIST test digits and interpolation ------------------------------------------


def mnist_dir() -> Path:
    """`$FLOWCORE_DATA_DIR`, else the shared offline copy beside the checkout, else `./data`."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    shared = catalogue.ROOT.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else catalogue.ROOT / "data"


@st.cache_resource(show_spinner="Reading the MNIST test set ...", max_entries=2)
def _mnist_test(directory: str) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
    try:
        images, labels = load_mnist("test", directory, download=False)
        return images, labels, None
    except (DataNotFound, ValueError, OSError) as err:
        return None, None, str(err)


def mnist_test() -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
    """MNIST test images `(N, 1, 28, 28)` uint8 and labels, or `(None, None, reason)`."""
    return _mnist_test(str(mnist_dir()))


def digit_count() -> int:
    images, _, _ = mnist_test()
    return 0 if images is None else len(images)


def test_digit(index: int) -> tuple[torch.Tensor, int] | None:
    """Test image `index` `(1, 28, 28)` uint8 and its label: from the MNIST files, or, on a host
    without them, from the shipped gallery (None if it holds no such test image)."""
    images, labels, _ = mnist_test()
    if images is not None:
        return (images[index], int(labels[index])) if 0 <= index < len(images) else None
    images, labels, indices = gallery_digits()
    found = (indices == index).nonzero()
    return (images[int(found[0, 0])], int(labels[int(found[0, 0])])) if len(found) else None


def digit_label(index: int) -> int | None:
    digit = test_digit(index)
    return None if digit is None else digit[1]


def digit_image(index: int) -> np.ndarray | None:
    digit = test_digit(index)
    return None if digit is None else np.kron(digit[0][0].numpy(), np.ones((IMAGE_SCALE, IMAGE_SCALE), np.uint8))


def strip_columns(steps: int, most: int = 7) -> int:
    """Images per row of a strip: at most `most` (so each is over 100 px wide in a 1280 px window), rows as
    even as they can be (8 -> 4 + 4, 14 -> 7 + 7)."""
    return math.ceil(steps / math.ceil(steps / most))


@st.cache_data(show_spinner=False, max_entries=256)
def _strip(_flow: Any, key: str, ends: tuple[int, int] | None, seed: int, temperature: float,
           steps: int, path: str) -> Generated:
    start = time.perf_counter()
    with torch.inference_mode():
        if ends is not None:
            x = torch.stack([test_digit(i)[0] for i in ends]).float() + 0.5  # the centre of each pixel's bin
            z, _ = _flow.encode(x)
        else:
            generator = torch.Generator().manual_seed(seed)
            z = _flow.base.sample(2, temperature=temperature, generator=generator)
        x = _flow.decode(latent_paths.latent_path(z[0], z[1], steps, path))
    return Generated(tile(to_uint8(x), strip_columns(steps)), time.perf_counter() - start)


def interpolation_strip(name: str, ends: tuple[int, int] | None, steps: int, path: str,
                        seed: int = 0, temperature: float = 0.8) -> tuple[Generated | None, str | None]:
    """Decoded images along a latent path between two test digits (`ends` = their indices), or,
    with `ends=None`, between two random latents drawn at `temperature` with `seed`."""
    flow, problem = catalogue.pretrained_flow(name)
    if flow is None:
        return None, problem
    steps = max(2, min(int(steps), limits.MAX_INTERP_STEPS))
    missing = [i for i in ends or () if test_digit(i) is None]
    if missing:
        return None, f"Test image {missing[0]} is not available on this server, so it cannot be encoded."
    return _strip(flow, catalogue.model_key(name), ends, int(seed), float(temperature), steps, path), None


GALLERY = catalogue.ROOT / "dashboard" / "assets" / "mnist-gallery.npz"  # `python -m scripts.score_stats --gallery`


@st.cache_resource(show_spinner=False)
def gallery_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 300 MNIST test digits shipped with the app (30 of each class, for hosts without the MNIST
    files): images `(300, 1, 28, 28)` uint8, labels `(300,)`, and their indices in the test set."""
    with np.load(GALLERY, allow_pickle=False) as npz:
        images, labels, index = npz["images"], npz["labels"], npz["test_index"]
    return (torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64)),
            torch.from_numpy(index.astype(np.int64)))


def gallery_choice(per_class: int = 2) -> list[tuple[int, int, np.ndarray]]:
    """The first `per_class` gallery digits of each class, by class: (test index, label, image
    `(28, 28)` uint8). The same on every host, with or without the MNIST files."""
    images, labels, indices = gallery_digits()
    chosen = [i for digit in range(10) for i in (labels == digit).nonzero()[:per_class, 0].tolist()]
    return [(int(indices[i]), int(labels[i]), images[i, 0].numpy()) for i in chosen]
