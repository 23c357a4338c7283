"""A visitor's digit, drawn or uploaded, made MNIST-like (no Streamlit).

Images become 28x28 8-bit digits the way MNIST's were made (LeCun et al.): the ink's bounding box
is fitted into a 20x20 box keeping its aspect ratio (anti-aliased), and placed in 28x28 so that its
centre of mass is at the centre. Uploads are checked before they are decoded (size, pixel count,
format), photos of dark ink on light paper are inverted, and transparent pixels are background:
composited on white behind dark ink and on black behind light ink (the mean brightness of the
opaque pixels decides). Every refusal is one sentence (`ValueError`).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CANVAS_PX = 280  # the drawing canvas, pixels square (fits a 390 px phone screen)
BRUSH_PX = 20  # brush width on the canvas: about 2 pixels of a 28x28 digit once fitted into 20x20
MAX_IMAGE_BYTES = 10_000_000  # one uploaded image
MAX_IMAGE_SIDE = 4000  # pixels, either side, read from the header before anything is decoded
FORMATS = ("PNG", "JPEG")
BOX, SIDE = 20, 28  # MNIST: the digit fits a 20x20 box inside a 28x28 image
INK = 0.5  # grey level (of 255) above which a pixel counts as ink for the bounding box


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
