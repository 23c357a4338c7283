"""Score: your digit (drawn, picked or uploaded), as NICE, RealNVP and Glow see it."""

import streamlit as st

from dashboard import score_charts
from dashboard.services import catalogue, digits, score

st.title("Score")
st.markdown(
    "A flow gives every image an exact **probability**. Draw a digit, pick one from the MNIST test set "
    "or upload a picture, and see how likely each model finds it, where in the model the bits go, which "
    "pixels matter, and what the model makes of it."
)

cat = catalogue.catalogue()
for problem in cat.problems:
    st.warning(problem)
models = cat.available()
if not models:
    st.info("No pretrained model is available, so there is nothing to score with yet.")
    st.stop()
if score.current() is None:
    score.use_test_digit("score_index")  # a first digit to look at, until the visitor gives one

left, right = st.columns([3, 2], gap="medium")
with left:
    draw_tab, pick_tab, upload_tab = st.tabs(["Draw", "MNIST test digit", "Upload"])
    with draw_tab:
        # The canvas's toolbar (undo, redo, clear) floats 2.65rem above its top edge while the pointer is
        # on it; this space and the gap after it keep the toolbar clear of the tab labels.
        st.space("small")
        score.use_drawing(score.drawing_canvas())
        st.button("Clear", key="score_clear", on_click=score.clear_drawing, icon=":material/ink_eraser:")
        st.caption("White on black, as MNIST. Each stroke is scored when you release it; Clear empties the "
                   "canvas, and the digit scored stays until your next stroke.")
    with pick_tab:
        images, labels, indices, where = score.test_digits()
        st.number_input(f"Test digit (0 to {len(images) - 1:,}, {where})", 0, len(images) - 1, 0, 1,
                        key="score_index", on_change=score.use_test_digit, args=("score_index",))
        st.button("Random test digit", key="score_random", on_click=score.random_test_digit, args=("score_index",),
                  icon=":material/casino:")
    with upload_tab:
        st.file_uploader(
            "A PNG or JPEG of one digit", type=["png", "jpg", "jpeg"], key="score_upload",
            on_change=score.use_upload, args=("score_upload",),
            max_upload_size=digits.MAX_IMAGE_BYTES // 1_000_000,
            help=f"Any size up to {digits.MAX_IMAGE_BYTES / 1e6:g} MB and {digits.MAX_IMAGE_SIDE:,} x "
                 f"{digits.MAX_IMAGE_SIDE:,} pixels. A photo of dark ink on light paper is inverted; transparent "
                 "pixels count as background. Animated images: the first frame is scored.")
    if score.note():
        st.warning(score.note())

digit = score.current()


def each_model(fetch):
    """`(model, value)` for every model, each inside its own column; a missing one says why there."""
    for column, model in zip(st.columns(len(models)), models, strict=True):
        with column:
            value, problem = fetch(model)
            if value is None:
                st.info(problem)
                continue
            yield model, value

with right:
    shown = [score.upscale(digit.drawn, 1)] if digit.drawn is not None else []
    st.image([*shown, score.upscale(digit.image, 8)], width=200,
             caption=[*(["your drawing"] if shown else []), f"28 x 28, as MNIST: {digit.source}"],
             alt=[*(["The drawing as drawn on the canvas."] if shown else []),
                  f"The digit scored, 28 by 28 pixels, white on black: {digit.source}."])
    for line in digit.notes:
        st.caption(line)

st.header("How likely each model finds it")
shown = []  # (column, model, score, test-set scores): the numbers first, the histograms after them
for model, s in each_model(lambda m: score.score(m, digit.image)):
    test_bits, missing = score.test_set_scores(model)
    st.metric(f"{catalogue.title(model)}: bits/dim", f"{s.bits:.3f}", border=True,
              help="Bits per dimension of this image: -log₂ p(x + u) / 784, averaged over "
                   f"{score.SCORE_DRAWS} fixed draws of dequantisation noise u (lower: more likely).")
    if test_bits is None:
        st.caption(missing)
        continue
    verdict, rule = score.verdict(s.bits, test_bits)
    st.markdown(f"{score.standing(s.bits, test_bits)}: **{verdict}**")
    shown.append((st.container(), model, s, test_bits, rule))
for place, model, s, test_bits, rule in shown:
    with place:
        st.altair_chart(score_charts.score_histogram(score.histogram_frame(test_bits), s.bits, "this image"),
                        width="stretch")
        st.caption(f"Under {catalogue.title(model)}: {rule}.")

