"""Dashboard tests: every page through `AppTest`, against tiny stand-in checkpoints.

The pages and the tests import the same modules (`dashboard.services.*`), so a test reads and
patches what the pages run. Each run of the app calls `services.start()`, which sets torch's
thread count for serving; the tests hand it the count the test session already has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.services import THREADS_ENV, toy
from tests.dashboard.fixtures import make_pretrained

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pretrained(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(autouse=True)
def _dashboard_env(monkeypatch: pytest.MonkeyPatch, pretrained: Path) -> None:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(pretrained))
    monkeypatch.setenv(THREADS_ENV, str(torch.get_num_threads()))  # the test session keeps its own setting
    monkeypatch.setitem(toy.DEFAULT_FLOW, "steps", 40)  # the shared demo flow, trained briefly


def open_page(page: str | None = None, timeout: float = 180) -> AppTest:
    """The app opened on `page` (e.g. "views/sample.py"; Home if None), run once.

    The generous timeout is for loaded CI machines: importing torch alone can take a minute
    there. On an idle 2-core machine every run here takes a second or two."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if page is not None:
        at.switch_page(page)
    return at.run()


def texts(at: AppTest) -> str:
    """All markdown, captions and alerts of the page, joined (for `in` checks)."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "title", "subheader")
             for e in at.get(kind)]
    parts += [m.label + " " + str(m.value) for m in at.metric]
    return "\n".join(parts)


def click(at: AppTest, key: str) -> AppTest:
    """Click the button `key`, run the page, and check it raised nothing."""
    at.button(key=key).click().run()
    assert not at.exception
    return at


def shown_step(at: AppTest) -> int:
    """The step counter of Train live ("### Step 1,234")."""
    return int(next(m.value for m in at.markdown if m.value.startswith("### Step")).split()[-1].replace(",", ""))


def run_until(at: AppTest, done: Callable[[AppTest], bool], timeout_s: float = 60.0) -> AppTest:
    """Rerun the page (as the live view's timer would) until `done(at)` holds: training runs on a
    thread of its own, so how far it got by one run depends on the machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        at.run()
        assert not at.exception
        if done(at):
            return at
        assert time.monotonic() < deadline, "the page did not reach the expected state in time"
        time.sleep(0.1)
