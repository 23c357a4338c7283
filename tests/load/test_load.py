"""Many visitors at once (`tests/load/run.py`): at least 8 real browser sessions for 60 s.

Marked `load`, so the default run leaves it out; `python -m tests.load.run` runs the same and
writes its figures to RELIABILITY.md.
"""

from __future__ import annotations

import pytest

from tests.browser.harness import CHROMIUM
from tests.load.run import DURATION_S, MAX_RSS_MB, SESSIONS, markdown, run

pytestmark = [
    pytest.mark.load,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def test_many_visitors_train_at_once_without_errors_or_crossed_sessions() -> None:
    result = run()
    print("\n" + markdown(result))
    assert result["sessions"] == SESSIONS >= 8 and result["duration_s"] >= DURATION_S
    assert result["problems"] == []
    assert result["held"] == SESSIONS
    for row in result["rows"]:  # every session did train, scrub and sample, and was checked after Pause
        assert 0 < row["steps_used"] <= row["steps"], row
        assert row["layer_moves"] > 0 and len(row["temperature_s"]) == 2, row
        assert len(row["score_s"]) == (row["session"] % 2), row  # sessions 1, 3, ... (index 0, 2, ...) score
    assert 0 < result["peak_rss_mb"] <= MAX_RSS_MB
