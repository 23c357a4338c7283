"""Interpolate: walk along a path in latent space and decode every step."""

import charts
import services
import services_mnist as mnist
import services_toy
import services_train
import streamlit as st

st.title("Interpolate")
st.markdown(
    "A flow gives every data point a **latent code** z (run the flow forwards) and turns any code back "
    "into data (run it backwards). Walking from the code of one example to the code of another and "
    "decoding every step shows how the model has organised what it learned. **Linear** walks in a "
    "straight line; **spherical** follows a great circle, which keeps the codes at a typical distance "
    "from the centre, where most of the probability lies."
)

mode = st.segmented_control("Data", ["MNIST digits", "2-D points"], default="MNIST digits", key="mode",
                            bind="query-params", required=True)
c1, c2 = st.columns(2)
path = c1.radio("Path", services.PATHS, horizontal=True, key="path", bind="query-params",
                format_func=str.capitalize)
steps = c2.slider("Steps", 3, services.MAX_INTERP_STEPS, 8, key="steps", bind="query-params",
                  help="Number of decoded points along the path, both ends included.")

if mode == "2-D points":
    flow, points, which = services_train.toy_model_for_paths()
    st.caption(which)
    p1, p2 = st.columns([1, 3], vertical_alignment="bottom")
    pair = p1.number_input("Pair", 0, 1_000_000, 0, key="pair", bind="query-params",
                           help="Picks two data points at random; each number is a different pair.")
    p2.button("Another pair", on_click=services.next_number, args=("pair",))
    frames, windows = services_toy.path_frames(flow, points, int(pair), steps, path)
    left, right = st.columns(2)
    for column, space, title in ((left, "latent", "Latent space: the path is straight (or a circle arc)"),
                                 (right, "data", "Data space: the same path, decoded by the flow")):
        w = windows[space]
        column.altair_chart(charts.path_chart(frames[space], frames[f"{space}_path"], title,
                                              (w.x0, w.x1), (w.y0, w.y1)), width="content")
    st.caption("Grey: the data (right) and its latent codes (left). Coloured dots: the path from the first "
               "point (t = 0) to the second (t = 1); each dot on the right is the decoded dot on the left.")
    st.stop()

cat = services.catalogue()
for problem in cat.problems:
    st.warning(problem)
if not cat.available():
    st.info("No pretrained MNIST model is available, so there is nothing to interpolate yet. The "
            "2-D points mode above works without one.")
    st.stop()

images, _, missing = mnist.mnist_test()
if images is not None:
    count = len(images)
    d1, d2, d3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    a = d1.number_input("First digit (test image number)", 0, count - 1, 0, key="a", bind="query-params")
    b = d2.number_input("Second digit (test image number)", 0, count - 1, 1, key="b", bind="query-params")
    d3.button("Random pair", on_click=mnist.random_pair, args=("a", "b", count))
    e1, e2, _ = st.columns([1, 1, 3])
    e1.image(mnist.digit_image(a), caption=f"#{a}: a {mnist.digit_label(a)}")
    e2.image(mnist.digit_image(b), caption=f"#{b}: a {mnist.digit_label(b)}")
    ends, seed = (int(a), int(b)), 0
    st.caption(f"Both ends are real MNIST test digits, encoded by each model; {steps} decoded steps between.")
else:
    st.info(f"The MNIST test set is not available on this server ({missing}). Instead, each strip walks "
            "between two random latent codes drawn at temperature 0.8 (images the model imagines), "
            "chosen by the seed below.")
    seed = st.number_input("Seed", 0, 1_000_000, 0, key="seed", bind="query-params")
    ends = None

for name in services.COMPARED:
    strip, problem = mnist.interpolation_strip(name, ends, steps, path, seed=int(seed))
    st.markdown(f"**{services.title(name)}**")
    if strip is None:
        st.info(problem)
    else:
        st.image(strip.image, caption=f"{services.title(name)}: {path} path, {steps} steps "
                 f"(decoded in {strip.seconds:.2f} s on this server the first time)")
