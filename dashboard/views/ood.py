"""Out of distribution: can a flow's likelihood tell the images it was trained on from others?

Everything shown comes from the statistics shipped in `pretrained/ood_stats.npz`; the text comes
before the imports, so the page shows something at once.
"""

import streamlit as st

st.title("Out of distribution")
st.markdown(
    "A flow gives every image an exact likelihood, so it seems natural to use it as an alarm: an image the "
    "model finds unlikely must be unlike its training data. Here each model scores its own test images and "
    "images it was never meant to see. The surprise (Nalisnick et al. 2019): a Glow trained on **clothes** "
    "(Fashion-MNIST) finds **handwritten digits** (MNIST) *more* likely than the clothes it was trained for. "
    "Below: the scores, and four ways of turning them into a detector."
)

from dashboard import score_charts  # noqa: E402 - after the text on purpose (see above)
from dashboard.services import mnist, ood  # noqa: E402

stats, problem = ood.statistics()
if stats is None:
    st.warning(problem)
    st.stop()
if ood.missing_fashion(stats):
    st.warning("Fashion-MNIST was not available when these statistics were made, so the Fashion-MNIST test set "
               f"and the Glow trained on it are missing here: {ood.FASHION_HINT}.")

st.subheader("The images")
for i, key in enumerate(stats.sets):
    if i % 3 == 0:  # rows of three, so a narrow screen stacks them in order
        columns = st.columns(3)
    with columns[i % 3]:
        examples = stats.examples(key)
        described = stats.meta["sets"][key]["title"]
        st.image(mnist.tile(examples, len(examples)), caption=f"{described} ({stats.meta['sets'][key]['n']:,} scored)",
                 alt=f"{len(examples)} examples of {described}")

st.header("Bits/dim under each model")
digit = ood.drawing()
st.markdown(
    "Each row is one set of images: a histogram of how many bits per pixel the model needs for each image "
    "(fewer = more likely), scaled to its own highest bar so that every set shows; the dashed lines are the "
    "medians of the two test sets. "
    + ("The line **your digit** is the image you are scoring on the Score page." if digit else
       "Draw a digit on the **Score** page and it appears here as a line on every histogram.")
)


def panel(model: str, row_height: int) -> None:
    chart = score_charts.ood_histogram(ood.histogram(stats, model), ood.marks(stats, model, digit),
                                       ood.title(stats, model), row_height)
    st.altair_chart(chart, width="stretch")
    st.markdown(ood.finding_sentence(stats, model))


featured = [m for m in stats.models if stats.meta["models"][m]["dataset"] != "mnist"]
for model in [*featured, *(m for m in stats.models if m not in featured)]:
    panel(model, 40 if model in featured else 30)

st.header("Detectors")
st.markdown("Each detector gives every image (or batch of images) an *outlier score*; the higher, the more it "
            "looks out of distribution.\n\n"
            + "\n".join(f"{i}. **{d.title}** ({d.reference}): {d.what}" for i, d in enumerate(ood.DETECTORS, 1)))
st.markdown(
    "**AUROC** is the probability that an image of the outlier set scores higher than a test image of the model's "
    "own data set: 1 is a perfect detector, 0.5 a coin toss. Below 0.5 the detector ranks the outliers as *more* "
    "in-distribution than the real thing; those numbers are shown as measured (in red), never flipped."
)
default = featured[0] if featured else stats.models[0]
model = st.segmented_control("Model", stats.models, default=default, format_func=lambda m: ood.title(stats, m),
                             key="ood_model", required=True)
table = ood.auroc_table(stats, model)
st.html(ood.html_table(table))  # compact, so six columns fit a phone
st.caption(ood.table_caption(stats, model))

shown = [(key, title) for key, title in ood.ROWS if not ood.roc_curves(stats, model, key).empty]
for i, (key, title) in enumerate(shown):
    if i % 2 == 0:
        columns = st.columns(2)
    with columns[i % 2]:
        st.altair_chart(score_charts.roc_chart(ood.roc_curves(stats, model, key), f"ROC: {title}"), width="stretch")

st.caption(f"Computed once with `{stats.meta.get('command') or 'python -m scripts.ood'}` "
           f"({stats.meta.get('created', 'date unknown')}); every number on this page comes from that file.")
