"""The dashboard in a real browser: `streamlit run` on a free local port, driven by Chromium.

Every page opens from the URL `st.navigation` gives it and shows its title with no exception;
the temperature slider of Sample redraws the grid; Play on Train live makes the step counter
rise and Pause stops it. The models are tiny untrained stand-ins (`tests/dashboard/fixtures.py`),
so the tests do not depend on which pretrained checkpoints exist.

`WRITE_SCREENSHOTS=1 python -m pytest tests/browser` also writes the README screenshots to
`docs/screenshots/<page>.png`, from the real `pretrained/` when its manifest lists all three
models (CI leaves the tracked files alone).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from devtools.browser import (
    CHROMIUM,
    EXCEPTION,
    PAGES,
    REPO,
    TIMEOUT_MS,
    full_screenshot,
    launch,
    new_page,
    open_page,
    real_pretrained,
    serve,
    settle,
    step_count,
)
from scripts.score_stats import score_models
from tests.dashboard.fixtures import make_pretrained
from tests.dashboard.ood_stats import make_ood_stats

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

SCREENSHOTS = REPO / "docs" / "screenshots"
IMAGES_LOADED = """least => {
    const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return images.length >= least && images.every(i => i.complete && i.naturalWidth > 0);
}"""
# What each page shows besides its title, given the stand-in manifest (test bits/dim 4.4, 1.9, 1.6).
CONTENT = {
    "home": ["Three flows on handwritten digits (MNIST)", "NICE: test bits/dim", "4.400", "1.600"],
    "train": ["Step 0", "Layer scrubber: from data to latent and back"],
    "interpolate": ["NICE", "RealNVP", "Glow"],
    "compare": ["Live race on 2-D data", "Press Start race to train the three models."],
    "sample": ["64 samples of Glow at temperature 0.70, seed 0", "All three models, same seed and temperature"],
    "score": ["How likely each model finds it", "Where the bits go", "Which pixels matter"],
    "ood": ["Bits/dim under each model", "Typicality test", "ROC: Likelihood"],
}
# at least: Interpolate, a strip per model; Sample, grid + 3 small; Out of distribution, examples of the 6 sets
IMAGES = {"interpolate": 3, "sample": 4, "ood": 6}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_ood_stats(make_pretrained(tmp_path_factory.mktemp("pretrained"))).parent
    score_models(directory, gallery_digits(60))  # Score's test-set percentiles
    return directory


@pytest.fixture(scope="module")
def server(stand_ins: Path) -> Iterator[str]:
    with serve(stand_ins) as url:  # stopped on leaving, whatever the tests did
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = launch(p)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    page = new_page(browser, server)  # a fresh context: a new Streamlit session per test
    try:
        yield page
    finally:
        page.context.close()


def assert_healthy(page: Any) -> None:
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()
    assert "Traceback" not in page.inner_text("body")


def test_navigation_lists_every_page(page: Any, server: str) -> None:
    open_page(page, server, "home")
    links = page.locator('[data-testid="stSidebarNav"] a')
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [f"{server}/{path}" for path, _ in PAGES.values()]


@pytest.mark.parametrize("name", list(PAGES))
def test_page_opens_without_error(page: Any, server: str, name: str) -> None:
    open_page(page, server, name)
    for text in CONTENT[name]:
        expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=TIMEOUT_MS)
    if name in IMAGES:
        # all of them served and decoded, none broken
        page.wait_for_function(IMAGES_LOADED, arg=IMAGES[name], timeout=TIMEOUT_MS)
    assert_healthy(page)


def gallery_digits(n: int) -> Any:
    """The first `n` digits of the gallery the app ships, `(n, 1, 28, 28)` uint8."""
    import numpy as np
    import torch

    with np.load(REPO / "dashboard" / "assets" / "mnist-gallery.npz") as npz:
        return torch.from_numpy(npz["images"][:n].copy())[:, None]


def draw_stroke(page: Any, points: list[tuple[float, float]]) -> None:
    """A brush stroke with the mouse on Score's canvas, through `points` (canvas pixels), then release."""
    box = page.locator("canvas.upper-canvas").first.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    page.mouse.up()


