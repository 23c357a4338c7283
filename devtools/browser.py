"""Serve the dashboard with `streamlit run` and drive it with Debian's Chromium.

Used by the browser and load tests (`tests/browser`, `tests/load`) and by
`benchmarks/dashboard_speed.py`: it lives in a package of its own so that neither `tests/` nor
`benchmarks/` imports the other. Playwright never downloads a browser here: it launches the
system Chromium at `CHROMIUM`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
MNIST_DIR = Path(os.environ.get("FLOWCORE_DATA_DIR") or REPO.parent / "shared" / "data" / "mnist")
TIMEOUT_MS = 90_000  # page loads and reruns on a loaded 2-core machine can take tens of seconds

# The pages as `st.navigation` names them in the URL, with the title each page shows.
PAGES = {
    "home": ("", "Normalizing flows, explained"),
    "train": ("train", "Train live"),
    "interpolate": ("interpolate", "Interpolate"),
    "compare": ("compare", "Compare"),
    "sample": ("sample", "Sample"),
    "score": ("score", "Score"),
    "ood": ("ood", "Out of distribution"),
}
STATUS = '[data-testid="stStatusWidget"]'  # the "Running..." indicator, present while a script runs
# Busy: a script runs, or an element still waits for its lazily loaded code (a grey skeleton).
BUSY = f'{STATUS}, [data-testid="stSkeleton"]'
EXCEPTION = '[data-testid="stException"]'
STEP = re.compile(r"^Step ([\d,]+)$")  # the step counter of Train live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(pretrained: Path, *, timeout_s: float = 180, extra_env: dict[str, str] | None = None,
          cpus: set[int] | None = None, app: Path | str = "dashboard/app.py") -> Iterator[str]:
    """`streamlit run dashboard/app.py` (or `app`) on a free local port; yields its URL, stops it on exit.

    Torch gets one thread (two on a busy 2-core machine are far slower), the models come from
    `pretrained`, MNIST test digits from `MNIST_DIR` if it exists. With `cpus` (Linux) the server
    runs on those CPUs only."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FLOWCORE_TORCH_THREADS": "1",
           "FLOWCORE_PRETRAINED_DIR": str(pretrained), **(extra_env or {})}
    if MNIST_DIR.is_dir():
        env["FLOWCORE_DATA_DIR"] = str(MNIST_DIR)
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "full"]
    with tempfile.TemporaryFile("w+") as log:
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log, timeout_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{log.read()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    log.seek(0)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in {timeout_s:.0f} s:\n{log.read()[-4000:]}")


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process now (Linux `/proc`)."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def server_pid(url: str) -> int:
    """The `streamlit run` process this process started for `url`."""
    port = str(urlparse(url).port).encode()
    for pid in children().get(os.getpid(), []):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in argv and port in argv:
            return pid
    raise RuntimeError(f"no streamlit process of this process serves {url}")


def real_pretrained() -> Path | None:
    """`pretrained/` if its manifest lists the three MNIST models (by model id) and their files exist."""
    directory = REPO / "pretrained"
    try:
        models = json.loads((directory / "manifest.json").read_text())["models"]
    except (OSError, ValueError, KeyError):
        return None
    names = ("nice-mnist", "realnvp-mnist", "glow-mnist")
    if all(n in models and (directory / str(models[n].get("file"))).is_file() for n in names):
        return directory
    return None


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_page(browser: Any, url: str, viewport: dict[str, int] = VIEWPORT) -> Any:
    """A page in a fresh context (a new Streamlit session) that may only reach `url`.

    Requests elsewhere (the app makes none; a material-icon favicon used to come from
    fonts.gstatic.com) are refused at once, so an offline machine does not wait on DNS and every
    run sees the same page."""
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    context.route(lambda u: not u.startswith(url), lambda route: route.abort())
    return context.new_page()


def open_page(page: Any, url: str, name: str, query: str = "") -> None:
    """Go to page `name` of PAGES (with `query`, e.g. "data=Draw+your+own"), wait for its title and
    for the script run to finish."""
    path, title = PAGES[name]
    page.goto(f"{url}/{path}{'?' + query if query else ''}", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=TIMEOUT_MS)
    settle(page)


# In the page: true once `BUSY` has matched nothing for `quietMs` in a row (reset `window.__busyAt` first).
QUIET = """([selector, quietMs]) => {
    const now = performance.now();
    if (document.querySelector(selector)) { window.__busyAt = now; return false; }
    if (window.__busyAt === undefined) window.__busyAt = now;
    return now - window.__busyAt >= quietMs;
}"""


def settle(page: Any, quiet_ms: int = 500, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until the page is idle (`BUSY` matches nothing) for `quiet_ms` in a row.

    The quiet period covers the moment between an action and the server's "running" reply."""
    page.evaluate("() => { delete window.__busyAt; }")
    page.wait_for_function(QUIET, arg=[BUSY, quiet_ms], polling=100, timeout=timeout_ms)


def step_count(page: Any) -> int:
    """The step counter of Train live ("Step 1,234")."""
    text = page.get_by_role("heading", name=STEP).inner_text(timeout=TIMEOUT_MS)
    return int(STEP.match(text.strip()).group(1).replace(",", ""))


def main_scroll_height(page: Any) -> int:
    """Height of the app's content: Streamlit scrolls its main block, not the document."""
    return int(page.evaluate(
        """() => Math.max(...['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]', 'body']
            .map(s => document.querySelector(s)).filter(Boolean).map(e => e.scrollHeight))"""))


def full_screenshot(page: Any, path: Path, width: int = VIEWPORT["width"]) -> None:
    """A PNG of the whole page: the viewport is made as tall as the content first."""
    height = max(VIEWPORT["height"], main_scroll_height(page))
    page.set_viewport_size({"width": width, "height": height})
    settle(page)
    page.set_viewport_size({"width": width, "height": max(height, main_scroll_height(page))})
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, animations="disabled", timeout=TIMEOUT_MS)
