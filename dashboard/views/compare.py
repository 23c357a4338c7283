"""Compare: NICE, RealNVP and Glow on MNIST (from the manifest) and in a live 2-D race."""

import charts
import pandas as pd
import services
import services_race as race
import services_toy
import services_train
import streamlit as st

st.title("Compare")
st.markdown(
    "**Bits per dimension** measures how well a model predicts test images it never saw: the average "
    "number of bits it needs to store one pixel (lower is better). The black ticks are the values "
    "published for each architecture, for reference."
)

cat = services.catalogue()
for problem in cat.problems:
    st.warning(problem)
models, curves = services.comparison_frames(cat)
if models.empty:
    st.info("The manifest lists no model, so there is nothing to compare yet. The live race below "
            "works without one.")
else:
    highlight = st.segmented_control(
        "Highlight", [m for m in charts.MODEL_ORDER if m in set(models["model"])], key="highlight",
        bind="query-params", help="Or click a model in the chart legend.")
    st.altair_chart(charts.comparison(models, curves, highlight))
    compared = [cat.models[n] for n in services.COMPARED if n in cat.models]
    table = pd.DataFrame([{
        "model": m.title,
        "test bits/dim": m.test_bits_per_dim,
        "± std over draws": m.test_bits_per_dim_std,
        "test images": m.n_test,
        "noise draws": m.draws,
        "published bits/dim": m.published_bits_per_dim,
        "published in": m.published_source,
        "parameters": m.params,
        "training images seen": m.images_seen,
        "epochs": m.epochs,
        "training time (s)": m.wall_time_s,
        "hardware": m.hardware,
        "64 samples (s)": m.sample_time_64_s,
        "sampling measured on": m.sample_time_hardware,
        "command": m.command,
    } for m in compared])
    st.dataframe(table, hide_index=True)
    notes = sorted({m.curve_note for m in compared if m.curve_note})
    st.caption("Test bits/dim: mean over the test images and over several draws of uniform dequantisation "
               "noise. Training time and sampling time were measured when the models were trained, on "
               "the hardware shown. Training curves: test bits/dim measured during training"
               + (f" ({'; '.join(notes)})." if notes else "."))
    if cat.available() and st.button("Time sampling on this server", key="time_sampling"):
        timings = [{"model": services.title(n), "seconds for 64 samples (now, this server)":
                    services.time_sampling(n)} for n in cat.available()]
        st.dataframe(pd.DataFrame(timings), hide_index=True)

st.header("Live race on 2-D data")
st.markdown(
    f"All three flows start from the same seed and train on the same points with the same step budget, "
    f"depth {race.DEPTH}, width {race.WIDTH} and learning rate {race.LR:g}. Every {race.EVAL_EVERY} "
    "steps each is scored on held-out points it never trains on."
)
r1, r2, r3 = st.columns(3)
data = r1.selectbox("Race data", services_toy.TOY_NAMES, format_func=services_toy.TOY_TITLES.get,
                    key="race_data", bind="query-params")
seed = r2.number_input("Race seed", 0, 1_000_000, 0, key="race_seed", bind="query-params")
budget = r3.select_slider("Steps per model", race.BUDGETS, 500, key="race_steps", bind="query-params")
current = race.race()
b1, b2, _ = st.columns([1, 1, 4])
b1.button("Start race", on_click=race.start, args=(data, int(seed), budget), key="race_start", type="primary",
          disabled=services_train.steps_left() < 3 * budget, width="stretch")
if current is not None and current.running:
    b2.button("Stop", on_click=race.stop, key="race_stop", width="stretch")
elif current is not None and not current.done and race.failure() is None:
    b2.button("Resume", on_click=race.resume, key="race_resume", width="stretch")
if services_train.steps_left() < 3 * budget:
    st.info(f"This session has {services_train.steps_left():,} training steps left, fewer than a race of "
            f"{3 * budget:,} steps needs.")


race_timer = current is not None and current.running  # the race view redraws on a timer while it runs


@st.fragment(run_every=race.REFRESH_S if race_timer else None)
def race_view() -> None:
    if race.advance() != race_timer:
        st.rerun()  # the race stopped by itself (finished, budget, failure): stop the timer, update the buttons
    r = race.race()
    if r is None:
        st.caption("Press **Start race** to train the three models.")
        return
    if race.failure():
        st.error(race.failure())
    st.markdown(f"**Step {r.step:,} of {r.budget:,}** on {services_toy.TOY_TITLES[r.data]}, seed {r.seed}"
                + (" (finished)" if r.done else ""))
    st.altair_chart(charts.race_chart(race.curve_frame(r)), width="stretch")
    st.dataframe(race.summary_frame(r), hide_index=True)
    st.caption("Held-out NLL: negative log-likelihood in nats per point of 1,000 held-out points (lower is "
               "better). Training time: wall-clock seconds spent on each model's steps in this session.")


race_view()
