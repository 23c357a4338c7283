"""Draw your own data: canvas objects to points (pure), and the Draw source of Train live (AppTest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.services import draw, limits, loops, sources, uploads
from tests.dashboard import fake_canvas
from tests.dashboard.conftest import click, open_page, shown_step, texts
from tests.dashboard.fake_canvas import FakeCanvas

PAGE = "views/train.py"


def dot(x: float, y: float, radius: float = 3, stroke: float = 1) -> dict:
    """The Fabric.js circle the canvas's point tool makes for a click at data point (x, y)."""
    (px, py), = draw.to_canvas(np.array([[x, y]]))
    return {"type": "circle", "left": px - radius - stroke / 2, "top": py, "radius": radius,
            "strokeWidth": stroke, "originX": "left", "originY": "center", "scaleX": 1, "scaleY": 1}


def stroke(*points: tuple[float, float]) -> dict:
    """A freedraw path through data points `points` (canvas pixels in the path, as Fabric.js sends)."""
    pixels = draw.to_canvas(np.array(points, float))
    path = [["M", *pixels[0]]] + [["Q", *pixels[i - 1], *pixels[i]] for i in range(1, len(pixels) - 1)]
    return {"type": "path", "path": path + [["L", *pixels[-1]]], "left": 0, "top": 0}


def test_a_point_drawn_at_1_minus_2_is_1_minus_2_in_the_data() -> None:
    points = draw.drawing_points([dot(1, -2), dot(-4, 4), dot(0, 0)])
    np.testing.assert_allclose(points, [[1, -2], [-4, 4], [0, 0]], atol=1e-5)
    np.testing.assert_allclose(draw.to_data(*draw.to_canvas(points).T), points, atol=1e-5)  # the inverse


def test_a_stroke_sprays_points_along_its_path_with_the_documented_jitter() -> None:
    line = stroke((-3, 0), (0, 0), (3, 0))  # 6 units long
    points = draw.drawing_points([line] * 50)  # 50 strokes, each seeded by its place: different noise
    per_stroke = len(points) // 50
    assert per_stroke == int(6 / draw.SPRAY_SPACING) + 1
    assert points[:, 0].min() < -2.9 and points[:, 0].max() > 2.9  # spread along the whole path
    assert abs(points[:, 1].std() - draw.SPRAY_JITTER) < 0.1 * draw.SPRAY_JITTER  # Gaussian jitter across it
    assert abs(points[:, 1].mean()) < 0.01
    again = draw.drawing_points([line] * 50)
    np.testing.assert_array_equal(points, again)  # the same drawing gives the same points


def test_a_click_in_brush_mode_is_one_point_where_it_was_made_and_other_shapes_none() -> None:
    np.testing.assert_allclose(draw.drawing_points([stroke((1, -2), (1, -2))]), [[1, -2]], atol=1e-5)
    assert draw.drawing_points([{"type": "rect", "left": 1, "top": 1}, "junk", {"type": "path"}]).shape == (0, 2)


def test_points_outside_the_window_land_on_its_edge() -> None:
    points = draw.drawing_points([dot(9, -9)])
    np.testing.assert_allclose(points, [[4, -4]])


def test_drawn_points_survive_their_csv() -> None:
    points = draw.drawing_points([dot(x, y) for x, y in np.random.default_rng(0).uniform(-4, 4, (30, 2))])
    back = uploads.parse_points_csv(draw.points_csv(points))
    np.testing.assert_allclose(back.numpy(), points, atol=1e-4)


def circle_of_dots(n: int, radius: float = 2.0) -> list[dict]:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [dot(radius * np.cos(a), radius * np.sin(a) - 1) for a in angles]


@pytest.fixture
def canvas(monkeypatch: pytest.MonkeyPatch) -> FakeCanvas:
    """Stands in for the browser's side of the canvas (AppTest cannot click it)."""
    return fake_canvas.install(monkeypatch)


def test_drawn_points_are_the_training_set_as_drawn(canvas: FakeCanvas) -> None:
    at = open_page(PAGE)
    click(at, "step")
    at.selectbox(key="data").set_value(sources.DRAW).run()
    assert not at.exception
    assert "Until the drawing has 20 points" in texts(at) and shown_step(at) == 1  # the old run stays
    canvas.show(circle_of_dots(30))
    at.run()
    assert not at.exception
    assert "In use: your drawing, 30 points" in texts(at) and shown_step(at) == 0  # a new model on them
    run = at.session_state[loops.LIVE_KEY]
    drawn = torch.tensor(draw.drawing_points(canvas.shown))
    assert len(run.train) + len(run.held_out) == 30 and len(run.held_out) == 6
    assert all((drawn == p).all(1).any() for p in torch.cat([run.train, run.held_out]))  # as drawn, unscaled
    assert (run.bounds.x0, run.bounds.x1, run.bounds.y0, run.bounds.y1) == (-4, 4, -4, 4)
    for _ in range(3):
        click(at, "step")
    assert shown_step(at) == 3
    assert run.trainer.train_data.shape == (24, 2)
    assert at.get("download_button")[0].proto.disabled is False


def test_too_few_or_no_points_get_one_sentence_and_the_previous_data_stays(canvas: FakeCanvas) -> None:
    at = open_page(PAGE)
    at.selectbox(key="data").set_value(sources.DRAW).run()
    canvas.show(circle_of_dots(25))
    at.run()
    click(at, "step")
    assert "In use: your drawing, 25 points" in texts(at) and shown_step(at) == 1
    canvas.show(circle_of_dots(7))  # a new, smaller drawing (as after Clear)
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["The drawing has 7 point(s); at least 20 are needed before it can be "
                                             "trained on, so the previous drawing stays in use."]
    assert "In use: your drawing, 25 points" in texts(at) and shown_step(at) == 1
    canvas.show([])
    at.run()
    assert "Nothing is drawn" in at.warning[0].value and shown_step(at) == 1
    canvas.show(circle_of_dots(limits.MAX_POINTS + 1, radius=3))
    at.run()
    assert "more than the 5,000 allowed" in at.warning[0].value and shown_step(at) == 1


def test_undo_and_clear(canvas: FakeCanvas) -> None:
    at = open_page(PAGE)
    at.selectbox(key="data").set_value(sources.DRAW).run()
    canvas.show(circle_of_dots(21))
    at.run()
    assert "In use: your drawing, 21 points" in texts(at)
    click(at, "draw_undo")
    assert "In use: your drawing, 20 points" in texts(at) and not at.warning
    click(at, "draw_undo")
    assert "The drawing has 19 point(s)" in at.warning[0].value
    assert "In use: your drawing, 20 points" in texts(at)
    assert canvas.shown == circle_of_dots(21)[:19]  # remounted with the rest of the drawing
    click(at, "draw_clear")
    assert "Nothing is drawn" in at.warning[0].value and "In use: your drawing, 20 points" in texts(at)
    assert canvas.shown == []
