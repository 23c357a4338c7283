"""Sample: MNIST digits drawn from the pretrained flows at a chosen temperature, of any digit or a chosen one."""

import streamlit as st

from dashboard.services import catalogue, limits, mnist, widgets

SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the temperature sweep row
ANY = "any"

st.title("Sample")
st.markdown(
    "A flow makes a new image by drawing a random latent vector **z** from its base distribution "
    "and running the flow backwards, **x = f⁻¹(z)**. The **temperature** multiplies z before that: "
    "at 1 you see what the model really learned, lower values give cleaner but less varied digits. "
    "At 0 every image is the decoded **mode of the base distribution** (z at its most likely value). "
    "That is not the most likely image: how likely an image is also depends on how much the flow "
    "stretches space around it."
)

cat = catalogue.catalogue()
for problem in cat.problems:
    st.warning(problem)
available = cat.available()
conditional = cat.available((catalogue.CONDITIONAL,))
if not available and not conditional:
    st.info("No pretrained model is available, so there is nothing to sample yet.")
    st.stop()

left, right = st.columns([1, 2])
with left:
    digit = st.pills("Digit", [ANY, *map(str, range(10))], default=ANY, key="digit", bind="query-params",
                     required=True, width="stretch", wrap=True,
                     help="A chosen digit is drawn from the class-conditional Glow, which learned one "
                          "distribution per digit.")
    if digit != ANY and not conditional:
        st.info("The class-conditional model is not available on this server, so only 'any' digit can be "
                "drawn. " + catalogue.HOW_TO_GET_MODELS)
        digit = ANY
    if digit == ANY:
        models = available + conditional  # the conditional model draws any digit too
        widgets.keep_option("model", models, "sample")  # Train live's "model" is a family id, not one of these
        name = st.selectbox("Model", models, format_func=catalogue.title, key="model", bind="query-params",
                            index=models.index("glow-mnist") if "glow-mnist" in models else 0)
        widgets.remember("model", name, "sample")
    else:
        name = catalogue.CONDITIONAL
        st.caption(f"Model: {catalogue.title(name)}, the one that can draw a chosen digit.")
    temperature = st.slider("Temperature", 0.0, 1.2, 0.7, 0.05, key="temperature", bind="query-params",
                            help="Scale of the latent noise: 1 = the model's distribution, 0 = the base "
                                 "distribution's mode.")
    seed = st.number_input("Seed", 0, 1_000_000, 0, 1, key="seed", bind="query-params",
                           help="The same seed draws the same latent noise, so grids can be reproduced.")
    side = st.select_slider("Grid size", list(range(2, limits.MAX_GRID_SIDE + 1)), 8, key="grid",
                            bind="query-params", help="Images per row and per column.")

chosen = None if digit == ANY else int(digit)
what = f"{catalogue.title(name)}" + ("" if chosen is None else f", digit {chosen}")
with right:
    grid, problem = mnist.sample_grid(name, temperature, seed, side, digit=chosen)
    if grid is None:
        st.warning(problem)
    else:
        st.image(grid.image, caption=f"{side * side} samples of {what} at temperature {temperature:.2f}, seed {seed}",
                 alt=f"A {side} by {side} grid of handwritten digits drawn by {what} at temperature "
                     f"{temperature:.2f}.")
        st.caption(f"Drawn in {grid.seconds:.2f} s on this server's CPU the first time; the same settings "
                   "again come from a cache.")
        st.download_button("Download PNG", mnist.png_bytes(grid.image), key="download",
                           file_name=f"{name}{'' if chosen is None else f'-digit{chosen}'}-T{temperature:.2f}"
                                     f"-seed{seed}-{side}x{side}.png",
                           mime="image/png", icon=":material/download:", on_click="ignore")

st.subheader("One latent, temperature 0 to 1")
sweep, problem = mnist.temperature_row(name, seed, SWEEP, digit=chosen)
if sweep is None:
    st.info(problem)
else:
    st.image(sweep.image, width="stretch",
             caption=f"{what}: the first sample of the grid at temperatures "
                     f"{', '.join(f'{t:g}' for t in SWEEP)}. Left: the decoded mode of the base distribution.",
             alt=f"A row of {len(SWEEP)} digits decoded by {what} from the same latent noise, scaled by temperatures "
                 "from 0 on the left to 1 on the right.")

if conditional:
    st.subheader(f"All ten digits at temperature {temperature:.2f}")
    row, problem = mnist.digit_row(catalogue.CONDITIONAL, temperature, seed)
    if row is None:
        st.info(problem)
    else:
        st.image(row.image, width="stretch",
                 caption=f"{catalogue.title(catalogue.CONDITIONAL)}: digits 0 to 9, from the same latent noise (seed "
                         f"{seed})", alt=f"The digits 0 to 9 drawn by {catalogue.title(catalogue.CONDITIONAL)} at "
                                     f"temperature {temperature:.2f}.")

st.subheader("All three models, same seed and temperature")
st.caption("The same latent noise for every model, so differences come from the models alone.")
for column, other in zip(st.columns(len(catalogue.COMPARED)), catalogue.COMPARED, strict=True):
    with column:
        small, problem = mnist.sample_grid(other, temperature, seed, side)
        if small is None:
            st.info(problem)
        else:
            entry = cat.models[other]
            measured = (f"{entry.test_bits_per_dim:.3f} test bits/dim" if entry.test_bits_per_dim
                        else "test bits/dim not measured")
            st.image(small.image, caption=f"{entry.title} ({measured})", width="stretch",
                     alt=f"A {side} by {side} grid of digits drawn by {entry.title} at temperature {temperature:.2f}.")
