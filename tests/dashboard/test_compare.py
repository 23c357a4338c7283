"""Compare: manifest charts and table, and the live three-model race."""

from __future__ import annotations

import json
import re
import time

import services_train as live

from tests.dashboard.conftest import open_page, run_until, texts

PAGE = "views/compare.py"


def test_manifest_charts_and_table() -> None:
    at = open_page(PAGE)
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1  # the compound manifest chart (race not started)
    table = at.dataframe[0].value
    assert list(table["model"]) == ["NICE", "RealNVP", "Glow"]
    assert list(table["published bits/dim"]) == [4.36, 1.06, 1.05]
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    bars = spec["vconcat"][0]["layer"][0]["encoding"]["x"]
    assert bars["field"] == "bits_per_dim"
    top = max(*table["published bits/dim"], *table["test bits/dim"])
    assert bars["scale"]["domain"][1] >= 1.2 * top - 1e-9  # room for the "published ..." label of the largest
    at.segmented_control(key="highlight").set_value("Glow").run()
    assert not at.exception


def _race_step(at) -> int:
    return int(re.search(r"Step ([\d,]+) of", texts(at)).group(1).replace(",", ""))


def test_race_trains_all_three_together() -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(2000).run()
    at.button(key="race_start").click().run()
    assert not at.exception
    run_until(at, lambda at: _race_step(at) > 0)  # the race trains on its own thread
    summary = at.dataframe[-1].value
    assert list(summary["model"]) == ["NICE", "RealNVP", "Glow"]
    assert (summary["steps"] > 0).all()
    assert summary["steps"].max() - summary["steps"].min() <= 1  # one step of each in turn
    at.button(key="race_stop").click().run()
    r = at.session_state[live.RACE_KEY]
    assert not r.running and not r.background.running()  # Stop waits for the thread
    stopped = {name: t.steps_done for name, t in r.trainers.items()}
    time.sleep(0.3)
    assert {name: t.steps_done for name, t in r.trainers.items()} == stopped
    assert at.button(key="race_resume").label == "Resume"
    at.button(key="race_resume").click().run()
    run_until(at, lambda at: min(t.steps_done for t in r.trainers.values()) > min(stopped.values()))
    at.button(key="race_stop").click().run()


def test_race_finishes_level_at_its_budget() -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(200).run()
    at.button(key="race_start").click().run()
    r = at.session_state[live.RACE_KEY]
    r.background.idle_stop_s = 120.0  # no redraws while this test waits: keep training without them
    run_until(at, lambda at: r.background.running() or r.done)
    deadline = time.monotonic() + 120
    while r.background.running():
        assert time.monotonic() < deadline, "the race did not finish"
        time.sleep(0.1)
    at.run()
    assert "(finished)" in texts(at)
    assert [t.steps_done for t in r.trainers.values()] == [200, 200, 200]
    assert not r.running and at.session_state[live._USED].used == 600
    assert "race_resume" not in [b.key for b in at.button]


def test_timing_sampling_on_this_server() -> None:
    at = open_page(PAGE)
    at.button(key="time_sampling").click().run()
    assert not at.exception
    assert "seconds for 64 samples (now, this server)" in at.dataframe[-1].value.columns


def test_a_failing_race_step_is_reported(monkeypatch) -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(2000).run()
    at.button(key="race_start").click().run()
    r = at.session_state[live.RACE_KEY]

    def broken_step() -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(r.trainers["glow"], "step", broken_step)
    run_until(at, lambda at: any("disk full (simulated)" in e.value for e in at.error))
    assert not r.running and not at.exception
    assert "race_resume" not in [b.key for b in at.button]  # a new race, not a resumed broken one
