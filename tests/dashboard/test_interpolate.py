"""Interpolate: strips for every model between test digits (or samples), and 2-D paths."""

from __future__ import annotations

import pytest

from tests.conftest import MNIST_DIR
from tests.dashboard.conftest import open_page, texts

PAGE = "views/interpolate.py"


@pytest.fixture
def with_mnist(monkeypatch, mnist_dir):
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(mnist_dir))


def test_digit_strips_for_all_three_models(with_mnist) -> None:
    at = open_page(PAGE)
    assert not at.exception
    strips = at.get("image")[2:]  # the two chosen digits come first
    assert len(strips) == 3
    assert [s.captions[0].split(":")[0] for s in strips] == ["NICE", "RealNVP", "Glow"]
    at.radio(key="path").set_value("spherical").run()
    at.slider(key="steps").set_value(5).run()
    assert not at.exception
    assert "spherical path, 5 steps" in at.get("image")[2].captions[0]


def test_random_pair_changes_the_digits(with_mnist) -> None:
    at = open_page(PAGE)
    before = (at.number_input(key="a").value, at.number_input(key="b").value)
    at.button[0].click().run()
    assert not at.exception
    after = (at.number_input(key="a").value, at.number_input(key="b").value)
    assert after != before and after[0] != after[1]


def test_without_mnist_it_walks_between_samples(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    assert "MNIST test set is not available" in texts(at)
    assert len(at.get("image")) == 3


def test_two_d_paths_use_a_default_model_when_none_was_trained() -> None:
    at = open_page(PAGE)
    at.segmented_control(key="mode").set_value("2-D points").run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 2
    assert "The default model, a RealNVP flow" in texts(at)
    at.button[0].click().run()  # another pair
    assert at.number_input(key="pair").value == 1


assert MNIST_DIR  # the offline copy's location comes from the project's test configuration
