"""Home: the picture, the three measured models and a link into every page."""

from __future__ import annotations

import json

from tests.dashboard.conftest import open_page, texts


def test_home_explains_shows_models_and_links_everywhere() -> None:
    at = open_page()
    assert not at.exception
    assert at.title[0].value == "Normalizing flows, explained"
    panels = [json.loads(chart.proto.spec)["title"] for chart in at.get("vega_lite_chart")]
    assert [t[:2] for t in panels] == ["1.", "2."]  # base samples, then the same points after the flow
    values = {m.label: m.value for m in at.metric}
    assert values == {"NICE: test bits/dim": "4.400", "RealNVP: test bits/dim": "1.900",
                      "Glow: test bits/dim": "1.600"}
    helps = {m.label: m.proto.help for m in at.metric}
    assert "learned to shape" in helps["Glow: test bits/dim"]  # the stand-ins' RealNVP and Glow learn their noise
    assert "learned to shape" not in helps["NICE: test bits/dim"] and helps["NICE: test bits/dim"].endswith("noise.")
    links = {link.proto.page for link in at.get("page_link")}
    assert len(links) == 6  # every other page
    labels = [link.proto.label for link in at.get("page_link")]
    assert all(len(label) <= 20 for label in labels)  # short: a link label does not wrap on a phone
    assert "A model of clothes finds digits more likely than clothes." in texts(at)  # what it does, wrapping
    assert "normalizing flow" in texts(at)
    assert "Fewer bits per pixel = better" in texts(at)  # in words, not only in a tooltip
    budgets = [c.value for c in at.caption if c.value.startswith("Trained with")]
    assert len(budgets) == 3 and all("parameters" in b and "images seen" in b and "test stand-in" in b for b in budgets)
    samples = at.get("image")
    assert len(samples) == 3 and all(s.proto.imgs[0].alt for s in samples)  # a few samples beside each card


def test_home_without_manifest_still_renders(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = open_page()
    assert not at.exception
    assert "does not exist" in texts(at)
    assert {m.value for m in at.metric} == {"n/a"}
