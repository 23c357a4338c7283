"""Charts of the Score and Out-of-distribution pages: one image's bits/dim among the test digits,
its terms, its pixel sensitivity and class probabilities; histograms and ROC curves of image sets.
Pure functions: pandas DataFrames in, Altair charts out (the sizing rules are those of `charts`)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from dashboard.charts import FIT, SQUARE

# --- Score -------------------------------------------------------------------------------------


def score_histogram(bins: pd.DataFrame, bits: float, label: str, height: int = 170) -> alt.LayerChart:
    """The test digits' bits/dim as a histogram, with one image's score as a labelled rule.

    `bins`: start, end, count (one row per bin)."""
    lo, hi = min(float(bins["start"].min()), bits), max(float(bins["end"].max()), bits)
    pad = 0.03 * (hi - lo or 1.0)
    x_scale = alt.Scale(domain=[lo - pad, hi + pad], nice=False, zero=False)
    bars = alt.Chart(bins).mark_rect(color="#BBBBBB").encode(
        x=alt.X("start:Q", scale=x_scale, title="bits/dim (lower: more likely)"), x2="end:Q",
        y=alt.Y("count:Q", title="test digits"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("start:Q", format=".3f", title="from"), alt.Tooltip("end:Q", format=".3f", title="to"),
                 alt.Tooltip("count:Q", title="test digits")])
    left = bits < (lo + hi) / 2
    mark = pd.DataFrame({"bits_per_dim": [bits], "label": [label]})
    rule = alt.Chart(mark).mark_rule(color="#E45756", strokeWidth=2.5).encode(x=alt.X("bits_per_dim:Q", scale=x_scale))
    text = alt.Chart(mark).mark_text(color="#E45756", baseline="top", fontWeight="bold",
                                     align="left" if left else "right", dx=4 if left else -4).encode(
        x=alt.X("bits_per_dim:Q", scale=x_scale), y=alt.value(2), text="label:N")
    return alt.layer(bars, rule, text).properties(
        height=height, autosize=FIT, description=f"Histogram of the bits/dim of the MNIST test digits, with "
        f"this image's {bits:.3f} bits/dim marked by a red line labelled {label}.")


def waterfall(terms: pd.DataFrame, total_label: str = "total", row_px: int = 30) -> alt.LayerChart:
    """Terms of a sum as a waterfall from 0 to the total: each bar starts where the previous ended,
    up for what costs bits, down for what gives bits back, then the total from 0.

    `terms`: term, bits (in order)."""
    bits = terms["bits"].astype(float).to_numpy()
    end = np.cumsum(bits)
    start = end - bits
    rows = pd.DataFrame({"term": terms["term"], "start": start, "end": end, "bits": bits,
                         "kind": np.where(bits >= 0, "costs bits", "gives bits back")})
    rows = pd.concat([rows, pd.DataFrame({"term": [total_label], "start": [0.0], "end": [end[-1] if len(end) else 0.0],
                                          "bits": [end[-1] if len(end) else 0.0], "kind": ["total"]})],
                     ignore_index=True)
    order = list(rows["term"])
    colour = alt.Color("kind:N", title=None, legend=None,  # the page says what the colours mean
                       scale=alt.Scale(domain=["costs bits", "gives bits back", "total"],
                                       range=["#E45756", "#4C78A8", "#555555"]))
    y = alt.Y("term:N", sort=order, title=None, axis=alt.Axis(labelLimit=220, labelOverlap=False))
    bars = alt.Chart(rows).mark_bar(height={"band": 0.7}).encode(
        x=alt.X("start:Q", title="bits/dim"), x2="end:Q", y=y, color=colour,
        tooltip=["term:N", alt.Tooltip("bits:Q", format="+.4f", title="bits/dim")])
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="black").encode(x="x:Q")
    return alt.layer(zero, bars).properties(
        height=row_px * len(rows) + 70, autosize=FIT,  # 70: the x axis and its title
        description="Waterfall chart: the bits/dim of the image split into the terms of the flow, each bar "
                    "starting where the previous one ended, and the total.")


def sensitivity_map(frame: pd.DataFrame, title: str, size: int = 230) -> alt.LayerChart:
    """A 28x28 map on a diverging scale centred on 0 (red: the score rises, blue: it falls), the
    colours clamped at the 98th percentile of |change| so that a few extreme pixels do not wash out
    the rest, with the digit's ink outlined.

    `frame`: row, col, change, ink (one row per pixel)."""
    limit = float(max(frame["change"].abs().quantile(0.98), 1e-9))
    x, y = alt.X("col:O", axis=None), alt.Y("row:O", axis=None)
    cells = alt.Chart(frame).mark_rect().encode(
        x=x, y=y,
        color=alt.Color("change:Q", title="Δ bits", legend=alt.Legend(orient="bottom", gradientLength=150),
                        scale=alt.Scale(scheme="redblue", reverse=True, domain=[-limit, limit], domainMid=0,
                                        clamp=True)),
        tooltip=[alt.Tooltip("row:O"), alt.Tooltip("col:O", title="column"),
                 alt.Tooltip("change:Q", format="+.3f", title="change of the image's bits")])
    ink = alt.Chart(frame).transform_filter("datum.ink").mark_square(size=22, filled=False, color="#333333",
                                                                    strokeWidth=0.8, opacity=0.6).encode(x=x, y=y)
    return alt.layer(cells, ink).properties(
        width=size, height=size, title=title, autosize=SQUARE,
        description="Heatmap over the 28 by 28 digit of how much its score changes when one pixel alone is "
                    "brightened: red, more bits (less likely); blue, fewer bits; the digit's ink outlined.")


def class_probabilities(frame: pd.DataFrame, height: int = 200) -> alt.Chart:
    """p(y | x) over the ten digits. `frame`: digit, probability."""
    return alt.Chart(frame).mark_bar(color="#54A24B").encode(
        x=alt.X("digit:O", title="digit y", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("probability:Q", title="p(y | x)", scale=alt.Scale(domain=[0, 1])),
        tooltip=["digit:O", alt.Tooltip("probability:Q", format=".3f")],
    ).properties(height=height, autosize=FIT, description="Bar chart of the class-conditional model's "
                 "probability of each digit 0 to 9 for this image.")


# --- Out of distribution --------------------------------------------------------------------

SET_ORDER = ["MNIST test", "Fashion-MNIST test", "constant", "uniform noise", "inverted digits", "shifted digits"]
SET_COLOURS = dict(zip(SET_ORDER, ["#4C78A8", "#F58518", "#7F7F7F", "#E45756", "#B279A2", "#54A24B"], strict=True))


def _set_colour(sets: pd.Series) -> alt.Color:
    """One fixed colour per image set, the legend listing only the sets drawn."""
    shown = [s for s in SET_ORDER if s in set(sets)] + sorted(set(sets) - set(SET_ORDER))
    scale = alt.Scale(domain=shown, range=[SET_COLOURS.get(s, "#333333") for s in shown])
    return alt.Color("set:N", scale=scale, title=None, sort=shown,
                     legend=alt.Legend(orient="bottom", columns=2, labelLimit=220))
# As wide as the column (axes and legend included), `height` tall for the plot itself: the legends
# below these charts take two or three rows depending on the width.
FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")


TICKS = (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500)  # labelled on the log bits/dim axis
LABEL_PX = 16  # per line of the labels above the rows


def ood_histogram(bars: pd.DataFrame, marks: pd.DataFrame, title: str, row_height: int = 36) -> alt.LayerChart:
    """One row per image set (a ridgeline): the histogram of its bits/dim on a shared log axis (the
    sets span 0.5 to over 100 bits/dim), each row scaled to its own highest bar so that no set hides
    another, with labelled vertical rules (medians, the visitor's digit) across all rows.

    `bars`: set, left, right (bin edges in bits/dim), density (per unit of log10 bits/dim, so each
    set's bars have area 1 on this axis). `marks`: x (bits/dim), label, row (0, 1, ...: the label's
    line above the rows); a label right of the middle is written to the left of its rule, so it stays
    in the chart."""
    order = [s for s in SET_ORDER if s in set(bars["set"])] + sorted(set(bars["set"]) - set(SET_ORDER))
    base = {name: len(order) - 1 - i for i, name in enumerate(order)}  # the first set on top
    bars = bars.assign(base=bars["set"].map(base))
    bars["top"] = bars["base"] + 0.85 * bars["density"] / bars.groupby("set")["density"].transform("max")
    lines = int(marks["row"].max()) + 1 if len(marks) else 0
    top = len(order) + (lines * LABEL_PX + 6) / row_height  # room above the rows for the labels
    lo, hi = float(bars["left"].min()), float(bars["right"].max()) * 1.15  # the last bar clear of the frame
    x_scale = alt.Scale(type="log", domain=[lo, hi], nice=False)
    x_axis = alt.Axis(values=[t for t in TICKS if lo <= t <= hi], format="~g",
                      title="bits/dim (log scale; lower = more likely)")
    y_scale = alt.Scale(domain=[0, top], nice=False, zero=True)
    name_of = " : ".join(f"datum.value < {base[n] + 1} ? '{n}'" for n in reversed(order)) + " : ''"
    y_axis = alt.Axis(values=[base[n] + 0.4 for n in order], labelExpr=name_of, title=None, grid=False,
                      ticks=False, domain=False, labelLimit=160, labelFontSize=12, labelColor="#31333F")
    histogram = alt.Chart(bars).mark_bar(binSpacing=0, opacity=0.85).encode(
        x=alt.X("left:Q", scale=x_scale, axis=x_axis),
        x2="right:Q",
        y=alt.Y("base:Q", scale=y_scale, axis=y_axis), y2="top:Q",
        color=_set_colour(bars["set"]).legend(None),  # the rows are labelled on the left
        tooltip=["set:N", alt.Tooltip("left:Q", format=".2f", title="from bits/dim"),
                 alt.Tooltip("right:Q", format=".2f", title="to bits/dim"),
                 alt.Tooltip("density:Q", format=".2f", title="density (per log₁₀ bits/dim)")],
    )
    digit = "indexof(datum.label, 'your digit') === 0"  # the visitor's digit: solid red, medians dashed black
    rules = marks.assign(y0=0.0, y1=float(len(order)))
    layers = [histogram, alt.Chart(rules).mark_rule(strokeWidth=1.5).encode(
        x=alt.X("x:Q", scale=x_scale), y=alt.Y("y0:Q", scale=y_scale), y2="y1:Q",
        color=alt.condition(digit, alt.value("#d62728"), alt.value("black")),
        strokeDash=alt.condition(digit, alt.value([1, 0]), alt.value([4, 3])))]
    right = np.log(marks["x"].clip(lower=lo)) > (np.log(lo) + np.log(hi)) / 2
    for part, align, dx in ((marks[~right], "left", 4), (marks[right], "right", -4)):
        layers.append(alt.Chart(part).mark_text(align=align, baseline="top", dx=dx, fontSize=11, color="black")
                      .encode(x=alt.X("x:Q", scale=x_scale), y=alt.Y("ypx:Q", scale=None, axis=None), text="label:N")
                      .transform_calculate(ypx=f"2 + {LABEL_PX} * datum.row"))
    described = "; ".join(marks["label"])
    return alt.layer(*layers).properties(
        height=round(top * row_height), autosize=FIT_X, title=title,
        description=f"Histograms of bits/dim under {title}, one row per image set ({', '.join(order)})"
                    + (f"; {described}" if described else ""))


def roc_chart(curves: pd.DataFrame, title: str, height: int = 220) -> alt.LayerChart:
    """ROC curves, one per outlier set: true-positive rate (outliers flagged) against false-positive
    rate (in-distribution test images flagged), with the diagonal of a detector that guesses.

    `curves`: set, fpr, tpr, order (the points of each curve in threshold order)."""
    axis = alt.Scale(domain=[0, 1], nice=False)
    chance = alt.Chart(pd.DataFrame({"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]})).mark_line(
        color="#999999", strokeDash=[3, 3]).encode(x=alt.X("fpr:Q", scale=axis), y=alt.Y("tpr:Q", scale=axis))
    lines = alt.Chart(curves).mark_line(strokeWidth=1.8).encode(
        x=alt.X("fpr:Q", scale=axis, title="false-positive rate (test images flagged)"),
        y=alt.Y("tpr:Q", scale=axis, title="true-positive rate (outliers)"),
        color=_set_colour(curves["set"]), order="order:Q",
    )
    return alt.layer(chance, lines).properties(height=height, autosize=FIT_X, title=title,
                                               description=f"ROC curves of {title}, one per outlier set.")
