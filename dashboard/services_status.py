"""Train live's status line and step budget, as pure functions of the run's numbers (no Streamlit).

The status line reads the held-out NLL curve (measured every few steps on points the model
never trains on) the way a person would:

- **learning**: the held-out NLL is still going down;
- **settled**: over the last `SETTLE_STEPS` steps it moved by less than `SETTLE_NATS`;
- **memorising the training points**: it has stayed more than `RISE_NATS` above its lowest
  value for the last `RISE_STEPS` steps, i.e. the model fits the training points better and
  new points from the same data worse (overfitting). Only finite data sets (uploads,
  drawings) can do this; the toy sets draw a fresh batch every step.

Step budget: training pauses by itself after `services.MAX_STEPS_UNATTENDED` steps without a
click (Play, Step, Reset, Start race), so a forgotten tab stops; any of those clicks shows
that someone is there and grants a fresh budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RISE_NATS = 0.05  # held-out NLL this far above its lowest value counts as rising ...
RISE_STEPS = 200  # ... when it has stayed there for this many steps
SETTLE_NATS = 0.05  # held-out NLL moving less than this ...
SETTLE_STEPS = 500  # ... over this many steps counts as settled

RULE = (f"The status reads the held-out NLL (points never trained on). **Memorising**: it has stayed more "
        f"than {RISE_NATS} nats above its lowest value for the last {RISE_STEPS} steps while training goes "
        f"on: the model fits its training points better and new points worse. **Settled**: it moved by "
        f"less than {SETTLE_NATS} nats over the last {SETTLE_STEPS} steps. **Learning**: otherwise.")


@dataclass(frozen=True)
class Status:
    """What the status line says: `kind` is "waiting", "learning", "settled" or "memorising"."""

    kind: str
    text: str
    since: int | None = None  # memorising: the step of the lowest held-out NLL


def fit_status(evals: Sequence[tuple[int, float]]) -> Status:
    """The status of a run from its held-out NLL curve `evals` ((step, NLL), steps increasing).

    Non-finite values (a diverged step) are skipped."""
    curve = [(s, v) for s, v in evals if math.isfinite(v)]
    if not curve:
        return Status("waiting", "not started: press Play or Step")
    last_step = curve[-1][0]
    best_step, best = min(curve, key=lambda sv: (sv[1], sv[0]))
    recent = [v for s, v in curve if s > last_step - RISE_STEPS]
    if last_step - best_step >= RISE_STEPS and min(recent) > best + RISE_NATS:
        return Status("memorising", f"memorising the training points (held-out NLL rising since step "
                                    f"{best_step:,})", since=best_step)
    window = [v for s, v in curve if s >= last_step - SETTLE_STEPS]
    if curve[0][0] <= last_step - SETTLE_STEPS and max(window) - min(window) < SETTLE_NATS:
        return Status("settled", f"settled (held-out NLL within {SETTLE_NATS} nats over the last "
                                 f"{SETTLE_STEPS} steps)")
    return Status("learning", "learning")


def pause_step(step: int, steps_left: int) -> int:
    """The step at which Play pauses by itself, `steps_left` steps of the budget after `step`."""
    return step + max(0, steps_left)
