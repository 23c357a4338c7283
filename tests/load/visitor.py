"""One visitor of the load test: a browser context (its own Streamlit session) training live.

The visitor opens Train live from its own link (data set, model, depth, width, seed in the
query string), presses Play, moves the layer scrubber again and again, goes once to Sample to
move the temperature slider twice (every other visitor then goes to Score and draws a stroke
on its canvas), comes back, and at the end pauses. Every check it makes
is about its own session: no error on the page, its own data set and model shown, a step
counter that never goes back, and a step budget that counts this session's steps alone. While
Play runs, the page says at which step it will pause by itself ("Play pauses by itself at step
20,000; a click on ..."): that is the step counter plus what is left of the budget of
`limits.MAX_STEPS_UNATTENDED` steps after the last click, so for a visitor that clicked Play
once at step 0 it must read exactly 20,000 (less would count other sessions' steps, more would
leave steps uncounted), and the counter must never pass it. After Pause, Play is enabled again
and the counter stands still. Speeds are recorded, never asserted.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from dashboard.services import catalogue, limits, toy
from devtools.browser import BUSY, CHROMIUM, CHROMIUM_ARGS, QUIET, TIMEOUT_MS, VIEWPORT

# An error element, or the "connecting"/"connection error" badge of a lost websocket.
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"], [data-testid="stConnectionStatus"]'
BUDGET = limits.MAX_STEPS_UNATTENDED  # steps Play trains after the last click, then pauses by itself
# Train live while playing: the step at which Play pauses by itself (step counter + steps left of the budget).
PAUSE_AT = re.compile(r"Play pauses by itself at step ([\d,]+); a click on")
# ... and once paused:
PAUSED_RULE = f"Play runs up to {BUDGET:,} steps after your last click, then pauses by itself."
# Everything one check reads from the page, at one moment.
READ = """() => {
    const step = [...document.querySelectorAll('h3')].map(h => h.innerText.trim())
        .find(t => /^Step [\\d,]+$/.test(t));
    return {
        errors: [...document.querySelectorAll(ARG)].map(e => e.innerText.slice(0, 300)),
        data: document.querySelector('.st-key-data input')?.value ?? null,
        layers: document.querySelector('.st-key-layer input[type=range]')?.max ?? null,
        step: step ? Number(step.slice(5).replaceAll(',', '')) : null,
        updates: window.__stepUpdates ?? 0,
        text: document.body.innerText,
        all: document.body.textContent,  // also what collapsed expanders hold
    };
}""".replace("ARG", repr(ERRORS))
STRONG = "text => [...document.querySelectorAll('strong')].some(e => e.innerText.trim() === text)"
# Counts, in the page, every time the step counter shown changes: the redraws a visitor sees.
COUNT_UPDATES = r"""() => {
    window.__stepUpdates = 0;
    let last = null;
    new MutationObserver(() => {
        const h = [...document.querySelectorAll('h3')].find(e => /^Step [\d,]+$/.test(e.innerText.trim()));
        if (h && h.innerText !== last) { last = h.innerText; window.__stepUpdates += 1; }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@dataclass(frozen=True)
class Visitor:
    """What one visitor chooses; no two visitors of a run choose the same."""

    index: int
    data: str
    model: str
    depth: int
    width: int
    seed: int

    @classmethod
    def make(cls, index: int) -> Visitor:
        names = toy.TOY_NAMES
        return cls(index, names[index % len(names)], catalogue.MODEL_NAMES[index % 3], (2, 3, 4)[index // 3 % 3],
                   (16, 32)[index % 2], 10 + index)

    @property
    def scores(self) -> bool:
        """Whether this visitor also visits Score (every other one)."""
        return self.index % 2 == 0

    @property
    def data_title(self) -> str:
        return toy.TOY_TITLES[self.data]

    def link(self, url: str) -> str:
        return f"{url}/train?" + urlencode({"data": self.data_title, "model": catalogue.title(self.model),
                                            "depth": self.depth, "width": self.width, "seed": self.seed})

    def shape(self) -> tuple[int, int]:
        """(parameters, layers) of this visitor's model, as the page must show them."""
        flow = toy.build_flow(self.model, self.depth, self.width, self.seed)
        return flow.num_parameters(), len(flow.transform.layers)


@dataclass
class Record:
    """What happened to one visitor."""

    visitor: Visitor
    params: int
    layers: int
    problems: list[str] = field(default_factory=list)
    # (time, step counter, on Train live, updates of the step counter the page has shown so far)
    steps: list[tuple[float, int, bool, int]] = field(default_factory=list)
    layer_s: list[float] = field(default_factory=list)  # layer scrubber move -> that layer shown
    temperature_s: list[float] = field(default_factory=list)  # temperature move -> new grid caption
    score_s: list[float] = field(default_factory=list)  # Score: stroke released -> three bits/dim shown
    script_errors: list[str] = field(default_factory=list)  # JavaScript errors (reported)
    steps_used: int | None = None  # the budget's count of steps, from the last reading while playing ...
    steps_used_at: int | None = None  # ... and the step counter shown with it
    phase: str = "opening the page"  # what the visitor is waiting for (named in a timeout's problem)

    def problem(self, what: str) -> None:
        if what not in self.problems:
            self.problems.append(what)

    @property
    def last_step(self) -> int:
        return self.steps[-1][1] if self.steps else 0

    def rates(self) -> tuple[float | None, float | None]:
        """Steps, and updates of the step counter shown, per second of wall time while on Train
        live (the Sample visit left out)."""
        steps = updates = seconds = 0.0
        for (t0, s0, on0, u0), (t1, s1, on1, u1) in zip(self.steps, self.steps[1:], strict=False):
            if on0 and on1:
                steps, updates, seconds = steps + s1 - s0, updates + u1 - u0, seconds + t1 - t0
        return (steps / seconds, updates / seconds) if seconds > 0 else (None, None)

    def summary(self) -> dict[str, Any]:
        v = self.visitor
        median = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
        return {"session": v.index + 1, "data": v.data_title, "model": catalogue.title(v.model), "depth": v.depth,
                "width": v.width, "seed": v.seed, "params": self.params, "steps": self.last_step,
                "steps_used": self.steps_used, "steps_used_at": self.steps_used_at, "steps_per_s": self.rates()[0],
                "updates_per_s": self.rates()[1], "layer_moves": len(self.layer_s),
                "layer_s_median": median(self.layer_s), "layer_s_max": max(self.layer_s, default=None),
                "temperature_s": self.temperature_s, "score_s": self.score_s, "script_errors": len(self.script_errors),
                "problems": self.problems}


async def open_visitor(browser: Any, url: str, record: Record) -> Any:
    """A new context (a new Streamlit session) on the visitor's link, Train live shown."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    await context.route(lambda u: not u.startswith(url), lambda route: route.abort())
    page = await context.new_page()
    page.on("pageerror", lambda err: record.script_errors.append(str(err)[:300]))
    await page.goto(record.visitor.link(url), wait_until="domcontentloaded")
    await page.get_by_role("heading", name="Train live", exact=True).wait_for()
    await page.locator(".st-key-layer input[type=range]").wait_for()
    await page.evaluate(COUNT_UPDATES)
    return page


async def settle(page: Any, quiet_ms: int = 500) -> None:
    await page.evaluate("() => { delete window.__busyAt; }")
    await page.wait_for_function(QUIET, arg=[BUSY, quiet_ms], polling=100, timeout=TIMEOUT_MS)


async def check(page: Any, record: Record, on_train: bool = True) -> dict[str, Any]:
    """Read the page once; note every sign of an error or of another session's state."""
    seen = await page.evaluate(READ)
    v = record.visitor
    for error in seen["errors"]:
        record.problem(f"error shown: {error!r}")
    if "Traceback" in seen["text"]:
        record.problem("a traceback is shown")
    query = parse_qs(urlparse(page.url).query)
    if query.get("seed") != [str(v.seed)]:
        record.problem(f"the link's seed is {query.get('seed')}, not {v.seed}")
    if not on_train:
        return seen
    if seen["data"] != v.data_title:
        record.problem(f"the data set shown is {seen['data']!r}, not {v.data_title!r}")
    if f"{catalogue.title(v.model)}, {record.params:,} parameters" not in seen["all"]:  # in "Details"
        record.problem(f"the page does not show this session's {catalogue.title(v.model)} of "
                       f"{record.params:,} parameters")
    if seen["layers"] is not None and int(seen["layers"]) != record.layers:
        record.problem(f"the layer scrubber has {seen['layers']} layers, not {record.layers}")
    if seen["step"] is not None:
        if seen["step"] < record.last_step:
            record.problem(f"the step counter went back from {record.last_step} to {seen['step']}")
        record.steps.append((time.monotonic(), seen["step"], True, seen["updates"]))
        budget(seen, record)
    return seen


def budget(seen: dict[str, Any], record: Record) -> None:
    """While playing: the step Play pauses at, shown with the step counter, gives the steps this
    session's budget has counted; they must be exactly the steps trained since the one Play click
    (at step 0), and the counter must not pass the pause."""
    match = PAUSE_AT.search(seen["text"])
    if match is None:
        return
    pause_at, step = int(match.group(1).replace(",", "")), seen["step"]
    used = BUDGET - (pause_at - step)
    record.steps_used, record.steps_used_at = used, step
    if pause_at != BUDGET:
        record.problem(f"Play is to pause at step {pause_at:,} (its step counter shows {step:,}): the budget "
                       f"counts {used:,} steps used, not the {step:,} this session trained since its Play click")
    if step > pause_at:
        record.problem(f"the step counter shows {step:,}, past the step {pause_at:,} Play was to pause at")


async def move_layer(page: Any, record: Record, forward: bool) -> bool:
    """One step of the layer scrubber (turning at either end); the seconds until that layer's
    caption shows are recorded. Returns the direction of the move."""
    slider = page.locator(".st-key-layer input[type=range]")
    k, last = int(await slider.input_value()), record.layers
    forward = (forward or k == 0) and k < last
    new = k + 1 if forward else k - 1
    where = "data space" if new == 0 else "latent space" if new == last else f"after layer {new} of {last}"
    await slider.focus()
    start = time.monotonic()
    record.phase = f"the layer scrubber to show {where!r}"
    await slider.press("ArrowRight" if forward else "ArrowLeft")
    await page.wait_for_function(STRONG, arg=where, polling=50, timeout=TIMEOUT_MS)
    record.layer_s.append(time.monotonic() - start)
    return forward


async def go(page: Any, name: str, title: str) -> None:
    """Follow the sidebar link to page `name` (the same session), wait for its title."""
    await page.locator(f'[data-testid="stSidebarNav"] a[href$="/{name}"]').click()
    await page.get_by_role("heading", name=title, exact=True).wait_for()


async def visit_sample(page: Any, record: Record) -> None:
    """Sample: two moves of the temperature slider, each timed until its grid's caption shows."""
    before = record.last_step
    record.steps.append((time.monotonic(), before, False, 0))
    record.phase = "Sample to open"
    await go(page, "sample", "Sample")
    caption = "() => /at temperature 0\\.70, seed/.test(document.body.innerText)"
    await page.wait_for_function(caption, polling=100, timeout=TIMEOUT_MS)
    slider = page.locator(".st-key-temperature input[type=range]")
    for temperature in (0.75, 0.80):
        await slider.focus()
        start = time.monotonic()
        record.phase = f"the grid at temperature {temperature:.2f}"
        await slider.press("ArrowRight")
        await page.wait_for_function(f"() => document.body.innerText.includes('at temperature {temperature:.2f}, "
                                     "seed')", polling=50, timeout=TIMEOUT_MS)
        record.temperature_s.append(time.monotonic() - start)
        await check(page, record, on_train=False)
    record.phase = "Train live to open again"
    await go(page, "train", "Train live")
    await page.locator(".st-key-layer input[type=range]").wait_for()
    seen = await check(page, record)
    if seen["step"] is not None and seen["step"] < before:
        record.problem(f"back on Train live the run was at step {seen['step']}, it had reached {before}")


SCORES = """() => [...document.querySelectorAll('[data-testid="stMetric"]')]
    .filter(m => m.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim().endsWith('bits/dim'))
    .map(m => m.querySelector('[data-testid="stMetricValue"]').textContent.trim())"""


async def visit_score(page: Any, record: Record) -> None:
    """Score: one brush stroke on the canvas, timed until the three models' new bits/dim show."""
    record.phase = "Score to open"
    await go(page, "score", "Score")
    await page.wait_for_function(f"() => ({SCORES})().length === 3", polling=100, timeout=TIMEOUT_MS)
    await settle(page)
    old = await page.evaluate(SCORES)
    box = await page.locator("canvas.upper-canvas").first.bounding_box()
    offset = 10 * (record.visitor.index % 5)  # each visitor's own stroke
    await page.mouse.move(box["x"] + 90 + offset, box["y"] + 60)
    await page.mouse.down()
    for x, y in ((200, 60), (120 + offset, 240)):
        await page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
    start = time.monotonic()
    record.phase = "Score to show the stroke's three scores"
    await page.mouse.up()
    await page.wait_for_function(f"old => {{ const v = ({SCORES})(); return v.length === 3 && "
                                 "v.every((x, i) => x !== old[i]) && "
                                 "document.body.innerText.includes('as MNIST: your drawing'); }",
                                 arg=old, polling=50, timeout=TIMEOUT_MS)
    record.score_s.append(time.monotonic() - start)
    seen = await page.evaluate(READ)  # Score's address holds no seed: only errors are checked here
    for error in seen["errors"]:
        record.problem(f"error shown on Score: {error!r}")
    if "Traceback" in seen["text"]:
        record.problem("a traceback is shown on Score")
    record.phase = "Train live to open again"
    await go(page, "train", "Train live")
    await page.locator(".st-key-layer input[type=range]").wait_for()
    await check(page, record)


async def drive(page: Any, record: Record, stop: float, sample_at: float) -> None:
    """Play, then scrub layers and check the page until `stop` (one visit to Sample at `sample_at`)."""
    await page.locator(".st-key-play button").click()
    forward, sampled = True, False
    while time.monotonic() < stop:
        await check(page, record)
        forward = await move_layer(page, record, forward)
        if not sampled and time.monotonic() >= sample_at:
            await visit_sample(page, record)
            if record.visitor.scores:
                await visit_score(page, record)
            sampled = True
        await asyncio.sleep(0.5)
    await check(page, record)


async def finish(page: Any, record: Record) -> None:
    """Pause. The budget's count read last while playing (`budget`) must be positive and equal to
    the step counter shown with it; after Pause, Play is enabled, the page states the budget rule,
    and the step counter stands still."""
    if record.steps_used is None or record.steps_used_at is None or not 0 < record.steps_used == record.steps_used_at:
        record.problem(f"while playing, the session's budget counted {record.steps_used} steps used, its step "
                       f"counter showed {record.steps_used_at}")
    record.phase = "Pause to be enabled"
    pause = page.locator(".st-key-pause button")
    await page.wait_for_function("() => document.querySelector('.st-key-pause button')?.disabled === false",
                                 polling=100, timeout=TIMEOUT_MS)
    record.phase = "Play to be enabled after Pause"
    await pause.click()
    await page.wait_for_function("() => document.querySelector('.st-key-play button')?.disabled === false",
                                 polling=100, timeout=TIMEOUT_MS)
    record.phase = "the page to settle after Pause"
    await settle(page)
    seen = await check(page, record)
    if PAUSED_RULE not in seen["text"]:
        record.problem(f"after Pause the page does not say {PAUSED_RULE!r}")
    await asyncio.sleep(1.5)
    later = await check(page, record)
    if later["step"] != seen["step"]:
        record.problem(f"after Pause the step counter moved from {seen['step']} to {later['step']}")


async def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless (as `devtools.browser.launch`, for the async API)."""
    return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
