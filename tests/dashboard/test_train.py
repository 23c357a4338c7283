"""Train live: stepping, playing, divergence, settings and uploads (good and bad)."""

from __future__ import annotations

import math
import re
import time
from types import SimpleNamespace

import torch
from streamlit.testing.v1 import AppTest

from dashboard.services import limits, live, live_frames, loops, widgets
from tests.dashboard.conftest import APP, click, open_page, run_until, shown_step, texts
from tests.load.visitor import PAUSE_AT

PAGE = "views/train.py"


def uploader(at):
    """The page's one file uploader (its key changes after a refused file)."""
    (widget,) = at.get("file_uploader")
    return widget


def test_page_renders_the_live_view_and_layer_scrubber() -> None:
    at = open_page(PAGE)
    assert not at.exception
    assert "Step 0" in texts(at) and "Status: not started" in texts(at)
    assert {b.label for b in at.button} >= {"Play", "Pause", "Step", "Reset"}
    assert at.slider(key="layer").label == "Layer"
    assert len(at.get("vega_lite_chart")) == 2  # density and layer view; no loss curve before training
    click(at, "step")
    assert len(at.get("vega_lite_chart")) == 3


def test_step_play_pause_reset() -> None:
    at = open_page(PAGE)
    click(at, "step")
    assert "Step 1" in texts(at)
    click(at, "play")  # the live view starts the run's training thread
    assert at.button(key="pause").disabled is False
    run_until(at, lambda at: shown_step(at) > 1)
    click(at, "pause")
    run = at.session_state[loops.LIVE_KEY]
    assert not run.playing and not run.background.running()  # Pause waits for the thread to stop
    paused_at = run.step
    time.sleep(0.3)
    assert run.step == paused_at, "training went on after Pause"
    click(at, "reset")
    assert "Step 0" in texts(at)


def test_training_thread_stops_when_nobody_watches() -> None:
    at = open_page(PAGE)
    run = at.session_state[loops.LIVE_KEY]
    run.background.idle_stop_s = 0.3  # then no redraw comes (a closed tab)
    click(at, "play")
    deadline = time.monotonic() + 30
    while run.background.running():
        assert time.monotonic() < deadline, "the training thread did not stop without redraws"
        time.sleep(0.05)
    stopped_at = run.step
    time.sleep(0.3)
    assert run.step == stopped_at and run.playing  # paused, not stopped: the next redraw resumes
    run_until(at, lambda at: shown_step(at) > stopped_at)


def test_a_failing_step_is_reported_and_stops_play(monkeypatch) -> None:
    at = open_page(PAGE)
    run = at.session_state[loops.LIVE_KEY]

    def broken_step() -> None:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(run.trainer, "step", broken_step)
    click(at, "play")
    run_until(at, lambda at: any("out of memory (simulated)" in e.value for e in at.error))
    assert not run.playing and at.button(key="play").disabled and not at.exception


def test_layer_scrubber_moves_through_every_layer() -> None:
    at = open_page(PAGE)
    at.select_slider(key="depth").set_value(4)
    at.selectbox(key="model").set_value("glow").run()
    layer = at.slider(key="layer")
    assert layer.max == 12  # 4 steps of ActNorm, invertible linear, coupling
    for k, word in ((0, "data space"), (1, "ActNorm"), (2, "linear"), (3, "coupling"), (12, "latent space")):
        at.slider(key="layer").set_value(k).run()
        assert not at.exception
        assert word in texts(at)
    at.selectbox(key="model").set_value("nice").run()  # 5 layers now: the slider value is clamped
    assert not at.exception
    assert at.slider(key="layer").value == 5 and "latent space" in texts(at)


def test_absurd_learning_rate_diverges_visibly_and_keeps_running() -> None:
    at = open_page(PAGE)
    at.select_slider(key="lr").set_value(max(live.LEARNING_RATES)).run()  # 10: every model diverges at once
    for _ in range(4):
        click(at, "step")
    page = texts(at)
    assert "diverged" in page and "rolled back" in page
    assert "Step 4" in page
    click(at, "play")
    seen = [shown_step(at)]
    for _ in range(3):  # training goes on between the runs of the page
        run_until(at, lambda at: shown_step(at) > seen[-1])
        run = at.session_state[loops.LIVE_KEY]
        assert run.divergences and run.playing
        with run.background.holding():  # between two steps (within one, a rollback may be under way)
            assert all(torch.isfinite(p).all() for p in run.flow.parameters()), "NaN or inf in the parameters"
        assert live.current_lr(run) < max(live.LEARNING_RATES)  # halved on every divergence
        seen.append(shown_step(at))
    assert seen == sorted(set(seen)), f"the step counter did not keep rising: {seen}"
    page = texts(at)
    assert "rolled back" in page and not re.search(r"\b(nan|inf)\b", page, re.IGNORECASE)
    held_out = next(m.value for m in at.metric if m.label == "Held-out NLL")  # measured every 50 steps
    assert held_out == "–" or math.isfinite(float(held_out))