def test_a_drawn_stroke_is_scored_by_three_models(page: Any, server: str) -> None:
    open_page(page, server, "score")
    draw_stroke(page, [(90, 60), (150, 60), (190, 62), (170, 120), (140, 190), (125, 230)])
    expect(page.get_by_text("28 x 28, as MNIST: your drawing")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    metrics = page.locator('[data-testid="stMetric"]').filter(has_text="bits/dim")
    expect(metrics).to_have_count(3)
    values = [float(metrics.nth(i).locator('[data-testid="stMetricValue"]').inner_text()) for i in range(3)]
    assert all(v > 0 for v in values), values
    standing = r"^(\d+(st|nd|rd|th) percentile|Below the 1st percentile|(Fewer|More) bits/dim than every one)$"
    expect(page.get_by_text(re.compile(standing))).to_have_count(3)  # where each score stands among the test digits
    assert_healthy(page)


def grid_src(page: Any) -> str:
    return page.locator('[data-testid="stImage"] img').first.get_attribute("src")


def wait_for_new_src(page: Any, old: str) -> str:
    page.wait_for_function(
        """old => { const i = document.querySelector('[data-testid="stImage"] img');
                    return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }""",
        arg=old, timeout=TIMEOUT_MS)
    settle(page)
    return grid_src(page)


def test_temperature_slider_redraws_the_grid(page: Any, server: str) -> None:
    open_page(page, server, "sample")
    caption = page.get_by_text(re.compile(r"^64 samples of Glow at temperature"))
    assert "temperature 0.70" in caption.inner_text()
    first = grid_src(page)
    slider = page.get_by_role("slider", name="Temperature")
    slider.focus()
    slider.press("ArrowRight")
    second = wait_for_new_src(page, first)
    assert "temperature 0.75" in caption.inner_text()
    assert "temperature=0.75" in page.url  # the slider is bound to the query string
    slider.press("End")
    third = wait_for_new_src(page, second)
    assert "temperature 1.20" in caption.inner_text()
    assert len({first, second, third}) == 3
    assert_healthy(page)


def watch_rising(page: Any, read: Any, times: int, what: str) -> list[int]:
    """The values of `read(page)` until it has risen `times` times (at most ~60 s on a loaded
    machine); fails if it ever goes back or does not rise that often."""
    seen = [0]
    for _ in range(600):
        page.wait_for_timeout(100)
        count = read(page)
        assert count >= seen[-1], f"{what} went back: {seen} then {count}"
        if count > seen[-1]:
            seen.append(count)
        if len(seen) > times:
            return seen
    raise AssertionError(f"{what} did not keep rising: {seen}")


def test_play_trains_and_pause_stops(page: Any, server: str) -> None:
    open_page(page, server, "train")
    expect(page.get_by_role("heading", name="Step 0", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    page.locator(".st-key-play button").click()
    seen = watch_rising(page, step_count, 3, "the step counter")
    page.locator(".st-key-pause button").click()
    play = page.locator(".st-key-play button")
    play.wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector('.st-key-play button').disabled", timeout=TIMEOUT_MS)
    settle(page)
    paused = step_count(page)
    assert paused >= seen[-1]
    # Pause waits for the training thread to finish its step; a counter drawn just before that may
    # still be one behind (seen once on a loaded CI machine: 37 -> 38); after that a paused run must
    # not move, while a running one moves by several steps every 0.18 s redraw.
    page.wait_for_timeout(1500)
    settled = step_count(page)
    assert settled - paused <= 1, f"the run kept training after Pause: {paused} then {settled}"
    page.wait_for_timeout(1500)
    assert step_count(page) == settled
    assert_healthy(page)


def test_drawn_points_train(page: Any, server: str) -> None:
    """Train live's Draw source: 30 clicks on the canvas become the training set, and Play trains on it."""
    page.goto(f"{server}/train?data=Draw+your+own", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    page.get_by_role("heading", name="Train live", exact=True).wait_for(timeout=TIMEOUT_MS)
    settle(page)
    canvas = page.locator('[class*="st-key-draw_canvas"] canvas').last  # Fabric.js's top canvas takes input
    for i in range(30):  # a ring of clicks, one point each
        angle = 2 * math.pi * i / 30
        canvas.click(position={"x": 170 + 110 * math.cos(angle), "y": 170 + 70 * math.sin(angle)})
        page.wait_for_timeout(100)
    expect(page.get_by_text("In use: your drawing, 30 points")).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    page.locator(".st-key-play button").click()
    watch_rising(page, step_count, 3, "the step counter")
    page.locator(".st-key-pause button").click()
    assert_healthy(page)


# What the page says of a drawing in use, and the colour of the drawing on its canvas.
DRAWN = {"score": ("28 x 28, as MNIST: your drawing", "white"), "train": ("In use: your drawing, ", "orange")}
BLAMED = ("The drawing is empty", "Nothing is drawn")
INK = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const n = {white: 0, orange: 0};
    for (let i = 0; i < d.length; i += 4) {
        if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) n.white++;
        if (d[i] - d[i + 2] > 100) n.orange++;
    }
    return n; }"""


def ink(page: Any, name: str) -> int:
    """Pixels of the drawing's colour on page `name`'s canvas (Fabric.js draws it on its lower canvas;
    the background has a canvas of its own)."""
    return page.locator(f"{CANVASES[name][1]} canvas.dc-canvas.lower-canvas").first.evaluate(INK)[DRAWN[name][1]]


def go_to(page: Any, server: str, name: str) -> None:
    """Page `name` through the app's navigation (one session throughout), once its script has run."""
    path, title = PAGES[name]
    page.locator(f'[data-testid="stSidebarNav"] a[href="{server}/{path}"]').click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=TIMEOUT_MS)
    settle(page, 1000)


def in_use(page: Any, name: str) -> str:
    return next(line for line in page.inner_text("body").splitlines() if DRAWN[name][0] in line)


@pytest.mark.parametrize("name", ["score", "train"])
def test_a_drawing_survives_a_visit_to_another_page(page: Any, server: str, name: str) -> None:
    """Draw, go to another page and back: the canvas shows the drawing, which stays in use without
    a warning, and a new stroke adds to it."""
    open_page(page, server, name, CANVASES[name][0])
    draw_stroke(page, [(90, 60), (150, 60), (190, 62), (170, 120), (140, 190), (125, 230)])
    expect(page.get_by_text(DRAWN[name][0]).first).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    drawn, used = ink(page, name), in_use(page, name)
    assert drawn > 500
    go_to(page, server, "ood")
    go_to(page, server, name)
    assert ink(page, name) >= 0.95 * drawn  # the same strokes, on the canvas
    assert in_use(page, name) == used and not any(b in page.inner_text("body") for b in BLAMED)
    draw_stroke(page, [(60, 300 - 40), (220, 300 - 40)])
    settle(page)
    assert ink(page, name) > drawn * 1.2 and not any(b in page.inner_text("body") for b in BLAMED)
    if name == "train":
        assert in_use(page, name) != used  # more points
    assert_healthy(page)


RACE_STEP = re.compile(r"Step ([\d,]+) of ([\d,]+)")


def race_step(page: Any) -> int:
    match = RACE_STEP.search(page.inner_text("body"))
    return int(match.group(1).replace(",", "")) if match else 0


def test_race_runs_and_stops(page: Any, server: str) -> None:
    open_page(page, server, "compare")
    page.locator(".st-key-race_start button").click()
    watch_rising(page, race_step, 2, "the race counter")
    page.locator(".st-key-race_stop button").click()
    page.locator(".st-key-race_resume button").wait_for(state="visible", timeout=TIMEOUT_MS)
    settle(page)
    stopped = race_step(page)
    page.wait_for_timeout(1500)
    assert race_step(page) == stopped, "the race kept training after Stop"
    assert_healthy(page)


# --- Every page fits a phone and a laptop -----------------------------------------------------

WIDTHS = (390, 1280)
# Every element whose visible right edge lies beyond the viewport (an ancestor with overflow hidden
# clips it; Streamlit scrolls its main block, so the document's scroll width is checked too), every
# box that scrolls sideways inside the page, and every image without alt text.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const name = e => { const owner = e.closest('[data-testid]');
                        return `${owner ? owner.dataset.testid : ''} ${e.tagName.toLowerCase()}`; };
    const wide = [], scrolling = [];
    for (const e of document.body.querySelectorAll('*')) {
        const r = e.getBoundingClientRect(), style = getComputedStyle(e);
        if (r.width === 0 || r.height === 0 || style.visibility === 'hidden') continue;
        if (['auto', 'scroll'].includes(style.overflowX) && e.scrollWidth > e.clientWidth + 1
            && e.closest('[data-testid="stMain"]')) scrolling.push(name(e));
        let right = r.right;
        for (let a = e.parentElement; a && right > width + 1; a = a.parentElement) {
            if (getComputedStyle(a).overflowX !== 'visible') right = Math.min(right, a.getBoundingClientRect().right);
        }
        if (right > width + 1) wide.push(`${name(e)}: right edge ${Math.round(right)}`);
    }
    const scrollers = [document.documentElement, document.querySelector('[data-testid="stMain"]')].filter(Boolean);
    const scroll = Math.max(...scrollers.map(e => e.scrollWidth));
    const noAlt = [...document.querySelectorAll('[data-testid="stMain"] img')].filter(i => !(i.alt || '').trim())
        .map(name);
    return {width, scroll, wide: wide.slice(0, 6), scrolling: scrolling.slice(0, 6), noAlt};
}"""


def navigation(page: Any, server: str) -> list[tuple[str, str]]:
    """(URL, label) of every page `st.navigation` lists: the pages others add are covered too."""
    page.goto(server, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    links = page.locator('[data-testid="stSidebarNav"] a')
    links.first.wait_for(timeout=TIMEOUT_MS)
    return [(links.nth(i).get_attribute("href"), links.nth(i).inner_text().strip().splitlines()[-1])
            for i in range(links.count())]


def test_every_page_fits_the_screen_at_every_width(browser: Any, server: str) -> None:
    first = new_page(browser, server)
    try:
        pages = navigation(first, server)
    finally:
        first.context.close()
    assert len(pages) >= len(PAGES)
    problems = []
    for width in WIDTHS:
        for url, label in pages:
            page = new_page(browser, server, {"width": width, "height": 900})
            try:
                page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
                page.locator("h1").first.wait_for(timeout=TIMEOUT_MS)
                settle(page)
                page.wait_for_timeout(1000)  # charts lay themselves out after the script run
                found = page.evaluate(OVERFLOW)
                if page.locator(EXCEPTION).count():
                    problems.append(f"{label} at {width} px: an exception box")
                if found["scroll"] > found["width"] or found["wide"]:
                    problems.append(f"{label} at {width} px: wider than the viewport (scroll width "
                                    f"{found['scroll']}): {found['wide']}")
                if found["scrolling"]:
                    problems.append(f"{label} at {width} px: scrolls sideways in {found['scrolling']}")
                if found["noAlt"]:
                    problems.append(f"{label} at {width} px: images without alt text in {found['noAlt']}")
            finally:
                page.context.close()
    assert not problems, "\n".join(problems)


# Every box on the page with something to see (text, an image, a chart, a control) that meets `box`,
# leaving out the element containers that hold `own` (the element being checked).
COVERED = """([box, own]) => {
    const mine = document.querySelector(own);
    const meets = r => r.left < box.x + box.width && box.x < r.right && r.top < box.y + box.height && box.y < r.bottom;
    return [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"], '
                                         + '[data-testid="stMain"] [data-testid="stTab"]')]
        .filter(e => !e.contains(mine) && !mine.contains(e))
        .filter(e => e.innerText.trim() || e.querySelector('img, canvas, svg, button, input'))
        .filter(e => meets(e.getBoundingClientRect()))
        .map(e => `${e.dataset.testid} "${e.innerText.trim().slice(0, 40)}"`);
}"""


def assert_toolbar_covers_nothing(page: Any, own: str) -> None:
    """Hover the drawable canvas in the element container `own`: its toolbar, which then floats
    above the canvas, covers no other element."""
    canvas = page.locator(f"{own} canvas.upper-canvas").first
    canvas.hover()
    expect(page.locator(f"{own} .dc-toolbar").first).to_have_css("opacity", "1")
    page.wait_for_timeout(400)  # the toolbar slides up as it fades in
    card = page.locator(f"{own} .dc-toolbar-card").first.bounding_box()
    box = canvas.bounding_box()
    assert card["y"] + card["height"] <= box["y"] + 1, (card, box)  # it sits above the canvas
    covered = page.evaluate(COVERED, [card, own])
    width = page.viewport_size["width"]
    assert not covered, f"at {width} px the toolbar {card} covers {covered}"


CANVASES = {  # page -> (query that shows its canvas, the canvas's own container)
    "score": ("", '[class*="st-key-score_canvas"]'),  # next to the tab labels
    "train": ("data=Draw+your+own", '[class*="st-key-draw_canvas"]'),  # under the Tool control
}


@pytest.mark.parametrize("name", CANVASES)
@pytest.mark.parametrize("width", WIDTHS)
def test_canvas_toolbar_covers_nothing(browser: Any, server: str, width: int, name: str) -> None:
    """The drawing canvas's toolbar covers no other element of its page (Score, Train live's Draw)."""
    query, own = CANVASES[name]
    page = new_page(browser, server, {"width": width, "height": 900})
    try:
        open_page(page, server, name, query)
        assert_toolbar_covers_nothing(page, own)
    finally:
        page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_home_pictures_fill_their_column(browser: Any, server: str, width: int) -> None:
    page = new_page(browser, server, {"width": width, "height": 900})
    try:
        open_page(page, server, "home")
        charts = page.locator('[data-testid="stColumn"] [data-testid="stVegaLiteChart"]')
        expect(charts).to_have_count(2)
        page.wait_for_timeout(500)  # charts lay themselves out after the script run
        viewport = page.evaluate("document.documentElement.clientWidth")
        for i in range(2):
            chart = charts.nth(i).bounding_box()
            column = charts.nth(i).locator('xpath=ancestor::*[@data-testid="stColumn"][1]').bounding_box()
            assert chart["x"] + chart["width"] <= viewport + 1, (width, chart)
            assert chart["width"] >= column["width"] - 1, (width, chart, column)
            if width >= 1280:
                assert chart["width"] > 300, (width, chart)
    finally:
        page.context.close()


def test_interpolation_strips_are_large_at_1280_px(browser: Any, server: str) -> None:
    page = new_page(browser, server)
    try:
        open_page(page, server, "interpolate")
        page.wait_for_function(IMAGES_LOADED, arg=IMAGES["interpolate"], timeout=TIMEOUT_MS)
        strips = page.locator('[data-testid="stImage"] img[alt*="morphing"]')
        assert strips.count() == 3
        # 7 images a row by default, each 28 pixels with 2 of padding, 2 more at the right edge
        per_digit = [strips.nth(i).bounding_box()["width"] * 28 / (7 * 30 + 2) for i in range(3)]
        assert min(per_digit) >= 100, per_digit
    finally:
        page.context.close()


# --- README screenshots (WRITE_SCREENSHOTS=1) ------------------------------------------------


def train_for_screenshot(page: Any, steps: int = 1500) -> None:
    """Play until `steps` (or 60 s), then Pause, so the picture shows a trained density."""
    page.locator(".st-key-play button").click()
    for _ in range(600):
        page.wait_for_timeout(100)
        if step_count(page) >= steps:
            break
    page.locator(".st-key-pause button").click()
    page.wait_for_function("() => !document.querySelector('.st-key-play button').disabled", timeout=TIMEOUT_MS)
    settle(page)


@pytest.mark.skipif(os.environ.get("WRITE_SCREENSHOTS") != "1", reason="set WRITE_SCREENSHOTS=1 to rewrite "
                    "docs/screenshots (CI leaves the tracked files alone)")
def test_write_screenshots(browser: Any, stand_ins: Path) -> None:
    chosen = os.environ.get("SCREENSHOT_PAGES")  # e.g. "home,compare": only those (others may be regenerating theirs)
    with serve(real_pretrained() or stand_ins) as url:
        for name in [n for n in PAGES if not chosen or n in chosen.split(",")]:
            page = new_page(browser, url)
            try:
                open_page(page, url, name)
                if name == "train":
                    train_for_screenshot(page)
                if name == "score":  # a digit drawn with the mouse, scored by the three models
                    draw_stroke(page, [(90, 60), (150, 60), (190, 62), (170, 120), (140, 190), (125, 230)])
                    expect(page.get_by_text("28 x 28, as MNIST: your drawing")).to_be_visible(timeout=TIMEOUT_MS)
                    settle(page)
                if name in IMAGES:
                    page.wait_for_function(IMAGES_LOADED, arg=IMAGES[name], timeout=TIMEOUT_MS)
                assert_healthy(page)
                full_screenshot(page, SCREENSHOTS / f"{name}.png")
            finally:
                page.context.close()
