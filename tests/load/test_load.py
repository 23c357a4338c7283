"""Many visitors at once (`tests/load/run.py`): at least 8 real browser sessions for 60 s.

The load test itself is marked `load`, so the default run leaves it out; `python -m tests.load.run`
runs the same and writes its figures to RELIABILITY.md. The quick tests below check, without a
browser, how a visitor reads Train live's step budget.
"""

from __future__ import annotations

import pytest

from dashboard.services import limits, status
from devtools.browser import CHROMIUM
from tests.load.run import DURATION_S, MAX_RSS_MB, SESSIONS, markdown, run
from tests.load.visitor import BUDGET, PAUSE_AT, Record, Visitor, budget


def _seen(step: int, pause_at: int | None) -> dict:
    caption = ("Held-out NLL: lower is better. " + (
        f"Play pauses by itself at step {pause_at:,}; a click on Step, or on Pause and then Play, grants "
        f"{BUDGET:,} more steps." if pause_at is not None else
        f"Play runs up to {BUDGET:,} steps after your last click, then pauses by itself."))
    return {"step": step, "text": f"Step {step:,}\n{caption}"}


def _record() -> Record:
    return Record(Visitor.make(0), 1188, 3)


def test_the_pause_step_matches_the_caption_train_live_writes() -> None:
    assert BUDGET == limits.MAX_STEPS_UNATTENDED == 20_000
    shown = f"Play pauses by itself at step {status.pause_step(1234, BUDGET - 1234):,}; a click on Step"
    assert PAUSE_AT.search(shown).group(1) == "20,000"


def test_a_budget_that_counts_only_this_sessions_steps_passes() -> None:
    record = _record()
    budget(_seen(8837, BUDGET), record)
    assert record.problems == [] and (record.steps_used, record.steps_used_at) == (8837, 8837)
    budget(_seen(9000, None), record)  # paused: no pause step shown, the last reading stays
    assert record.problems == [] and record.steps_used == 8837


def test_a_budget_that_counts_other_sessions_or_misses_steps_is_a_problem() -> None:
    shared = _record()
    budget(_seen(300, BUDGET - 2_100), shared)  # 2,400 counted for 300 trained: other sessions' steps
    assert shared.steps_used == 2_400 and "counts 2,400 steps used, not the 300" in shared.problems[0]
    missed = _record()
    budget(_seen(300, BUDGET + 11), missed)  # 11 steps trained but not counted
    assert missed.steps_used == 289 and len(missed.problems) == 1
    past = _record()
    budget(_seen(20_005, BUDGET), past)
    assert any("past the step 20,000" in p for p in past.problems)


@pytest.mark.load
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_many_visitors_train_at_once_without_errors_or_crossed_sessions() -> None:
    result = run()
    print("\n" + markdown(result))
    assert result["sessions"] == SESSIONS >= 8 and result["duration_s"] >= DURATION_S
    assert result["problems"] == []
    assert result["held"] == SESSIONS
    for row in result["rows"]:  # every session did train, scrub and sample, and was checked while playing
        assert 0 < row["steps_used"] == row["steps_used_at"] <= row["steps"], row
        assert row["layer_moves"] > 0 and len(row["temperature_s"]) == 2, row
        assert len(row["score_s"]) == (row["session"] % 2), row  # every other visitor (index 0, 2, ...) scores
    assert 0 < result["peak_rss_mb"] <= MAX_RSS_MB
