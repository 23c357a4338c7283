"""Per-session caps (README, "Limits per browser session"): Play pauses by itself after a budget
of steps without a click and any click grants a new one; a session runs one training loop at a
time. The caps on points and upload bytes are checked with the uploads (`test_services.py`,
`test_uploads.py`)."""

from __future__ import annotations

from dashboard.services import limits, loops
from tests.dashboard.conftest import click, open_page, run_until, shown_step, texts

PAGE = "views/train.py"


def test_play_pauses_after_the_budget_and_a_click_goes_on(monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_STEPS_UNATTENDED", 5)
    at = open_page(PAGE)
    for _ in range(3):
        click(at, "step")
    click(at, "reset")  # a fresh model, and a click: a fresh budget
    click(at, "play")
    run_until(at, lambda at: not at.session_state[loops.LIVE_KEY].playing)  # it stops by itself
    at.run()
    assert shown_step(at) == 5
    assert "Paused by itself at step 5: 5 steps ran without a click" in texts(at)
    assert not at.button(key="play").disabled and not at.button(key="step").disabled  # no reload needed
    click(at, "play")  # someone is there: 5 more
    run_until(at, lambda at: not at.session_state[loops.LIVE_KEY].playing)
    at.run()
    assert shown_step(at) == 10 and "Paused by itself at step 10" in texts(at)
    click(at, "step")  # a click too
    assert shown_step(at) == 11 and "Paused by itself" not in texts(at)


def test_one_training_loop_per_session() -> None:
    at = open_page(PAGE)
    click(at, "play")
    assert at.session_state[loops.LIVE_KEY].playing
    at.switch_page("views/compare.py").run()
    click(at, "race_start")
    assert at.session_state[loops.RACE_KEY].running
    assert not at.session_state[loops.LIVE_KEY].playing  # the race paused the live run
    assert not at.session_state[loops.LIVE_KEY].background.running()  # and its thread had stopped first
    at.switch_page(PAGE).run()
    click(at, "play")
    assert at.session_state[loops.LIVE_KEY].playing and not at.session_state[loops.RACE_KEY].running
    assert not at.session_state[loops.RACE_KEY].background.running()
