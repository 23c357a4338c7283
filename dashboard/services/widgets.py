"""Widget values that the services set or guard, and the callbacks that set them.

A value written to `st.session_state[key]` is imposed on the browser's widget `key` at the next
run, so these write only when a value must change: a click's callback, a value another page left
that this page's widget cannot take, or a remembered value out of a widget's new range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st


def _state() -> Any:
    return st.session_state


def keep_option(key: str, options: Any, page: str) -> None:
    """Before widget `key` of `page` is drawn: if the session remembers a value for it that is not
    one of `options` (another page's), put back the value this page last had, else forget it.

    Train live and Sample both have a "model" selectbox (so both links read ?model=...), and a session
    keeps one value per key across pages. Their ids differ ("nice" for Train live's family, "nice-mnist"
    for Sample's checkpoint) but their titles agree, and a selectbox accepts any value whose title is
    among its options: without this, Sample would look for a pretrained "nice" ("not in the manifest")
    and Train live, back from Sample, would start a new run for "nice-mnist". Pair with `remember`."""
    state = _state()
    own = state.get(f"_{page}_{key}")
    if key in state and state[key] not in list(options):
        if own in list(options):
            state[key] = own
        else:
            del state[key]


def remember(key: str, value: Any, page: str) -> None:
    """Note `value` as widget `key`'s value on `page` (for `keep_option`)."""
    _state()[f"_{page}_{key}"] = value


def keep_in_range(key: str, low: int, high: int) -> None:
    """Clamp a widget's remembered value before it is drawn (e.g. the layer slider after the
    model got shallower), since Streamlit rejects a remembered value outside the new range.

    Writes only a value that is out of range: rewriting it on every timed redraw of the layer
    scrubber (every second while training) could put back the old layer over a move the visitor
    had just made."""
    value = _state().get(key)
    if isinstance(value, int) and not low <= value <= high:
        _state()[key] = min(max(value, low), high)


def next_number(key: str) -> None:
    """Callback: add one to a number input."""
    _state()[key] = int(_state().get(key, 0)) + 1


def set_number(key: str, value: int) -> None:
    """Callback: put `value` into the number input `key` (a gallery click)."""
    _state()[key] = int(value)


def random_pair(key_a: str, key_b: str, high: int | list[int]) -> None:
    """Callback: put two different random indices below `high` (or two of a list of indices)
    into two number inputs."""
    a, b = np.random.default_rng().choice(high, size=2, replace=False)
    _state()[key_a], _state()[key_b] = int(a), int(b)
