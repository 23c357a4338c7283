"""The Out of distribution page's numbers: the shipped statistics, detector scores, AUROC and ROC.

Everything comes from `pretrained/ood_stats.npz` (made once by `python -m scripts.ood`); the maths
is `flowcore.ood`. Tables are memoised per file version with `st.cache_data`. The only live
computation is the bits/dim of the visitor's own drawing from the Score page, when there is one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.services import catalogue, score
from flowcore import ood

STATS_FILE = "ood_stats.npz"
HOW_TO_MAKE = "Make it with `python -m scripts.ood --data-dir <folder with the MNIST IDX files>` (see the README)."
FASHION_HINT = ("install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; Streamlit "
                "Community Cloud installs it from `packages.txt`), or put its IDX files in a `fashion-mnist/` "
                "folder of the data directory, then run `python -m scripts.ood` again")
BATCH_SIZES = (1, 5, 25)  # of the typicality test
BATCH_SEED = 0


@dataclass(frozen=True)
class Detector:
    key: str
    title: str
    reference: str
    what: str  # one sentence


DETECTORS = (  # the four detectors, as the page describes them
    Detector("likelihood", "Likelihood", "Nalisnick et al. 2019, arXiv:1810.09136",
             "calls an image out of distribution the more bits/dim the model needs for it (the lower its "
             "likelihood)."),
    Detector("typicality", "Typicality test", "Nalisnick et al. 2019, arXiv:1906.02994",
             "calls a batch of images out of distribution the further its mean bits/dim lies from the model's "
             "typical value, above *or below*; the typical value is the mean on images the model was trained on "
             "(or held out from training), never on the test set. Batches of "
             + ", ".join(map(str, BATCH_SIZES)) + ", drawn without replacement from each set."),
    Detector("complexity", "Likelihood minus PNG size", "Serrà et al. 2020, arXiv:1909.11480",
             "subtracts the image's PNG size in bits per pixel from its bits/dim, so that simple images lose the "
             "head start every model gives them."),
    Detector("last-scale", "Last scale alone", "Schirrmeister et al. 2020, NeurIPS, arXiv:2006.10848",
             "keeps only the bits/dim of the coarsest level of a multi-scale flow (RealNVP, Glow; from the exact "
             "bits breakdown of the Score page), leaving out the finer levels, where the local pixel statistics "
             "that all images share dominate."),
)
# The rows of the AUROC table: (key, title); the typicality test once per batch size.
ROWS = (("likelihood", "Likelihood"), *((f"typicality-{m}", f"Typicality, batches of {m}") for m in BATCH_SIZES),
        ("complexity", "Likelihood minus PNG size"), ("last-scale", "Last scale alone"))


@dataclass(frozen=True)
class Stats:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    version: str  # identifies the file's contents, for memoising what is derived from it

    @property
    def models(self) -> list[str]:
        return list(self.meta["models"])

    @property
    def sets(self) -> list[str]:
        return list(self.meta["sets"])

    def bits(self, model: str, key: str, term: str = ood.TOTAL) -> np.ndarray:
        return self.arrays[ood.stat_key(model, key, term)].astype(np.float64)

    def examples(self, key: str) -> np.ndarray:
        """Four images of set `key`, spread through it: uint8 `(4, 28, 28)`."""
        return self.arrays[ood.stat_key(key, "examples")][::2]

    def own(self, model: str) -> str:
        return self.meta["models"][model]["own"]

    def other(self, model: str) -> str | None:
        other = self.meta["models"][model].get("other")
        return other if other in self.meta["sets"] else None

    def outliers(self, model: str) -> list[str]:
        """Every set but the model's own test set, in the file's order."""
        return [s for s in self.sets if s != self.own(model)]


def stats_path() -> Path:
    return catalogue.pretrained_dir() / STATS_FILE


@st.cache_resource(show_spinner=False, max_entries=2)
def _read(path: str, version: tuple[int, int]) -> Stats:  # version: cache key only
    arrays, meta = ood.read_statistics(path)
    return Stats(arrays, meta, f"{path}:{version}")


def statistics() -> tuple[Stats | None, str | None]:
    """The shipped statistics, or `(None, reason)` when the file is missing or unreadable."""
    path = stats_path()
    if not path.is_file():
        return None, f"The statistics file `{path}` does not exist. {HOW_TO_MAKE}"
    try:
        return _read(str(path), catalogue.file_version(path)), None
    except Exception as err:  # noqa: BLE001 - never a traceback on the page
        return None, f"The statistics file `{path}` cannot be read ({type(err).__name__}: {err}). {HOW_TO_MAKE}"


def missing_fashion(stats: Stats) -> bool:
    return "Fashion-MNIST test" not in stats.meta["sets"]


# --- Histograms ----------------------------------------------------------------------------


def _log_bins(values: list[np.ndarray], bins: int = 60) -> np.ndarray:
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    lo, hi = np.log10(max(lo, 0.05)), np.log10(max(hi, lo * 1.01 + 0.01))
    return np.logspace(lo, hi + 1e-9, bins + 1)


def histogram(stats: Stats, model: str) -> pd.DataFrame:
    """Density-normalised histograms of bits/dim, one per set, on bins of equal width in log10(bits/dim):
    set, left, right, density (per unit of log10 bits/dim; each set's bars add up to area 1)."""
    return _histogram(stats.version, stats, model)


@st.cache_data(show_spinner=False, max_entries=32)
def _histogram(version: str, _stats: Stats, model: str) -> pd.DataFrame:
    values = {s: _stats.bits(model, s) for s in _stats.sets}
    edges = _log_bins(list(values.values()))
    widths = np.diff(np.log10(edges))
    rows = []
    for key, v in values.items():
        counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), edges)
        density = counts / (len(v) * widths)
        rows += [{"set": key, "left": edges[i], "right": edges[i + 1], "density": density[i]}
                 for i in range(len(counts)) if counts[i]]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Finding:
    own: str
    other: str
    own_median: float
    other_median: float

    @property
    def other_scores_better(self) -> bool:
        return self.other_median < self.own_median


