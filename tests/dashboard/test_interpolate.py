"""Interpolate: strips for every model between test digits (MNIST or the shipped gallery), and 2-D paths."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import MNIST_DIR
from tests.dashboard.conftest import open_page, texts

PAGE = "views/interpolate.py"


@pytest.fixture
def with_mnist(monkeypatch, mnist_dir):
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(mnist_dir))


def strips(at: AppTest) -> list:
    return [image for image in at.get("image") if ": " in (image.captions[0] if image.captions else "")
            and image.captions[0].split(":")[0] in ("NICE", "RealNVP", "Glow")]


def ends(at: AppTest) -> list[str]:
    return [image.captions[0] for image in at.get("image") if image.captions and image.captions[0].startswith("#")]


def test_digit_strips_for_all_three_models(with_mnist) -> None:
    at = open_page(PAGE)
    assert not at.exception
    assert [s.captions[0].split(":")[0] for s in strips(at)] == ["NICE", "RealNVP", "Glow"]
    assert all(image.proto.imgs[0].alt for image in at.get("image"))  # alt text on every image
    at.radio(key="path").set_value("spherical").run()
    at.slider(key="steps").set_value(16).run()
    assert not at.exception
    assert "spherical path" in strips(at)[0].captions[0]
    assert "16 digits" in strips(at)[0].proto.imgs[0].alt


def test_the_gallery_sets_the_ends(with_mnist) -> None:
    at = open_page(PAGE)
    picks = [b for b in at.button if (b.key or "").startswith("pick_")]
    assert len(picks) == 20 and sorted(b.label for b in picks) == sorted(str(d) for d in range(10) for _ in range(2))
    seven = next(b for b in picks if b.label == "7")
    seven.click().run()
    index = int(seven.key.removeprefix("pick_"))
    assert at.number_input(key="a").value == index
    assert ends(at)[0] == f"#{index}: a 7"
    at.segmented_control(key="gallery_target").set_value("second").run()
    two = next(b for b in at.button if (b.key or "").startswith("pick_") and b.label == "2")
    two.click().run()
    assert ends(at)[1].endswith("a 2") and at.number_input(key="b").value == int(two.key.removeprefix("pick_"))
    assert len(strips(at)) == 3


def test_inputs_and_images_always_agree(with_mnist) -> None:
    at = open_page(PAGE)
    at.number_input(key="a").set_value(99999).run()
    assert not at.exception
    assert "There is no test image 99,999 here: the MNIST test set has 10,000 images, numbered 0 to 9,999." in texts(at)
    assert not strips(at) and not ends(at)  # no image that disagrees with the field
    at.button(key="random_pair").click().run()
    a, b = at.number_input(key="a").value, at.number_input(key="b").value
    assert a != 99999 and a != b
    assert ends(at) == [f"#{a}: a {ends(at)[0].split()[-1]}", f"#{b}: a {ends(at)[1].split()[-1]}"]


def test_without_mnist_the_gallery_still_works(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    assert "The MNIST test set is not on this server" in texts(at)
    assert len(strips(at)) == 3 and len(ends(at)) == 2
    next(b for b in at.button if (b.key or "").startswith("pick_") and b.label == "5").click().run()
    assert ends(at)[0].endswith("a 5") and len(strips(at)) == 3
    at.number_input(key="b").set_value(3).run()
    if "There is no test image 3 here" in texts(at):  # not one of the gallery's digits
        assert "only the gallery's digits can be used" in texts(at)


def _chart_data(chart) -> dict[str, list[dict]]:
    return {d.name: pa.ipc.open_stream(d.data.data).read_pandas().to_dict("records") for d in chart.proto.datasets}


def test_two_d_paths_are_dense_curves_with_the_step_dots_on_them() -> None:
    at = open_page(PAGE)
    assert at.slider(key="steps").label.startswith("Images per path")
    at.segmented_control(key="mode").set_value("2-D points").run()
    assert not at.exception
    assert at.slider(key="steps").label.startswith("Points per path")  # what the slider counts here
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2
    assert "The default model, a RealNVP flow" in texts(at)
    for chart in charts:
        spec, data = json.loads(chart.proto.spec), _chart_data(chart)
        line, dots = spec["layer"][1], spec["layer"][2]
        assert line["mark"]["type"] == "line" and dots["mark"]["type"] == "circle"
        assert len(data[line["data"]["name"]]) == 300  # the decoded path, densely
        assert len(data[dots["data"]["name"]]) == 7  # the steps (the default count), on it
    at.button[0].click().run()  # another pair
    assert at.number_input(key="pair").value == 1


assert MNIST_DIR  # the offline copy's location comes from the project's test configuration
