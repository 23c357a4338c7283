"""A training loop on a thread of its own, so a live view can redraw while the model trains.

Streamlit runs a page's script (and its fragments) on one thread per session; training inside
the redraws leaves the CPU idle while the page draws, and drawing idle while it trains. Here
one `Background` per live run owns:

- `lock`: held by the loop for each step, and by whoever reads the model (`holding()`), so a
  reader never sees a half-done update;
- a heartbeat: the loop stops by itself when no redraw has called `beat()` for `idle_stop_s`
  (the tab was closed, or the browser throttles its timers, as for a long-hidden tab), so an
  abandoned session does not train on;
- `failure`: why the loop stopped, if a step raised (shown by the page, never a traceback).

The loop yields to a waiting reader after every step, so a redraw waits for at most one step.
No Streamlit here: the loop thread must not touch `st.session_state`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Background:
    """Runs `step()` repeatedly on a daemon thread while it returns True and someone watches."""

    def __init__(self, idle_stop_s: float, name: str = "flows-training") -> None:
        self.idle_stop_s = idle_stop_s
        self.name = name
        self.lock = threading.Lock()
        self.heartbeat = 0.0
        self.failure: str | None = None
        self._thread: threading.Thread | None = None
        self._waiting = 0  # readers waiting for `lock`
        self._count_lock = threading.Lock()  # guards `_waiting` (`+=` is not atomic across threads)

    def beat(self) -> None:
        """Say that someone is watching (every redraw calls this)."""
        self.heartbeat = time.perf_counter()

    def watched(self) -> bool:
        return time.perf_counter() - self.heartbeat <= self.idle_stop_s

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, step: Callable[[], bool]) -> None:
        """Start the loop unless it runs; `step` does one unit of work and says whether to go on."""
        if self.running():
            return
        self.beat()
        self.failure = None
        self._thread = threading.Thread(target=self._loop, args=(step,), name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for the loop to end (after whatever made `step` return False)."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold `lock` (the loop pauses between two steps) for reading or changing the model."""
        with self._count_lock:
            self._waiting += 1
        try:
            with self.lock:
                yield
        finally:
            with self._count_lock:
                self._waiting -= 1

    def _loop(self, step: Callable[[], bool]) -> None:
        try:
            while self.watched():
                with self.lock:
                    if not step():
                        return
                while self._waiting:  # a reader wants the lock: let it in before the next step
                    time.sleep(0.0005)
        except Exception as err:  # noqa: BLE001 - reported on the page instead of dying silently
            self.failure = f"{type(err).__name__}: {err}"