def finding(stats: Stats, model: str) -> Finding | None:
    """The medians of the model's own test set and the other data set's test set (None without it)."""
    other = stats.other(model)
    if other is None:
        return None
    own = stats.own(model)
    return Finding(own, other, float(np.median(stats.bits(model, own))), float(np.median(stats.bits(model, other))))


def marks(stats: Stats, model: str, digit: tuple[np.ndarray, str] | None) -> pd.DataFrame:
    """The labelled lines on a histogram: the medians of the model's own and the other test set, and the
    visitor's digit (`drawing()`) when the model can score it: x, label, row."""
    rows = []
    found = finding(stats, model)
    if found is not None:
        rows += [{"x": found.own_median, "label": f"{found.own}: median {found.own_median:.2f}"},
                 {"x": found.other_median, "label": f"{found.other}: median {found.other_median:.2f}"}]
    if digit is not None:
        bits = drawing_bits(digit[0], model)
        if bits is not None:
            rows.append({"x": bits, "label": f"your digit: {bits:.2f}"})
    return pd.DataFrame([{**r, "row": i} for i, r in enumerate(rows)], columns=["x", "label", "row"])


def finding_sentence(stats: Stats, model: str) -> str:
    """What the model's histogram shows, in one sentence with both medians; says so when the expected
    direction (the paradox for the Fashion-MNIST model, the other way for MNIST models) does not hold."""
    found = finding(stats, model)
    if found is None:
        return f"The other data set's test images are missing: {FASHION_HINT}."
    numbers = (f"median **{found.other_median:.2f}** bits/dim for {found.other} against **{found.own_median:.2f}** "
               f"for its own {found.own} images")
    if stats.meta["models"][model]["dataset"] == "fashion-mnist":
        return (f"**The paradox:** trained only on clothes, this model needs *fewer* bits for digits: {numbers}."
                if found.other_scores_better else
                f"**The paradox does not reproduce with this model:** {numbers}.")
    return (f"**The other direction:** clothes cost this model more bits than digits, as one would hope: {numbers}."
            if not found.other_scores_better else
            f"**Unexpectedly, this MNIST model prefers the other data set:** {numbers}.")


# --- Detectors -----------------------------------------------------------------------------


def scores(stats: Stats, model: str, detector: str, key: str) -> np.ndarray | None:
    """Outlier scores of set `key` under `detector` (higher = more out of distribution); one per
    image, or per batch for the typicality test; None where the detector does not apply."""
    if key not in stats.meta["sets"]:
        return None
    bits = stats.bits(model, key)
    if detector == "likelihood":
        return ood.likelihood_score(bits)
    if detector.startswith("typicality-"):
        typical = stats.meta["models"][model]["typical_bits_per_dim"]
        return ood.typicality_score(bits, typical, int(detector.split("-")[1]), BATCH_SEED)
    if detector == "complexity":
        return ood.complexity_score(bits, stats.arrays[ood.stat_key(key, ood.PNG)])
    if detector == "last-scale":
        names = stats.meta["models"][model].get("last_scale_terms") or []
        return np.sum([stats.bits(model, key, n) for n in names], axis=0) if names else None
    raise ValueError(f"unknown detector {detector!r}")


def auroc_table(stats: Stats, model: str) -> pd.DataFrame:
    """AUROC of every detector (rows) against every outlier set (columns), own test set as inliers;
    NaN where a detector does not apply. Below 0.5 is kept as measured."""
    return _auroc_table(stats.version, stats, model)


@st.cache_data(show_spinner=False, max_entries=32)
def _auroc_table(version: str, _stats: Stats, model: str) -> pd.DataFrame:
    own = _stats.own(model)
    table = {}
    for detector, title in ROWS:
        inliers = scores(_stats, model, detector, own)
        row = {}
        for key in _stats.outliers(model):
            outliers = scores(_stats, model, detector, key)
            row[key] = np.nan if inliers is None or outliers is None else ood.auroc(inliers, outliers)
        table[title] = row
    return pd.DataFrame.from_dict(table, orient="index")


