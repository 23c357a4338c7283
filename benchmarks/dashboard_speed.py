"""How fast the dashboard feels, measured in a real browser: `python -m benchmarks.dashboard_speed`.

Serves the dashboard with `streamlit run` (torch on one thread) and drives Debian's Chromium:

(a) first page: from navigation start to the Home title being visible, on the first visit
    after the server came up (cold) and on later visits (warm);
(b) temperature slider: from pressing ArrowRight on the Sample slider to the new 8x8 grid
    being loaded and shown (its `src` changed), median over `--moves` moves;
(c) live training on two moons (defaults of Train live): redraws per second (how often the
    step counter on screen changes) and optimisation steps per second (from that counter),
    over the first 10 s after Play;
(d) two moons "looks right": after Play, the first time from which the displayed held-out NLL
    stays within 0.1 nats of its value after `--train-seconds` (30) seconds;
(e) drawing to training: on Train live's Draw source, from the release of a brush stroke to the
    first training step on the drawn points shown, with Play already on while drawing (a new
    drawing retrains at once), and with Play pressed as soon as the page says the drawing is in
    use (median of `--draws` fresh sessions each). `--only-draw` measures (e) alone and prints its
    rows without writing the file.

Prints a Markdown table with the targets beside the measurements and writes it, with the
machine, versions, command and CPU load, to `benchmarks/DASHBOARD_SPEED.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devtools.browser import (  # noqa: E402
    BUSY,
    PAGES,
    TIMEOUT_MS,
    launch,
    new_page,
    open_page,
    serve,
    server_pid,
    settle,
    step_count,
)

NLL_TOLERANCE = 0.1  # nats: "looks right" = held-out NLL within this of its value at the end
RATE_WINDOW_S = 10.0  # redraws and steps per second are measured over this long after Play

# In-page JavaScript. `performance.now()` counts milliseconds from the navigation start.
HEADING_SHOWN = """title => {
    const h = [...document.querySelectorAll('h1')].find(e => e.textContent.trim().startsWith(title));
    return h && h.getBoundingClientRect().height > 0 ? performance.now() : false;
}"""
IDLE_SINCE = """([selector, quietMs]) => {
    const now = performance.now();
    if (document.querySelector(selector)) { window.__idleSince = undefined; return false; }
    if (window.__idleSince === undefined) window.__idleSince = now;
    return now - window.__idleSince >= quietMs ? window.__idleSince : false;
}"""
NEW_GRID_SHOWN = """old => {
    const i = document.querySelector('[data-testid="stImage"] img');
    return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0
        ? performance.now() - window.__t0 : false;
}"""
DRAWING_IN_USE = """() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .some(e => e.textContent.includes('In use: your drawing')) ? performance.now() : false"""
# A step of the model on the drawing: at least 1, and below `below` (the step the model trained before
# the drawing had reached, when Play was on: the new model counts from 0).
FIRST_STEP_SHOWN = """below => {
    const h = [...document.querySelectorAll('h3')].map(e => e.textContent.trim()).find(t => /^Step [\\d,]+$/.test(t));
    const step = h ? parseInt(h.slice(5).replaceAll(',', '')) : 0;
    return step >= 1 && (below === null || step < below) ? performance.now() : false;
}"""
# Records every change of the step counter of Train live with the held-out NLL shown beside it.
RECORD_STEPS = """() => {
    window.__records = [];
    const metric = label => {
        const m = [...document.querySelectorAll('[data-testid="stMetric"]')]
            .find(e => e.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim().startsWith(label));
        const v = m && parseFloat(m.querySelector('[data-testid="stMetricValue"]').textContent);
        return Number.isFinite(v) ? v : null;
    };
    let last = null;
    const read = () => {
        const h = [...document.querySelectorAll('h3')].map(e => e.textContent.trim())
            .find(t => /^Step [\\d,]+$/.test(t));
        if (!h || h === last) return;
        last = h;
        window.__records.push({t: performance.now(), step: parseInt(h.slice(5).replaceAll(',', '')),
            nll: metric('Held-out NLL'), sps: metric('Steps'), rps: metric('Redraws')});
    };
    new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
    read();
}"""


@dataclass
class Row:
    what: str
    measured: str
    target: str
    ok: bool | None  # None: no target

    def markdown(self) -> str:
        mark = "" if self.ok is None else ("yes" if self.ok else "**no**")
        return f"| {self.what} | {self.measured} | {self.target} | {mark} |"


def wait_value(page: Any, script: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
    return page.wait_for_function(script, arg=arg, polling="raf", timeout=timeout_ms).json_value()


def first_page(browser: Any, url: str, warm_visits: int) -> tuple[float, float, list[float]]:
    """Seconds from navigation start to the Home title visible and to the page idle (first
    visit), and title-visible seconds of `warm_visits` later visits, each a new session."""
    title = PAGES["home"][1]
    times = []
    for visit in range(1 + warm_visits):
        page = new_page(browser, url)
        page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
        shown = wait_value(page, HEADING_SHOWN, title) / 1000
        if visit == 0:
            idle = wait_value(page, IDLE_SINCE, [BUSY, 500]) / 1000
        times.append(shown)
        page.context.close()
    return times[0], idle, times[1:]


REFERENCE_APP = f"import streamlit as st\n\nst.title({PAGES['home'][1]!r})\n"


def reference_first_page(browser: Any, warm_visits: int, cpus: set[int] | None) -> tuple[float, list[float]]:
    """The (a) measurement for a Streamlit app whose whole script is `st.title` with Home's title,
    served the same way: what Streamlit itself costs on this machine before any of this app runs."""
    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "title_only.py"
        app.write_text(REFERENCE_APP)
        with serve(REPO / "pretrained", cpus=cpus, app=app) as url:
            cold, _, warm = first_page(browser, url, warm_visits)
    return cold, warm


def slider_moves(browser: Any, url: str, moves: int) -> tuple[list[float], str]:
    """Seconds from ArrowRight on the temperature slider to the new grid shown, per move."""
    page = new_page(browser, url)
    open_page(page, url, "sample")
    caption = page.get_by_text("samples of", exact=False).first.inner_text()
    slider = page.get_by_role("slider", name="Temperature")
    times = []
    for _ in range(moves):
        old = page.locator('[data-testid="stImage"] img').first.get_attribute("src")
        slider.focus()
        page.evaluate("() => { window.__t0 = performance.now(); }")
        slider.press("ArrowRight")
        times.append(wait_value(page, NEW_GRID_SHOWN, old) / 1000)
        settle(page)  # the three small grids below are drawn too before the next move
    page.context.close()
    return times, caption


def live_training(browser: Any, url: str, seconds: float) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Play on Train live (two moons, RealNVP, the page's defaults) for `seconds`; the
    records of every step-counter change, times in seconds after Play, and where the CPU went
    in the first `RATE_WINDOW_S` seconds (see `cpu_shares`)."""
    page = new_page(browser, url)
    open_page(page, url, "train")
    page.evaluate(RECORD_STEPS)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    try:
        server: int | None = server_pid(url)
    except (OSError, RuntimeError):  # no /proc (not Linux): the CPU row says n/a
        server = None
    play_at = page.evaluate("() => performance.now()")
    before = cpu_counters(cdp, server)
    page.locator(".st-key-play button").click()
    window_s = min(seconds, RATE_WINDOW_S)
    page.wait_for_timeout(window_s * 1000)
    shares = cpu_shares(before, cpu_counters(cdp, server))
    page.wait_for_timeout((seconds - window_s) * 1000)
    records = page.evaluate("() => window.__records")
    page.locator(".st-key-pause button").click()
    page.context.close()
    return [{**r, "t": (r["t"] - play_at) / 1000} for r in records if r["t"] > play_at], shares


