"""Home: what a normalizing flow is, one picture, the three models, and a way into every page.

The title and the text come before the imports of torch and the models (seconds on a server's
first visit), so the page shows something at once.
"""

import streamlit as st

st.title("Normalizing flows, explained")
st.markdown(
    "A **normalizing flow** turns simple random noise into realistic data with a chain of small "
    "**invertible** steps. Each step bends space a little, and because every step can be undone, the "
    "flow can also run backwards, turning data into noise. Knowing exactly how much each step "
    "stretches or squeezes space lets the flow give every data point an exact **probability**, which "
    "is what it is trained to make high. Run forwards it **generates** new data; run backwards it "
    "**scores** data."
)

from dashboard import charts  # noqa: E402 - after the text on purpose (see above)
from dashboard.services import catalogue, compare, mnist, toy  # noqa: E402

SAMPLE_TEMPERATURE = 0.7

flow = toy.default_flow("moons")
panels = charts.flow_panels(toy.base_to_data(flow))
for column, panel in zip(st.columns(len(panels), gap="medium"), panels, strict=True):  # stacked on phones
    with column:
        st.altair_chart(panel, width="stretch")
st.caption(
    f"(1) 1,500 points drawn from a 2-D Gaussian. (2) The same points after {toy.describe(flow)}. "
    "Colours follow each point, so you can see where the flow moves it."
)

st.header("Three flows on handwritten digits (MNIST)")
st.markdown(
    "Each model is scored in **bits per pixel** (bits/dim) on 10,000 test digits it never saw: how many bits it "
    "needs, on average, to store one pixel. **Fewer bits per pixel = better**; 8 would be no better than "
    "storing the raw bytes. Under each score: what the model cost to train, and a few digits it drew."
)

cat = catalogue.catalogue()
for problem in cat.problems:
    st.warning(problem)
columns = st.columns(len(catalogue.COMPARED))
blurbs = {
    "nice": "The first flow (2014): each step shifts half of the numbers by an amount computed "
            "from the other half. Simple, but it cannot stretch space locally.",
    "realnvp": "Adds stretching (scale) to every step and looks at the image at several "
               "resolutions (2016).",
    "glow": "Adds a learned mixing of channels before every step (an invertible 1x1 "
            "convolution) and ActNorm (2018).",
}
for column, name in zip(columns, catalogue.COMPARED, strict=True):
    entry = cat.models.get(name)
    with column:
        value = f"{entry.test_bits_per_dim:.3f}" if entry and entry.test_bits_per_dim else "n/a"
        help_text = ("Bits per dimension: the average number of bits the model needs to encode one "
                     "pixel of a test image (lower is better; 8 would mean no better than raw bytes). "
                     + (f"Measured on {entry.n_test:,} MNIST test images, mean over {entry.draws} "
                        f"draws of dequantisation noise." if entry and entry.n_test and entry.draws
                        else "From the manifest of the pretrained models.")
                     + (" This model learned to shape that noise (a learned dequantiser), which tightens the "
                        "bound; see Compare." if entry and entry.dequantizer == "variational" else ""))
        st.metric(f"{catalogue.title(name)}: test bits/dim", value, help=help_text, border=True)
        if entry is not None:
            st.caption(f"Trained with {compare.budget(entry).replace(chr(10), '; ')}.")
        grid, _ = mnist.sample_grid(name, SAMPLE_TEMPERATURE, 0, 3)
        if grid is not None:
            st.image(grid.image, width="stretch", caption=f"Samples at temperature {SAMPLE_TEMPERATURE}",
                     alt=f"Nine handwritten digits drawn by {catalogue.title(name)} at temperature "
                         f"{SAMPLE_TEMPERATURE}.")
        st.caption(blurbs[name.split("-")[0]])

st.header("Explore")
EXPLORE = (  # page, its name, what it does (a caption under the link: link labels do not wrap on a phone)
    ("views/train.py", "Train live", "Watch a flow learn a 2-D shape, layer by layer", ":material/play_circle:"),
    ("views/interpolate.py", "Interpolate", "Walk in latent space between two digits or points",
     ":material/linear_scale:"),
    ("views/compare.py", "Compare", "NICE, RealNVP and Glow side by side, and a live race", ":material/leaderboard:"),
    ("views/sample.py", "Sample", "Draw new digits at any temperature", ":material/grid_view:"),
    ("views/score.py", "Score", "Draw a digit and see how likely each model finds it", ":material/draw:"),
    ("views/ood.py", "Out of distribution", "A model of clothes finds digits more likely than clothes",
     ":material/report:"),
)
for row in range(0, len(EXPLORE), 2):  # two a row; stacked in order on a phone
    for column, (page, title, what, icon) in zip(st.columns(2, gap="medium"), EXPLORE[row:row + 2], strict=False):
        with column.container(gap=None):
            st.page_link(page, label=title, icon=icon, width="stretch")
            st.caption(what + ".")
