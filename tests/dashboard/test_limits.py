"""Per-session caps (README, "Limits per browser session"): the step budget holds across resets
and training alike, and a session runs one training loop at a time. The caps on points and
upload bytes are checked with the uploads (`test_services.py`, `test_uploads.py`)."""

from __future__ import annotations

import services
import services_train as live

from tests.dashboard.conftest import click, open_page, run_until, shown_step, texts

PAGE = "views/train.py"


def test_the_step_budget_holds_across_resets_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(services, "MAX_STEPS_PER_SESSION", 5)
    at = open_page(PAGE)
    for _ in range(3):
        click(at, "step")
    click(at, "reset")  # a fresh model, but not a fresh budget
    click(at, "play")
    run_until(at, lambda at: not at.session_state[live._RUN].playing)  # it stops by itself
    at.run()
    assert shown_step(at) == 2
    assert at.session_state[live._RUN].playing is False
    assert at.button(key="play").disabled and at.button(key="step").disabled
    assert "This session has used all 5 training steps" in texts(at)


def test_one_training_loop_per_session() -> None:
    at = open_page(PAGE)
    click(at, "play")
    assert at.session_state[live._RUN].playing
    at.switch_page("views/compare.py").run()
    click(at, "race_start")
    assert at.session_state[live.RACE_KEY].running
    assert not at.session_state[live._RUN].playing  # the race paused the live run
    assert not at.session_state[live._RUN].background.running()  # and its thread had stopped first
    at.switch_page(PAGE).run()
    click(at, "play")
    assert at.session_state[live._RUN].playing and not at.session_state[live.RACE_KEY].running
    assert not at.session_state[live.RACE_KEY].background.running()
