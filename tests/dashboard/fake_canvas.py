"""The browser's side of `streamlit-drawable-canvas`, for `AppTest` (which runs the component but
cannot draw on it).

The real component runs underneath, so Streamlit keeps and drops its state as in a browser. A
canvas that mounts (a new key, or back on the page after a run without it: Streamlit has then
dropped its state) shows its initial drawing and, on that run, returns it; the visitor's strokes
(`draw`, or `show` for what the canvas shows after its own toolbar's clear) are what it returns
on the runs after.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest


class FakeCanvas:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.key: str | None = None  # the canvas on the page
        self.shown: list[dict] = []  # what it shows
        self.mounts: list[tuple[str, list[dict]]] = []  # (key, initial objects) of every mount

    def __call__(self, *, key: str, initial_drawing: dict, **style: Any) -> Any:
        mounting = key != self.key or key not in st.session_state  # asked before the real one registers it
        result = self.real(key=key, initial_drawing=initial_drawing, **style)
        if mounting:
            self.key, self.shown = key, list(initial_drawing["objects"])
            self.mounts.append((key, list(self.shown)))
            return result  # its first answer: the initial drawing
        result.json_data = {"objects": list(self.shown)}
        return result

    def draw(self, *objects: dict) -> None:
        """Strokes or clicks added to what the canvas shows, as a visitor makes them."""
        self.shown = [*self.shown, *objects]

    def show(self, objects: list[dict]) -> None:
        """The canvas shows `objects` instead of what it showed."""
        self.shown = list(objects)


def install(monkeypatch: pytest.MonkeyPatch) -> FakeCanvas:
    """Put a `FakeCanvas` in the component's place. The component registers itself when it is
    imported, which it can only do during a run of an app: a one-line app imports it first."""
    AppTest.from_string("import streamlit_drawable_canvas").run()
    module = sys.modules["streamlit_drawable_canvas"]
    fake = FakeCanvas(module.st_canvas)
    monkeypatch.setattr(module, "st_canvas", fake)
    return fake
