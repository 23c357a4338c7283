"""Sample page: grids change with temperature and model; missing models explain themselves."""

from __future__ import annotations

from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from dashboard.services import loops
from tests.dashboard.conftest import APP, open_page, texts
from tests.dashboard.fixtures import make_pretrained
from tests.helpers import MarkerPickle

PAGE = "views/sample.py"


def test_sample_page_shows_a_grid_and_a_download() -> None:
    at = open_page(PAGE)
    assert not at.exception
    assert at.slider(key="temperature").label == "Temperature"
    assert len(at.get("image")) == 6  # the chosen model, its temperature sweep, the ten digits, the three models
    assert all(image.proto.imgs[0].alt for image in at.get("image"))  # alt text on every image
    assert at.get("download_button")[0].proto.label == "Download PNG"
    assert "64 samples of Glow at temperature 0.70, seed 0" in at.get("image")[0].captions[0]


def test_moving_the_temperature_changes_the_grid() -> None:
    at = open_page(PAGE)
    before = at.get("image")[0].value
    at.slider(key="temperature").set_value(0.3).run()
    assert not at.exception
    after = at.get("image")[0]
    assert after.value != before
    assert "temperature 0.30" in after.captions[0]


def test_switching_model_and_grid_size() -> None:
    at = open_page(PAGE)
    at.selectbox(key="model").set_value("nice-mnist").run()
    at.select_slider(key="grid").set_value(4).run()
    assert not at.exception
    assert "16 samples of NICE" in at.get("image")[0].captions[0]


def test_missing_manifest_is_explained(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    assert "manifest.json` does not exist" in texts(at)
    assert "python -m flowcore train" in texts(at)
    assert not at.get("image")


def test_missing_and_unsafe_checkpoints_are_explained(monkeypatch, tmp_path: Path) -> None:
    make_pretrained(tmp_path, models=("glow", "realnvp"))  # nice-mnist.safetensors is missing
    marker = tmp_path / "pwned"  # a checkpoint whose pickle would create this file when loaded
    torch.save({"format": "flowcore-checkpoint", "version": 1, "model": {}, "state_dict": {},
                "x": MarkerPickle(marker)}, tmp_path / "realnvp-mnist.safetensors")  # a pickle, renamed
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    page = texts(at)
    assert "nice-mnist.safetensors` is missing" in page
    assert "RealNVP: the checkpoint cannot be used (refusing to load" in page
    assert "it is a PyTorch pickle checkpoint" in page and "python -m flowcore convert" in page
    assert len(at.get("image")) == 4  # Glow: chosen, its sweep and side by side; the conditional model's digits
    assert not marker.exists()


def test_settings_come_from_the_url() -> None:
    """Links share a view: the URL holds each control's label, e.g. ?model=NICE&temperature=0.3."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(PAGE)
    at.query_params.update({"model": "NICE", "temperature": "0.3", "seed": "7", "grid": "4"})
    at.run()
    assert not at.exception
    assert at.get("image")[0].captions[0] == "16 samples of NICE at temperature 0.30, seed 7"


def test_temperature_sweep_and_its_wording() -> None:
    at = open_page(PAGE)
    sweep = at.get("image")[1]
    assert "temperatures 0, 0.1, 0.2" in sweep.captions[0]
    assert "decoded mode of the base distribution" in sweep.captions[0]
    assert "single most typical image" not in texts(at)
    assert "mode of the base distribution" in texts(at)


def test_a_chosen_digit_comes_from_the_conditional_model() -> None:
    at = open_page(PAGE)
    assert "Glow (class-conditional): digits 0 to 9" in at.get("image")[2].captions[0]  # the row of ten digits
    at.pills(key="digit").set_value("3").run()
    assert not at.exception
    caption = at.get("image")[0].captions[0]
    assert caption == "64 samples of Glow (class-conditional), digit 3 at temperature 0.70, seed 0"
    assert "digit 3" in at.get("image")[1].captions[0]  # the sweep follows the digit


def test_a_digit_without_the_conditional_model_is_explained(monkeypatch, tmp_path: Path) -> None:
    make_pretrained(tmp_path, extras=False)
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(PAGE)
    at.query_params["digit"] = "7"
    at.run()
    assert not at.exception
    assert "class-conditional model is not available" in texts(at)
    assert "64 samples of Glow at temperature" in at.get("image")[0].captions[0]


def test_train_live_and_sample_keep_their_own_model_in_one_session() -> None:
    """Both pages have a "model" selectbox; a family id ("nice") and a checkpoint id ("nice-mnist") share
    the title "NICE", which a selectbox would accept as one of its options. Going from one page to the
    other and back keeps each page's own choice (Sample used to look for a pretrained "nice"; with a
    first fix, Train live came back with its default RealNVP and started a new run)."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("views/train.py")
    at.query_params.update({"model": "NICE", "depth": "2", "seed": "11"})
    at.run()
    assert not at.exception and at.selectbox(key="model").value == "nice"
    run = at.session_state[loops.LIVE_KEY]
    for _ in range(2):
        at.switch_page(PAGE).run()
        assert not at.exception
        assert "not in the manifest" not in texts(at)
        assert at.selectbox(key="model").value in ("nice-mnist", "glow-mnist", "realnvp-mnist")  # not "nice"
        assert at.get("image")[0].captions[0].startswith("64 samples of ")
        at.selectbox(key="model").set_value("realnvp-mnist").run()
        assert at.get("image")[0].captions[0].startswith("64 samples of RealNVP at")
        at.switch_page("views/train.py").run()
        assert not at.exception and at.selectbox(key="model").value == "nice"
        assert at.session_state[loops.LIVE_KEY] is run  # the same run goes on
    at.switch_page(PAGE).run()
    assert at.selectbox(key="model").value == "realnvp-mnist"  # Sample's own choice is kept too
