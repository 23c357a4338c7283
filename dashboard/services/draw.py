"""Drawn 2-D data for Train live: the drawing window, strokes to points, points to CSV (no Streamlit).

The canvas (`streamlit-drawable-canvas`) is a fixed window of data space, `WINDOW` in both
coordinates, `CANVAS_PX` pixels square, with its axes drawn in the background image. A point
drawn at (1, -2) on those axes is (1, -2) in the data: drawn points are used as drawn, never
centred or rescaled (uploads are). What the canvas sends (Fabric.js objects) becomes points:

- a click or tap with the brush (freedraw mode, a path of length 0) is one point, where it was
  made; so is a click in point mode (the centre of the dot drawn; the canvas's point tool reacts
  to a mouse only, the brush to a mouse and a finger alike);
- a brush stroke becomes points along its path, one every `SPRAY_SPACING` units of its length,
  each moved by Gaussian noise of standard deviation `SPRAY_JITTER` in each coordinate, so a
  stroke is a band of points rather than a line; the noise is seeded by the stroke's place in
  the drawing, so the same drawing gives the same points.

Points that land outside the window (a stroke dragged past the edge) are moved onto its edge.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

WINDOW = (-4.0, 4.0)  # both coordinates, in data units
CANVAS_PX = 340  # the canvas is this many pixels square (fits a 390 px phone screen)
SPRAY_SPACING = 0.08  # data units of a stroke's length per point
SPRAY_JITTER = 0.06  # standard deviation of each point's offset from the stroke, data units
POINT_MODE, BRUSH_MODE = "point", "freedraw"


def to_data(px: np.ndarray, py: np.ndarray, size: int = CANVAS_PX) -> np.ndarray:
    """Canvas pixels (x right, y down, origin top left) -> data coordinates (x right, y up), (N, 2)."""
    lo, hi = WINDOW
    scale = (hi - lo) / size
    return np.stack([lo + np.asarray(px, float) * scale, hi - np.asarray(py, float) * scale], 1)


def to_canvas(points: np.ndarray, size: int = CANVAS_PX) -> np.ndarray:
    """Data coordinates (N, 2) -> canvas pixels (N, 2); the inverse of `to_data`."""
    lo, hi = WINDOW
    scale = size / (hi - lo)
    points = np.asarray(points, float)
    return np.stack([(points[:, 0] - lo) * scale, (hi - points[:, 1]) * scale], 1)


_ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


def _dot_centre(obj: dict[str, Any]) -> tuple[float, float]:
    """Centre of a Fabric.js circle (a click in point mode), in canvas pixels."""
    radius = float(obj.get("radius", 0)) + float(obj.get("strokeWidth", 0)) / 2
    w, h = 2 * radius * float(obj.get("scaleX", 1)), 2 * radius * float(obj.get("scaleY", 1))
    x = float(obj.get("left", 0)) + (0.5 - _ORIGIN.get(obj.get("originX", "left"), 0.0)) * w
    y = float(obj.get("top", 0)) + (0.5 - _ORIGIN.get(obj.get("originY", "top"), 0.0)) * h
    return x, y


def _path_vertices(obj: dict[str, Any]) -> np.ndarray:
    """The points a Fabric.js path passes through (end points of its commands), canvas pixels (K, 2)."""
    vertices = []
    for command in obj.get("path") or ():
        if isinstance(command, (list, tuple)) and len(command) >= 3:
            try:
                vertices.append((float(command[-2]), float(command[-1])))
            except (TypeError, ValueError):
                continue
    return np.array(vertices, float).reshape(-1, 2)


def spray(vertices: np.ndarray, seed: int) -> np.ndarray:
    """Points along the polyline `vertices` (data units, (K, 2)): one every `SPRAY_SPACING` of its
    length, each jittered by N(0, `SPRAY_JITTER`^2) per coordinate; a path of length 0 (a click) is
    its one point, as made."""
    if len(vertices) == 0:
        return np.zeros((0, 2))
    lengths = np.linalg.norm(np.diff(vertices, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    if along[-1] == 0:
        return vertices[:1].copy()
    n = max(1, int(math.floor(along[-1] / SPRAY_SPACING)) + 1)
    at = np.linspace(0.0, along[-1], n)
    base = np.stack([np.interp(at, along, vertices[:, 0]), np.interp(at, along, vertices[:, 1])], 1)
    return base + np.random.default_rng(seed).normal(0.0, SPRAY_JITTER, base.shape)


def stroke_points(obj: dict[str, Any], index: int, size: int = CANVAS_PX) -> np.ndarray:
    """The data points (N, 2) of one canvas object: a dot, a brush stroke, or nothing else."""
    kind = str(obj.get("type", "")).lower()
    if kind == "circle":
        return to_data(*np.array([_dot_centre(obj)]).T, size=size)
    if kind == "path":
        pixels = _path_vertices(obj)
        return spray(to_data(pixels[:, 0], pixels[:, 1], size=size), seed=index) if len(pixels) else np.zeros((0, 2))
    return np.zeros((0, 2))


def drawing_points(objects: Sequence[dict[str, Any]], size: int = CANVAS_PX) -> np.ndarray:
    """Every point of a drawing (the canvas's objects, in drawing order), float32 (N, 2), inside `WINDOW`."""
    parts = [stroke_points(obj, i, size) for i, obj in enumerate(objects) if isinstance(obj, dict)]
    points = np.concatenate(parts) if parts else np.zeros((0, 2))
    points = points[np.isfinite(points).all(1)]
    return np.clip(points, *WINDOW).astype(np.float32)


def points_csv(points: np.ndarray) -> bytes:
    """Points as a CSV with a header row, readable by the upload of Train live."""
    rows = "\n".join(f"{x:.4f},{y:.4f}" for x, y in np.asarray(points, float))
    return f"x,y\n{rows}\n".encode()


@functools.lru_cache(maxsize=2)
def axes_png(size: int = CANVAS_PX) -> bytes:
    """The canvas background: a light grid at every whole number, darker axes through 0, labels."""
    image = Image.new("RGB", (size, size), (250, 250, 252))
    draw = ImageDraw.Draw(image)
    lo, hi = int(WINDOW[0]), int(WINDOW[1])
    for v in range(lo, hi + 1):
        (x, _), = to_canvas(np.array([[v, 0.0]]), size)
        (_, y), = to_canvas(np.array([[0.0, v]]), size)
        colour = (120, 120, 130) if v == 0 else (222, 224, 230)
        draw.line([(x, 0), (x, size)], fill=colour, width=1)
        draw.line([(0, y), (size, y)], fill=colour, width=1)
        if v not in (lo, hi):
            (zx, zy), = to_canvas(np.array([[0.0, 0.0]]), size)
            draw.text((x + 2, zy + 2), str(v), fill=(90, 90, 100))  # x labels under the x axis
            if v != 0:
                draw.text((zx + 3, y - 12), str(v), fill=(90, 90, 100))  # y labels right of the y axis
    draw.text((size - 16, size / 2 - 14), "x1", fill=(60, 60, 70))  # the default font has no subscripts
    draw.text((size / 2 + 4, 2), "x2", fill=(60, 60, 70))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
