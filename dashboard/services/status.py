"""Train live's status line and step budget, as pure functions of the run's numbers (no Streamlit).

The status line reads the held-out NLL curve (measured every few steps on points the model
never trains on) the way a person would, through its median over the last `WINDOW_STEPS` steps
(one noisy measurement moves a median little; held-out NLLs of small sets jump by 0.05 nats
from one measurement to the next):

- **failing**: the median is more than `FAIL_NATS` above the held-out NLL of the same model
  before its first step: training made it worse than where it started (a learning rate far
  too high does this; a finite data set that is being memorised is called memorising instead);
- **learning**: the held-out NLL is still going down;
- **settled**: the lowest median of the last `SETTLE_STEPS` steps is less than `SETTLE_NATS`
  below the lowest one before them: no real progress any more;
- **memorising the training points**: the median now is more than `RISE_NATS` above its lowest
  value, reached at least `WINDOW_STEPS` steps ago, i.e. the model fits the training points
  better and new points from the same data worse (overfitting). Only finite data sets
  (uploads, drawings) are read this way; the toy sets draw a fresh batch every step, so a rise
  there is not memorising.

Step budget: training pauses by itself after `limits.MAX_STEPS_UNATTENDED` steps without a
click (Play, Step, Reset, Start race), so a forgotten tab stops; any of those clicks shows
that someone is there and grants a fresh budget.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_STEPS = 200  # the held-out NLL is read as its median over this many steps
RISE_NATS = 0.1  # a median this far above the lowest one counts as memorising
SETTLE_NATS = 0.05  # the lowest median improving by less than this ...
SETTLE_STEPS = 500  # ... over this many steps counts as settled
FAIL_NATS = 1.0  # a median this far above the untrained model's held-out NLL counts as failing

RULE = (f"The status reads the held-out NLL (points never trained on) as its median over the last "
        f"{WINDOW_STEPS} steps. **Failing**: that median is more than {FAIL_NATS:g} nat above the untrained "
        f"model's, so training made the model worse than where it started (a learning rate far too high). "
        f"**Memorising** (uploaded or drawn points only: the toy sets draw fresh points every step): that "
        f"median is more than {RISE_NATS} nats above its lowest "
        f"value, reached at least {WINDOW_STEPS} steps ago, while training goes on: the model fits its training "
        f"points better and new points worse. **Settled**: the last {SETTLE_STEPS} steps lowered it by less "
        f"than {SETTLE_NATS} nats (no more real progress). **Learning**: otherwise.")


_LOWER = "choose a lower learning rate (that starts a fresh model)"


@dataclass(frozen=True)
class Status:
    """What the status line says: `kind` is "waiting", "failing", "learning", "settled" or "memorising"."""

    kind: str
    text: str
    since: int | None = None  # memorising: the step of the lowest held-out NLL


def fit_status(evals: Sequence[tuple[int, float]], step: int = 0, start: float | None = None,
               finite: bool = True) -> Status:
    """The status of a run at `step` from its held-out NLL curve `evals` ((step, NLL), steps
    increasing) and `start`, the held-out NLL of the model before its first step. `finite`: the
    run trains on a finite set of points (uploaded or drawn), the only kind it can memorise.
    Non-finite values (a diverged step) are skipped."""
    curve = [(s, v) for s, v in evals if math.isfinite(v)]
    if not curve:
        if step > 0 and evals:  # measured, never finite: the model gives held-out points no density
            return Status("failing", "failing: the held-out NLL is not a finite number; " + _LOWER)
        return Status("learning", "learning") if step > 0 else Status("waiting", "not started: press Play or Step")
    steps, values = [st for st, _ in curve], [v for _, v in curve]
    smooth = [(st, statistics.median(values[bisect.bisect_right(steps, st - WINDOW_STEPS):i + 1]))
              for i, st in enumerate(steps)]
    last_step, now = smooth[-1]
    best_step, best = min(smooth, key=lambda sv: (sv[1], sv[0]))
    if finite and last_step - best_step >= WINDOW_STEPS and now > best + RISE_NATS:
        lowest = min(curve, key=lambda sv: (sv[1], sv[0]))[0]  # where the rise began: the lowest measurement
        return Status("memorising", f"memorising the training points (held-out NLL rising since step "
                                    f"{lowest:,})", since=lowest)
    if start is not None and math.isfinite(start) and now > start + FAIL_NATS:
        return Status("failing", f"failing: held-out NLL {now:,.2f} (median of the last {WINDOW_STEPS} steps), "
                                 f"worse than the untrained model's {start:,.2f}; " + _LOWER)
    before = [v for st, v in smooth if st <= last_step - SETTLE_STEPS]
    if before and min(v for st, v in smooth if st > last_step - SETTLE_STEPS) > min(before) - SETTLE_NATS:
        return Status("settled", f"settled (held-out NLL improved by less than {SETTLE_NATS} nats over the "
                                 f"last {SETTLE_STEPS} steps)")
    return Status("learning", "learning")


def pause_step(step: int, steps_left: int) -> int:
    """The step at which Play pauses by itself, `steps_left` steps of the budget after `step`."""
    return step + max(0, steps_left)
