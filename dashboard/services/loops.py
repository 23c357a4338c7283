"""The session's two training loops, Train live's run and Compare's race: one at a time, and the
step budget they share.

Every optimisation step of either loop counts towards `limits.MAX_STEPS_UNATTENDED`, the steps a
session may train after its last click on Play, Step, Reset or Start race (`status.py` and the
pages say so). Each such click claims its loop (`claim_loop`): the other loop pauses, while a
session may run one at a time (`limits.MAX_TRAINING_LOOPS`), and the click grants a fresh budget.
Both loops train on a thread of their own (`dashboard/background.py`), which must not touch
`st.session_state`: the count is one mutable object that a thread fetches once (`step_count`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import streamlit as st

from dashboard.services import limits

LIVE_KEY, RACE_KEY, STEPS_KEY = "_flows_run", "_flows_race", "_flows_steps_used"  # keys in st.session_state
IDLE_STOP_S = 2.0  # a loop pauses when no redraw came for this long (tab closed, or throttled)
ROLLBACK_EVERY = 20  # both loops' trainers snapshot the model every 20 steps and restore it on divergence


class Loop(Protocol):
    def stop(self) -> None:
        """Pause, and return once the loop's thread has finished the step it is in."""


def _state() -> Any:
    return st.session_state


@dataclass
class StepCount:
    """Steps this session has trained, kept in one mutable object: training fetches it once,
    so counting never touches `st.session_state` (where a click can stop the script between
    a finished step and its bookkeeping, and the step would go uncounted)."""

    used: int = 0


def step_count() -> StepCount:
    """This session's step count; training loops fetch it once and add to `.used` after each step."""
    count = _state().get(STEPS_KEY)
    if not isinstance(count, StepCount):
        count = _state()[STEPS_KEY] = StepCount()
    return count


def steps_used() -> int:
    return step_count().used


def steps_left() -> int:
    """Steps this session may still train before Play (or the race) pauses by itself."""
    return max(0, limits.MAX_STEPS_UNATTENDED - steps_used())


def claim_loop(name: str) -> None:
    """Before loop `name` ("live" or "race") starts after a click: stop it, and while a session runs
    one loop at a time the other one too, each thread having finished its last step when this returns
    (so two threads never share the session's step count); then the click grants a fresh budget."""
    for other, key in (("live", LIVE_KEY), ("race", RACE_KEY)):
        loop: Loop | None = _state().get(key)
        if loop is not None and (other == name or limits.MAX_TRAINING_LOOPS < 2):
            loop.stop()
    step_count().used = 0