conditional = catalogue.CONDITIONAL
if conditional in cat.available((conditional,)):
    st.subheader("Which digit is it? The class-conditional Glow")
    c, problem = score.score(conditional, digit.image)
    if c is None:
        st.info(problem)
    else:
        probs, parts = st.columns([1, 1], gap="medium")
        with probs:
            st.altair_chart(score_charts.class_probabilities(score.probabilities_frame(c)), width="stretch")
            st.caption(f"p(y | x) by Bayes' rule from log p(x | y) of each digit (uniform prior over the "
                       f"digits): most likely a **{c.label}** ({max(c.probabilities):.0%}). Marginal "
                       f"bits/dim {c.bits:.3f}.")
        with parts:
            st.altair_chart(score_charts.waterfall(score.terms_frame(c), f"total, log p(x | y={c.label})"),
                            width="stretch")
            st.caption(f"The breakdown of -log p(x | y) for its most likely class, y = {c.label} (not of the "
                       "marginal p(x)).")

st.header("Where the bits go")
st.markdown(
    "Each model's bits/dim of this image, split exactly into the terms the flow is made of: the "
    "learned dequantisation where a model has one (what its reshaped noise costs, log q(u|x)), the "
    "pre-processing (the logit), each level's layers (their log-det), the latent each level factors "
    "out (its prior term) and the final latent. Red bars cost bits, blue bars give bits back (the logit "
    "stretches space near black and white, the more so the closer its bounds sit to 0 and 1, so the "
    "pre-processing term of a mostly black digit is negative for some models and positive for others); "
    "the grey bar is the total."
)
for model in models:  # one under the other: the term names need the width
    s, problem = score.score(model, digit.image)
    if s is None:
        st.info(problem)
        continue
    st.markdown(f"**{catalogue.title(model)}**: {s.bits:.3f} bits/dim")
    st.altair_chart(score_charts.waterfall(score.terms_frame(s)), width="stretch")
    if cat.models[model].family == "nice":  # say why its chart has fewer bars
        st.caption("NICE has one scale: every layer sees the whole image and no latent leaves the flow early, "
                   "so all its layers make one term (level 1 log-det) and there is no factored-out latent. That "
                   "term is the same for every image: NICE's additive couplings keep volume, so only its final "
                   "diagonal scaling changes it.")

st.header("Which pixels matter")
st.markdown(
    f"A **sensitivity** map, not a decomposition: how much the image's total bits change when one pixel "
    f"alone is made {score.BRIGHTEN} grey levels brighter (pixels already near white are made darker, "
    "with the sign turned), each of the 784 scored as its own copy of the image. Red: the image becomes "
    "less likely; blue: more likely. Outlined: the digit's ink. A few pixels (often black ones at the border, "
    "which MNIST never lights) change the score far more than the rest; the colours stop at the 98th "
    "percentile of the changes so that the others show (hover for each pixel's value)."
)
# The maps are the slow part (785 images per model): they are drawn last, after the model's version
# below. A new digit's columns say so at once instead of showing the previous digit's maps meanwhile;
# a rerun for the same digit (the temperature, Clear) writes its maps over the ones shown.
new_maps = not score.maps_shown(digit.image)
slots = []
for column, model in zip(st.columns(len(models)), models, strict=True):
    slot = column.empty() if new_maps else column
    if new_maps:
        slot.caption(f"{catalogue.title(model)}: computing the map ...")
    slots.append((slot, model))

st.header("The model's version of your digit")
temperature = st.slider("Temperature", 0.0, 1.0, 0.5, 0.05, key="score_temperature",
                        help="The digit is encoded, its latent multiplied by this, and decoded: 1 gives the "
                             "input again, 0 the decoded mode of the base distribution (z at its most likely "
                             "value, the same image for every digit). That is not the most likely image: how "
                             "likely an image is also depends on how much the flow stretches space around it.")
st.caption("The digit pulled toward the decoded mode of the base distribution. At temperature 1 it comes back "
           "exactly (the flow is invertible).")
for model, (image, diff) in each_model(lambda m: score.model_version(m, digit.image, temperature)):
    caption = f"{catalogue.title(model)} at temperature {temperature:.2f}"
    if temperature == 1.0:
        caption += f": largest pixel difference from the input {diff:.2g} grey levels"
    st.image(score.upscale(image, 6), caption=caption, width="content",
             alt=f"The digit as {catalogue.title(model)} decodes it after scaling its latent by {temperature:.2f}.")

for slot, model in slots:  # each map as soon as it is ready
    change, problem = score.sensitivity(model, digit.image)
    if change is None:
        slot.info(problem)
        continue
    slot.altair_chart(score_charts.sensitivity_map(score.pixels_frame(change, digit.image), catalogue.title(model)),
                      width="content")
score.set_maps_shown(digit.image)