def drawing_to_training(browser: Any, url: str, draws: int, play_first: bool) -> list[tuple[float, float]]:
    """(seconds to "In use: your drawing", seconds to the first step shown) after releasing a brush
    stroke of about 65 points on Train live's canvas; with `play_first`, Play was on while drawing
    (for at least 300 steps of the model shown before), else it is clicked as soon as the drawing is
    in use. One fresh session per measurement."""
    times = []
    for _ in range(draws):
        page = new_page(browser, url)
        page.goto(f"{url}/train?data=Draw+your+own", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.get_by_role("heading", name=PAGES["train"][1], exact=True).wait_for(timeout=TIMEOUT_MS)
        settle(page)
        below = None
        if play_first:
            page.locator(".st-key-play button").click()
            page.wait_for_function(FIRST_STEP_SHOWN, arg=None, timeout=TIMEOUT_MS)
            while (below := step_count(page)) < 300:
                page.wait_for_timeout(200)
        canvas = page.locator('[class*="st-key-draw_canvas"] canvas').last
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        x, y = box["x"] + 60, box["y"] + 170
        page.mouse.move(x, y)
        page.mouse.down()
        for i in range(1, 21):  # 220 px, about 5 units of data space: ~65 points
            page.mouse.move(x + 11 * i, y - 2 * i)
        released = page.evaluate("() => performance.now()")
        page.mouse.up()
        in_use = wait_value(page, DRAWING_IN_USE)
        if not play_first:
            page.locator(".st-key-play button").click()
        first = wait_value(page, FIRST_STEP_SHOWN, below)
        times.append(((in_use - released) / 1000, (first - released) / 1000))
        page.context.close()
    return times


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_counters(cdp: Any, server: int | None) -> dict[str, Any]:
    """The renderer's main-thread task time (Chrome DevTools `Performance` metrics) and the
    server's CPU seconds, in all and per thread, now."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    counters: dict[str, Any] = {"wall": time.perf_counter(), "renderer": metrics.get("TaskDuration"),
                                "server": None, "threads": {}}
    if server is not None:
        try:
            counters["server"] = _cpu_seconds(Path(f"/proc/{server}/stat"))
            tasks = list(Path(f"/proc/{server}/task").iterdir())
        except OSError:  # the server is gone
            counters["server"], tasks = None, []
        for task in tasks:
            try:
                counters["threads"][task.name] = _cpu_seconds(task / "stat")
            except OSError:  # a thread that ended meanwhile
                continue
    return counters


def cpu_shares(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Fractions of one core between two `cpu_counters`: the browser tab's main thread, the server
    process, and its busiest thread (while training plays, the training thread)."""
    wall = after["wall"] - before["wall"]
    shares = {}
    if before["renderer"] is not None and after["renderer"] is not None:
        shares["renderer"] = (after["renderer"] - before["renderer"]) / wall
    if before["server"] is not None and after["server"] is not None:
        shares["server"] = (after["server"] - before["server"]) / wall
        busiest = max((after["threads"][t] - before["threads"].get(t, 0.0) for t in after["threads"]), default=0.0)
        shares["busiest thread"] = busiest / wall
    return shares


def rates(records: list[dict[str, float]], window_s: float) -> tuple[float, float]:
    """Redraws per second and steps per second between the first change after Play and the
    last change within `window_s` seconds of Play."""
    inside = [r for r in records if r["t"] <= window_s]
    if len(inside) < 2:
        return 0.0, 0.0
    span = inside[-1]["t"] - inside[0]["t"]
    return (len(inside) - 1) / span, (inside[-1]["step"] - inside[0]["step"]) / span


def time_to_right(records: list[dict[str, float]], tolerance: float) -> tuple[float | None, float | None, int]:
    """First time from which the held-out NLL stays within `tolerance` of its last value;
    that last value; the step at that time."""
    with_nll = [r for r in records if r["nll"] is not None]
    if not with_nll:
        return None, None, 0
    final = with_nll[-1]["nll"]
    start = len(with_nll) - 1
    while start > 0 and abs(with_nll[start - 1]["nll"] - final) <= tolerance:
        start -= 1
    return with_nll[start]["t"], final, int(with_nll[start]["step"])


def machine() -> dict[str, str]:
    from importlib.metadata import version

    import streamlit
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": f"{cpu}, {os.cpu_count()} cores", "os": platform.platform(),
            "python": platform.python_version(), "streamlit": streamlit.__version__, "torch": torch.__version__,
            "playwright": version("playwright")}


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    trainers = subprocess.run(["pgrep", "-fc", "flowcore train"], capture_output=True, text=True).stdout.strip()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), `flowcore train` processes: {trainers}"


