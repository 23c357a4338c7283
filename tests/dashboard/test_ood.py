"""Out of distribution page: histograms, detectors, AUROC table and ROC curves from a statistics file,
with and without Fashion-MNIST, and the visitor's digit from the Score page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dashboard.services import score
from flowcore import ood
from tests.dashboard.conftest import open_page, texts
from tests.dashboard.fixtures import make_pretrained
from tests.dashboard.ood_stats import make_ood_stats

PAGE = "views/ood.py"
HISTOGRAMS_TITLED = ("Glow (Fashion-MNIST)", "NICE (MNIST)", "RealNVP (MNIST)", "Glow (MNIST)")


@pytest.fixture(scope="module")
def with_fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_pretrained(tmp_path_factory.mktemp("ood-fashion"))
    make_ood_stats(directory)
    return directory


@pytest.fixture(scope="module")
def without_fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_pretrained(tmp_path_factory.mktemp("ood-no-fashion"))
    make_ood_stats(directory, fashion=False)
    return directory


def auroc_table(at) -> dict[str, list[str]]:
    """The AUROC table as shown: header row under "detector", then detector -> its cells."""
    body = at.get("html")[0].proto.body
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    cells = [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row) for row in rows]
    return {row[0]: row[1:] for row in cells}


def chart_titles(at) -> list[str]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    return [s.get("title", "") for s in specs]


def test_page_shows_every_model_the_detectors_and_their_auroc(monkeypatch, with_fashion):
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(with_fashion))
    at = open_page(PAGE)
    assert not at.exception
    assert at.title[0].value == "Out of distribution"
    titles = chart_titles(at)
    assert titles[:4] == list(HISTOGRAMS_TITLED)  # the Fashion-trained Glow first
    assert titles[4:] == ["ROC: Likelihood", "ROC: Typicality, batches of 1", "ROC: Typicality, batches of 5",
                          "ROC: Typicality, batches of 25", "ROC: Likelihood minus PNG size", "ROC: Last scale alone"]
    shown = texts(at)
    for reference in ("arXiv:1810.09136", "arXiv:1906.02994", "arXiv:1909.11480", "Schirrmeister et al. 2020"):
        assert reference in shown
    # the untrained stand-ins may score either way; the page says which, with the two medians
    assert "The paradox:" in shown or "The paradox does not reproduce with this model" in shown
    assert "Draw a digit on the **Score** page" in shown
    assert at.segmented_control(key="ood_model").value == "glow-fashion"
    # the table is what flowcore.ood computes from the file, unflipped
    arrays, _ = ood.read_statistics(with_fashion / "ood_stats.npz")
    bits = lambda key: arrays[ood.stat_key("glow-fashion", key, ood.TOTAL)].astype(np.float64)  # noqa: E731
    table = auroc_table(at)
    assert table["detector"] == ["MNIST test", "constant", "uniform noise", "inverted digits", "shifted digits"]
    assert table["Likelihood"][0] == f"{ood.auroc(bits('Fashion-MNIST test'), bits('MNIST test')):.3f}"
    assert len(table) == 7 and all(len(cells) == 5 for cells in table.values())


def test_single_scale_model_has_no_last_scale_detector(monkeypatch, with_fashion):
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(with_fashion))
    at = open_page(PAGE)
    at.segmented_control(key="ood_model").set_value("nice-mnist").run()
    assert not at.exception
    table = auroc_table(at)
    assert table.pop("Last scale alone") == ["n/a"] * 5 and all("n/a" not in cells for cells in table.values())
    assert "ROC: Last scale alone" not in chart_titles(at)
    assert "this model has one (n/a)" in texts(at)


def test_without_fashion_it_says_what_to_install_and_shows_the_mnist_models(monkeypatch, without_fashion):
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(without_fashion))
    at = open_page(PAGE)
    assert not at.exception
    assert any("apt-get install dataset-fashion-mnist" in w.value for w in at.warning)
    assert chart_titles(at)[:3] == list(HISTOGRAMS_TITLED[1:])
    assert at.segmented_control(key="ood_model").options == ["NICE (MNIST)", "RealNVP (MNIST)", "Glow (MNIST)"]
    assert "Fashion-MNIST test" not in auroc_table(at)["detector"]


def test_without_statistics_it_says_how_to_make_them(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(make_pretrained(tmp_path)))
    at = open_page(PAGE)
    assert not at.exception
    assert any("python -m scripts.ood" in w.value for w in at.warning)


def test_the_digit_scored_on_the_score_page_is_a_line_on_every_histogram(monkeypatch, with_fashion):
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(with_fashion))
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import APP

    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(PAGE)
    at.session_state["score_digit"] = score.Digit(np.zeros((28, 28), np.uint8), "your drawing")
    at.run()
    assert not at.exception
    assert "The line **your digit**" in texts(at)
    histograms = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")][:4]
    assert all("your digit: " in json.dumps(spec) for spec in histograms)


def test_each_set_has_a_row_of_its_own_scaled_to_its_peak_so_none_hides_another():
    import pandas as pd

    from dashboard import score_charts

    edges = np.logspace(0, 1, 11)
    bars = pd.DataFrame([{"set": name, "left": edges[i], "right": edges[i + 1], "density": scale * (1 + i)}
                         for name, scale in (("shifted digits", 1.0), ("MNIST test", 40.0)) for i in range(10)])
    marks = pd.DataFrame([{"x": 2.0, "label": "MNIST test: median 2.00", "row": 0}])
    chart = score_charts.ood_histogram(bars, marks, "t", row_height=40)
    spec = chart.to_dict()
    rows = pd.DataFrame(spec["datasets"][spec["layer"][0]["data"]["name"]])
    top_of = rows.groupby("set")["top"].max() - rows.groupby("set")["base"].first()
    assert top_of["MNIST test"] == pytest.approx(top_of["shifted digits"])  # 40x denser, drawn as tall
    assert rows.groupby("set")["base"].first().to_dict() == {"MNIST test": 1, "shifted digits": 0}  # MNIST on top
    assert (rows["top"] < rows["base"] + 1).all() and (rows["top"] > rows["base"]).all()  # inside its own row
    assert spec["layer"][0]["encoding"]["color"]["legend"] is None  # the rows are named on the axis instead
    label = spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"]
    assert "'MNIST test'" in label and "'shifted digits'" in label
    rule = spec["layer"][1]
    assert rule["mark"]["type"] == "rule" and "y2" in rule["encoding"]  # medians cross every row
