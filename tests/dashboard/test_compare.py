"""Compare: manifest charts and table, and the live three-model race."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pyarrow as pa

from dashboard.services import loops
from tests.dashboard.conftest import open_page, run_until, texts

PAGE = "views/compare.py"


def _specs(at) -> list[dict]:
    """Each chart's Vega-Lite spec, its data sets (sent apart as Arrow) back in `datasets`."""
    specs = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        spec["datasets"] = {d.name: pa.ipc.open_stream(d.data.data).read_pandas().to_dict("records")
                            for d in chart.proto.datasets}
        specs.append(spec)
    return specs


def _data(spec: dict) -> list[dict]:
    return [row for rows in spec["datasets"].values() for row in rows]


def test_manifest_charts_and_table() -> None:
    at = open_page(PAGE)
    assert not at.exception
    bits, nice, others, size = _specs(at)  # the race has not started: no race chart yet
    assert {r["model"] for r in _data(nice)} == {"NICE"}  # NICE's curve on a panel of its own
    assert {r["model"] for r in _data(others)} == {"RealNVP", "Glow"}
    assert all(chart["title"]["subtitle"] == ["on the first 1,000 test images, during training"]
               for chart in (nice, others))  # on the chart
    rows = {r["model"]: r for r in _data(bits)}
    assert "no logit pre-processing" in rows["NICE"]["published_note"]  # written beside NICE's tick
    assert rows["Glow"]["published_note"] == "a set-up with uniform noise (this one learns its noise)"
    assert "Glow's published 1.05 comes from a set-up with uniform noise" in texts(at)  # in the caption
    assert "learn the dequantisation noise" in texts(at)  # the caveats say what that does to the comparison
    assert rows["Glow"]["published_source"] == "FFJORD paper, MNIST table"
    tick = next(layer for layer in bits["layer"] if layer["mark"]["type"] == "tick")
    assert {t["field"] for t in tick["encoding"]["tooltip"]} >= {"published", "published_source"}  # source on hover
    assert all("parameters" in r["budget"] and "images seen" in r["budget"] and "test stand-in" in r["budget"]
               for r in rows.values())  # the budget beside every bar
    assert {r["model"] for r in _data(size)} == {"NICE", "RealNVP", "Glow"}
    table = at.table[0].value
    assert list(table["model"]) == ["NICE", "RealNVP", "Glow"]
    assert len(table.columns) <= 4
    full = at.dataframe[0].value  # in the expander
    assert list(full["published bits/dim"]) == [4.36, 1.06, 1.05]
    assert list(full["dequantisation"]) == ["uniform", "variational", "variational"]
    assert "can and cannot tell" in texts(at)
    at.segmented_control(key="highlight").set_value("Glow").run()
    assert not at.exception


def test_parameter_matched_race_sizes() -> None:
    at = open_page(PAGE)
    assert "Same width (64) for all, so the sizes differ" in texts(at)
    at.toggle(key="race_matched").set_value(True).run()
    caption = next(c.value for c in at.caption if c.value.startswith("Parameter-matched"))
    counts = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) parameters", caption)]
    assert len(counts) == 3 and max(counts) <= 1.1 * min(counts)
    at.select_slider(key="race_steps").set_value(200).run()
    at.button(key="race_start").click().run()
    assert not at.exception
    at.button(key="race_stop").click().run()
    summary = at.table[-1].value
    shown = list(summary["parameters"])
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", n) for n in shown)  # written as the caption writes them
    counts = [int(n.replace(",", "")) for n in shown]
    assert max(counts) <= 1.1 * min(counts)
    assert list(summary["width"]) != [64, 64, 64]  # the sizes are shown with the widths that gave them


def _race_step(at) -> int:
    return int(re.search(r"Step ([\d,]+) of", texts(at)).group(1).replace(",", ""))


