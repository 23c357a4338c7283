"""The training thread of the live view: it stops when told, when unwatched, or on an error,
and a reader holding its lock sees no step happen."""

from __future__ import annotations

import time

from dashboard.background import Background


def _wait(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _counter(limit: int | None = None):
    count = [0]

    def step() -> bool:
        count[0] += 1
        time.sleep(0.001)
        return limit is None or count[0] < limit

    return count, step


def test_runs_until_the_step_says_stop() -> None:
    bg = Background(idle_stop_s=10.0)
    count, step = _counter(limit=25)
    bg.start(step)
    bg.join()
    assert count[0] == 25 and not bg.running() and bg.failure is None


def test_stops_without_heartbeat_and_resumes_when_started_again() -> None:
    bg = Background(idle_stop_s=0.1)
    count, step = _counter()
    bg.start(step)
    _wait(lambda: not bg.running())
    stopped = count[0]
    assert stopped > 0
    time.sleep(0.05)
    assert count[0] == stopped
    bg.start(step)
    _wait(lambda: count[0] > stopped)
    bg.join()


def test_a_reader_holding_the_lock_sees_no_step() -> None:
    bg = Background(idle_stop_s=10.0)
    count, step = _counter()
    stop = [False]
    bg.start(lambda: step() and not stop[0])
    _wait(lambda: count[0] > 3)
    for _ in range(5):
        with bg.holding():
            before = count[0]
            time.sleep(0.02)
            assert count[0] == before
        _wait(lambda b=before: count[0] > b)  # and it goes on afterwards
    stop[0] = True
    bg.join()


def test_an_error_stops_the_loop_and_is_kept() -> None:
    bg = Background(idle_stop_s=10.0)

    def step() -> bool:
        raise ValueError("bad batch")

    bg.start(step)
    bg.join()
    assert not bg.running() and bg.failure == "ValueError: bad batch"
