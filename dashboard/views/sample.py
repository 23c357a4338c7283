"""Sample: MNIST digits drawn from the pretrained flows at a chosen temperature."""

import services
import services_mnist as mnist
import streamlit as st

st.title("Sample")
st.markdown(
    "A flow makes a new image by drawing a random latent vector **z** from its base distribution "
    "and running the flow backwards, **x = f⁻¹(z)**. The **temperature** multiplies z before that: "
    "at 1 you see what the model really learned, lower values give cleaner but less varied digits, "
    "and 0 gives the single most typical image."
)

cat = services.catalogue()
for problem in cat.problems:
    st.warning(problem)
available = cat.available()
if not available:
    st.info("No pretrained model is available, so there is nothing to sample yet.")
    st.stop()

left, right = st.columns([1, 2])
with left:
    name = st.selectbox("Model", available, index=available.index("glow-mnist") if "glow-mnist" in available else 0,
                        format_func=services.title, key="model", bind="query-params")
    temperature = st.slider("Temperature", 0.0, 1.2, 0.7, 0.05, key="temperature", bind="query-params",
                            help="Scale of the latent noise: 1 = the model's distribution, 0 = its mode.")
    seed = st.number_input("Seed", 0, 1_000_000, 0, 1, key="seed", bind="query-params",
                           help="The same seed draws the same latent noise, so grids can be reproduced.")
    side = st.select_slider("Grid size", list(range(2, services.MAX_GRID_SIDE + 1)), 8, key="grid",
                            bind="query-params", help="Images per row and per column.")

with right:
    grid, problem = mnist.sample_grid(name, temperature, seed, side)
    if grid is None:
        st.warning(problem)
    else:
        st.image(grid.image, caption=f"{side * side} samples of {services.title(name)} at temperature "
                 f"{temperature:.2f}, seed {seed}")
        st.caption(f"Drawn in {grid.seconds:.2f} s on this server's CPU the first time; the same settings "
                   "again come from a cache.")
        st.download_button("Download PNG", mnist.png_bytes(grid.image), key="download",
                           file_name=f"{name}-T{temperature:.2f}-seed{seed}-{side}x{side}.png",
                           mime="image/png", icon=":material/download:", on_click="ignore")

st.subheader("All three models, same seed and temperature")
st.caption("The same latent noise for every model, so differences come from the models alone.")
for column, other in zip(st.columns(len(services.COMPARED)), services.COMPARED, strict=True):
    with column:
        small, problem = mnist.sample_grid(other, temperature, seed, side)
        if small is None:
            st.info(problem)
        else:
            entry = cat.models[other]
            measured = (f"{entry.test_bits_per_dim:.3f} test bits/dim" if entry.test_bits_per_dim
                        else "test bits/dim not measured")
            st.image(small.image, caption=f"{entry.title} ({measured})", width="stretch")