def test_bad_upload_shows_an_error_and_keeps_the_data() -> None:
    at = open_page(PAGE)
    click(at, "step")
    first_key = uploader(at).key
    uploader(at).set_value(("points.csv", b"x,y\n1,2\n3,banana\n", "text/csv")).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "not a number" in at.error[0].value and "previous data stays" in at.error[0].value
    assert at.selectbox(key="data").value == "moons"
    assert "Step 1" in texts(at)  # the run was not reset
    assert uploader(at).key != first_key, "the uploader still holds the refused file"
    assert "In use: Two moons" in texts(at)


def test_a_ragged_csv_is_explained_in_plain_words() -> None:
    at = open_page(PAGE)
    uploader(at).set_value(("ragged.csv", b"1\n2\n3\n4,5\n", "text/csv")).run()
    assert not at.exception
    assert "line 4 has 2 values; the first line has 1" in at.error[0].value
    assert "C error" not in at.error[0].value and "Expected" not in at.error[0].value


def test_good_upload_becomes_the_data() -> None:
    at = open_page(PAGE)
    rows = "\n".join(f"{i % 7},{(i * 3) % 11}" for i in range(100))
    uploader(at).set_value(("mine.csv", f"a,b\n{rows}\n".encode(), "text/csv")).run()
    assert not at.exception
    assert not at.error
    assert at.selectbox(key="data").value == "upload"
    assert "Step 0" in texts(at)
    click(at, "step")
    assert "Step 1" in texts(at)
    assert "mine.csv, 100 points" in texts(at) and "In use: mine.csv, 100 points" in texts(at)
    rows = "\n".join(f"{i % 5},{(i * 7) % 13}" for i in range(60))
    uploader(at).set_value(("other.csv", rows.encode(), "text/csv")).run()
    assert "other.csv, 60 points" in texts(at)
    assert "Step 0" in texts(at)  # new points, new model


def test_toy_sets_train_on_a_fresh_batch_every_step_against_a_fixed_held_out_set(monkeypatch) -> None:
    at = open_page(PAGE)
    run = at.session_state[loops.LIVE_KEY]
    held_out = run.held_out.clone()
    batches = []
    source, draw = run.trainer.batches, run.trainer.batches.batch

    def seen(n, generator):
        x, y = draw(n, generator)
        batches.append(x.clone())
        return x, y

    monkeypatch.setattr(source, "batch", seen)
    for _ in range(3):
        click(at, "step")
    assert len(batches[0]) == live.BATCH_SIZE
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])
    shown = run.train  # the points drawn over the density are none of the batches
    assert not any((shown[:, None] == b[None]).all(-1).any() for b in batches)
    assert torch.equal(run.held_out, held_out) and run.trainer.eval_data is not None
    assert "a fresh batch every step" in texts(at)


def live_view_numbers(at) -> tuple[int, int, int | None]:
    """(step of the heading, step of the density's caption, step at which Play pauses) of one redraw."""
    page = texts(at)
    heading = shown_step(at)
    caption = int(re.search(r"The model at step ([\d,]+)\. White dots", page).group(1).replace(",", ""))
    pause = PAUSE_AT.search(page)  # as the load test's visitors read it
    if "Play pauses by itself at step" in page:
        assert pause and "a click on Step, or on Pause and then Play" in page  # only buttons that can be clicked
    return heading, caption, int(pause.group(1).replace(",", "")) if pause else None


def test_the_numbers_of_a_redraw_describe_the_same_moment() -> None:
    at = open_page(PAGE)
    for _ in range(7):
        click(at, "step")
    click(at, "play")  # a click: the budget counts from step 7
    seen = []
    for _ in range(6):
        run_until(at, lambda at: shown_step(at) > (seen[-1][0] if seen else 7))
        seen.append(live_view_numbers(at))
    click(at, "pause")
    assert all(heading == caption for heading, caption, _ in seen), seen
    assert {pause for _, _, pause in seen} == {7 + limits.MAX_STEPS_UNATTENDED}, seen
    held = next(m for m in at.metric if m.label == "Held-out NLL")
    measured = int(re.search(r"last at step ([\d,]+)", held.help).group(1).replace(",", ""))
    assert measured % live.EVAL_EVERY == 0 and measured <= shown_step(at) < measured + live.EVAL_EVERY
    loss_caption = re.search(r"lower is better\), up to step ([\d,]+)", texts(at)).group(1)
    layer_caption = re.search(r"The model at step ([\d,]+)\. Blue", texts(at)).group(1)
    assert loss_caption == layer_caption == f"{shown_step(at):,}"  # paused: every part shows the same step


