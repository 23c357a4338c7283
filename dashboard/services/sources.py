"""Train live's data choices: the toy sets, the session's uploaded CSV and its drawing, and what
a link cannot carry.

This session's uploaded and drawn points live in `st.session_state` (keys `_flows_*`). A refused
upload or a drawing that cannot be used gets one sentence (`upload_error`, `draw_note`) and the
previous data stays. Parsing a CSV is `uploads.py`; drawings come from
`streamlit-drawable-canvas`, and turning its objects into points is `draw.py` (no Streamlit).
`kept_canvas` shows a canvas that keeps its drawing when it leaves the page and comes back; Score
draws its digit on one too. The fresh batches of the toy sets are drawn by the live run itself
(`live.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch

from dashboard.services import draw, limits, toy, uploads

UPLOAD = "upload"  # the data choice that means "the CSV this session uploaded"
DRAW = "draw"  # the data choice that means "the points drawn on the canvas"

_UPLOAD, _UPLOAD_ERROR, _UPLOADER, _DRAWN, _DRAWING, _DRAW_NOTE, _LINK_NOTE = (
    f"_flows_{k}" for k in ("upload", "upload_error", "uploader", "drawn", "drawing", "draw_note", "link_note"))


@dataclass
class Upload:
    name: str
    points: torch.Tensor  # centred and scaled (uploads) or as drawn (drawings), (N, 2)
    scale: float  # the original coordinates were divided by this (1 for drawings)
    drawn: bool = False


@dataclass
class Drawing:
    """A canvas's objects as last seen, kept in the session so that the canvas can show them again.

    The canvas forgets what is drawn on it whenever it leaves the page (another page, another data
    choice), and when its key changes; `kept_canvas` then mounts it with `objects` as its initial
    drawing. `version` is part of the key: a new one remounts the canvas (Clear, Undo). `initial`
    stays fixed while the canvas stays on the page: a canvas whose initial drawing changes redraws
    itself, and would drop a stroke made meanwhile."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0
    initial: list[dict[str, Any]] = field(default_factory=list)


def kept_canvas(kept: Drawing, name: str, **style: Any) -> list[dict[str, Any]] | None:
    """`st_canvas` (key `name` and `kept.version`) showing the drawing `kept`; returns the
    canvas's objects, or None when it sent none.

    Streamlit drops a widget's state when a run does not show it, so no state under the key means
    the canvas mounts now: its initial drawing is then what was drawn before. On that first run it
    returns the initial objects, which leave the drawing unchanged. Imported here, not at the top:
    the component registers itself with the running app."""
    from streamlit_drawable_canvas import st_canvas

    key = f"{name}_{kept.version}"
    if key not in _state():
        kept.initial = list(kept.objects)
    result = st_canvas(initial_drawing={"objects": kept.initial}, key=key, **style)
    raw = result.json_data if isinstance(result.json_data, dict) else {}
    objects = raw.get("objects")
    return [o for o in objects if isinstance(o, dict)] if isinstance(objects, list) else None


def _state() -> Any:
    return st.session_state


def upload() -> Upload | None:
    return _state().get(_UPLOAD)


def upload_error() -> str | None:
    return _state().get(_UPLOAD_ERROR)


def uploader_key() -> str:
    """The file uploader's key: a new one after a refused file, so the uploader forgets it and
    never shows a file that is not in use."""
    return f"upload_csv_{_state().get(_UPLOADER, 0)}"


def drawn() -> Upload | None:
    """The drawn points in use, if the visitor has drawn at least `limits.MIN_POINTS`."""
    return _state().get(_DRAWN)


def data_choices() -> list[str]:
    return [*toy.TOY_NAMES, DRAW, *([UPLOAD] if upload() is not None else [])]


def data_title(choice: str) -> str:
    return {UPLOAD: "Uploaded CSV", DRAW: "Draw your own"}.get(choice) or toy.TOY_TITLES.get(choice, choice)


def upload_summary() -> str | None:
    """One sentence about this session's uploaded points, if any."""
    u = upload()
    if u is None:
        return None
    return (f"Uploaded CSV: {u.name}, {len(u.points):,} points, centred and divided by {u.scale:.3g} "
            "(their spread) so that training is stable; the charts show these scaled coordinates.")


