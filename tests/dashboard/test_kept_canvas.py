"""A drawing survives the canvas leaving the page: Score's and Train live's canvases, after a visit
to another page (or, on Train live, another data choice), show what was drawn, add new strokes to
it, and keep the digit or points in use without a warning."""

from __future__ import annotations

import pytest

from dashboard.services import loops, sources
from tests.dashboard import fake_canvas
from tests.dashboard.conftest import click, open_page, shown_step, texts
from tests.dashboard.fake_canvas import FakeCanvas
from tests.dashboard.test_draw import circle_of_dots, dot
from tests.dashboard.test_score import bits_shown, stroke

TRAIN, SCORE, HOME = "views/train.py", "views/score.py", "views/home.py"


@pytest.fixture
def canvas(monkeypatch: pytest.MonkeyPatch) -> FakeCanvas:
    return fake_canvas.install(monkeypatch)


def away_and_back(at, page: str) -> None:
    at.switch_page(HOME).run()
    assert not at.exception
    at.switch_page(page).run()
    assert not at.exception


def dots_drawn_on_train_live(canvas: FakeCanvas, n: int) -> tuple[object, list]:
    """Train live with "Draw" chosen and `n` dots drawn on its canvas: (the app, the dots)."""
    at = open_page(TRAIN)
    at.selectbox(key="data").set_value(sources.DRAW).run()
    drawing = circle_of_dots(n)
    canvas.draw(*drawing)
    at.run()
    return at, drawing


def digit_shown(at) -> tuple[str, list[float]]:
    """What Score says of the digit it scores: its caption and each model's bits/dim."""
    return at.get("image")[0].captions[-1], bits_shown(at)


def test_score_keeps_the_drawing_across_pages(canvas: FakeCanvas) -> None:
    at = open_page(SCORE)
    seven = stroke([(70, 60), (200, 60), (120, 230)])
    canvas.draw(seven)
    at.run()
    assert not at.exception and digit_shown(at)[0] == "28 x 28, as MNIST: your drawing"
    before = digit_shown(at)
    away_and_back(at, SCORE)
    assert canvas.shown == [seven] and canvas.mounts[-1][1] == [seven]  # mounted again with the stroke
    assert not at.warning and digit_shown(at) == before  # the same digit, nothing blamed on the visitor
    bar = stroke([(60, 140), (220, 140)])
    canvas.draw(bar)  # a new stroke adds to the old drawing
    at.run()
    assert not at.warning and digit_shown(at)[0].endswith("your drawing") and digit_shown(at) != before
    at.run()  # a rerun leaves the canvas on the page as it is
    assert canvas.mounts[-1][1] == [seven] and canvas.shown == [seven, bar]


def test_score_after_clear_comes_back_empty_with_the_digit_kept(canvas: FakeCanvas) -> None:
    at = open_page(SCORE)
    canvas.draw(stroke([(70, 60), (200, 60), (120, 230)]))
    at.run()
    before = digit_shown(at)
    click(at, "score_clear")
    assert canvas.shown == []
    away_and_back(at, SCORE)
    assert canvas.shown == [] and not at.warning and digit_shown(at) == before
    assert "the digit scored stays until your next stroke" in texts(at)  # the page says why it is still there


def test_train_live_keeps_the_drawing_and_its_run_across_pages(canvas: FakeCanvas) -> None:
    at, drawing = dots_drawn_on_train_live(canvas, 30)
    click(at, "step")
    run = at.session_state[loops.LIVE_KEY]
    away_and_back(at, TRAIN)
    assert canvas.shown == drawing and canvas.mounts[-1][1] == drawing
    assert not at.warning and "In use: your drawing, 30 points" in texts(at)
    assert at.session_state[loops.LIVE_KEY] is run and shown_step(at) == 1  # the same run goes on
    canvas.draw(dot(0, 0))
    at.run()
    assert not at.warning and "In use: your drawing, 31 points" in texts(at)


def test_train_live_keeps_the_drawing_under_another_data_choice(canvas: FakeCanvas) -> None:
    at, drawing = dots_drawn_on_train_live(canvas, 25)
    at.selectbox(key="data").set_value("moons").run()
    at.selectbox(key="data").set_value(sources.DRAW).run()
    assert not at.exception
    assert canvas.shown == drawing and not at.warning and "In use: your drawing, 25 points" in texts(at)
    canvas.draw(dot(1, 1))
    at.run()
    assert "In use: your drawing, 26 points" in texts(at)
