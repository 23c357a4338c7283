"""Score: the MNIST-style conversion, the test-set comparison, the page, and every kind of bad image.

A bad drawing or upload gets one sentence and the page keeps the digit it had; hostile files
(decompression bombs, truncated or disguised files, pickles) are refused before they are decoded
or never reach more than Pillow's header parser.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import flowcore
from dashboard.services import catalogue, digits, mnist, score
from flowcore.breakdown import image_scores
from scripts.score_stats import STATS_FILE, score_models, score_test_set, write_stats
from tests.dashboard.conftest import open_page, texts
from tests.dashboard.fixtures import make_pretrained
from tests.helpers import MarkerPickle

PAGE = "views/score.py"
MODELS = ("nice-mnist", "realnvp-mnist", "glow-mnist")


def gallery() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = mnist.gallery_digits()
    return images[:, 0].numpy(), labels.numpy()


def stroke(points: list[tuple[float, float]], width: int = digits.BRUSH_PX) -> dict:
    """A Fabric.js freedraw path as the canvas sends it (quadratic segments, absolute pixels)."""
    path = [["M", *points[0]]] + [["Q", *a, *b] for a, b in zip(points, points[1:], strict=False)]
    return {"type": "Path", "path": path, "strokeWidth": width, "stroke": "#FFFFFF"}


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    w = image.astype(float)
    return (ys * w).sum() / w.sum(), (xs * w).sum() / w.sum()


def png(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def seven(size: int = 280, ink: int = 255, paper: int = 0, mode: str = "L") -> Image.Image:
    """A hand-drawn-looking 7 on a square of `size` pixels."""
    image = Image.new(mode, (size, size), paper)
    draw = ImageDraw.Draw(image)
    s = size / 280
    draw.line([(70 * s, 60 * s), (200 * s, 60 * s), (120 * s, 230 * s)], fill=ink, width=round(20 * s))
    return image


# --- The MNIST-style conversion ------------------------------------------------------------


def test_a_stroke_in_a_corner_is_centred_by_centre_of_mass() -> None:
    corner = [stroke([(10, 10), (60, 15), (30, 70)])]
    digit = digits.drawing_digit(corner)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    cy, cx = centre_of_mass(digit)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == 20  # fitted into the 20x20 box


def test_a_280_pixel_stroke_image_becomes_28x28_uint8() -> None:
    drawn = digits.strokes_image([stroke([(100, 40), (110, 140), (120, 240)])])
    assert drawn.shape == (280, 280) and drawn.max() == 255
    digit = digits.mnist_style(drawn)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 < 10  # tall and thin: aspect kept


def test_mnist_test_digits_stay_themselves() -> None:
    """MNIST's own digits already fill a 20x20 box with their centre of mass at pixel (14, 14)."""
    images, _ = gallery()
    diffs = [np.abs(digits.mnist_style(im).astype(int) - im).mean() for im in images]
    assert max(diffs) < 1.0, max(diffs)


def test_an_empty_drawing_is_one_sentence() -> None:
    for objects in ([], None, [{"type": "path", "path": []}], [{"type": "rect"}], ["junk", {"path": [["M", "a"]]}]):
        with pytest.raises(ValueError, match="^The drawing is empty"):
            digits.drawing_digit(objects)


# --- Uploads -----------------------------------------------------------------------------------


def test_a_photo_of_dark_ink_on_light_paper_is_inverted() -> None:
    rng = np.random.default_rng(0)
    photo = np.asarray(seven(1200, ink=40, paper=200), float) + rng.normal(0, 6, (1200, 1200))
    data = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).convert("RGB").save(data, format="JPEG", quality=85)
    digit, notes = digits.read_upload(data.getvalue())
    light, _ = digits.read_upload(png(seven()))
    assert any("inverted" in n for n in notes)
    assert np.abs(digit.astype(int) - light).mean() < 12  # the same 7 as drawn light on black
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # the paper is black, not grey


