"""Interpolate: walk along a path in latent space and decode every step."""

import streamlit as st

from dashboard import charts
from dashboard.services import catalogue, latent_paths, limits, live_frames, mnist, toy, widgets

DENSE = 300  # points decoded along the 2-D path for its curve (the dots are the strip's steps)

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
path = c1.radio("Path", latent_paths.PATHS, horizontal=True, key="path", bind="query-params",
                format_func=str.capitalize)
steps = c2.slider(f"{'Points' if mode == '2-D points' else 'Images'} per path, both ends included", 3,
                  limits.MAX_INTERP_STEPS, 7, key="steps", bind="query-params")

if mode == "2-D points":
    flow, points, which = live_frames.toy_model_for_paths()
    st.caption(which)
    if not which.startswith("The default model"):
        st.caption("A shared link cannot bring this model along: whoever opens it sees the default model.")
    p1, p2 = st.columns([1, 3], vertical_alignment="bottom")
    pair = p1.number_input("Pair", 0, 1_000_000, 0, key="pair", bind="query-params",
                           help="Picks two data points at random; each number is a different pair.")
    p2.button("Another pair", on_click=widgets.next_number, args=("pair",))
    frames, windows = toy.path_frames(flow, points, int(pair), steps, path)
    dense, _ = toy.path_frames(flow, points, int(pair), DENSE, path)
    left, right = st.columns(2)
    for column, space, title in ((left, "latent", "Latent space: the path is straight (or a circle arc)"),
                                 (right, "data", "Data space: the same path, decoded by the flow")):
        w = windows[space]
        column.markdown(f"**{title}**")  # above the chart, where it wraps on a narrow screen
        column.altair_chart(charts.path_chart(frames[space], frames[f"{space}_path"], "", (w.x0, w.x1),
                                              (w.y0, w.y1), height=480, curve=dense[f"{space}_path"]),
                            width="stretch")
    st.caption(f"Grey: the data (right) and its latent codes (left). The line is the path itself, {DENSE} points "
               "decoded along it; the coloured dots are the images of the strip, from the first point (t = 0) to "
               "the second (t = 1). Each dot on the right is the decoded dot on the left.")
    st.stop()

cat = catalogue.catalogue()
for problem in cat.problems:
    st.warning(problem)
if not cat.available():
    st.info("No pretrained MNIST model is available, so there is nothing to interpolate yet. The "
            "2-D points mode above works without one.")
    st.stop()

count = mnist.digit_count()
gallery = mnist.gallery_choice()
if not count:
    st.info("The MNIST test set is not on this server, so the ends are limited to the digits shipped with the app "
            "(the gallery below; any of its test image numbers also works in the fields).")

st.markdown("**Pick the two ends:** click a digit in the gallery, or type a test image number.")
target = st.segmented_control("A click in the gallery sets", ["first", "second"], default="first",
                              key="gallery_target", required=True, format_func=lambda t: f"the {t} end")
with st.container(horizontal=True, gap="small", key="gallery"):
    for index, label, image in gallery:
        with st.container(width=64, gap=None):
            st.image(image, width=56, alt=f"A handwritten {label} (test image {index})")
            st.button(str(label), key=f"pick_{index}", on_click=widgets.set_number,
                      args=("a" if target == "first" else "b", index), help=f"Test image {index}: a {label}",
                      width="stretch")

d1, d2, d3 = st.columns([2, 2, 1], vertical_alignment="bottom")
a = d1.number_input("First end (test image number)", value=gallery[0][0] if not count else 0, step=1, key="a",
                    bind="query-params")
b = d2.number_input("Second end (test image number)", value=gallery[2][0] if not count else 1, step=1, key="b",
                    bind="query-params")
d3.button("Random pair", key="random_pair", on_click=widgets.random_pair,
          args=("a", "b", count or [g[0] for g in gallery]))
a, b = int(a), int(b)
unknown = [n for n in (a, b) if mnist.test_digit(n) is None]
for n in unknown:
    st.error(f"There is no test image {n:,} here: " + (f"the MNIST test set has {count:,} images, numbered 0 to "
             f"{count - 1:,}." if count else "without the MNIST files only the gallery's digits can be used."))
if unknown:
    st.stop()

e1, e2, _ = st.columns([1, 1, 3])
for column, n in ((e1, a), (e2, b)):
    column.image(mnist.digit_image(n), caption=f"#{n}: a {mnist.digit_label(n)}",
                 alt=f"Test image {n}, a handwritten {mnist.digit_label(n)}")
st.caption("Both ends are real MNIST test digits, encoded by each model; every strip reads like a line of text, "
           "from the first end (top left) to the second (its last image).")

for name in catalogue.COMPARED:
    strip, problem = mnist.interpolation_strip(name, (a, b), steps, path)
    st.markdown(f"**{catalogue.title(name)}**")
    if strip is None:
        st.info(problem)
    else:
        st.image(strip.image, width="stretch",
                 caption=f"{catalogue.title(name)}: {path} path, decoded in {strip.seconds:.2f} s on this server's "
                         "CPU (the same settings again come from a cache)",
                 alt=f"{catalogue.title(name)}: {steps} digits morphing from a {mnist.digit_label(a)} into a "
                     f"{mnist.digit_label(b)} along a {path} path in latent space.")