def test_the_status_line_says_when_a_small_upload_is_memorised() -> None:
    at = open_page(PAGE)
    rows = "\n".join(f"{x:.3f},{y:.3f}" for x, y in torch.randn(25, 2, generator=torch.Generator().manual_seed(1)))
    uploader(at).set_value(("few.csv", rows.encode(), "text/csv")).run()
    assert "Status: not started" in texts(at)
    at.select_slider(key="width").set_value(128)
    at.select_slider(key="lr").set_value(1e-2).run()
    click(at, "step")
    assert "Status: learning" in texts(at)
    click(at, "play")
    run_until(at, lambda at: "Status: memorising the training points" in texts(at), timeout_s=180)
    click(at, "pause")
    run = at.session_state[loops.LIVE_KEY]
    since = int(re.search(r"rising since step ([\d,]+)", texts(at)).group(1).replace(",", ""))
    best_step, best = min(run.evals, key=lambda e: e[1])
    assert since == best_step and run.evals[-1][1] > best + 0.05
    (status_line,) = [m for m in at.markdown if m.value.startswith("**Status:")]
    assert "Memorising" in status_line.help  # the rule is stated in the tooltip


def test_a_learning_rate_far_too_high_is_called_failing_not_learning() -> None:
    at = open_page(PAGE)
    at.selectbox(key="data").set_value("checkerboard")
    at.selectbox(key="model").set_value("glow")
    at.select_slider(key="lr").set_value(10.0).run()
    run = at.session_state[loops.LIVE_KEY]
    assert math.isfinite(run.start_nll)
    click(at, "play")
    run_until(at, lambda at: shown_step(at) >= 10 * live.EVAL_EVERY, timeout_s=120)
    click(at, "pause")
    (status_line,) = [m.value for m in at.markdown if m.value.startswith("**Status:")]
    assert "failing" in status_line and ":red[" in status_line
    assert f"{run.start_nll:.2f}" in status_line  # names the untrained model's held-out NLL it is compared with
    assert "Failing" in at.markdown[[m.value for m in at.markdown].index(status_line)].help


def test_a_link_that_asked_for_uploaded_points_says_it_cannot_carry_them() -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(PAGE)
    at.query_params["data"] = "Uploaded CSV"
    at.run()
    assert not at.exception
    assert any("This link was made with uploaded points, which a link cannot carry" in i.value for i in at.info)
    assert at.selectbox(key="data").value == "moons"


def test_the_default_run_goes_from_learning_to_settled_and_never_memorises() -> None:
    at = open_page(PAGE)
    assert "Status: not started" in texts(at)
    click(at, "play")
    seen = []

    def settled(at) -> bool:
        seen.append(next(m.value for m in at.markdown if m.value.startswith("**Status:")))
        return "settled" in seen[-1]

    run_until(at, settled, timeout_s=240)
    click(at, "pause")
    assert any("learning" in s for s in seen) and not any("memorising" in s for s in seen), set(seen)
    assert shown_step(at) >= 500  # settled compares the last 500 steps with those before


def test_the_loss_chart_shows_its_whole_range_and_clips_only_divergence_spikes() -> None:
    run = SimpleNamespace(losses=[(1, 3.9), (2, 3.0), (3, 1e6), (4, 2.0)], evals=[(2, 2.5), (4, 6.0), (6, 7.0)])
    at = SimpleNamespace(n_losses=4, n_evals=2)  # the moment of step 4: the later evaluation is not shown
    frame = live_frames.loss_frame(run, at)
    shown = {(series, step): value for series, step, value in zip(frame["series"], frame["step"], frame["shown"],
                                                                   strict=True)}
    assert shown[("training batches", 1)] == 3.9  # the first drop is in view
    assert shown[("held-out points", 4)] == 6.0  # a rising held-out NLL too
    assert shown[("training batches", 3)] == 6.0  # a divergence spike is clipped to the top of the range
    assert ("held-out points", 6) not in shown


def test_keep_in_range_writes_only_a_value_out_of_range(monkeypatch) -> None:
    """A value written to session state is imposed on the browser's widget: the layer scrubber's
    timed redraws (every second while training) must not rewrite the layer a visitor just moved to."""
    writes = []

    class State(dict):
        def __setitem__(self, key, value) -> None:
            writes.append((key, value))
            super().__setitem__(key, value)

    state = State(layer=3)
    monkeypatch.setattr("streamlit.session_state", state)
    widgets.keep_in_range("layer", 0, 5)
    assert writes == [] and state["layer"] == 3
    widgets.keep_in_range("layer", 0, 2)  # the model got shallower
    assert writes == [("layer", 2)]