def test_a_transparent_png_is_composited_on_the_background() -> None:
    dark_ink = seven(mode="LA", ink=0, paper=0).convert("RGBA")
    alpha = np.asarray(seven())  # opaque where the ink is, transparent elsewhere
    rgba = np.asarray(dark_ink).copy()
    rgba[..., 3] = alpha
    digit, notes = digits.read_upload(png(Image.fromarray(rgba, "RGBA")))
    light, _ = digits.read_upload(png(seven()))
    assert any("transparent" in n for n in notes)
    np.testing.assert_array_equal(digit, light)


def test_an_animated_png_is_scored_by_its_first_frame() -> None:
    frames = [seven(), Image.new("L", (280, 280), 0)]
    digit, notes = digits.read_upload(png(frames[0], save_all=True, append_images=frames[1:]))
    assert any("animated image of 2 frames: the first frame is scored" in n for n in notes)
    np.testing.assert_array_equal(digit, digits.read_upload(png(seven()))[0])


def test_a_16_bit_png_reads_as_the_same_digit() -> None:
    deep = Image.fromarray(np.asarray(seven()).astype(np.uint16) * 257)  # mode I;16
    np.testing.assert_array_equal(digits.read_upload(png(deep))[0], digits.read_upload(png(seven()))[0])


def hostile(marker: Path) -> list[tuple[str, bytes, str]]:
    """(file name, content, a fragment of its one sentence)."""
    good = png(seven())
    gif = io.BytesIO()
    seven().save(gif, format="GIF")
    bmp = io.BytesIO()
    seven().save(bmp, format="BMP")
    return [
        ("empty.png", b"", "The file is empty"),
        ("text.png", b"hello, this is not an image\n" * 10, "not an image that can be read"),
        ("pickle.png", pickle.dumps(MarkerPickle(marker)), "not an image that can be read"),
        ("truncated.png", good[: len(good) // 2], "truncated or corrupt"),
        ("header-only.png", good[:40], "not an image that can be read"),
        ("bomb.png", png(Image.new("L", (20_000, 20_000), 0)), "too many pixels; at most 4,000 x 4,000"),
        ("bomb5k.png", png(Image.new("L", (5000, 5000), 0)), "5,000 x 5,000 pixels; at most 4,000 x 4,000"),
        ("wide.png", png(Image.new("L", (4001, 10), 0)), "at most 4,000 x 4,000"),
        ("huge.png", good + b"\0" * (digits.MAX_IMAGE_BYTES + 1 - len(good)), "images may be at most 10 MB"),
        ("blank.png", png(Image.new("L", (300, 300), 255)), "no visible digit"),
        ("black.jpg", png(Image.new("L", (300, 300), 0)), "no visible digit"),
        ("seven.gif", gif.getvalue(), "This is a GIF image; please upload a PNG or a JPEG"),
        ("seven.bmp", bmp.getvalue(), "This is a BMP image"),
    ]


def test_bad_files_get_one_sentence_each(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for name, data, message in hostile(marker):
        with pytest.raises(ValueError, match=None) as refused:
            digits.read_upload(data)
        assert message in str(refused.value), (name, str(refused.value))
        assert str(refused.value).count(". ") == 0 or name == "huge.png", (name, str(refused.value))
    assert not marker.exists()


# --- Scores and the test set -------------------------------------------------------------


def write_test_set_scores(directory: Path, n: int = 60) -> Path:
    """Score stand-in models on `n` gallery digits as `scripts.score_stats` does on the test set."""
    return score_models(directory, mnist.gallery_digits()[0][:n])


def test_the_percentile_of_a_test_digit_against_its_own_test_set(pretrained: Path) -> None:
    images = mnist.gallery_digits()[0][:100]
    flow = flowcore.load(next(pretrained.glob("glow-mnist.*")))
    test_bits = score_test_set(flow, images)
    order = np.sort(test_bits)
    for i in (0, 17, 99):
        bits = float(sum(image_scores(flow, images[i : i + 1]).values())[0])
        assert abs(bits - test_bits[i]) <= 1e-4  # the page's score is the test set's, digit for digit
        rank = int(np.searchsorted(order, test_bits[i]))
        ties = int((order == test_bits[i]).sum())
        assert score.percentile(test_bits[i], order) == pytest.approx(100 * (rank + ties / 2) / len(order))
    assert score.percentile(order[0] - 1, order) == 0 and score.percentile(order[-1] + 1, order) == 100
    assert score.verdict(order[0] - 1, order)[0] == "unusually likely"
    assert score.verdict(order[-1] + 1, order)[0] == "unusually unlikely"
    assert score.verdict(float(np.median(order)), order)[0] == "typical"


# --- The page ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_stats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in models with test-set scores beside them (over 60 gallery digits)."""
    directory = make_pretrained(tmp_path_factory.mktemp("scored"))
    write_test_set_scores(directory)
    return directory


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch, with_stats: Path) -> Path:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(with_stats))
    return with_stats


def bits_shown(at) -> list[float]:
    return [float(m.value) for m in at.metric if m.label.endswith("bits/dim")]


def test_score_page_scores_a_first_digit_with_every_model(scored: Path) -> None:
    at = open_page(PAGE)
    assert not at.exception
    page = texts(at)
    assert len(bits_shown(at)) == 3
    assert page.count(" of the 60 test digits: **") == 3  # where each score stands, with its verdict
    assert "typical means between the test set's 1st and 99th percentiles" in page
    assert "MNIST test digit 0 (a 7" in at.get("image")[0].captions[0]
    assert "NICE has one scale" in page  # NICE says why it has fewer terms
    assert "there are no per-level terms" not in page and "most typical image" not in page
    assert "not the most likely image" in at.slider(key="score_temperature").help  # as the Sample page says
    assert "p(y | x)" in page and "most likely class" in page  # the class-conditional model
    assert "largest pixel difference" not in page  # only at temperature 1


def test_picking_another_test_digit_changes_the_scores(scored: Path) -> None:
    at = open_page(PAGE)
    before = bits_shown(at)
    at.number_input(key="score_index").set_value(5).run()
    assert not at.exception
    assert bits_shown(at) != before
    assert "MNIST test digit 5" in at.get("image")[0].captions[0]


def test_temperature_one_gives_the_input_back(scored: Path) -> None:
    at = open_page(PAGE)
    at.slider(key="score_temperature").set_value(1.0).run()
    assert not at.exception
    captions = [c for image in at.get("image") for c in image.captions if "largest pixel difference" in c]
    assert len(captions) == 3
    for caption in captions:
        assert float(caption.split("input ")[1].split()[0]) < 0.01  # grey levels


def test_an_upload_becomes_the_digit(scored: Path) -> None:
    at = open_page(PAGE)
    at.file_uploader(key="score_upload").set_value(("seven.png", png(seven()), "image/png")).run()
    assert not at.exception
    assert "seven.png" in at.get("image")[0].captions[0]
    assert len(bits_shown(at)) == 3


def test_bad_uploads_keep_the_previous_digit(scored: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    marker = tmp_path_factory.mktemp("marker") / "pwned"
    at = open_page(PAGE)
    at.file_uploader(key="score_upload").set_value(("seven.png", png(seven()), "image/png")).run()
    good = bits_shown(at)
    for name, data, message in hostile(marker):
        name = Path(name).stem + ".png"  # the uploader itself refuses other extensions
        at.file_uploader(key="score_upload").set_value((name, data, "image/png")).run()
        assert not at.exception, name
        assert f"{name}: " in texts(at) and message in texts(at), name
        assert "seven.png" in at.get("image")[0].captions[0], name
        assert bits_shown(at) == good, name
    assert not marker.exists()


def test_missing_or_stale_test_set_scores_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stats = make_pretrained(tmp_path) / STATS_FILE  # the stand-ins without test-set scores
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    assert "python -m scripts.score_stats" in texts(at)
    assert len(bits_shown(at)) == 3  # the scores themselves are still shown
    write_stats(stats, {"0" * 64: {"model": "glow-mnist", "bits": np.ones(10, np.float32)}})
    at = open_page(PAGE)
    assert "for other weights than this" in texts(at)


def test_no_models_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    at = open_page(PAGE)
    assert not at.exception
    assert "nothing to score with yet" in texts(at)


def test_sensitivity_is_per_pixel_and_follows_the_model(scored: Path) -> None:
    """The map is the change of the total bits when one pixel is brightened, measured directly."""
    images, _ = gallery()
    flow, _ = catalogue.pretrained_flow("glow-mnist")
    change, _ = score.sensitivity("glow-mnist", images[0])
    assert change.shape == (28, 28) and np.isfinite(change).all()
    x = torch.from_numpy(images[0].astype(np.float32)).reshape(1, 1, 28, 28)
    noise = flowcore.breakdown.score_noise((784,), draws=1)[0].reshape(1, 1, 28, 28)
    brighter = x.clone()
    brighter[0, 0, 3, 4] += score.BRIGHTEN
    with torch.no_grad():
        by_hand = (flow.log_prob(x + noise) - flow.log_prob(brighter + noise)).item() / math.log(2)
    assert change[3, 4] == pytest.approx(by_hand, rel=1e-3, abs=1e-4)


def test_each_uploader_keeps_its_own_limit(scored: Path) -> None:
    """The server takes uploads up to the largest limit (an image's 10 MB); each uploader asks for its own."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == digits.MAX_IMAGE_BYTES // 1_000_000 == 10
    at = open_page(PAGE)
    assert at.file_uploader(key="score_upload").proto.max_upload_size_mb == 10
    train = open_page("views/train.py")
    assert [u.proto.max_upload_size_mb for u in train.file_uploader] == [1]


def test_without_the_mnist_files_the_shipped_gallery_is_offered(scored: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(tmp_path))  # no IDX files there
    at = open_page(PAGE)
    assert not at.exception
    picker = at.number_input(key="score_index")
    assert "from the gallery shipped with the app" in picker.label and picker.max == 299
    at.number_input(key="score_index").set_value(299).run()
    assert not at.exception
    _, labels = gallery()
    caption = at.get("image")[0].captions[0]
    assert f"(a {labels[299]}, from the gallery shipped with the app)" in caption
    assert len(bits_shown(at)) == 3


# --- Wording -------------------------------------------------------------------------------------


def test_where_a_score_stands_is_said_in_words_at_the_ends() -> None:
    """No "0th percentile": below every test digit, or below the 1st percentile, is said as such."""
    test_bits = np.linspace(1.0, 2.0, 1000)  # sorted, 0.001 apart
    assert score.standing(0.5, test_bits) == "**Fewer bits/dim than every one** of the 1,000 test digits"
    assert score.standing(2.5, test_bits) == "**More bits/dim than every one** of the 1,000 test digits"
    six_lower = test_bits[5] + 1e-6
    assert score.ordinal(score.percentile(six_lower, test_bits)) == "0th"  # what the page used to print
    assert score.standing(six_lower, test_bits) == ("**Below the 1st percentile** of the 1,000 test digits "
                                                    "(6 have fewer bits/dim)")
    assert score.standing(test_bits[0], test_bits).endswith("(none has fewer bits/dim)")  # a tie with the lowest
    assert score.standing(test_bits[370] + 1e-6, test_bits) == "**37th percentile** of the 1,000 test digits"
    assert score.standing(test_bits[985] + 1e-6, test_bits) == "**98th percentile** of the 1,000 test digits"
    six_higher = test_bits[-6] - 1e-6  # the verdict is "unusually unlikely": not a "99th percentile" beside it
    assert score.verdict(six_higher, test_bits)[0] == "unusually unlikely"
    assert score.standing(six_higher, test_bits) == ("**Above the 99th percentile** of the 1,000 test digits "
                                                     "(6 have more bits/dim)")


def test_nice_caption_names_the_one_level_term_its_chart_shows(scored: Path) -> None:
    """The caption under NICE's waterfall agrees with its bars: one level term, the same for every image."""
    images, _ = gallery()
    terms = [score.score("nice-mnist", images[i])[0].terms for i in (0, 1)]
    assert list(terms[0]) == ["pre-processing (logit)", "level 1 log-det", "final latent (784 dims)"]
    assert terms[0]["level 1 log-det"] == pytest.approx(terms[1]["level 1 log-det"], abs=1e-9)
    assert terms[0]["pre-processing (logit)"] != terms[1]["pre-processing (logit)"]
    at = open_page(PAGE)
    caption = next(c.value for c in at.caption if c.value.startswith("NICE has one scale"))
    assert "one term (level 1 log-det)" in caption and "same for every image" in caption
    assert not any("factored-out" in name for name in terms[0])


# --- Sensitivity maps ----------------------------------------------------------------------------


def shown_maps(at) -> dict[str, np.ndarray]:
    """The sensitivity maps on the page, title -> (28, 28) change, in page order."""
    import pyarrow as pa

    maps = {}
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        if spec.get("description", "").startswith("Heatmap"):
            frame = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
            maps[spec["title"]] = frame.sort_values(["row", "col"])["change"].to_numpy().reshape(28, 28)
    return maps


def test_sensitivity_map_is_each_pixel_changed_alone(scored: Path) -> None:
    """Every one of the 784 values is the change of the total bits with that pixel alone changed by
    BRIGHTEN grey levels (darkened, sign turned, near white), the noise fixed: one copy at a time."""
    images, _ = gallery()
    digit = images[3].copy()
    digit[14, 14] = 255  # a white pixel: darkened
    noise = flowcore.breakdown.score_noise((784,), draws=1)[0].reshape(1, 1, 28, 28)
    for model in MODELS:
        flow, _ = catalogue.pretrained_flow(model)
        change, _ = score.sensitivity(model, digit)
        x = torch.from_numpy(digit.astype(np.float32)).reshape(1, 1, 28, 28)
        steps = np.where(digit.astype(int) + score.BRIGHTEN <= 255, score.BRIGHTEN, -score.BRIGHTEN)
        with torch.no_grad():
            base = -flow.log_prob(x + noise).double().item() / math.log(2)
            by_hand = np.empty((28, 28))
            for row in range(28):  # one row of pixels at a time, each on a copy of its own
                copies = x.repeat(28, 1, 1, 1)
                for col in range(28):
                    copies[col, 0, row, col] += float(steps[row, col])
                bits = -flow.log_prob(copies + noise).double() / math.log(2)
                by_hand[row] = (bits.numpy() - base) * score.BRIGHTEN / steps[row]
        np.testing.assert_allclose(change, by_hand, rtol=1e-4, atol=1e-3, err_msg=model)
        # the untrained NICE stand-in is exactly uniform on the pixel cube (logistic prior after a
        # logit): its map is flat; the other two stand-ins' maps are not
        assert model == "nice-mnist" or np.abs(change).max() > 0.5, model


def test_the_maps_shown_are_those_of_the_digit_shown(scored: Path) -> None:
    """After a new digit every map is that digit's (none left over from the previous digit, no
    "computing" note), in the models' order, above the model's version."""
    images, _ = gallery()
    at = open_page(PAGE)
    first = shown_maps(at)
    assert list(first) == ["NICE", "RealNVP", "Glow"]
    at.number_input(key="score_index").set_value(7).run()
    assert not at.exception
    digit = score.test_digits()[0][7]
    maps = shown_maps(at)
    assert list(maps) == ["NICE", "RealNVP", "Glow"]
    for model, title in zip(MODELS, maps, strict=True):
        np.testing.assert_allclose(maps[title], score.sensitivity(model, digit)[0], rtol=1e-6, atol=1e-9)
        assert model == "nice-mnist" or np.abs(maps[title] - first[title]).max() > 0.1  # NICE's stand-in: flat
    assert "computing the map" not in texts(at)
    order = [n.value if n.type == "header" else "map" for n in at.main
             if n.type == "header" or (n.type == "vega_lite_chart" and "Heatmap" in n.proto.spec)]
    assert order[-5:] == ["Which pixels matter", "map", "map", "map", "The model's version of your digit"]
    at.slider(key="score_temperature").set_value(0.8).run()  # the same digit: its maps again
    assert not at.exception
    assert all(np.array_equal(shown_maps(at)[t], maps[t]) for t in maps)
