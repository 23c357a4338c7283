"""Compare: manifest charts and table, and the live three-model race."""

from __future__ import annotations

import re

from tests.dashboard.conftest import open_page, texts

PAGE = "views/compare.py"


def test_manifest_charts_and_table() -> None:
    at = open_page(PAGE)
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1  # the compound manifest chart (race not started)
    table = at.dataframe[0].value
    assert list(table["model"]) == ["NICE", "RealNVP", "Glow"]
    assert list(table["published bits/dim"]) == [4.36, 1.06, 1.05]
    at.segmented_control(key="highlight").set_value("Glow").run()
    assert not at.exception


def test_race_trains_all_three_together() -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(200).run()
    at.button(key="race_start").click().run()
    assert not at.exception
    at.run()
    step = int(re.search(r"Step (\d+) of 200", texts(at)).group(1))
    assert 0 < step < 200
    summary = at.dataframe[-1].value
    assert list(summary["model"]) == ["NICE", "RealNVP", "Glow"]
    assert (summary["steps"] > 0).all()
    at.button(key="race_stop").click().run()
    assert at.button(key="race_resume").label == "Resume"


def test_timing_sampling_on_this_server() -> None:
    at = open_page(PAGE)
    at.button(key="time_sampling").click().run()
    assert not at.exception
    assert "seconds for 64 samples (now, this server)" in at.dataframe[-1].value.columns
