"""Train live's status line: the rule that reads the held-out NLL curve, on curves built to cross it."""

from __future__ import annotations

import math

import numpy as np

from dashboard.services import status


def curve(values: list[float], every: int = 25) -> list[tuple[int, float]]:
    """(step, NLL) measured every `every` steps, from step `every` on, as the live run records them."""
    return [((i + 1) * every, v) for i, v in enumerate(values)]


def falling(n: int, start: float = 3.0, end: float = 1.8, rate: float = 0.02) -> list[float]:
    return [end + (start - end) * math.exp(-rate * i) for i in range(n)]


def test_no_measurement_yet_is_waiting() -> None:
    assert status.fit_status([]).kind == "waiting"
    assert status.fit_status([(25, math.nan)]).kind == "waiting"  # a diverged evaluation does not count
    assert status.fit_status([], step=3).kind == "learning"  # trained, not yet measured


def test_a_falling_curve_is_learning_then_settles() -> None:
    values = falling(200)  # 5,000 steps: falls fast, then flat
    kinds = [status.fit_status(curve(values[:n])).kind for n in range(1, len(values) + 1)]
    assert kinds[0] == "learning" and kinds[-1] == "settled"
    first_settled = kinds.index("settled")
    assert set(kinds[first_settled:]) == {"settled"}, "settled, then back to learning on a flat curve"
    # settled once the last SETTLE_STEPS steps improved on the lowest value before them by less than SETTLE_NATS
    points = curve(values[: first_settled + 1])
    cut = points[-1][0] - status.SETTLE_STEPS
    assert min(v for s, v in points if s <= cut) - min(v for s, v in points if s > cut) < status.SETTLE_NATS
    assert status.fit_status(curve(values[:first_settled])).kind == "learning"


def test_a_curve_that_turns_up_is_memorising_since_its_lowest_point() -> None:
    down = falling(40, rate=0.1)  # lowest at step 1,000
    up = [down[-1] + 0.01 * (i + 1) for i in range(60)]  # then +0.01 nats every 25 steps
    values = down + up
    result = [status.fit_status(curve(values[:n])) for n in range(1, len(values) + 1)]
    kinds = [r.kind for r in result]
    first = kinds.index("memorising")
    assert set(kinds[first:]) == {"memorising"}
    assert result[-1].since == 1000 and "rising since step 1,000" in result[-1].text
    # not on the first measurements above the lowest: the median of the last WINDOW_STEPS steps must
    # be RISE_NATS above the lowest median, the lowest at least WINDOW_STEPS steps back
    step_of_first = (first + 1) * 25
    assert step_of_first - 1000 >= status.WINDOW_STEPS
    window = [v for s, v in curve(values[: first + 1]) if s > step_of_first - status.WINDOW_STEPS]
    assert float(np.median(window)) > down[-1] + status.RISE_NATS
    assert status.fit_status(curve(values[:first])).kind != "memorising"


def test_noise_around_a_flat_curve_is_settled_not_memorising() -> None:
    rng = np.random.default_rng(0)
    values = list(1.8 + rng.normal(0, 0.03, 400))  # 10,000 steps of noise of 0.03 nats: a spread over 0.1
    kinds = [status.fit_status(curve(values[:n])).kind for n in range(1, len(values) + 1)]
    assert "memorising" not in kinds
    assert set(kinds[status.SETTLE_STEPS // 25:]) == {"settled"}  # as soon as there are 500 steps to compare


def test_a_single_spike_does_not_count_as_memorising() -> None:
    values = falling(100) + [5.0] + [falling(100)[-1]] * 20  # a divergence spike, then back down
    assert status.fit_status(curve(values[:101])).kind != "memorising"
    assert status.fit_status(curve(values)).kind != "memorising"


def test_the_pause_step_counts_the_budget_from_the_step_shown() -> None:
    assert status.pause_step(2_411, 17_589) == 20_000
    assert status.pause_step(100, 0) == 100
    assert status.pause_step(100, -5) == 100


def test_worse_than_the_untrained_model_is_failing_and_says_so() -> None:
    ruined = curve([533.5, 533.2, 533.0, 532.9])  # what Glow at learning rate 10 reaches on checkerboard
    result = status.fit_status(ruined, step=100, start=3.18)
    assert result.kind == "failing"
    assert "533.10" in result.text  # the median and "3.18" in result.text and "lower learning rate" in result.text
    assert status.fit_status(ruined, step=100).kind != "failing"  # without the untrained model's NLL: no verdict


def test_failing_reads_the_median_so_one_bad_measurement_or_a_recovery_moves_it_by_itself() -> None:
    start = 3.0
    spike = curve([2.9, 2.8, 2.7, 9.0, 2.6])  # one measurement far above: the median stays below
    assert status.fit_status(spike, step=125, start=start).kind == "learning"
    just_above = curve([start + status.FAIL_NATS + 0.01] * 3)
    just_below = curve([start + status.FAIL_NATS - 0.01] * 3)
    assert status.fit_status(just_above, step=75, start=start).kind == "failing"
    assert status.fit_status(just_below, step=75, start=start).kind != "failing"
    recovering = [15.0, 9.0, 7.0] + falling(40, start=3.5, end=2.0)
    kinds = [status.fit_status(curve(recovering[:n]), step=25 * n, start=start).kind
             for n in range(1, len(recovering) + 1)]
    assert kinds[0] == "failing" and kinds[-1] == "learning"
    first_ok = kinds.index("learning")
    assert "failing" not in kinds[first_ok:]  # once recovered, it stays recovered on a falling curve


def test_a_model_that_never_gives_a_finite_held_out_nll_is_failing() -> None:
    assert status.fit_status([(25, math.nan), (50, math.inf)], step=50, start=3.0).kind == "failing"
    assert "not a finite number" in status.fit_status([(25, math.nan)], step=25).text


def test_a_rise_on_fresh_toy_batches_is_not_called_memorising() -> None:
    values = falling(60) + [2.4] * 40  # falls to 1.8, then rises 0.6 nats and stays
    assert status.fit_status(curve(values), finite=True).kind == "memorising"  # uploaded or drawn points
    assert status.fit_status(curve(values), finite=False).kind != "memorising"  # a toy set: fresh points
    ruined = curve([900.0, 500.0, 520.0, 540.0, 560.0, 580.0, 600.0, 620.0, 640.0, 660.0, 680.0, 700.0])
    assert status.fit_status(ruined, step=300, start=3.0, finite=False).kind == "failing"  # rising, still failing