_CELL = "padding: 0.35rem 0.3rem; border-bottom: 1px solid rgba(128, 128, 128, 0.25)"


def html_table(table: pd.DataFrame) -> str:
    """An AUROC table as a compact HTML table: three decimals, "n/a" where a detector does not apply,
    values below 0.5 in red (as measured, never flipped). Small type and padding keep six columns
    within a phone's width (Streamlit's own tables pad each header by 1 rem and scroll sideways there)."""
    def cell(v: float) -> str:
        style = f"{_CELL}; text-align: right; font-variant-numeric: tabular-nums"
        if pd.isna(v):
            return f'<td style="{style}">n/a</td>'
        red = "; color: #c62828; font-weight: 600" if v < 0.5 else ""
        return f'<td style="{style}{red}">{v:.3f}</td>'

    head = "".join(f'<th scope="col" style="{_CELL}; text-align: right; font-weight: 600">{html.escape(c)}</th>'
                   for c in table.columns)
    rows = "".join(f'<tr><th scope="row" style="{_CELL}; text-align: left; font-weight: 400">{html.escape(name)}</th>'
                   + "".join(cell(v) for v in row) + "</tr>" for name, row in table.iterrows())
    return (f'<table style="border-collapse: collapse; width: 100%; font-size: 0.8rem; line-height: 1.3">'
            f'<thead><tr><th scope="col" style="{_CELL}; text-align: left; font-weight: 600">detector</th>{head}'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def title(stats: Stats, model: str) -> str:
    """The model's name with the data set it was trained on: "Glow (Fashion-MNIST)", "RealNVP (MNIST)"."""
    name = catalogue.title(model).split(" (")[0]
    return f"{name} ({'Fashion-MNIST' if stats.meta['models'][model]['dataset'] == 'fashion-mnist' else 'MNIST'})"


def table_caption(stats: Stats, model: str) -> str:
    info = stats.meta["models"][model]
    n = {s: stats.meta["sets"][s]["n"] for s in stats.sets}
    last = ("" if info.get("last_scale_terms") else
            " The last-scale detector needs several scales; this model has one (n/a).")
    return (f"In-distribution: {n[info['own']]:,} {info['own']} images. Outliers: "
            + ", ".join(f"{n[s]:,} {s}" for s in stats.outliers(model))
            + f". Typical value {info['typical_bits_per_dim']:.3f} bits/dim, from {info['reference']}. "
            f"Batches of {BATCH_SIZES[-1]}: {n[info['own']] // BATCH_SIZES[-1]} per set "
            f"({n.get('constant', 256) // BATCH_SIZES[-1]} of constant images)." + last)


def _thinned(fpr: np.ndarray, tpr: np.ndarray, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A ROC curve at most `2 * steps + 2` points, for drawing: at each false-positive rate of a grid of
    `steps` (and at 0), the highest true-positive rate reached by then, as a staircase. The full curve
    has a point per distinct score (thousands), which the browser would draw for every chart."""
    grid = np.linspace(0, 1, steps + 1)
    best = np.maximum.accumulate(tpr)[np.searchsorted(fpr, grid, side="right") - 1]
    x = np.concatenate([[0.0], np.repeat(grid, 2)[1:]])
    y = np.concatenate([[0.0], np.repeat(best, 2)[:-1]])
    return x, y


def roc_curves(stats: Stats, model: str, detector: str) -> pd.DataFrame:
    """set, fpr, tpr of one detector against every outlier set (empty where it does not apply)."""
    return _roc_curves(stats.version, stats, model, detector)


@st.cache_data(show_spinner=False, max_entries=64)
def _roc_curves(version: str, _stats: Stats, model: str, detector: str) -> pd.DataFrame:
    inliers = scores(_stats, model, detector, _stats.own(model))
    frames = []
    for key in _stats.outliers(model) if inliers is not None else ():
        outliers = scores(_stats, model, detector, key)
        if outliers is not None:
            fpr, tpr = _thinned(*ood.roc_curve(inliers, outliers))
            frames.append(pd.DataFrame({"set": key, "fpr": fpr, "tpr": tpr, "order": np.arange(len(fpr))}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["set", "fpr", "tpr", "order"])


# --- The visitor's digit from the Score page ------------------------------------------------


def drawing() -> tuple[np.ndarray, str] | None:
    """The digit the visitor scores on the Score page (drawn, uploaded or picked) as `(uint8 (28, 28),
    where it came from)`, or None when they have not been there (`score.current()`)."""
    digit = score.current()
    return None if digit is None else (np.asarray(digit.image, np.uint8), digit.source)


def drawing_bits(image: np.ndarray, model: str) -> float | None:
    """Its bits/dim under `model`, exactly as the Score page shows it (None if the model is missing)."""
    result, _ = score.score(model, image)
    return None if result is None else result.bits
