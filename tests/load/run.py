"""Many visitors at once: real Chromium sessions train live on one dashboard server.

    python -m tests.load.run                    # 8 sessions for 60 s; rewrites the figures in RELIABILITY.md
    python -m pytest -m load tests/load -q -s   # the same run as a test (left out of the default run)

`streamlit run` serves the app on loopback (`devtools/browser.py`), with the shipped
pretrained models when `pretrained/` holds all three (else the tiny stand-ins). One Chromium
opens a separate context, so a separate Streamlit session, per visitor (`visitor.py`): each
trains its own model live, scrubs layers, visits Sample once (every other visitor Score too) and
pauses at the end.
Meanwhile the resident memory of the server's process tree is sampled every half second,
and its peak (VmHWM) read at the end. The run drives for `--duration` seconds and gives up
after `DEADLINE_S` whatever happens, so it always stops by itself. Problems (errors shown,
one session seeing another's state, memory over `MAX_RSS_MB`) fail it; speeds are only
reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import streamlit
from playwright.async_api import async_playwright

from devtools.browser import REPO, children, real_pretrained, serve, server_pid
from flowcore.device import hardware_name
from tests.dashboard.fixtures import make_pretrained
from tests.load.visitor import Record, Visitor, drive, finish, launch, open_visitor

SESSIONS = 8
DURATION_S = 60.0
MAX_RSS_MB = 2048  # the server's bound: torch + streamlit + the pretrained models take about 0.5 GB
DEADLINE_S = 900  # for everything, start-up and page loads on a loaded machine included
REPORT = REPO / "RELIABILITY.md"
BEGIN, END = "<!-- load test: begin -->", "<!-- load test: end -->"


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Memory:
    """Resident memory of a process and its descendants (MB), sampled by `watch()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []

    def rss_mb(self) -> float:
        tree, todo, total = children(), [self.pid], 0
        while todo:
            pid = todo.pop()
            todo += tree.get(pid, [])
            try:
                total += _status_kb(pid, "VmRSS")
            except OSError:  # ended meanwhile
                pass
        return total / 1024

    def peak_mb(self) -> float:
        """VmHWM: the server's own peak resident memory since it started."""
        return _status_kb(self.pid, "VmHWM") / 1024

    async def watch(self, every_s: float = 0.5) -> None:
        while True:
            self.samples.append(self.rss_mb())
            await asyncio.sleep(every_s)


async def _guard(record: Record, work: Any) -> Any:
    """`await work`; a failure (a timeout waiting for the page) becomes a problem of `record`."""
    try:
        return await work
    except Exception as err:  # noqa: BLE001 - reported, and the other sessions go on
        record.problem(f"{type(err).__name__} waiting for {record.phase}: {str(err).strip().splitlines()[0][:300]}")
        return None


async def _visit(url: str, records: list[Record], duration_s: float, memory: Memory) -> dict[str, Any]:
    watcher = asyncio.create_task(memory.watch())
    try:
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                pages = await asyncio.gather(*(_guard(r, open_visitor(browser, url, r)) for r in records))
                loaded = memory.rss_mb()
                start = time.monotonic()
                n = len(records)
                await asyncio.gather(*(
                    _guard(r, drive(page, r, start + duration_s, start + duration_s * (0.3 + 0.4 * i / max(1, n - 1))))
                    for i, (page, r) in enumerate(zip(pages, records, strict=True)) if page is not None))
                driven, end_rss = time.monotonic() - start, memory.rss_mb()
                await asyncio.gather(*(_guard(r, finish(page, r)) for page, r in zip(pages, records, strict=True)
                                       if page is not None))
                return {"chromium": browser.version, "loaded_rss_mb": loaded, "end_rss_mb": end_rss,
                        "driven_s": driven}
            finally:
                await browser.close()
    finally:
        watcher.cancel()


def run(sessions: int = SESSIONS, duration_s: float = DURATION_S, pretrained: Path | None = None) -> dict[str, Any]:
    """Serve the app, drive `sessions` visitors for `duration_s`; the figures and problems found."""
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as stand_ins:
        models = pretrained or real_pretrained() or make_pretrained(stand_ins)
        records = [Record(v, *v.shape()) for v in map(Visitor.make, range(sessions))]
        with serve(models) as url:
            memory = Memory(server_pid(url))
            idle = memory.rss_mb()
            seen = asyncio.run(asyncio.wait_for(_visit(url, records, duration_s, memory), DEADLINE_S))
            peak = memory.peak_mb()
    problems = [f"session {r.visitor.index + 1}: {p}" for r in records for p in r.problems]
    if peak > MAX_RSS_MB:
        problems.append(f"the server's peak resident memory {peak:.0f} MB is over the bound of {MAX_RSS_MB} MB")
    rows = [r.summary() for r in records]
    layer = sorted(s for r in records for s in r.layer_s)
    temperature = sorted(s for r in records for s in r.temperature_s)
    score = sorted(s for r in records for s in r.score_s)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{hardware_name()}, {os.cpu_count()} cores, load average {load_before[0]:.1f} before the run",
        "chromium": seen["chromium"], "streamlit": streamlit.__version__,
        "pretrained": "shipped MNIST models" if models == real_pretrained() else "tiny stand-in models",
        "sessions": sessions, "duration_s": seen["driven_s"], "wall_s": time.monotonic() - started,
        "held": sum(not r.problems for r in records), "rows": rows, "problems": problems,
        "idle_rss_mb": idle, "loaded_rss_mb": seen["loaded_rss_mb"], "end_rss_mb": seen["end_rss_mb"],
        "max_sampled_rss_mb": max(memory.samples, default=idle), "peak_rss_mb": peak, "max_rss_mb": MAX_RSS_MB,
        "total_steps_per_s": sum(r["steps_per_s"] or 0 for r in rows),
        "layer_moves": len(layer), "layer_s_median": statistics.median(layer) if layer else None,
        "layer_s_p90": layer[math.ceil(0.9 * len(layer)) - 1] if layer else None,  # nearest rank
        "layer_s_max": layer[-1] if layer else None,
        "temperature_s_median": statistics.median(temperature) if temperature else None,
        "temperature_s_max": temperature[-1] if temperature else None,
        "score_visits": len(score), "score_s_median": statistics.median(score) if score else None,
        "score_s_max": score[-1] if score else None,
        "script_errors": sum(r["script_errors"] for r in rows),
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def markdown(r: dict[str, Any]) -> str:
    """The figures of one run, as the RELIABILITY.md section between `BEGIN` and `END`."""
    # the budget's count against the step counter shown with it, at the last reading while playing
    uncounted = sum((row.get("steps_used_at") or 0) - (row["steps_used"] or 0) for row in r["rows"])
    lines = [
        BEGIN,
        f"Last run: {r['date']}, {r['machine']}; Chromium {r['chromium']}, Streamlit {r['streamlit']}, "
        f"{r['pretrained']}. Command: `python -m tests.load.run` (took {r['wall_s']:.0f} s).",
        "",
        f"- sessions held: **{r['held']} of {r['sessions']}** for {r['duration_s']:.0f} s, each training live "
        f"on its own data set and model; problems: {len(r['problems'])}"
        + "".join(f"\n  - {p}" for p in r["problems"]),
        f"- server memory (process tree, resident): {r['idle_rss_mb']:.0f} MB idle, {r['loaded_rss_mb']:.0f} MB "
        f"with every session open, {r['end_rss_mb']:.0f} MB after {r['duration_s']:.0f} s; peak **"
        f"{r['peak_rss_mb']:.0f} MB** (VmHWM; bound {r['max_rss_mb']} MB)",
        f"- training: {r['total_steps_per_s']:.0f} steps/s in all, shared by the sessions; steps trained but not "
        f"counted towards the per-session cap: {uncounted}",
        f"- layer scrubber, move to that layer shown: median {_f(r['layer_s_median'], 2)} s, 90th percentile "
        f"{_f(r['layer_s_p90'], 2)} s, max {_f(r['layer_s_max'], 2)} s over {r['layer_moves']} moves",
        f"- Sample's temperature slider, move to new grid caption: median {_f(r['temperature_s_median'], 2)} s, "
        f"max {_f(r['temperature_s_max'], 2)} s",
        f"- Score, a brush stroke released to the three models' new bits/dim shown: median "
        f"{_f(r.get('score_s_median'), 2)} s, max {_f(r.get('score_s_max'), 2)} s over {r.get('score_visits', 0)} "
        "visits (every other session)",
        f"- JavaScript errors in the pages: {r['script_errors']}",
        "",
        "| session | data | model | params | steps | steps used / counter (last read while playing) | steps/s "
        "| counter updates/s | layer moves | layer s (median / max) | temperature s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['session']} | {row['data']} (seed {row['seed']}) | {row['model']} {row['depth']}x{row['width']} "
            f"| {row['params']:,} | {row['steps']:,} | {_n(row['steps_used'])} / {_n(row.get('steps_used_at'))} "
            f"| {_f(row['steps_per_s'])} | {_f(row['updates_per_s'])} | {row['layer_moves']} "
            f"| {_f(row['layer_s_median'], 2)} / {_f(row['layer_s_max'], 2)} "
            f"| {', '.join(f'{s:.2f}' for s in row['temperature_s']) or '–'} |")
    if uncounted:
        lines += ["", "Steps not counted: live training runs on a thread of its own (`dashboard/background.py`) "
                  "and counts each step right after it, out of reach of Streamlit's rerun exception, so this "
                  "should be 0; a count here means a bookkeeping bug."]
    return "\n".join([*lines, END])


def write_report(section: str, path: Path = REPORT) -> None:
    """Replace the load-test section of `path` (appended if it has none)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="concurrent browser sessions")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds of driving")
    parser.add_argument("--pretrained", type=Path, help="folder of pretrained models (default: the shipped ones)")
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RELIABILITY.md alone")
    args = parser.parse_args(argv)
    result = run(args.sessions, args.duration, args.pretrained)
    section = markdown(result)
    print(section)
    if not args.no_write:
        write_report(section)
        print(f"wrote {REPORT}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