def draw_row(draws: list[tuple[float, float]], play_first: bool) -> Row:
    first = [b for _, b in draws]
    median = statistics.median(first)
    how = "Play on while drawing" if play_first else "Play clicked once the drawing is in use"
    return Row(f"(e) drawing 2-D points to the first training step, {how} (median of {len(draws)}; of "
               "which the drawing in use)", f"{median:.2f} s (max {max(first):.2f}; "
               f"{statistics.median(a for a, _ in draws):.2f} s)", "< 1 s", median < 1)


# In-page: once the three bits/dim values on Score all differ from `old`, the ms since `window.__t0`.
SCORES_SHOWN = """old => {
    const values = [...document.querySelectorAll('[data-testid="stMetric"]')]
        .filter(m => m.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim().endsWith('bits/dim'))
        .map(m => m.querySelector('[data-testid="stMetricValue"]').textContent.trim());
    return values.length === 3 && values.every((v, i) => v !== old[i]) ? performance.now() - window.__t0 : false;
}"""
SCORE_VALUES = """() => [...document.querySelectorAll('[data-testid="stMetric"]')]
    .filter(m => m.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim().endsWith('bits/dim'))
    .map(m => m.querySelector('[data-testid="stMetricValue"]').textContent.trim())"""
# Ten strokes (canvas pixels of Score's 280 px canvas), each drawn alone on a cleared canvas.
STROKES = [
    [(140, 40), (138, 140), (136, 240)], [(80, 60), (200, 60), (120, 240)], [(90, 40), (90, 230), (190, 230)],
    [(60, 140), (220, 140)], [(80, 240), (200, 40)], [(70, 60), (140, 230), (210, 60)],
    [(70, 60), (210, 60), (70, 230), (210, 230)], [(200, 60), (90, 70), (80, 200), (200, 230)],
    [(180, 40), (180, 210), (120, 240), (80, 200)], [(100, 60), (180, 60), (180, 140), (100, 140), (100, 230)],
]


