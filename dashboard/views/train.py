"""Train live: a 2-D flow learning a toy density in this browser session, layer by layer."""

import charts
import services
import services_toy as toy
import services_train as live
import streamlit as st

st.title("Train live")
st.markdown(
    "Pick a shape and a flow, press **Play**, and watch the flow learn: the colours show the density "
    "the model has learned, white dots are the data, orange dots are new samples from the model. "
    "Below, the **layer scrubber** shows what every layer does to the plane."
)

# 1:3 keeps the controls readable down to a 1024 px screen with the sidebar open (1:4 squeezed
# them to ~110 px there); on phones Streamlit stacks the columns.
controls, main = st.columns([1, 3], gap="medium")
with controls:
    data = st.selectbox("Data", live.data_choices(), format_func=live.data_title, key="data", bind="query-params")
    st.file_uploader(
        "Or upload a CSV of points", type=["csv"], key="upload_csv", on_change=live.on_upload,
        args=("upload_csv", "data"), max_upload_size=max(1, services.MAX_UPLOAD_BYTES // 1_000_000),
        help=f"Two numeric columns (x, y), optional header row, {services.MIN_POINTS} to "
             f"{services.MAX_POINTS:,} rows, at most {services.MAX_UPLOAD_BYTES / 1e6:g} MB. Points are "
             "centred and scaled to unit spread before training.")
    if live.upload_error():
        st.error(live.upload_error())
    if data == live.UPLOAD:
        st.caption(live.upload_summary())
    model = st.selectbox("Model", live.MODELS, index=live.MODELS.index(live.DEFAULTS.model), format_func=services.title,
                         key="model", bind="query-params")
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

run = live.live_run(live.Settings(data, model, depth, width, lr, int(seed)))

with controls:
    st.caption(f"This session has used {live.steps_used():,} of its {services.MAX_STEPS_PER_SESSION:,} "
               "training steps (a limit of this shared demo).")
with main, st.container(horizontal=True, gap="small"):  # above the charts, in view; wraps when narrow
    st.button("Play", on_click=live.play, key="play", type="primary", icon=":material/play_arrow:",
              disabled=run.playing or live.steps_left() == 0 or live.failure() is not None)
    st.button("Pause", on_click=live.pause, disabled=not run.playing, key="pause", icon=":material/pause:")
    st.button("Step", on_click=live.step_once, disabled=live.steps_left() == 0, key="step",
              icon=":material/skip_next:", help=f"One optimisation step (a batch of up to {live.BATCH_SIZE} points).")
    st.button("Reset", on_click=live.reset, key="reset", icon=":material/restart_alt:",
              help="A fresh, untrained model with the same settings.")


timer_on = run.playing  # the live view below redraws on a timer while playing


@st.fragment(run_every=live.REFRESH_S if timer_on else None)
def live_view() -> None:
    if live.advance() != timer_on:
        st.rerun()  # training stopped by itself (budget spent, or a failure): stop the timer, update the buttons
    run = live.existing_run()
    if live.failure():
        st.error(live.failure())
    if live.steps_left() == 0:
        st.info(f"This session has used all {services.MAX_STEPS_PER_SESSION:,} training steps. "
                "Reload the page to start a new session.")
    if run.divergences:
        last = run.divergences[-1]
        st.warning(
            f"Training diverged {len(run.divergences)} time(s), last at step {last.step:,} (the loss or "
            f"gradient became infinite at learning rate {last.lr:.3g}). Each time the model was rolled "
            f"back to its last good state and the learning rate halved (now {live.current_lr(run):.3g}); "
            "training goes on.", icon=":material/warning:")
    sps, rps = live.steps_per_second(run), live.redraws_per_second(run)
    held = run.evals[-1][1] if run.evals else None
    st.markdown(f"### Step {run.step:,}")
    metrics = st.container(horizontal=True, gap="medium")  # side by side; they wrap when the column is narrow
    metrics.metric("Steps/s", f"{sps:.0f}" if run.playing and sps else "–", width="content",
                   help="Optimisation steps per second of wall-clock time over the last 2 s, on this "
                        "server's CPU (training runs on its own thread while the page redraws).")
    metrics.metric("Redraws/s", f"{rps:.1f}" if run.playing and rps else "–", width="content",
                   help="How often this view was redrawn over the last 2 s.")
    metrics.metric("Held-out NLL", f"{held:.3f}" if held is not None else "–", width="content",
                   help=f"Negative log-likelihood in nats per point of {len(run.held_out):,} held-out points "
                        f"of the same data (not trained on), measured every {live.EVAL_EVERY} steps. Lower is "
                        "better.")
    density, points = live.density_frames(run)
    window = (run.bounds.x0, run.bounds.x1), (run.bounds.y0, run.bounds.y1)
    st.vega_lite_chart(charts.with_data(charts.density_spec(*window),
                                        **charts.density_tables(density, points, *window)), width="stretch")
    st.caption(f"White dots: training points (at most {toy.N_SHOWN:,}). Orange dots: {toy.N_SHOWN:,} samples "
               "from the model (the same latent points every frame).")


@st.fragment(run_every=live.LOSS_REFRESH_S if timer_on else None)
def loss_view() -> None:
    run = live.existing_run()
    losses = live.loss_frame(run)
    if losses.empty:
        st.info("The loss curve appears here once training starts: press Play or Step.")
    else:
        st.vega_lite_chart(charts.with_data(charts.loss_spec(), losses=losses), width="stretch")
    st.caption(f"Negative log-likelihood in nats per point (lower is better). "
               f"{services.title(run.settings.model)}, {run.params:,} parameters, learning rate "
               f"{live.current_lr(run):.3g}, batches of {run.trainer.config.batch_size} points. "
               f"The curve is redrawn every {live.LOSS_REFRESH_S:g} s while training.")


@st.fragment
def layer_view() -> None:
    run = live.existing_run()
    stages = live.stages(run)
    last = len(stages) - 1
    live.keep_in_range("layer", 0, last)
    k = st.slider("Layer", 0, last, last // 2, key="layer",
                  help="0 is the data space, the last layer is the latent space the flow maps data to.")
    stage = stages[k]
    where = "data space" if k == 0 else ("latent space" if k == last else f"after layer {k} of {last}")
    st.markdown(f"**{where}** ({stage.name}). {stage.description}")
    x0, x1, y0, y1 = stage.window
    st.altair_chart(charts.layer_chart(stage.points, stage.grid, (x0, x1), (y0, y1)), width="content")
    pushed = ("Blue: the data" if k == 0 else f"Blue: data points pushed forward through layers 1 to {k}"
              + (", their latent codes" if k == last else ""))
    pulled = ("Orange: samples of the base distribution" if k == last else
              f"Orange: samples of the base distribution pulled back through layers {last} to {k + 1}"
              + (", i.e. the model's samples" if k == 0 else ""))
    st.caption(f"The model at step {run.step:,} (moving the slider refreshes it). {pushed}. {pulled}. "
               "Grey: a square grid of data space, pushed forward with the blue points.")

with main:
    with st.container(horizontal=True, gap="small"):  # side by side from about 1280 px wide, else stacked
        with st.container(width=350):
            live_view()
        with st.container(width=220):
            loss_view()
    st.subheader("Layer scrubber: from data to latent and back")
    layer_view()