def test_race_trains_all_three_together() -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(2000).run()
    at.button(key="race_start").click().run()
    assert not at.exception
    run_until(at, lambda at: _race_step(at) > 0)  # the race trains on its own thread
    summary = at.table[-1].value
    assert list(summary["model"]) == ["NICE", "RealNVP", "Glow"]
    r = at.session_state[loops.RACE_KEY]
    done = [t.steps_done for t in r.trainers.values()]
    assert min(done) > 0 and max(done) - min(done) <= 1  # one step of each in turn
    at.button(key="race_stop").click().run()
    r = at.session_state[loops.RACE_KEY]
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
    r = at.session_state[loops.RACE_KEY]
    r.background.idle_stop_s = 120.0  # no redraws while this test waits: keep training without them
    run_until(at, lambda at: r.background.running() or r.done)
    deadline = time.monotonic() + 120
    while r.background.running():
        assert time.monotonic() < deadline, "the race did not finish"
        time.sleep(0.1)
    at.run()
    assert "(finished)" in texts(at)
    assert [t.steps_done for t in r.trainers.values()] == [200, 200, 200]
    assert not r.running and at.session_state[loops.STEPS_KEY].used == 600
    assert "race_resume" not in [b.key for b in at.button]
    assert re.search(r"(NICE|RealNVP|Glow) reached the lowest held-out NLL, [\d.]+ nats, after 200 steps", texts(at))
    heatmaps = [s for s in _specs(at) if any(layer["mark"]["type"] == "image" for layer in s.get("layer", []))]
    assert len(heatmaps) == 3  # the final density of each model, side by side
    x_of_race = lambda at: [s["encoding"]["x"]["field"] for s in _specs(at)  # noqa: E731
                            if s.get("encoding", {}).get("y", {}).get("field") == "nll"]
    assert x_of_race(at) == ["step"]
    at.segmented_control(key="race_x").set_value("seconds").run()
    assert x_of_race(at) == ["seconds"]


def test_timing_sampling_on_this_server() -> None:
    at = open_page(PAGE)
    at.button(key="time_sampling").click().run()
    assert not at.exception
    assert "seconds for 64 samples (now, this server)" in at.table[-1].value.columns


def test_a_failing_race_step_is_reported(monkeypatch) -> None:
    at = open_page(PAGE)
    at.select_slider(key="race_steps").set_value(2000).run()
    at.button(key="race_start").click().run()
    r = at.session_state[loops.RACE_KEY]

    def broken_step() -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(r.trainers["glow"], "step", broken_step)
    run_until(at, lambda at: any("disk full (simulated)" in e.value for e in at.error))
    assert not r.running and not at.exception
    assert "race_resume" not in [b.key for b in at.button]  # a new race, not a resumed broken one


def test_curves_say_which_images_each_was_measured_on() -> None:
    """A model whose curve was measured on its validation split is named so under the chart and in the caption."""
    from dashboard.services import compare
    from dashboard.services.catalogue import Catalogue, _entry

    where = {"nice-mnist": {"curve_split": "test", "curve_eval_size": 1000},
             "realnvp-mnist": {"curve_split": "test", "curve_eval_size": 1000},
             "glow-mnist": {"curve_split": "validation", "curve_eval_size": 1000}}
    cat = Catalogue(Path("."), {n: _entry(n, v, Path(".")) for n, v in where.items()})
    assert compare.curve_subtitle(cat, ["NICE"]) == ["on the first 1,000 test images, during training"]
    assert compare.curve_subtitle(cat, ["RealNVP", "Glow"]) == [
        "RealNVP: on the first 1,000 test images, during training",
        "Glow: on the first 1,000 validation images, during training"]
    caption = compare.curve_caption(cat)
    assert "the first 1,000 test images (NICE, RealNVP) or the first 1,000 validation images (Glow)" in caption
    assert "held out from training" in caption
    single = Catalogue(Path("."), {n: _entry(n, where["nice-mnist"], Path(".")) for n in where})
    assert "bits/dim on the first 1,000 test images, measured" in compare.curve_caption(single)
    assert "held out" not in compare.curve_caption(single)
    unknown = Catalogue(Path("."), {"nice-mnist": _entry("nice-mnist", {}, Path("."))})  # an entry without the fields
    assert compare.curve_subtitle(unknown, ["NICE"]) == ["on test images, during training"]


def test_spread_never_reads_as_zero() -> None:
    """A std the manifest rounds to 0.0000 is written "< 0.0001" in the tooltip and the full table, not 0."""
    from dashboard.services import compare
    from dashboard.services.catalogue import Catalogue, _entry

    stds = {"nice-mnist": 0.0002, "realnvp-mnist": 0.0, "glow-mnist": None}
    cat = Catalogue(Path("."), {n: _entry(n, {"test_bits_per_dim": 1.2, "test_bits_per_dim_std": s}, Path("."))
                                for n, s in stds.items()})
    assert list(compare.models_frame(cat)["spread"]) == ["0.0002", "< 0.0001", "n/a"]
    assert list(compare.full_table(cat)["± std over draws"]) == ["0.0002", "< 0.0001", "n/a"]
    at = open_page(PAGE)
    bar = next(layer for layer in _specs(at)[0]["layer"] if layer["mark"]["type"] == "bar")
    assert {"field": "spread", "type": "nominal", "title": "± std over noise draws"} in bar["encoding"]["tooltip"]
