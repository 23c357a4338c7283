"""Train live: a 2-D flow learning a toy density in this browser session, layer by layer."""

import streamlit as st

from dashboard import charts
from dashboard.services import catalogue, draw, limits, live, live_frames, sources, status, toy, widgets

st.title("Train live")
st.markdown(
    "Pick a shape (or draw your own) and a flow, press **Play**, and watch the flow learn: the colours show "
    "the density the model has learned, white dots are the data, orange dots are new samples from the model. "
    "Below, the **layer scrubber** shows what every layer does to the plane."
)
link_note = sources.link_note(st.query_params.get("data"))  # read before the widgets rewrite the address
with st.empty():  # always there, so the elements below keep their place (a moved canvas would forget its drawing)
    if link_note:
        st.info(link_note, icon=":material/link_off:")

# The run buttons come first, so that on a phone they sit above the settings; the main column comes
# before the settings for the same reason (Streamlit stacks columns in order on narrow screens).
buttons = st.container(horizontal=True, gap="small")
main, controls = st.columns([5, 2], gap="medium")
with controls:
    data = st.selectbox("Data", sources.data_choices(), format_func=sources.data_title, key="data", bind="query-params",
                        help="A built-in toy set (a fresh batch of points every step), your own drawing, "
                             "or a CSV you upload.")
    st.file_uploader(
        "Or upload a CSV of points", type=["csv"], key=sources.uploader_key(), on_change=sources.on_upload,
        args=("data",), max_upload_size=max(1, limits.MAX_UPLOAD_BYTES // 1_000_000),
        help=f"Two numeric columns (x, y), optional header row, {limits.MIN_POINTS} to "
             f"{limits.MAX_POINTS:,} rows, at most {limits.MAX_UPLOAD_BYTES / 1e6:g} MB. Points are "
             "centred and scaled to unit spread before training.")
    if sources.upload_error():
        st.error(sources.upload_error())
    in_use = st.empty()  # under the uploader: which data the model trains on (known once the run is)
    if data == sources.UPLOAD:
        st.caption(sources.upload_summary())
    widgets.keep_option("model", live.MODELS, "train")  # Sample's "model" is a checkpoint id, not one of these
    model = st.selectbox("Model", live.MODELS, index=live.MODELS.index(live.DEFAULTS.model),
                         format_func=catalogue.title, key="model", bind="query-params")
    widgets.remember("model", model, "train")
    depth = st.select_slider("Depth (layers of coupling)", live.DEPTHS, live.DEFAULTS.depth, key="depth",
                             bind="query-params",
                             help="Couplings for NICE and RealNVP, steps of flow (ActNorm + linear + "
                                  "coupling) for Glow.")
    width = st.select_slider("Width (hidden units)", live.WIDTHS, live.DEFAULTS.width, key="width", bind="query-params",
                             help="Hidden units of each coupling's small neural network.")
    lr = st.select_slider("Learning rate", live.LEARNING_RATES, live.DEFAULTS.lr, key="lr", bind="query-params",
                          format_func=lambda v: f"{v:g}",
                          help="Step size of the Adam optimiser. Very large values make training diverge; "
                               "the trainer then rolls back and halves it.")
    seed = st.number_input("Seed", 0, 1_000_000, 0, key="seed", bind="query-params",
                           help="Seeds the data, the initial weights and the batch order.")
    st.caption("Share this view: the address bar holds the settings above. A link cannot hold a trained model, "
               "uploaded or drawn points: whoever opens it trains from scratch (download a drawing as CSV to "
               "share it).")

if data == sources.DRAW:
    with main, st.container():  # no border: its padding would leave a 390 px phone less than the canvas's width
        st.markdown("**Draw your own data**: click or tap single points, or drag strokes that spray points "
                    "along them; the drawing is the training set as soon as it has "
                    f"{limits.MIN_POINTS} points.")
        mode = st.segmented_control("Tool", [draw.BRUSH_MODE, draw.POINT_MODE], default=draw.BRUSH_MODE,
                                    key="draw_mode", format_func={draw.BRUSH_MODE: "Brush: points and strokes",
                                                                  draw.POINT_MODE: "Dots (mouse only)"}.get,
                                    help="The brush works with a mouse and a finger: a click or tap is one point, "
                                         "a stroke a band of points. Dots draws one visible dot per mouse click.")
        # The canvas's toolbar (undo, redo, clear) floats 2.65rem above its top edge while the pointer is
        # on it; this space and the gap after it keep the toolbar clear of the Tool control. It sits
        # outside the row below: in a horizontal container st.space is a horizontal gap.
        st.space("small")
        with st.container(horizontal=True, gap="medium"):  # the buttons go under the canvas when narrow
            sources.use_drawing(sources.drawing_canvas(mode or draw.BRUSH_MODE))
            with st.container(width="content"):
                st.button("Undo last stroke", on_click=sources.undo_stroke, key="draw_undo", icon=":material/undo:")
                st.button("Clear", on_click=sources.clear_drawing, key="draw_clear", icon=":material/delete:")
                csv = sources.drawn_csv()
                st.download_button("Download CSV", csv or b"", file_name="drawing.csv", mime="text/csv",
                                   key="draw_download", disabled=csv is None, icon=":material/download:",
                                   help="The drawn points in use, to upload again later or share.")
        lo, hi = draw.WINDOW
        st.caption(f"Drawing window: x1 and x2 from {lo:g} to {hi:g}, the axes drawn in. Points are used as drawn "
                   f"(no centring or rescaling). A click is one point where it was made; a stroke gives a point every "
                   f"{draw.SPRAY_SPACING:g} units along it, each moved by random noise of standard deviation "
                   f"{draw.SPRAY_JITTER:g}.")
        if sources.draw_note():
            st.warning(sources.draw_note(), icon=":material/edit:")

run = live.live_run(live.Settings(data, model, depth, width, lr, int(seed)))
if data == sources.DRAW and sources.drawn() is None:
    with main:
        st.info(f"Until the drawing has {limits.MIN_POINTS} points, the plot below shows the model of "
                f"{live.in_use(run)}.")

with buttons:
    st.button("Play", on_click=live.play, key="play", type="primary", icon=":material/play_arrow:",
              disabled=run.playing or live.failure() is not None)
    st.button("Pause", on_click=live.pause, disabled=not run.playing, key="pause", icon=":material/pause:")
    st.button("Step", on_click=live.step_once, key="step",
              icon=":material/skip_next:", help=f"One optimisation step (a batch of up to {live.BATCH_SIZE} points).")
    st.button("Reset", on_click=live.reset, key="reset", icon=":material/restart_alt:",
              help="A fresh, untrained model with the same settings.")

in_use.caption(f"In use: {live.in_use(run)}.")

timer_on = run.playing  # the live view below redraws on a timer while playing
BUDGET = limits.MAX_STEPS_UNATTENDED


@st.fragment(run_every=live.REFRESH_S if timer_on else None)
def live_view() -> None:
    if live.advance() != timer_on:
        st.rerun()  # training stopped by itself (budget spent, or a failure): stop the timer, update the buttons
    run = live.existing_run()
    at = live.moment(run)
    if live.failure():
        st.error(live.failure())
    if run.budget_spent and not run.playing:
        st.info(f"Paused by itself at step {at.step:,}: {BUDGET:,} steps ran without a click (a limit of this "
                f"shared demo, so a forgotten tab stops). Press **Play** to go on for up to {BUDGET:,} more.",
                icon=":material/pause_circle:")
    if run.divergences:
        last = run.divergences[-1]
        st.warning(
            f"Training diverged {len(run.divergences)} time(s), last at step {last.step:,} (the loss or "
            f"gradient became infinite at learning rate {last.lr:.3g}). Each time the model was rolled "
            f"back to its last good state and the learning rate halved (now {live.current_lr(run):.3g}); "
            "training goes on.", icon=":material/warning:")
    shown = f":red[{at.status.text}]" if at.status.kind == "failing" else at.status.text
    st.markdown(f"**Status: {shown}**", help=status.RULE)
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom"):
        st.markdown(f"### Step {at.step:,}", width="content")
        held = at.held_out
        st.metric("Held-out NLL", f"{held[1]:,.3f}" if held else "–", width="content",
                  help=f"Negative log-likelihood in nats per point of {len(run.held_out):,} held-out points "
                       f"(never trained on), measured every {live.EVAL_EVERY} steps"
                       + (f", last at step {held[0]:,}" if held else "") + ". Lower is better.")
    st.caption("Held-out NLL: lower is better. " + (
        f"Play pauses by itself at step {at.pause_at:,}; a click on Step, or on Pause and then Play, grants "
        f"{BUDGET:,} more steps." if run.playing else
        f"Play runs up to {BUDGET:,} steps after your last click, then pauses by itself."))
    density, points = live_frames.density_frames(run, at)
    window = (run.bounds.x0, run.bounds.x1), (run.bounds.y0, run.bounds.y1)
    st.vega_lite_chart(charts.with_data(charts.density_spec(*window, height=600),
                                        **charts.density_tables(density, points, *window)), width="stretch")
    st.caption(f"The model at step {at.step:,}. White dots: training points (at most {toy.N_SHOWN:,}). "
               f"Orange dots: {toy.N_SHOWN:,} samples from the model (the same latent points every frame).")
    with st.expander("Details: speed and training settings"):
        sps, rps = live.steps_per_second(run), live.redraws_per_second(run)
        st.markdown(
            f"- Steps per second: **{f'{sps:.0f}' if run.playing and sps else '–'}** (optimisation steps per "
            "second of wall-clock time over the last 2 s, on this server's CPU; training runs on its own "
            "thread while the page redraws)\n"
            f"- Redraws per second: **{f'{rps:.1f}' if run.playing and rps else '–'}** (how often this view "
            "was redrawn over the last 2 s)\n"
            f"- {catalogue.title(run.settings.model)}, {run.params:,} parameters, learning rate "
            f"{live.current_lr(run):.3g}, batches of {run.trainer.config.batch_size:,} points"
            + (", each drawn afresh from the toy set" if run.source is None else
               f" from {len(run.train):,} training points ({len(run.held_out):,} more held out)"))


@st.fragment(run_every=live.LOSS_REFRESH_S if timer_on else None)
def loss_view() -> None:
    run = live.existing_run()
    at = live.moment(run)
    losses = live_frames.loss_frame(run, at)
    if losses.empty:
        st.info("The loss curve appears here once training starts: press Play or Step.")
    else:
        st.vega_lite_chart(charts.with_data(charts.loss_spec(), losses=losses), width="stretch")
    st.caption(f"Negative log-likelihood in nats per point (lower is better), up to step {at.step:,}. "
               f"Redrawn every {live.LOSS_REFRESH_S:g} s while training.")


@st.fragment
def maths_view() -> None:
    run = live.existing_run()
    at = live.moment(run)
    st.button("Check the current model", key="maths_refresh", icon=":material/refresh:")
    table, integral, inside = live_frames.maths_check(run, at)
    st.markdown(
        f"For the model at **step {at.step:,}**, at three random points of the plotted square: log|det J| of "
        "the whole flow from the Jacobian that autograd computes (float64), beside the sum of the log-dets "
        "that the flow's layers report (what training uses). They should agree to about 1e-5.")
    st.dataframe(live_frames.maths_table(table), hide_index=True, width="stretch",  # four narrow columns fit a phone
                 column_config={"point": st.column_config.TextColumn(width="small"),
                                "autograd": st.column_config.NumberColumn(format="%.5f", width="small",
                                                                          help="log|det J| from autograd's Jacobian"),
                                "flow": st.column_config.NumberColumn(format="%.5f", width="small", help="the flow's "
                                                                      "own sum of per-layer log-dets"),
                                "difference": st.column_config.NumberColumn(format="%.0e", width="small",
                                                                            help="flow minus autograd")})
    st.markdown(
        f"The learned density integrated over the plotted square (midpoint rule, 200 x 200 cells): "
        f"**{integral:.4f}**. A density integrates to 1 over the whole plane, so this is about 1 when the square "
        f"holds the model's mass: **{inside:.1%}** of 10,000 samples of the model fall inside it.")


with main:
    live_view()
    loss_view()
    maths = st.expander("Check the maths", key="maths_open", on_change="rerun")  # runs only while open
    if maths.open:
        with maths:
            maths_view()


@st.fragment(run_every=live.LOSS_REFRESH_S if timer_on else None)
def layer_view() -> None:
    run = live.existing_run()
    at = live.moment(run)
    stages = live_frames.stages(run, at)
    last = len(stages) - 1
    widgets.keep_in_range("layer", 0, last)
    k = st.slider("Layer", 0, last, last // 2, key="layer",
                  help="0 is the data space, the last layer is the latent space the flow maps data to.")
    stage = stages[k]
    where = "data space" if k == 0 else ("latent space" if k == last else f"after layer {k} of {last}")
    x0, x1, y0, y1 = stage.window
    plane, words = st.columns(2, gap="medium", vertical_alignment="center")  # the plot is square: words beside
    plane.altair_chart(charts.layer_chart(stage.points, stage.grid, (x0, x1), (y0, y1), height=400),  # smaller
                       width="stretch")                                                               # than the density
    words.markdown(f"**{where}** ({stage.name}). {stage.description}")
    pushed = ("Blue: the data" if k == 0 else f"Blue: data points pushed forward through layers 1 to {k}"
              + (", their latent codes" if k == last else ""))
    pulled = ("Orange: samples of the base distribution" if k == last else
              f"Orange: samples of the base distribution pulled back through layers {last} to {k + 1}"
              + (", i.e. the model's samples" if k == 0 else ""))
    words.caption(f"The model at step {at.step:,}" + (" (redrawn every second while training)" if timer_on else "")
                  + f". {pushed}. {pulled}. Grey: a square grid of data space, pushed forward with the blue points.")


st.subheader("Layer scrubber: from data to latent and back")
layer_view()
