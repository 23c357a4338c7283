"""Pure chart functions: pandas DataFrames in, Altair charts out. No Streamlit, no torch.

Every axis title says what is plotted and in which unit. The two charts of the live
training view are redrawn five times a second; validating an Altair chart costs tens of
milliseconds, so for them `*_spec` compiles the chart once (data referenced by name) and
`with_data` attaches each frame's tables, which Streamlit sends as Arrow without revalidating.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

Source = pd.DataFrame | alt.NamedData

MODEL_ORDER = ["NICE", "RealNVP", "Glow"]
MODEL_COLOURS = alt.Scale(domain=MODEL_ORDER, range=["#4C78A8", "#F58518", "#54A24B"])
POINT_COLOURS = alt.Scale(domain=["data pushed forward", "samples pulled back"], range=["#1f77b4", "#ff7f0e"])


# Width and height are those of the plotting area; axes and legends come on top, so a square
# window in data space stays square on screen (Streamlit otherwise fits the whole chart).
SQUARE = alt.AutoSizeParams(type="pad")
# Charts that fit their column instead: the whole chart (axes and legends included) is as wide as
# the column, and each axis spans a square of side min(plot width, plot height) in the lower left
# of the plotting area, so a square window in data space stays square at any column width.
FIT = alt.AutoSizeParams(type="fit", contains="padding")
_SIDE = "min(width, height)"


def _domain(lo: float, hi: float, fit: bool = False, axis: str = "x") -> alt.Scale:
    if not fit:
        return alt.Scale(domain=[lo, hi], nice=False, zero=False)
    span = [alt.ExprRef(expr="0"), alt.ExprRef(expr=_SIDE)] if axis == "x" else \
        [alt.ExprRef(expr="height"), alt.ExprRef(expr=f"height - {_SIDE}")]
    return alt.Scale(domain=[lo, hi], nice=False, zero=False, range=span)


def _square_window(x: pd.Series, y: pd.Series, margin: float = 0.1) -> tuple[list[float], list[float]]:
    """Equal-unit domains around all but the most extreme 0.5 % of points on each side."""
    lo = np.array([x.quantile(0.005), y.quantile(0.005)])
    hi = np.array([x.quantile(0.995), y.quantile(0.995)])
    centre, half = (lo + hi) / 2, float((hi - lo).max()) * (0.5 + margin)
    return [centre[0] - half, centre[0] + half], [centre[1] - half, centre[1] + half]


def flow_panels(frame: pd.DataFrame, height: int = 440) -> list[alt.Chart]:
    """Home: base samples and their images under the flow, one chart per panel, coloured by angle.
    Each is as wide as its column (`FIT`), at most `height` pixels tall, the plot square; points
    outside the square window are left out (the plotting area around the square would show them).

    `frame`: x, y, angle (of the base point, degrees), panel (one chart per value)."""
    panels = []
    for name, part in frame.groupby("panel", sort=True):
        xd, yd = _square_window(part["x"], part["y"])
        part = part[part["x"].between(*xd) & part["y"].between(*yd)]
        panels.append(alt.Chart(part).mark_circle(size=14, opacity=0.8, clip=True).encode(
            x=alt.X("x:Q", title=None, scale=_domain(*xd, fit=True, axis="x")),
            y=alt.Y("y:Q", title=None, scale=_domain(*yd, fit=True, axis="y")),
            color=alt.Color("angle:Q", scale=alt.Scale(scheme="sinebow", domain=[-180, 180]), legend=None),
            tooltip=[alt.Tooltip("angle:Q", title="angle of z (degrees)", format=".0f")],
        ).properties(height=height, title=str(name), autosize=FIT))
    return panels


def with_data(spec: dict[str, Any], **tables: pd.DataFrame) -> dict[str, Any]:
    """A compiled spec (see `density_spec`, `loss_spec`) with its named tables, for `st.vega_lite_chart`."""
    return {**spec, "datasets": tables}


# Viridis at ten evenly spaced stops (the colour scale of the density everywhere in the app).
VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
                    [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37]], float)
DOT_COLOURS = {"data": (255, 255, 255), "model samples": (255, 127, 14)}


def density_picture(density: pd.DataFrame, points: pd.DataFrame, x: tuple[float, float],
                    y: tuple[float, float], pixels: int = 400) -> str:
    """The density heatmap with points drawn on top, as one JPEG data URL.

    A browser redraws one image far faster than thousands of chart marks, which keeps the
    live view at five frames a second. `density`: x, y (centres of a square grid of cells),
    density; `points`: x, y, kind ("data" or "model samples")."""
    side = int(round(len(density) ** 0.5))
    order = np.lexsort((density["x"].to_numpy(), density["y"].to_numpy()))  # rows by y, then x
    grid = density["density"].to_numpy()[order].reshape(side, side)[::-1]  # top row first
    level = np.nan_to_num(grid / max(float(np.nanmax(grid)), 1e-30)) * (len(VIRIDIS) - 1)
    i = np.clip(level.astype(int), 0, len(VIRIDIS) - 2)
    rgb = VIRIDIS[i] * (1 - (level - i))[..., None] + VIRIDIS[i + 1] * (level - i)[..., None]
    image = np.array(Image.fromarray(rgb.astype(np.uint8)).resize((pixels, pixels), Image.BILINEAR))
    px, py, kinds = points["x"].to_numpy(), points["y"].to_numpy(), points["kind"].to_numpy()
    col = np.clip(np.nan_to_num((px - x[0]) / (x[1] - x[0]) * pixels, nan=-1.0), -1, pixels).astype(int)
    row = np.clip(np.nan_to_num((y[1] - py) / (y[1] - y[0]) * pixels, nan=-1.0), -1, pixels).astype(int)
    inside = (col >= 1) & (col < pixels - 1) & (row >= 1) & (row < pixels - 1)
    for kind, colour in DOT_COLOURS.items():
        r, c = row[inside & (kinds == kind)], col[inside & (kinds == kind)]
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                image[r + dr, c + dc] = colour
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def density_tables(density: pd.DataFrame, points: pd.DataFrame, x: tuple[float, float],
                   y: tuple[float, float]) -> dict[str, pd.DataFrame]:
    """The tables `density_spec` reads: the picture, and two rows for the colour legend (drawn off-view)."""
    far_x, far_y = x[0] - 10 * (x[1] - x[0]), y[0] - 10 * (y[1] - y[0])
    return {
        "picture": pd.DataFrame({"x": [x[0]], "x2": [x[1]], "y": [y[0]], "y2": [y[1]],
                                 "url": [density_picture(density, points, x, y)]}),
        "density_legend": pd.DataFrame({"x": [far_x] * 2, "y": [far_y] * 2,
                                        "density": [0.0, float(density["density"].max())]}),
    }


def density_chart(picture: Source, density_legend: Source, x: tuple[float, float],
                  y: tuple[float, float], height: int = 400) -> alt.LayerChart:
    """The learned density `p(x)` as a heatmap with data points (white) and model samples (orange)
    drawn in (one image, see `density_picture`), real axes and a colour legend.

    As wide as its column (`FIT`), at most `height` pixels tall, the plot square; the page says
    what the dots are (a second legend did not fit beside the first in a narrow column)."""
    xs, ys = _domain(*x, fit=True, axis="x"), _domain(*y, fit=True, axis="y")
    no_grid = alt.Axis(grid=False)
    image = alt.Chart(picture).mark_image(aspect=False).encode(
        x=alt.X("x:Q", scale=xs, title="x₁", axis=no_grid), x2="x2:Q",
        y=alt.Y("y:Q", scale=ys, title="x₂", axis=no_grid), y2="y2:Q", url="url:N")
    colour_key = alt.Chart(density_legend).mark_square(clip=True).encode(
        x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys),
        color=alt.Color("density:Q", title="model density p(x)", scale=alt.Scale(scheme="viridis"),
                        legend=alt.Legend(orient="bottom", format=".2f", gradientLength=140)))
    alt_text = (f"Heatmap of the density the model has learned over x1 from {x[0]:.2g} to {x[1]:.2g} and x2 "
                f"from {y[0]:.2g} to {y[1]:.2g} (yellow: high, dark blue: low), with the training points in "
                "white and samples of the model in orange.")
    return alt.layer(image, colour_key).properties(height=height, autosize=FIT, description=alt_text) \
        .configure_view(stroke=None)


@functools.lru_cache(maxsize=32)
def density_spec(x: tuple[float, float], y: tuple[float, float], height: int = 400) -> dict[str, Any]:
    """`density_chart` compiled once, reading the tables of `density_tables`."""
    named = (alt.NamedData(n) for n in ("picture", "density_legend"))
    return density_chart(*named, x, y, height).to_dict()


def loss_chart(frame: Source, height: int = 300) -> alt.Chart:
    """Negative log-likelihood (nats per point) against optimisation step, as wide as its column.

    `frame`: step, nll (as measured, for tooltips), shown (clipped to a readable range), series."""
    return alt.Chart(frame).mark_line(point=False).encode(
        x=alt.X("step:Q", title="optimisation step"),
        y=alt.Y("shown:Q", title="NLL (nats)", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top", labelLimit=200),
                        scale=alt.Scale(domain=["training batches", "held-out points"],
                                        range=["#9ecae9", "#e45756"])),
        tooltip=["series:N", "step:Q", alt.Tooltip("nll:Q", format=".3f", title="NLL (nats per point)")],
    ).properties(height=height, autosize=FIT, description="Line chart of the negative log-likelihood "
                 "(lower is better) against the optimisation step: training batches in light blue, held-out "
                 "points in red.")


@functools.lru_cache(maxsize=4)
def loss_spec(height: int = 300) -> dict[str, Any]:
    """`loss_chart` compiled once, reading the table "losses"."""
    return loss_chart(alt.NamedData("losses"), height).to_dict()


def layer_chart(points: pd.DataFrame, grid: pd.DataFrame, x: tuple[float, float],
                y: tuple[float, float], height: int = 460) -> alt.LayerChart:
    """The plane after some layers: warped grid lines, data pushed forward, samples pulled back.
    As wide as its column (`FIT`), at most `height` pixels tall, the plot square. What lies outside
    the window is left out (the plotting area around the square would show it): lines break there."""
    xs, ys = _domain(*x, fit=True, axis="x"), _domain(*y, fit=True, axis="y")
    inside = lambda f: f["x"].between(*x) & f["y"].between(*y)  # noqa: E731
    grid = grid.assign(y=grid["y"].where(inside(grid)))
    points = points[inside(points)]
    lines = alt.Chart(grid).mark_line(color="#999999", strokeWidth=0.8, clip=True,
                                      invalid="break-paths-show-domains").encode(
        x=alt.X("x:Q", scale=xs, title="coordinate 1", axis=alt.Axis(grid=False)),
        y=alt.Y("y:Q", scale=ys, title="coordinate 2", axis=alt.Axis(grid=False)),
        detail="line:N", order="order:Q",
    )
    dots = alt.Chart(points).mark_circle(size=10, opacity=0.6, clip=True).encode(
        x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys),
        color=alt.Color("kind:N", title=None, scale=POINT_COLOURS,
                        legend=alt.Legend(orient="bottom")),
    )
    return alt.layer(lines, dots).properties(
        height=height, autosize=FIT, description="Scatter plot of the plane after some layers of the flow: "
        "blue data points pushed forward, orange base samples pulled back, grey lines of a square grid.")


def path_chart(background: pd.DataFrame, path: pd.DataFrame, title: str,
               x: tuple[float, float] | None = None, y: tuple[float, float] | None = None,
               height: int = 360, curve: pd.DataFrame | None = None) -> alt.LayerChart:
    """A point cloud in grey with a path on top: the dots of `path`, coloured from start (t=0) to
    end (t=1), on the line through `curve` (a dense version of the same path; `path` if None).
    As wide as its column (`FIT`), at most `height` pixels tall, the plot square when given a window."""
    xs = _domain(*x, fit=True, axis="x") if x else alt.Scale(zero=False)
    ys = _domain(*y, fit=True, axis="y") if y else alt.Scale(zero=False)
    cloud = alt.Chart(background).mark_circle(size=8, color="#bbbbbb", opacity=0.5, clip=True).encode(
        x=alt.X("x:Q", scale=xs, title="coordinate 1"), y=alt.Y("y:Q", scale=ys, title="coordinate 2"))
    line = alt.Chart(path if curve is None else curve).mark_line(color="#333333", strokeWidth=1.5, clip=True).encode(
        x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys), order="t:Q")
    dots = alt.Chart(path).mark_circle(size=70, opacity=1, clip=True).encode(
        x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys),
        color=alt.Color("t:Q", title="position t along the path", scale=alt.Scale(scheme="plasma"),
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("t:Q", format=".2f"), alt.Tooltip("x:Q", format=".2f"),
                 alt.Tooltip("y:Q", format=".2f")],
    )
    return alt.layer(cloud, line, dots).properties(  # no title drawn with title="": the page may write one that wraps
        height=height, autosize=FIT, **({"title": title} if title else {}),
        description=f"{title or 'A path'}. Grey points: the data or its latent codes; a dark line: the path, with "
                    "coloured dots from its start (t = 0) to its end (t = 1).")


def _faded(highlight: str | None) -> alt.ValueDefWithCondition | alt.Undefined:
    """Full opacity for the highlighted model (all of them with none), faint for the others."""
    if not highlight:
        return alt.Undefined
    return alt.condition(alt.datum.model == highlight, alt.value(1.0), alt.value(0.2))


def bits_chart(models: pd.DataFrame, highlight: str | None = None, row_height: int = 100) -> alt.LayerChart:
    """Test bits/dim of the MNIST models as bars, each with its training budget written under it and
    the published value as a black tick, labelled (with any caveat) where it stands; hovering a tick
    names its source. As wide as its column.

    `models`: model, bits_per_dim, spread (the std over noise draws, as text), published,
    published_label (may hold a line break), published_source, budget (two lines)."""
    top = pd.concat([models["bits_per_dim"], models["published"]]).astype(float).max()
    top = float(top) if pd.notna(top) and top > 0 else 1.0
    x = alt.X("bits_per_dim:Q", title="test bits/dim on MNIST (fewer bits per pixel = better)",
              scale=alt.Scale(domain=[0, top * 1.1], nice=False))
    y = alt.Y("model:N", sort=MODEL_ORDER, title=None, axis=alt.Axis(labelFontWeight="bold", labelPadding=6),
              scale=alt.Scale(paddingInner=0, paddingOuter=0))
    base = alt.Chart(models)
    opacity = _faded(highlight)
    bars = base.mark_bar(height=20).encode(
        x=x, y=y, color=alt.Color("model:N", scale=MODEL_COLOURS, legend=None), opacity=opacity,
        tooltip=["model:N", alt.Tooltip("bits_per_dim:Q", format=".3f", title="bits/dim (measured)"),
                 alt.Tooltip("spread:N", title="± std over noise draws")])
    values = base.transform_filter("isValid(datum.bits_per_dim)").mark_text(
        align="left", color="white", fontWeight="bold").encode(x=alt.value(6), y=y,
                                                              text=alt.Text("bits_per_dim:Q", format=".3f"))
    cost = base.mark_text(align="left", baseline="top", dy=14, fontSize=11, color="#444444", lineBreak="\n").encode(
        x=alt.value(0), y=y, text="budget:N")
    published = base.transform_filter("isValid(datum.published)")
    source = [alt.Tooltip("published:Q", format=".2f", title="published bits/dim"),
              alt.Tooltip("published_source:N", title="source"), alt.Tooltip("published_note:N", title="note")]
    ticks = published.mark_tick(color="black", thickness=2, size=22).encode(  # clear of the budget text
        x="published:Q", y=y, opacity=opacity, tooltip=source)
    # Labels above the bar (any caveat above the label), running away from the nearer edge so they are
    # never cut off.
    labels = [published.transform_filter(test).mark_text(
        align=align, baseline="bottom", dy=dy, dx=dx, fontSize=11, color="black").encode(
        x="published:Q", y=y, text=f"{field}:N", tooltip=source)
        for test, align, dx in ((f"datum.published < {top / 2}", "left", -4),
                                (f"datum.published >= {top / 2}", "right", 4))
        for field, dy in (("published_label", -16), ("published_note", -30))]
    return alt.layer(bars, values, cost, ticks, *labels).properties(
        height=row_height * max(len(models), 1), autosize=FIT,
        description="Bar chart of test bits per dimension on MNIST for each model (fewer is better), with the "
                    "published value of each architecture as a black tick and the training budget under each bar.")


def curve_chart(curves: pd.DataFrame, title: str, highlight: str | None = None, height: int = 340,
                subtitle: str | list[str] = "") -> alt.Chart:
    """Held-out bits/dim (test or validation images, as `subtitle` says: one line or several)
    against training images seen (log scale), one line per model, the y axis fitted to the models shown (so
    models of similar scores are not flattened by a worse one). As wide as its column.

    `curves`: model, images_seen, step, bits_per_dim."""
    said = "; ".join(subtitle) if isinstance(subtitle, list) else subtitle
    return alt.Chart(curves).mark_line(point=True).encode(
        x=alt.X("images_seen:Q", title="training images seen (log scale)", axis=alt.Axis(format="~s"),
                scale=alt.Scale(type="log", nice=False)),  # the fast start and the slow end both visible
        y=alt.Y("bits_per_dim:Q", title="held-out bits/dim", scale=alt.Scale(zero=False),
                axis=alt.Axis(tickCount=8)),
        color=alt.Color("model:N", scale=MODEL_COLOURS, legend=alt.Legend(
            orient="top", title=None, values=[m for m in MODEL_ORDER if m in set(curves["model"])])),
        opacity=_faded(highlight),
        tooltip=["model:N", alt.Tooltip("step:Q", format=","), alt.Tooltip("images_seen:Q", format=","),
                 alt.Tooltip("bits_per_dim:Q", format=".3f", title="held-out bits/dim")],
    ).properties(height=height, autosize=FIT, title=alt.TitleParams(title, subtitle=subtitle or alt.Undefined),
                 description=f"Line chart: {title}, bits/dim {said or 'on held-out images'} against the number "
                             "of training images seen (lower is better).")


def size_chart(models: pd.DataFrame, highlight: str | None = None, height: int = 320) -> alt.LayerChart:
    """Test bits/dim against parameter count (log scale), one labelled point per model.

    `models`: model, bits_per_dim, params."""
    known = models.dropna(subset=["bits_per_dim", "params"])
    lo, hi = (float(known["params"].min()), float(known["params"].max())) if len(known) else (1.0, 10.0)
    x = alt.X("params:Q", title="trainable parameters (log scale)",
              scale=alt.Scale(type="log", domain=[lo / 2, hi * 2], nice=False), axis=alt.Axis(format="~s"))
    b_lo, b_hi = (float(known["bits_per_dim"].min()), float(known["bits_per_dim"].max())) if len(known) else (0.0, 1.0)
    margin = 0.15 * (b_hi - b_lo or 1.0)  # room above the highest point for its name
    y = alt.Y("bits_per_dim:Q", title="test bits/dim", axis=alt.Axis(tickCount=5),
              scale=alt.Scale(domain=[b_lo - margin, b_hi + 2 * margin], nice=False, zero=False))
    base = alt.Chart(known)
    dots = base.mark_circle(size=120).encode(
        x=x, y=y, color=alt.Color("model:N", scale=MODEL_COLOURS, legend=None), opacity=_faded(highlight),
        tooltip=["model:N", alt.Tooltip("params:Q", format=","), alt.Tooltip("bits_per_dim:Q", format=".3f")])
    names = base.mark_text(dy=-14, fontSize=11).encode(x=x, y=y, text="model:N")
    return alt.layer(dots, names).properties(
        height=height, autosize=FIT, title="Test bits/dim against model size",
        description="Scatter plot of test bits per dimension against the number of trainable parameters, one "
                    "point per model.")


def race_chart(frame: pd.DataFrame, x: str = "step", height: int = 300) -> alt.Chart:
    """Held-out NLL of the three 2-D models against optimisation step (`x="step"`) or against the
    seconds each model has trained (`x="seconds"`). As wide as its column.

    `frame`: model, step, seconds, nll."""
    titles = {"step": "optimisation step (same for every model)", "seconds": "seconds of training (this server)"}
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X(f"{x}:Q", title=titles[x]),
        y=alt.Y("nll:Q", title="held-out NLL (nats)", scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", scale=MODEL_COLOURS, legend=alt.Legend(orient="top", title=None)),
        tooltip=["model:N", "step:Q", alt.Tooltip("seconds:Q", format=".1f"), alt.Tooltip("nll:Q", format=".3f")],
    ).properties(height=height, autosize=FIT, description="Line chart of the held-out negative log-likelihood of "
                 f"NICE, RealNVP and Glow (lower is better) against the {titles[x]}.")