def on_upload(data_key: str) -> None:
    """Callback of the file uploader: parse, keep the points, select them; or keep the old data
    and give the uploader a new key (it then shows no file, as none of its files is in use)."""
    file = _state().get(uploader_key())
    if file is None:
        _state().pop(_UPLOAD_ERROR, None)
        return
    try:
        points = uploads.parse_points_csv(file.getvalue())
        centre = points.mean(0)
        scale = float((points - centre).std())
        if scale < 1e-6:
            raise ValueError("All points are the same.")
    except ValueError as err:
        _state()[_UPLOAD_ERROR] = f"{file.name} was not used: {err} The previous data stays."
        _state()[_UPLOADER] = _state().get(_UPLOADER, 0) + 1
        return
    _state().pop(_UPLOAD_ERROR, None)
    _state()[_LINK_NOTE] = None
    _state()[_UPLOAD] = Upload(file.name, ((points - centre) / scale).contiguous(), scale)
    _state()[data_key] = UPLOAD


def drawing() -> Drawing:
    d = _state().get(_DRAWING)
    if not isinstance(d, Drawing):
        d = _state()[_DRAWING] = Drawing()
    return d


def draw_note() -> str | None:
    """Why the current drawing is not (yet) the training set, in one sentence."""
    return _state().get(_DRAW_NOTE)


def use_drawing(objects: list[dict[str, Any]] | None) -> None:
    """The canvas's objects after a stroke: their points become the training set when there are
    `limits.MIN_POINTS` to `limits.MAX_POINTS` of them; otherwise one sentence says why not and
    the previous data stays. None (the canvas sent nothing) or an unchanged drawing does nothing."""
    if objects is not None and objects != drawing().objects:
        _apply_drawing(objects)


def _apply_drawing(objects: list[dict[str, Any]]) -> None:
    drawing().objects = objects
    points = draw.drawing_points(objects)
    if len(points) == 0:
        _state()[_DRAW_NOTE] = ("Nothing is drawn: click points or brush strokes on the canvas"
                                + (" (the previous drawing stays in use)." if drawn() is not None else "."))
    elif len(points) < limits.MIN_POINTS:
        _state()[_DRAW_NOTE] = (f"The drawing has {len(points)} point(s); at least {limits.MIN_POINTS} are "
                                "needed before it can be trained on"
                                + (", so the previous drawing stays in use." if drawn() is not None else "."))
    elif len(points) > limits.MAX_POINTS:
        _state()[_DRAW_NOTE] = (f"The drawing has {len(points):,} points, more than the {limits.MAX_POINTS:,} "
                                "allowed: undo the last stroke (the previous drawing stays in use).")
    else:
        _state().pop(_DRAW_NOTE, None)
        _state()[_LINK_NOTE] = None
        new = torch.from_numpy(points)
        if drawn() is None or not torch.equal(drawn().points, new):  # the same points: the run goes on
            _state()[_DRAWN] = Upload("drawing", new, 1.0, drawn=True)


def clear_drawing() -> None:
    """Empty the canvas (a new key remounts it); the drawn points in use stay until a new drawing
    has enough points."""
    drawing().version += 1
    _apply_drawing([])


def undo_stroke() -> None:
    """Remove the last click or stroke; the rest is trained on if it is still enough points."""
    drawing().version += 1
    _apply_drawing(drawing().objects[:-1])


def drawing_canvas(mode: str) -> list[dict[str, Any]] | None:
    """Train live's canvas, showing the kept drawing on the axes of `draw.WINDOW`; returns its objects."""
    return kept_canvas(drawing(), "draw_canvas", fill_color="#F58518", stroke_color="#D4580A",
                       stroke_width=5 if mode == draw.BRUSH_MODE else 1, point_display_radius=3,
                       background_image=draw.axes_png(), height=draw.CANVAS_PX, width=draw.CANVAS_PX,
                       drawing_mode=mode)


def drawn_csv() -> bytes | None:
    d = drawn()
    return None if d is None else draw.points_csv(d.points.numpy())


def link_note(requested: str | None) -> str | None:
    """What a shared link asked for that it cannot carry (uploaded or drawn points), in one
    sentence; `requested` is the address's `data` value. Only the session's first visit to the
    page is a link being opened; the note stays until other points are uploaded or drawn."""
    if _LINK_NOTE not in _state():
        _state()[_LINK_NOTE] = None
        requested = {data_title(c): c for c in (UPLOAD, DRAW)}.get(requested or "", requested)  # the address
        if requested in (UPLOAD, DRAW):                                                     # holds titles
            what, again = (("uploaded points", "the page starts from two moons instead. Upload the CSV again "
                             "to train on it.") if requested == UPLOAD else
                           ("drawn points", "draw them again, or upload the CSV that was downloaded under the "
                            "canvas."))
            _state()[_LINK_NOTE] = (f"This link was made with {what}, which a link cannot carry (nor a trained "
                                    f"model): {again}")
    return _state().get(_LINK_NOTE)


def source(data: str) -> Upload | None:
    """The uploaded or drawn points that data choice `data` stands for (None: a toy set, or not there)."""
    return upload() if data == UPLOAD else drawn() if data == DRAW else None