SETTLED_MS = 500  # the page counts as settled once nothing has run for this long; reported as the moment it went


def score_strokes(browser: Any, url: str, strokes: int) -> tuple[list[float], list[float]]:
    """(f) On Score, seconds from releasing a brush stroke to all three models' new bits/dim shown,
    and to the whole page settled (its sensitivity maps drawn last), one stroke per cleared canvas
    (Clear, then the next of `STROKES`)."""
    page = new_page(browser, url)
    open_page(page, url, "score")
    times, settled = [], []
    for k in range(strokes):
        if k:
            page.locator(".st-key-score_clear button").click()
            settle(page)
        points = STROKES[k % len(STROKES)]
        old = page.evaluate(SCORE_VALUES)
        box = page.locator("canvas.upper-canvas").first.bounding_box()
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.evaluate("() => { window.__t0 = performance.now(); }")
        page.mouse.up()
        times.append(wait_value(page, SCORES_SHOWN, old) / 1000)
        settle(page, quiet_ms=SETTLED_MS)  # the histograms, waterfalls and maps below are drawn too
        settled.append((page.evaluate("() => performance.now() - window.__t0") - SETTLED_MS) / 1000)
    page.context.close()
    return times, settled


def score_rows(times: list[float], settled: list[float]) -> list[Row]:
    median, whole = statistics.median(times), statistics.median(settled)
    return [Row(f"(f) Score: brush stroke released to all three bits/dim shown (median of {len(times)})",
                f"{median:.2f} s (min {min(times):.2f}, max {max(times):.2f})", "< 0.5 s", median < 0.5),
            Row(f"(f) Score: the same stroke to the whole page settled, sensitivity maps drawn (median of "
                f"{len(settled)})", f"{whole:.2f} s (min {min(settled):.2f}, max {max(settled):.2f})", "", None)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, default=REPO / "pretrained",
                        help="folder with manifest.json and the MNIST checkpoints (default: pretrained/)")
    parser.add_argument("--moves", type=int, default=10, help="temperature slider moves (median)")
    parser.add_argument("--warm-visits", type=int, default=3, help="later visits of Home (median)")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="seconds of Play on two moons")
    parser.add_argument("--strokes", type=int, default=10, help="brush strokes on Score for (f) (median)")
    parser.add_argument("--only-score", action="store_true", help="measure (f) alone and print its row")
    parser.add_argument("--draws", type=int, default=5, help="drawings measured for (e) (median)")
    parser.add_argument("--only-draw", action="store_true", help="measure (e) alone and print its row")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "DASHBOARD_SPEED.md")
    parser.add_argument("--note", default="", help="a sentence for the file, e.g. what else ran on the machine")
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0, browser on the others (Linux): as when visitors' browsers run "
                             "on their own machines")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    server_cpus = None
    if args.pin:
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            parser.error("--pin needs at least 2 CPUs")
        server_cpus = {min(cpus)}
        os.sched_setaffinity(0, cpus - server_cpus)  # this script, Playwright's driver and Chromium

    from playwright.sync_api import sync_playwright

    if args.only_score:
        with sync_playwright() as p:
            browser = launch(p)
            try:
                with serve(args.pretrained, cpus=server_cpus) as url:
                    strokes, settled = score_strokes(browser, url, args.strokes)
            finally:
                browser.close()
        print(f"(f) {[round(t, 3) for t in strokes]}; settled {[round(t, 2) for t in settled]}")
        print("\n".join(row.markdown() for row in score_rows(strokes, settled)))
        return

    if args.only_draw:
        with sync_playwright() as p:
            browser = launch(p)
            try:
                with serve(args.pretrained, cpus=server_cpus) as url:
                    draws = {k: drawing_to_training(browser, url, args.draws, k) for k in (True, False)}
            finally:
                browser.close()
        for k, d in draws.items():
            print(f"(e) play first {k}: {[(round(a, 2), round(b, 2)) for a, b in d]}")
            print(draw_row(d, k).markdown())
        return

    load_before = load_note()
    with sync_playwright() as p:
        browser = launch(p)
        try:
            # the reference first, on an idle machine as Home's first visit is (after the live training
            # it would start with a busier machine and a browser that has just drawn for 30 s)
            ref_cold, ref_warm = reference_first_page(browser, args.warm_visits, server_cpus)
            print(f"(a) reference app: {ref_cold:.2f} s cold; warm {ref_warm}", flush=True)
            started = time.perf_counter()
            with serve(args.pretrained, cpus=server_cpus) as url:
                server_up_s = time.perf_counter() - started
                print(f"server up in {server_up_s:.1f} s", flush=True)
                cold, idle, warm = first_page(browser, url, args.warm_visits)
                print(f"(a) Home title {cold:.2f} s cold, page idle {idle:.2f} s; warm {warm}", flush=True)
                slider, caption = slider_moves(browser, url, args.moves)
                print(f"(b) slider {[round(s, 3) for s in slider]} ({caption})", flush=True)
                records, shares = live_training(browser, url, args.train_seconds)
                print(f"(c, d) {len(records)} redraws recorded; CPU shares {shares}", flush=True)
                strokes, settled = score_strokes(browser, url, args.strokes)
                print(f"(f) {[round(t, 3) for t in strokes]}; settled {[round(t, 2) for t in settled]}", flush=True)
                draws = {k: drawing_to_training(browser, url, args.draws, k) for k in (True, False)}
                print(f"(e) {draws}", flush=True)
            chromium = browser.version
        finally:
            browser.close()
    load_after = load_note()

    rps, sps = rates(records, RATE_WINDOW_S)
    shown = [r for r in records if r["t"] <= RATE_WINDOW_S and r["sps"] is not None]
    app_sps = statistics.median(r["sps"] for r in shown) if shown else None
    app_rps = statistics.median(r["rps"] for r in shown if r["rps"] is not None) if shown else None
    right_s, final_nll, right_step = time_to_right(records, NLL_TOLERANCE)
    slider_median = statistics.median(slider)
    warm_median = statistics.median(warm) if warm else None
    rows = [
        Row("(a) first page: Home title visible, first visit after server up", f"{cold:.2f} s", "< 2 s", cold < 2),
        Row("(a) first page: Home title visible, later visits (median)",
            f"{warm_median:.2f} s" if warm_median is not None else "n/a", "< 2 s",
            warm_median < 2 if warm_median is not None else None),
        Row("(a) Home fully drawn (no script running), first visit", f"{idle:.2f} s", "", None),
        Row("(a) reference: a Streamlit app that only shows Home's title (`st.title`), first visit / later "
            "visits (median)", f"{ref_cold:.2f} s / " + (f"{statistics.median(ref_warm):.2f} s" if ref_warm else "n/a"),
            "", None),
        Row(f"(b) temperature slider move to new 8x8 grid shown (median of {len(slider)})",
            f"{slider_median:.2f} s (min {min(slider):.2f}, max {max(slider):.2f})", "< 0.5 s", slider_median < 0.5),
        Row(f"(c) live training, two moons: redraws per second (first {RATE_WINDOW_S:g} s after Play)",
            f"{rps:.1f}" + (f" (app shows {app_rps:.1f})" if app_rps is not None else ""), ">= 5", rps >= 5),
        Row(f"(c) live training, two moons: optimisation steps per second (first {RATE_WINDOW_S:g} s)",
            f"{sps:.0f}" + (f" (app shows {app_sps:.0f})" if app_sps is not None else ""), ">= 100", sps >= 100),
        Row(f"(c) CPU in the first {min(args.train_seconds, RATE_WINDOW_S):g} s after Play, in cores: "
            "browser tab's main thread / server process / "
            "its busiest thread (the training thread)", " / ".join(
                f"{shares[k]:.2f}" if k in shares else "n/a" for k in ("renderer", "server", "busiest thread")),
            "", None),
        Row(f"(d) two moons looks right: held-out NLL within {NLL_TOLERANCE} nats of its value at "
            f"{args.train_seconds:g} s ({final_nll:.3f})" if final_nll is not None else "(d) two moons looks right",
            f"{right_s:.1f} s (step {right_step:,})" if right_s is not None else "no NLL shown", "< 5 s",
            right_s is not None and right_s < 5),
        draw_row(draws[True], True),
        draw_row(draws[False], False),
    ]
    rows += score_rows(strokes, settled)
    table = "\n".join(["| measurement | measured | target | met |", "| --- | --- | --- | --- |",
                       *(r.markdown() for r in rows)])
    print(table)

    info = machine()
    settings = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("STREAMLIT_")]
    command = " ".join([*settings, "python -m benchmarks.dashboard_speed",
                        shlex.join(argv if argv is not None else sys.argv[1:])])
    text = "\n".join([
        "# Dashboard speed, measured in a real browser",
        "",
        f"Written by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "The dashboard ran under `streamlit run` on 127.0.0.1 with torch on one thread; headless "
        f"Chromium {chromium} (Playwright {info['playwright']}) drove it at 1280x900. Server up "
        f"(health check answering) {server_up_s:.1f} s after start."
        + (f" CPUs pinned (`--pin`): the server on CPU {min(server_cpus)}, the browser on the other(s), as "
           "when a visitor's browser runs on their own machine." if server_cpus else
           " Server and browser shared all CPUs."),
        "",
        f"- machine: {info['cpu']}; {info['os']}",
        f"- versions: Python {info['python']}, Streamlit {info['streamlit']}, torch {info['torch']}",
        f"- pretrained models: `{args.pretrained}`; slider grid: {caption}",
        f"- CPU load before: {load_before}",
        f"- CPU load after: {load_after}",
        *([f"- note: {args.note}"] if args.note else []),
        "",
        table,
        "",
        "How each is measured (times from the browser's `performance.now()`):",
        "",
        "- (a) a new browser session opens `/`; time from navigation start until the `h1` of Home has a "
        "size on screen. Fully drawn: until the Streamlit status widget (\"Running...\") and every loading "
        "skeleton have been gone for 0.5 s, reported as the moment it went.",
        "- (b) ArrowRight on the focused Temperature slider of Sample (0.05 per move) until the first "
        "grid image has a new `src` and has loaded; each move at a temperature not drawn before (no "
        "cache). Streamlit's own handling of the key (it sends the value to the server) is included.",
        f"- (c) after Play on Train live with its defaults (two moons, RealNVP, depth 4, width 32, learning "
        f"rate 0.005, batches of 1,024 points), a "
        f"MutationObserver records every change of the on-screen step counter; a redraw is one change. "
        f"Rates are over the first {RATE_WINDOW_S:g} s after Play. \"App shows\": the median of the "
        "page's own steps and redraws per second metrics (measured on the server).",
        "- (a) reference: the same measurement for a one-line app (`st.title` with Home's title) served "
        "with the same flags just before the dashboard starts: the part of (a) that is Streamlit's own page "
        "load on this machine.",
        "- (c) CPU: the browser tab's main-thread task time (Chrome DevTools `Performance.getMetrics`, "
        "`TaskDuration`) and the server's CPU time (`/proc`, user + system; the busiest of its threads is "
        "the training thread while Play is on), each divided by the wall time of the window.",
        f"- (d) the held-out NLL shown on Train live (1,000 held-out points, every 25 steps), recorded "
        f"with each redraw for {args.train_seconds:g} s; the time is the first redraw after which the NLL "
        f"stays within {NLL_TOLERANCE} nats of the last value.",
        "- (e) a new session opens Train live with `?data=Draw+your+own`; a brush stroke of about 65 points "
        "is dragged on the canvas; times from the mouse release until the page says \"In use: your drawing\" "
        "(the stroke sent, turned into points, a new model built), and until the step counter shows a "
        "step of that model: with Play on while drawing (the model before it trained 300 steps), and with "
        "Play clicked as soon as the drawing is in use.",
        "- (f) on Score, a brush stroke drawn with the mouse on a cleared canvas (ten different strokes in "
        "turn); time from releasing the button until the bits/dim of NICE, RealNVP and Glow on the page all "
        "show new values. It includes the canvas sending the drawing to the server, turning it into a 28x28 "
        "digit and scoring it with the three models (already loaded). Settled: until the Streamlit status "
        "widget and every loading skeleton have been gone for 0.5 s (the sensitivity maps, 785 scorings per "
        "model, are drawn last), reported as the moment they went.",
        "",
    ])
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
