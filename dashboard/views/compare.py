"""Compare: NICE, RealNVP and Glow on MNIST (from the manifest) and in a live 2-D race."""

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.services import catalogue, compare, loops, race, toy

st.title("Compare")
st.markdown(
    "**Bits per dimension** measures how well a model predicts test images it never saw: the average "
    "number of bits it needs to store one pixel. **Fewer bits per pixel = better.** The black ticks are the "
    "values published for each architecture, for reference; hover over one for its source."
)

cat = catalogue.catalogue()
for problem in cat.problems:
    st.warning(problem)
models, curves = compare.models_frame(cat), compare.curves_frame(cat)
if models.empty:
    st.info("The manifest lists no model, so there is nothing to compare yet. The live race below "
            "works without one.")
else:
    highlight = st.segmented_control(
        "Highlight", [m for m in charts.MODEL_ORDER if m in set(models["model"])], key="highlight",
        bind="query-params", help="Fades the other models in every chart.")
    st.altair_chart(charts.bits_chart(models, highlight), width="stretch")
    notes = [f"{row.model}'s published {row.published:.2f} comes from {row.published_note}"
             for row in models.itertuples() if row.published_note]
    st.caption("Bars: these checkpoints on the 10,000 MNIST test images, with what each cost to train under "
               "it. " + ("; ".join(notes) + "." if notes else ""))
    st.markdown(compare.caveats(cat))

    st.subheader("Training curves")
    nice = curves[curves["model"] == "NICE"]
    others = curves[curves["model"] != "NICE"]
    left, right = st.columns(2)
    if not nice.empty:
        left.altair_chart(charts.curve_chart(nice, "NICE", highlight, subtitle=compare.curve_subtitle(cat, ["NICE"])),
                          width="stretch")
    if not others.empty:
        subtitle = compare.curve_subtitle(cat, sorted(set(others["model"]), key=charts.MODEL_ORDER.index))
        right.altair_chart(charts.curve_chart(others, "RealNVP and Glow (their own scale)", highlight,
                                              subtitle=subtitle), width="stretch")
    st.caption(compare.curve_caption(cat) + " NICE has a panel of its own: on one axis its curve (6 to 4 "
               "bits/dim) would flatten the other two.")

    st.subheader("Size")
    st.altair_chart(charts.size_chart(models, highlight), width="stretch")
    st.caption("Only these three checkpoints are placed: the published models are left out, because we "
               "could not confirm a parameter count stated for their MNIST models in the papers.")

    st.table(compare.main_table(cat), hide_index=True, border="horizontal")  # wraps, so it fits a phone
    with st.expander("All the numbers from the manifest"):
        st.dataframe(compare.full_table(cat), hide_index=True)
        st.caption("Test bits/dim: mean over the test images and over several draws of dequantisation noise "
                   "(uniform, or reshaped by the model's learned dequantiser where it has one: then the "
                   "number is the variational bound). Training time and sampling time were measured when the "
                   "models were trained, on the hardware shown.")
    if cat.available() and st.button("Time sampling on this server", key="time_sampling"):
        timings = [{"model": catalogue.title(n), "seconds for 64 samples (now, this server)":
                    compare.time_sampling(n)} for n in cat.available()]
        st.table(pd.DataFrame(timings), hide_index=True, border="horizontal")

st.header("Live race on 2-D data")
st.markdown(
    f"All three flows start from the same seed and train on the same points with the same step budget, "
    f"depth {race.DEPTH} and learning rate {race.LR:g}. Every {race.EVAL_EVERY} steps each is scored on "
    "held-out points it never trains on."
)
r1, r2, r3 = st.columns(3)
data = r1.selectbox("Race data", toy.TOY_NAMES, format_func=toy.TOY_TITLES.get,
                    key="race_data", bind="query-params")
seed = r2.number_input("Race seed", 0, 1_000_000, 0, key="race_seed", bind="query-params")
budget = r3.select_slider("Steps per model", race.BUDGETS, 500, key="race_steps", bind="query-params")
matched = st.toggle("Match parameter counts", key="race_matched", bind="query-params",
                    help=f"Each family gets its own width so that all have about as many parameters as "
                         f"{catalogue.title(race.MATCH_TO)} at width {race.WIDTH}.")
sizes = race.sizes(matched)
st.caption(("Parameter-matched: " if matched else f"Same width ({race.WIDTH}) for all, so the sizes differ: ")
           + ", ".join(f"{row.model} width {row.width}, {row.parameters:,} parameters" for row in sizes.itertuples())
           + ".")
current = race.race()
b1, b2, _ = st.columns([1, 1, 4])
b1.button("Start race", on_click=race.start, args=(data, int(seed), budget, matched), key="race_start",
          type="primary", disabled=loops.steps_left() < 3 * budget, width="stretch")
if current is not None and current.running:
    b2.button("Stop", on_click=race.stop, key="race_stop", width="stretch")
elif current is not None and not current.done and race.failure() is None:
    b2.button("Resume", on_click=race.resume, key="race_resume", width="stretch")
if loops.steps_left() < 3 * budget:
    st.info(f"This session has {loops.steps_left():,} training steps left, fewer than a race of "
            f"{3 * budget:,} steps needs.")
x_axis = st.segmented_control("Race x-axis", ["step", "seconds"], default="step", key="race_x",
                              bind="query-params", required=True,
                              format_func={"step": "Steps", "seconds": "Seconds"}.get)


race_timer = current is not None and current.running  # the race view redraws on a timer while it runs


@st.fragment(run_every=race.REFRESH_S if race_timer else None)
def race_view() -> None:
    if race.advance() != race_timer:
        st.rerun()  # the race stopped by itself (finished, budget, failure): stop the timer, update the buttons
    r = race.race()
    if r is None:
        st.caption("Press **Start race** to train the three models. (A shared link restores the settings above, "
                   "not a race: races are trained in each visitor's session.)")
        return
    if race.failure():
        st.error(race.failure())
    st.markdown(f"**Step {r.step:,} of {r.budget:,}** on {toy.TOY_TITLES[r.data]}, seed {r.seed}, "
                + ("parameter-matched" if r.matched else "same width") + (" (finished)" if r.done else ""))
    st.markdown(race.result(r))
    st.altair_chart(charts.race_chart(race.curve_frame(r), x_axis), width="stretch")
    st.table(race.summary_frame(r), hide_index=True, border="horizontal")
    st.caption("Held-out NLL: negative log-likelihood in nats per point of 1,000 held-out points (lower is "
               "better). Training (s): wall-clock seconds spent on each model's steps in this session. "
               + race.divergences(r))
    final = race.densities(r)
    if final is None:
        st.caption("Each model's density is drawn here when the race finishes or is stopped.")
        return
    frames, w = final
    st.markdown("**Density each model learned**" + ("" if r.done else f" (after {r.step:,} steps)"))
    empty = pd.DataFrame({"x": [], "y": [], "kind": []})
    for column, (title, density) in zip(st.columns(len(frames)), frames.items(), strict=True):
        column.markdown(title)
        column.altair_chart(charts.density_chart(**charts.density_tables(density, empty, (w.x0, w.x1), (w.y0, w.y1)),
                                                 x=(w.x0, w.x1), y=(w.y0, w.y1), height=340),
                            width="stretch")


race_view()
